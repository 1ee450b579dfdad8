//! LSTM: Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000, optional
//! diagonal peepholes (Gers & Schmidhuber 2000), projection (LSTMP, Sak et al. 2014, as
//! PyTorch's `proj_size`) and coupled input-forget gate (ONNX `input_forget`).
//!
//! Forward, gates stacked i, f, g, o (PyTorch's order), σ = gate activation (sigmoid),
//! act_g = cell activation (tanh), act_h = hidden activation (tanh):
//! ```text
//! (1) a = W_ih x + b_ih + b_hh + W_hh h_prev          [G*H]   (input part: one GEMM for all t)
//! (2) i = σ(a_i + p_i ⊙ c_prev)
//! (3) f = σ(a_f + p_f ⊙ c_prev)        coupled: f = 1 − i
//! (4) g = act_g(a_g)
//! (5) c = f ⊙ c_prev + i ⊙ g
//! (6) o = σ(a_o + p_o ⊙ c)             the output gate peeps at the NEW cell state
//! (7) m = o ⊙ act_h(c)
//! (8) h = m                            projection: h = W_hr m
//! ```
//! Backward, given dh (from the output at t and from step t+1) and dc (from step t+1):
//! ```text
//! (8)ᵀ dm = dh                         projection: dm = dh W_hr, dW_hr += dhᵀ m
//! (7)ᵀ do = dm ⊙ act_h(c);  dc += dm ⊙ o ⊙ act_h'(c)
//! (6)ᵀ da_o = do ⊙ σ'(o);   dc += da_o ⊙ p_o;  dp_o += da_o ⊙ c
//! (5)ᵀ di = dc ⊙ g;  dg = dc ⊙ i;  df = dc ⊙ c_prev;  dc_prev = dc ⊙ f
//! (4)ᵀ da_g = dg ⊙ act_g'(g)
//! (3)ᵀ da_f = df ⊙ σ'(f);   dc_prev += da_f ⊙ p_f;  dp_f += da_f ⊙ c_prev
//!      coupled: di −= df, da_f = 0
//! (2)ᵀ da_i = di ⊙ σ'(i);   dc_prev += da_i ⊙ p_i;  dp_i += da_i ⊙ c_prev
//! (1)ᵀ dh_prev = da W_hh;  dW_hh += daᵀ h_prev;  db_hh += Σ da   (after the loop, in the
//!      driver with dW_ih, dX and db_ih: one pass over da)
//! ```
//! With the coupled gate the f rows of the weights stay in place (the ONNX layout) and
//! receive zero gradient.
//!
//! ONNX `clip` (ONNX Runtime's `uni_directional_lstm.cc`, `GateComputations`): each of a_i,
//! a_f, a_g, a_o is clamped to [−clip, clip] after the biases and the peephole term are added
//! (a_o's peephole reading the new c) and before its activation; with the coupled gate f =
//! 1 − i is computed from the clamped-and-activated i. The cell state c itself is not clipped
//! (ORT's "clipped" c buffer is only scratch for act_h). Backward: da of a clamped
//! pre-activation is 0, before it reaches the peepholes, dc_prev or the weights.
//!
//! Recurrent dropout: (1) reads `m ⊙ h_prev` (projected: m has P entries); (1)ᵀ gives
//! dh_prev = m ⊙ (da W_hh) and dW_hh += daᵀ (m ⊙ h_prev).

use super::ParamKind::{PeepholeF, PeepholeI, PeepholeO, WeightHr};
use super::{Block, BwdStep, FwdStep, SlabWidths, Slabs, StepWeights};
use crate::error::{Result, config_err};
use crate::kernel::activation::Activation;
use crate::kernel::scalar::Float;
use crate::kernel::{Accumulate, Mat, matmul};

/// Which gates see the cell state (diagonal peepholes). i and f see c_prev, o sees the new c.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peepholes {
    pub input: bool,
    pub forget: bool,
    pub output: bool,
}

impl Peepholes {
    /// No peepholes (PyTorch, Keras, cuDNN).
    pub const NONE: Self = Self {
        input: false,
        forget: false,
        output: false,
    };
    /// All three (Gers & Schmidhuber 2000; ONNX, oneDNN).
    pub const ALL: Self = Self {
        input: true,
        forget: true,
        output: true,
    };

    /// Whether any peephole is on.
    pub fn any(self) -> bool {
        self.input || self.forget || self.output
    }
}

/// Whether the forget gate has its own weights or is tied to the input gate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputForget {
    /// f is its own gate (everyone's default).
    #[default]
    Separate,
    /// f = 1 − i (CIFG; ONNX `input_forget = 1`).
    Coupled,
}

/// The activations of an LSTM (ONNX's f, g, h).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LstmActivations {
    /// i, f, o (default sigmoid)
    pub gate: Activation,
    /// g (default tanh)
    pub cell: Activation,
    /// applied to c before the output gate (default tanh)
    pub hidden: Activation,
}

impl Default for LstmActivations {
    fn default() -> Self {
        Self {
            gate: Activation::Sigmoid,
            cell: Activation::Tanh,
            hidden: Activation::Tanh,
        }
    }
}

/// LSTM options. The default is PyTorch's `nn.LSTM`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LstmCell {
    pub peepholes: Peepholes,
    /// P > 0 projects h to P values (PyTorch `proj_size`); 0 = none.
    pub proj_size: usize,
    pub input_forget: InputForget,
    pub activations: LstmActivations,
    /// ONNX `clip`: every gate pre-activation clamped to [−clip, clip] (finite, > 0); `None`
    /// = off (PyTorch).
    pub clip: Option<f64>,
}

impl LstmCell {
    pub(crate) fn validate(&self, hidden_size: usize) -> Result<()> {
        if self.proj_size >= hidden_size && self.proj_size > 0 {
            return Err(config_err(
                "proj_size",
                format!(
                    "must be smaller than hidden_size ({hidden_size}), got {}",
                    self.proj_size
                ),
            ));
        }
        if self.input_forget == InputForget::Coupled && self.peepholes.forget {
            return Err(config_err(
                "peepholes.forget",
                "a coupled forget gate (f = 1 - i) has no pre-activation to peep into",
            ));
        }
        Ok(())
    }
}

pub(crate) fn slab_widths(cell: &LstmCell, hidden: usize) -> SlabWidths {
    let p = cell.proj_size;
    SlabWidths {
        aux: hidden, // act_h(c)
        keep: if cell.clip.is_some() { 4 * hidden } else { 0 },
        m: if p > 0 { hidden } else { 0 }, // m = o ⊙ act_h(c), input of W_hr
        dalt: p,                           // dh at every step, for dW_hr
        fwd_scratch: 0,
        bwd_scratch: if p > 0 { hidden } else { 0 }, // dm
    }
}

/// The forward step's products over all its rows: 0, (1)'s recurrent part; 1, (8).
pub(crate) fn forward_product<T: Float>(
    cell: &LstmCell,
    k: usize,
    w: &StepWeights<'_, T>,
    s: &mut FwdStep<'_, T>,
) {
    let (n, h, r) = (s.n, w.hidden, w.h_out);
    match k {
        // (1) a += h_prev W_hhᵀ (recurrent dropout: (m ⊙ h_prev) W_hhᵀ)
        0 => matmul(
            s.gates,
            4 * h,
            Mat::rows(s.h_rec, n, r, r),
            w.w_hh_t,
            Accumulate::Add,
        ),
        // (8) h = m W_hrᵀ
        _ if cell.proj_size > 0 => matmul(
            s.h,
            r,
            Mat::rows(s.m, n, h, h),
            w.w_hr_t,
            Accumulate::Overwrite,
        ),
        _ => {}
    }
}

/// The forward step's row pass, (2)…(7), over the rows of `s`.
pub(crate) fn forward_rows<T: Float>(cell: &LstmCell, w: &StepWeights<'_, T>, s: FwdStep<'_, T>) {
    let (h, r) = (w.hidden, w.h_out);
    let gh = 4 * h;
    let peeps = [PeepholeI, PeepholeF, PeepholeO].map(|k| w.params.get(k));
    let (ms, mw) = if cell.proj_size > 0 {
        (s.m, h)
    } else {
        (s.h, r)
    };
    let keep_w = if cell.clip.is_some() { gh } else { 0 };
    for row in 0..s.n {
        let rows = |w: usize| row * w..(row + 1) * w;
        forward_row(
            cell,
            peeps,
            &s.c_prev[rows(h)],
            &mut s.gates[rows(gh)],
            &mut s.c[rows(h)],
            &mut s.aux[rows(h)],
            &mut ms[rows(mw)],
            &mut s.keep[rows(keep_w)],
        );
    }
}

/// One row of [`forward_rows`]: in, `a` the gate pre-activations; out, the gates in place,
/// c, act_h(c) in `tc`, m and the clamp record. (A function of its own, so that the compiler
/// knows the rows it writes apart and vectorises every loop.)
#[allow(clippy::too_many_arguments)]
#[inline]
fn forward_row<T: Float>(
    cell: &LstmCell,
    [p_i, p_f, p_o]: [Option<&[T]>; 3],
    c_prev: &[T],
    a: &mut [T],
    c: &mut [T],
    tc: &mut [T],
    m: &mut [T],
    keep: &mut [T],
) {
    let h = c.len();
    let act = cell.activations;
    let clip = super::clip_bound::<T>(cell.clip);
    // Gate by gate, each a contiguous pass over the row's H values: the activation passes are
    // vectorised kernels (f32) and the arithmetic loops have no branches.
    // (2) (3) peepholes into the pre-activations
    if let Some(p) = p_i {
        add_product(&mut a[..h], p, c_prev);
    }
    if let Some(p) = p_f {
        add_product(&mut a[h..2 * h], p, c_prev);
    }
    if let Some(clip) = clip {
        // clip: a_i, a_f, a_g (peepholes included) in one pass; a_o below
        super::clamp(&mut a[..3 * h], &mut keep[..3 * h], clip);
    }
    let (a_if, rest) = a.split_at_mut(2 * h);
    let (a_g, a_o) = rest.split_at_mut(h);
    if cell.input_forget == InputForget::Coupled {
        // (2) i = σ(a_i);  (3) f = 1 − i
        let (a_i, a_f) = a_if.split_at_mut(h);
        act.gate.apply_slice(a_i);
        for (f, &i) in a_f.iter_mut().zip(&*a_i) {
            *f = T::one() - i;
        }
    } else {
        // (2) (3) i, f = σ([a_i | a_f]): one pass over 2H
        act.gate.apply_slice(a_if);
    }
    // (4) g = act_g(a_g)
    act.cell.apply_slice(a_g);
    // (5) c = f ⊙ c_prev + i ⊙ g, copied into act_h(c)'s slot for (7) to apply in place
    let (i, f) = a_if.split_at(h);
    for ((((cj, t), &f), &cp), (&i, &g)) in c
        .iter_mut()
        .zip(tc.iter_mut())
        .zip(f)
        .zip(c_prev)
        .zip(i.iter().zip(&*a_g))
    {
        *cj = f * cp + i * g;
        *t = *cj;
    }
    // (6) o = σ(a_o + p_o ⊙ c)
    if let Some(p) = p_o {
        add_product(a_o, p, c);
    }
    if let Some(clip) = clip {
        super::clamp(a_o, &mut keep[3 * h..], clip);
    }
    act.gate.apply_slice(a_o);
    // (7) m = o ⊙ act_h(c)
    act.hidden.apply_slice(tc);
    for ((m, &o), &t) in m.iter_mut().zip(&*a_o).zip(&*tc) {
        *m = o * t;
    }
}

/// The backward step's products over all its rows: 0, (8)ᵀ; 1, (1)ᵀ's dh_prev.
pub(crate) fn backward_product<T: Float>(
    cell: &LstmCell,
    k: usize,
    w: &StepWeights<'_, T>,
    s: &mut BwdStep<'_, T>,
) {
    let (n, h, r) = (s.n, w.hidden, w.h_out);
    match k {
        // (8)ᵀ dm = dh W_hr; keep dh for dW_hr
        0 if cell.proj_size > 0 => {
            s.dalt.copy_from_slice(&s.dh[..n * r]);
            matmul(
                s.scratch,
                h,
                Mat::rows(s.dh, n, r, r),
                w.w_hr_b,
                Accumulate::Overwrite,
            );
        }
        0 => {}
        // (1)ᵀ dh_prev = da W_hh (recurrent dropout: m ⊙ (da W_hh))
        _ => {
            let gh = 4 * h;
            matmul(
                s.dh,
                r,
                Mat::rows(s.dgates, n, gh, gh),
                w.w_hh_b,
                Accumulate::Overwrite,
            );
            if !s.mask.is_empty() {
                super::mul_assign(s.dh, s.mask);
            }
        }
    }
}

/// The backward step's row pass, (7)ᵀ…(2)ᵀ, over the rows of `s`.
pub(crate) fn backward_rows<T: Float>(cell: &LstmCell, w: &StepWeights<'_, T>, s: BwdStep<'_, T>) {
    let (h, r) = (w.hidden, w.h_out);
    let gh = 4 * h;
    let peeps = [PeepholeI, PeepholeF, PeepholeO].map(|k| w.params.get(k));
    let (dm_all, dmw): (&[T], usize) = if cell.proj_size > 0 {
        (s.scratch, h)
    } else {
        (s.dh, r)
    };
    let keep_w = if cell.clip.is_some() { gh } else { 0 };
    for row in 0..s.n {
        let rows = |w: usize| row * w..(row + 1) * w;
        backward_row(
            cell,
            peeps,
            &s.gates[rows(gh)],
            &s.c_prev[rows(h)],
            &s.aux[rows(h)],
            &dm_all[rows(dmw)],
            &s.keep[rows(keep_w)],
            &mut s.dgates[rows(gh)],
            &mut s.dc[rows(h)],
        );
    }
}

/// One row of [`backward_rows`], the mirror of [`forward_row`]: in, `dm` and `dc` (from step
/// t + 1); out, da and dc_prev in `dc`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn backward_row<T: Float>(
    cell: &LstmCell,
    [p_i, p_f, p_o]: [Option<&[T]>; 3],
    gates: &[T],
    c_prev: &[T],
    tc: &[T],
    dm: &[T],
    keep: &[T],
    da: &mut [T],
    dc: &mut [T],
) {
    let h = dc.len();
    let act = cell.activations;
    let coupled = cell.input_forget == InputForget::Coupled;
    let clipped = cell.clip.is_some();
    // Whole-gate passes with no branches inside; da_g holds a temporary until (4)ᵀ.
    let (i, rest) = gates.split_at(h);
    let (f, rest) = rest.split_at(h);
    let (g, o) = rest.split_at(h);
    let (da_if, rest) = da.split_at_mut(2 * h);
    let (da_g, da_o) = rest.split_at_mut(h);
    // (7)ᵀ do = dm ⊙ act_h(c);  dc += dm ⊙ o ⊙ act_h'(c)
    for ((t, &dm), &o) in da_g.iter_mut().zip(dm).zip(o) {
        *t = dm * o;
    }
    act.hidden.mul_derivative_from_output(da_g, tc);
    for (((dc, &t), d_o), (&dm, &tc)) in dc
        .iter_mut()
        .zip(&*da_g)
        .zip(da_o.iter_mut())
        .zip(dm.iter().zip(tc))
    {
        *dc += t;
        *d_o = dm * tc;
    }
    // (6)ᵀ da_o = do ⊙ σ'(o) (0 where clipped);  dc += da_o ⊙ p_o
    act.gate.mul_derivative_from_output(da_o, o);
    if clipped {
        super::mul_assign(da_o, &keep[3 * h..]);
    }
    if let Some(p) = p_o {
        add_product(dc, &*da_o, p);
    }
    // (5)ᵀ di = dc ⊙ g;  dg = dc ⊙ i;  df = dc ⊙ c_prev;  dc_prev = dc ⊙ f
    //      coupled (3)ᵀ: di −= df, da_f = 0
    let (da_i, da_f) = da_if.split_at_mut(h);
    let rows = da_i
        .iter_mut()
        .zip(da_f.iter_mut())
        .zip(da_g.iter_mut())
        .zip(dc.iter_mut())
        .zip(g.iter().zip(i))
        .zip(c_prev.iter().zip(f));
    if coupled {
        for (((((di, df), dg), dc), (&g, &i)), (&cp, &f)) in rows {
            *di = *dc * g - *dc * cp;
            *df = T::zero();
            *dg = *dc * i;
            *dc *= f;
        }
    } else {
        for (((((di, df), dg), dc), (&g, &i)), (&cp, &f)) in rows {
            *di = *dc * g;
            *df = *dc * cp;
            *dg = *dc * i;
            *dc *= f;
        }
    }
    // (4)ᵀ da_g = dg ⊙ act_g'(g)
    act.cell.mul_derivative_from_output(da_g, g);
    // (3)ᵀ da_f = df ⊙ σ'(f);  (2)ᵀ da_i = di ⊙ σ'(i): one pass over 2H
    if coupled {
        act.gate.mul_derivative_from_output(&mut da_if[..h], i);
    } else {
        act.gate.mul_derivative_from_output(da_if, &gates[..2 * h]);
    }
    // clip: da_i, da_f, da_g are 0 where their pre-activations were clamped
    if clipped {
        super::mul_assign(&mut da_if[..], &keep[..2 * h]);
        super::mul_assign(&mut da_g[..], &keep[2 * h..3 * h]);
    }
    // (2)ᵀ dc_prev += da_i ⊙ p_i;  (3)ᵀ dc_prev += da_f ⊙ p_f
    if let Some(p) = p_i {
        add_product(dc, &da_if[..h], p);
    }
    if let Some(p) = p_f {
        add_product(dc, &da_if[h..], p);
    }
}

/// `acc[j] += a[j] · b[j]`
#[inline]
fn add_product<T: Float>(acc: &mut [T], a: &[T], b: &[T]) {
    for ((acc, &a), &b) in acc.iter_mut().zip(a).zip(b) {
        *acc += a * b;
    }
}

pub(crate) fn weight_grads<T: Float>(
    w: &StepWeights<'_, T>,
    s: &Slabs<'_, T>,
    mut g: Block<&mut [T]>,
) {
    let (rows, h, r) = (s.rows, w.hidden, w.h_out);
    let gh = 4 * h;
    // (1)ᵀ dW_ih, dW_hh, dX and both biases: the driver's, one pass over da for all cells
    // (8)ᵀ dW_hr += dhᵀ m
    if let Some(dw_hr) = g.take(WeightHr) {
        matmul(
            dw_hr,
            h,
            Mat::rows(s.dalt, rows, r, r).t(),
            Mat::rows(s.m, rows, h, h),
            Accumulate::Add,
        );
    }
    // (2)ᵀ (3)ᵀ (6)ᵀ peephole gradients: Σ over steps and batch of da ⊙ (the c it saw)
    let peeps = [
        (PeepholeI, 0, s.c_prev),
        (PeepholeF, 1, s.c_prev),
        (PeepholeO, 3, s.c),
    ];
    for (kind, gate, c) in peeps {
        let Some(dp) = g.take(kind) else { continue };
        for row in 0..rows {
            let da = &s.dgates[row * gh + gate * h..row * gh + (gate + 1) * h];
            let c = &c[row * h..(row + 1) * h];
            for j in 0..h {
                dp[j] += da[j] * c[j];
            }
        }
    }
}
