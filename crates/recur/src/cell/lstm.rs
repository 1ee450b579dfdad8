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
//!
//! Layer norm (`layer_norm`; Ba et al. 2016, as haste's `LayerNormLSTM`): LN(v; γ, β) =
//! γ ⊙ (v − μ)/√(σ² + ε) + β with μ, σ² the mean and (biased) variance of v's own entries and
//! ε = [`super::LAYER_NORM_EPS`]; each batch row is normalised on its own. (1) and (7) become
//! ```text
//! (1) a = LN(W_ih x; γ_ih) + LN(W_hh h_prev; γ_hh) + b_ih + b_hh   (each norm over all 4H)
//! (7) m = o ⊙ act_h(LN(c; γ_c, β_c))                                (over the H values of c)
//! ```
//! (haste has one bias b where PyTorch's layout has b_ih + b_hh; its input and recurrent norms
//! have gains only). The input projection carries no bias (the biases come after the norms),
//! the recurrent product is written to scratch, and the row pass normalises both, keeping
//! x̂, q̂, ĉ and the three 1/√(σ² + ε) (`aux`). Backward, with da of (6)ᵀ…(2)ᵀ:
//! ```text
//! (7)ᵀ dy_c = dm ⊙ o ⊙ act_h'(·);  dγ_c += dy_c ⊙ ĉ;  dβ_c += dy_c;
//!      dc += LN'(dy_c ⊙ γ_c; ĉ)                   LN'(d; v̂) = (d − mean(d) − v̂ mean(d ⊙ v̂))/√(σ² + ε)
//! (1)ᵀ db_ih = db_hh += Σ da;  dγ_ih += da ⊙ x̂;  dγ_hh += da ⊙ q̂;
//!      dz_x = LN'(da ⊙ γ_ih; x̂) → dX, dW_ih;  dz_h = LN'(da ⊙ γ_hh; q̂) → dh_prev, dW_hh
//! ```
//! The backward keeps da, dz_h and dy_c (`dalt`) for the weight gradients after the loop;
//! `dgates` holds dz_x, which is what the input projection sees. The sums over Σ rows (db,
//! dγ, dβ) are passes over those slabs after the loop, none inside it.
//!
//! Each norm's row work is its statistics (f64 partial sums, [`super::moments`],
//! [`super::backward_means`]) and one pass that writes: (1)'s writes x̂, q̂ and a together,
//! (1)ᵀ's writes dz_x and dz_h together, (7)'s ĉ and LN(c), (7)ᵀ's dc and do. Those passes,
//! (5)ᵀ and the sums after the loop run in builds compiled for the CPU's instruction set
//! ([`crate::kernel::rows`]; the same bits in every build).

use super::ParamKind::{
    BetaC, BiasHh, BiasIh, GammaC, GammaHh, GammaIh, PeepholeF, PeepholeI, PeepholeO, WeightHr,
};
use super::{
    Block, BwdStep, FwdStep, RecurrentGrad, SlabWidths, Slabs, StepWeights, backward_means,
    moments, narrow, wide,
};
use crate::error::{Result, config_err};
use crate::kernel::activation::Activation;
use crate::kernel::rows::{self, Streams};
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
    /// Layer normalisation (Ba et al. 2016, haste's `LayerNormLSTM`) of the input and
    /// recurrent products and of the cell state (see the module docs); adds the tensors
    /// `gamma_ih`, `gamma_hh`, `gamma_c`, `beta_c`. Default off (PyTorch).
    pub layer_norm: bool,
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
        if self.layer_norm && self.proj_size > 0 {
            return Err(config_err(
                "layer_norm",
                "a layer-normalised LSTM has no projection (proj_size must be 0)",
            ));
        }
        if self.layer_norm && self.input_forget == InputForget::Coupled {
            return Err(config_err(
                "layer_norm",
                "a coupled forget gate (f = 1 - i) leaves the f rows of the weights unused, and \
                 a norm over all 4H pre-activations would still read them",
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
    if cell.layer_norm {
        // (no projection) aux: act_h(LN(c)), ĉ, x̂, q̂ and three 1/√(σ² + ε);
        // dalt: da, dz_h, dy_c; forward scratch: W_hh h_prev
        return SlabWidths {
            aux: ln_aux_width(hidden),
            keep: if cell.clip.is_some() { 4 * hidden } else { 0 },
            m: 0,
            dalt: 9 * hidden,
            fwd_scratch: 4 * hidden,
            bwd_scratch: 0,
        };
    }
    SlabWidths {
        aux: hidden, // act_h(c)
        keep: if cell.clip.is_some() { 4 * hidden } else { 0 },
        m: if p > 0 { hidden } else { 0 }, // m = o ⊙ act_h(c), input of W_hr
        dalt: p,                           // dh at every step, for dW_hr
        fwd_scratch: 0,
        bwd_scratch: if p > 0 { hidden } else { 0 }, // dm
    }
}

/// A layer-normalised LSTM's `aux` row: act_h(LN(c)), ĉ, x̂, q̂ and three 1/√(σ² + ε), padded
/// to a multiple of 16 values so that its rows start 64 bytes apart (whole vectors).
fn ln_aux_width(hidden: usize) -> usize {
    (10 * hidden + 3).next_multiple_of(16)
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
        // layer norm: q = h_prev W_hhᵀ into scratch, normalised by the row pass
        0 if cell.layer_norm => matmul(
            s.scratch,
            4 * h,
            Mat::rows(s.h_rec, n, r, r),
            w.w_hh_t,
            Accumulate::Overwrite,
        ),
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
    let ln = cell.layer_norm.then(|| Norms::of(w));
    let (aux_w, q_w) = if ln.is_some() {
        (ln_aux_width(h), gh)
    } else {
        (h, 0)
    };
    for row in 0..s.n {
        let rows = |w: usize| row * w..(row + 1) * w;
        let a = &mut s.gates[rows(gh)];
        let aux = &mut s.aux[rows(aux_w)];
        if let Some(ln) = &ln {
            // (1) a = LN(W_ih x) + LN(W_hh h_prev) + b_ih + b_hh
            ln.gates(a, &s.scratch[rows(q_w)], &mut aux[2 * h..]);
        }
        forward_row(
            cell,
            peeps,
            ln.as_ref(),
            &s.c_prev[rows(h)],
            a,
            &mut s.c[rows(h)],
            aux,
            &mut ms[rows(mw)],
            &mut s.keep[rows(keep_w)],
        );
    }
}

/// A layer-normalised LSTM's norm parameters (module docs).
struct Norms<'a, T> {
    g_ih: &'a [T],
    g_hh: &'a [T],
    g_c: &'a [T],
    b_c: &'a [T],
    b_ih: Option<&'a [T]>,
    b_hh: Option<&'a [T]>,
}

impl<'a, T: Float> Norms<'a, T> {
    fn of(w: &StepWeights<'a, T>) -> Self {
        let p = &w.params;
        let get = |k| {
            p.get(k)
                .expect("a layer-normalised LSTM has its norm parameters")
        };
        Self {
            g_ih: get(GammaIh),
            g_hh: get(GammaHh),
            g_c: get(GammaC),
            b_c: get(BetaC),
            b_ih: p.get(BiasIh),
            b_hh: p.get(BiasHh),
        }
    }

    /// (1) of one row: in, `a` = W_ih x and `q` = W_hh h_prev; out, the pre-activations in
    /// `a`, and in `saved` x̂ `[4H]`, q̂ `[4H]` and then (after ĉ's slot) the two 1/√(σ² + ε).
    /// The statistics first, then one pass writes x̂, q̂ and a.
    #[inline]
    fn gates(&self, a: &mut [T], q: &[T], saved: &mut [T]) {
        let gh = a.len();
        let (x_hat, rest) = saved.split_at_mut(gh);
        let (q_hat, rstd) = rest.split_at_mut(gh);
        let (mean_x, rstd_x) = moments(a);
        let (mean_q, rstd_q) = moments(q);
        rstd[0] = narrow(rstd_x);
        rstd[1] = narrow(rstd_q);
        let stats = [(mean_x, rstd_x), (mean_q, rstd_q)];
        let (g_ih, g_hh) = (&self.g_ih[..gh], &self.g_hh[..gh]);
        if let (Some(b_ih), Some(b_hh)) = (self.b_ih, self.b_hh) {
            let ins = [q, g_ih, g_hh, b_ih, b_hh, &[]];
            rows::run(GatesWrite(stats), [a, x_hat, q_hat, &mut []], ins);
        } else {
            let ins = [q, g_ih, g_hh, &[], &[], &[]];
            rows::run(GatesWrite(stats), [a, x_hat, q_hat, &mut []], ins);
            for b in [self.b_ih, self.b_hh].into_iter().flatten() {
                for (a, &b) in a.iter_mut().zip(b) {
                    *a += b;
                }
            }
        }
    }
}

/// (1)'s pass over `[a, x̂, q̂]` reading `[q, γ_ih, γ_hh, b_ih, b_hh]`: x̂ and q̂ from the raw
/// products a and q and their statistics `[(μ, 1/√(σ² + ε)); 2]`, and a = γ_ih ⊙ x̂ + γ_hh ⊙ q̂
/// (+ b_ih + b_hh where given), compiled for the CPU's instruction set ([`rows`]).
struct GatesWrite([(f64, f64); 2]);

impl<T: Float> Streams<T> for GatesWrite {
    type Output = ();

    #[inline(always)]
    fn run(self, [a, x_hat, q_hat, _]: [&mut [T]; 4], [q, g_ih, g_hh, b_ih, b_hh, _]: [&[T]; 6]) {
        let [(mean_x, rstd_x), (mean_q, rstd_q)] = self.0;
        let n = a.len();
        let (q, x_hat, q_hat) = (&q[..n], &mut x_hat[..n], &mut q_hat[..n]);
        let (g_ih, g_hh) = (&g_ih[..n], &g_hh[..n]);
        if b_ih.len() == n && b_hh.len() == n {
            for j in 0..n {
                let xh = narrow::<T>((wide(a[j]) - mean_x) * rstd_x);
                let qh = narrow::<T>((wide(q[j]) - mean_q) * rstd_q);
                x_hat[j] = xh;
                q_hat[j] = qh;
                a[j] = g_ih[j] * xh + g_hh[j] * qh + b_ih[j] + b_hh[j];
            }
        } else {
            for j in 0..n {
                let xh = narrow::<T>((wide(a[j]) - mean_x) * rstd_x);
                let qh = narrow::<T>((wide(q[j]) - mean_q) * rstd_q);
                x_hat[j] = xh;
                q_hat[j] = qh;
                a[j] = g_ih[j] * xh + g_hh[j] * qh;
            }
        }
    }
}

/// One row of [`forward_rows`]: in, `a` the gate pre-activations; out, the gates in place,
/// c, act_h(c) (layer norm: act_h(LN(c)), then ĉ) at the start of `aux`, m and the clamp
/// record. (A function of its own, so that the compiler knows the rows it writes apart and
/// vectorises every loop.)
#[allow(clippy::too_many_arguments)]
#[inline]
fn forward_row<T: Float>(
    cell: &LstmCell,
    [p_i, p_f, p_o]: [Option<&[T]>; 3],
    ln: Option<&Norms<'_, T>>,
    c_prev: &[T],
    a: &mut [T],
    c: &mut [T],
    aux: &mut [T],
    m: &mut [T],
    keep: &mut [T],
) {
    let h = c.len();
    let (tc, saved) = aux.split_at_mut(h);
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
    // layer norm: act_h reads LN(c; γ_c, β_c), with ĉ and its 1/√(σ² + ε) kept
    if let Some(ln) = ln {
        let (c_hat, rest) = saved.split_at_mut(h);
        let (mean, rstd) = moments(c);
        rest[8 * h + 2] = narrow(rstd);
        let ins = [&*c, ln.g_c, ln.b_c, &[], &[], &[]];
        rows::run(
            CellNormWrite(mean, rstd),
            [c_hat, tc, &mut [], &mut []],
            ins,
        );
    }
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
        // (1)ᵀ dh_prev = da W_hh (recurrent dropout: m ⊙ (da W_hh)); layer norm: dz_h W_hh
        _ => {
            let gh = 4 * h;
            let dq = if cell.layer_norm {
                Mat::rows(&s.dalt[gh..], n, gh, 9 * h)
            } else {
                Mat::rows(&*s.dgates, n, gh, gh)
            };
            matmul(s.dh, r, dq, w.w_hh_b, Accumulate::Overwrite);
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
    let ln = cell.layer_norm.then(|| Norms::of(w));
    let (aux_w, dalt_w) = if ln.is_some() {
        (ln_aux_width(h), 9 * h)
    } else {
        (h, 0)
    };
    for row in 0..s.n {
        let rows = |w: usize| row * w..(row + 1) * w;
        let (aux, da, dalt) = (
            &s.aux[rows(aux_w)],
            &mut s.dgates[rows(gh)],
            &mut s.dalt[rows(dalt_w)],
        );
        let ln_row =
            (ln.as_ref().zip(dalt.get_mut(8 * h..))).map(|(ln, dy_c)| (ln, &aux[h..], dy_c));
        backward_row(
            cell,
            peeps,
            ln_row,
            &s.gates[rows(gh)],
            &s.c_prev[rows(h)],
            &aux[..h],
            &dm_all[rows(dmw)],
            &s.keep[rows(keep_w)],
            da,
            &mut s.dc[rows(h)],
        );
        if let Some(ln) = &ln {
            ln.gates_backward(da, dalt, &aux[2 * h..]);
        }
    }
}

impl<T: Float> Norms<'_, T> {
    /// (1)ᵀ of one row: in, `da`; out, dz_x in `da`, and da, dz_h in `dalt`'s first 8H.
    /// `saved` is what [`Self::gates`] kept. One pass sums what both norms' backwards need,
    /// a second writes dz_h and dz_x (da ⊙ γ computed again rather than stored).
    #[inline]
    fn gates_backward(&self, da: &mut [T], dalt: &mut [T], saved: &[T]) {
        let gh = da.len();
        let (x_hat, rest) = saved.split_at(gh);
        let (q_hat, rstd) = rest.split_at(gh);
        let (da_kept, rest) = dalt.split_at_mut(gh);
        let dz_h = &mut rest[..gh];
        da_kept.copy_from_slice(da);
        let (g_ih, g_hh) = (&self.g_ih[..gh], &self.g_hh[..gh]);
        let means = [
            backward_means(da, g_ih, x_hat),
            backward_means(da, g_hh, q_hat),
        ];
        let pass = GatesBackwardWrite(means, [wide(rstd[0]), wide(rstd[1])]);
        rows::run(
            pass,
            [da, dz_h, &mut [], &mut []],
            [g_ih, g_hh, x_hat, q_hat, &[], &[]],
        );
    }
}

/// (1)ᵀ's pass over `[da, dz_h]` reading `[γ_ih, γ_hh, x̂, q̂]`: dz_h = LN'(da ⊙ γ_hh; q̂) and,
/// in place, da ← LN'(da ⊙ γ_ih; x̂), from the means of [`backward_means`] `[x, q]` and the
/// two 1/√(σ² + ε), compiled for the CPU's instruction set ([`rows`]).
struct GatesBackwardWrite([(f64, f64); 2], [f64; 2]);

impl<T: Float> Streams<T> for GatesBackwardWrite {
    type Output = ();

    #[inline(always)]
    fn run(self, [da, dz_h, ..]: [&mut [T]; 4], [g_ih, g_hh, x_hat, q_hat, ..]: [&[T]; 6]) {
        let ([(mx_d, mx_dh), (mq_d, mq_dh)], [rstd_x, rstd_q]) = (self.0, self.1);
        let n = da.len();
        let (dz_h, g_ih, g_hh) = (&mut dz_h[..n], &g_ih[..n], &g_hh[..n]);
        let (x_hat, q_hat) = (&x_hat[..n], &q_hat[..n]);
        for j in 0..n {
            let d = da[j];
            dz_h[j] = narrow(rstd_q * (wide(d * g_hh[j]) - mq_d - wide(q_hat[j]) * mq_dh));
            da[j] = narrow(rstd_x * (wide(d * g_ih[j]) - mx_d - wide(x_hat[j]) * mx_dh));
        }
    }
}

/// One row of [`backward_rows`], the mirror of [`forward_row`]: in, `dm` and `dc` (from step
/// t + 1); out, da and dc_prev in `dc`. Layer norm: `(norms, [ĉ, …, 1/√(σ_c² + ε)], dy_c)`,
/// dy_c written for dγ_c and dβ_c.
#[allow(clippy::too_many_arguments)]
#[inline]
fn backward_row<T: Float>(
    cell: &LstmCell,
    [p_i, p_f, p_o]: [Option<&[T]>; 3],
    ln: Option<(&Norms<'_, T>, &[T], &mut [T])>,
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
    if let Some((ln, saved, dy_c)) = ln {
        // layer norm: da_g holds dy_c, the gradient at LN(c); dc += LN'(dy_c ⊙ γ_c; ĉ)
        let (c_hat, rest) = saved.split_at(h);
        dy_c.copy_from_slice(da_g);
        let means = backward_means(da_g, ln.g_c, c_hat);
        let pass = CellNormBackwardWrite(means, wide(rest[8 * h + 2]));
        let ins = [&*dy_c, ln.g_c, c_hat, dm, tc, &[]];
        rows::run(pass, [dc, da_o, &mut [], &mut []], ins);
    } else {
        for (((dc, &t), d_o), (&dm, &tc)) in dc
            .iter_mut()
            .zip(&*da_g)
            .zip(da_o.iter_mut())
            .zip(dm.iter().zip(tc))
        {
            *dc += t;
            *d_o = dm * tc;
        }
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
    let ins = [g, i, c_prev, f, &[], &[]];
    rows::run(CellStateBackward(coupled), [da_i, da_f, da_g, dc], ins);
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

/// The layer-normalised cell state of (7), a pass over `[ĉ, t]` reading `[c, γ_c, β_c]`:
/// ĉ = (c − μ)/√(σ² + ε) from `(μ, 1/√(σ² + ε))`, and LN(c) = γ_c ⊙ ĉ + β_c into `t` (for
/// act_h to apply in place), compiled for the CPU's instruction set ([`rows`]).
struct CellNormWrite(f64, f64);

impl<T: Float> Streams<T> for CellNormWrite {
    type Output = ();

    #[inline(always)]
    fn run(self, [c_hat, t, ..]: [&mut [T]; 4], [c, g_c, b_c, ..]: [&[T]; 6]) {
        let Self(mean, rstd) = self;
        let n = c.len();
        let (c_hat, t, g_c, b_c) = (&mut c_hat[..n], &mut t[..n], &g_c[..n], &b_c[..n]);
        for j in 0..n {
            let ch = narrow::<T>((wide(c[j]) - mean) * rstd);
            c_hat[j] = ch;
            t[j] = g_c[j] * ch + b_c[j];
        }
    }
}

/// (7)ᵀ with the cell state's norm, a pass over `[dc, do]` reading `[dy_c, γ_c, ĉ, dm,
/// act_h(·)]`: dc += LN'(dy_c ⊙ γ_c; ĉ) from the means of [`backward_means`] and
/// 1/√(σ² + ε), and do = dm ⊙ act_h(·), compiled for the CPU's instruction set ([`rows`]).
struct CellNormBackwardWrite((f64, f64), f64);

impl<T: Float> Streams<T> for CellNormBackwardWrite {
    type Output = ();

    #[inline(always)]
    fn run(self, [dc, d_o, ..]: [&mut [T]; 4], [dy_c, g_c, c_hat, dm, tc, _]: [&[T]; 6]) {
        let Self((mean_d, mean_dh), rstd) = self;
        let n = dc.len();
        let (d_o, dy_c, g_c, c_hat) = (&mut d_o[..n], &dy_c[..n], &g_c[..n], &c_hat[..n]);
        let (dm, tc) = (&dm[..n], &tc[..n]);
        for j in 0..n {
            let y = wide(dy_c[j] * g_c[j]);
            dc[j] += narrow::<T>(rstd * (y - mean_d - wide(c_hat[j]) * mean_dh));
            d_o[j] = dm[j] * tc[j];
        }
    }
}

/// (5)ᵀ, a pass over `[di, df, dg, dc]` reading `[g, i, c_prev, f]`: di = dc ⊙ g;
/// dg = dc ⊙ i;  df = dc ⊙ c_prev;  dc_prev = dc ⊙ f (coupled, `.0`: (3)ᵀ di −= df,
/// da_f = 0), compiled for the CPU's instruction set ([`rows`]).
struct CellStateBackward(bool);

impl<T: Float> Streams<T> for CellStateBackward {
    type Output = ();

    #[inline(always)]
    fn run(self, [di, df, dg, dc]: [&mut [T]; 4], [g, i, c_prev, f, ..]: [&[T]; 6]) {
        let n = dc.len();
        let (di, df, dg) = (&mut di[..n], &mut df[..n], &mut dg[..n]);
        let (g, i, c_prev, f) = (&g[..n], &i[..n], &c_prev[..n], &f[..n]);
        if self.0 {
            for j in 0..n {
                let d = dc[j];
                di[j] = d * g[j] - d * c_prev[j];
                df[j] = T::zero();
                dg[j] = d * i[j];
                dc[j] = d * f[j];
            }
        } else {
            for j in 0..n {
                let d = dc[j];
                di[j] = d * g[j];
                df[j] = d * c_prev[j];
                dg[j] = d * i[j];
                dc[j] = d * f[j];
            }
        }
    }
}

/// `acc[j] += a[j] · b[j]`
#[inline(always)]
fn add_product<T: Float>(acc: &mut [T], a: &[T], b: &[T]) {
    for ((acc, &a), &b) in acc.iter_mut().zip(a).zip(b) {
        *acc += a * b;
    }
}

pub(crate) fn weight_grads<T: Float>(
    cell: &LstmCell,
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
    // da: the gradient at the gate pre-activations (layer norm: kept in dalt, whose dgates
    // holds the input product's dz_x)
    let layer_norm = cell.layer_norm;
    let (da_all, da_ld) = if layer_norm {
        (s.dalt, 9 * h)
    } else {
        (s.dgates, gh)
    };
    // (2)ᵀ (3)ᵀ (6)ᵀ peephole gradients: Σ over steps and batch of da ⊙ (the c it saw)
    let peeps = [
        (PeepholeI, 0, s.c_prev),
        (PeepholeF, 1, s.c_prev),
        (PeepholeO, 3, s.c),
    ];
    for (kind, gate, c) in peeps {
        let Some(dp) = g.take(kind) else { continue };
        for row in 0..rows {
            let da = &da_all[row * da_ld + gate * h..row * da_ld + (gate + 1) * h];
            let c = &c[row * h..(row + 1) * h];
            for j in 0..h {
                dp[j] += da[j] * c[j];
            }
        }
    }
    // layer norm: dγ_ih += Σ da ⊙ x̂;  dγ_hh += Σ da ⊙ q̂;  dγ_c += Σ dy_c ⊙ ĉ;  dβ_c += Σ dy_c
    if layer_norm {
        let kinds = [GammaIh, GammaHh, GammaC, BetaC].map(|k| g.take(k));
        let [Some(d_gih), Some(d_ghh), Some(d_gc), Some(d_bc)] = kinds else {
            unreachable!("a layer-normalised LSTM has its norm parameters")
        };
        let (dalt_w, aux_w) = (9 * h, ln_aux_width(h));
        let mut d = [d_gih, d_ghh, d_gc, d_bc];
        for row in 0..rows {
            let dalt = &s.dalt[row * dalt_w..(row + 1) * dalt_w];
            let aux = &s.aux[row * aux_w..(row + 1) * aux_w];
            let (da, dy_c) = (&dalt[..gh], &dalt[8 * h..]);
            let (c_hat, x_hat, q_hat) = (&aux[h..2 * h], &aux[2 * h..6 * h], &aux[6 * h..10 * h]);
            let [a, b, c, e] = &mut d;
            let out = [&mut **a, &mut **b, &mut **c, &mut **e];
            rows::run(NormGrads, out, [da, x_hat, q_hat, dy_c, c_hat, &[]]);
        }
    }
}

/// One row of the norms' gain and bias gradients over `[dγ_ih, dγ_hh, dγ_c, dβ_c]` reading
/// `[da, x̂, q̂, dy_c, ĉ]`, compiled for the CPU's instruction set ([`rows`]).
struct NormGrads;

impl<T: Float> Streams<T> for NormGrads {
    type Output = ();

    #[inline(always)]
    fn run(self, [d_gih, d_ghh, d_gc, d_bc]: [&mut [T]; 4], ins: [&[T]; 6]) {
        let [da, x_hat, q_hat, dy_c, c_hat, _] = ins;
        add_product(d_gih, da, x_hat);
        add_product(d_ghh, da, q_hat);
        add_product(d_gc, dy_c, c_hat);
        for (d, &v) in d_bc.iter_mut().zip(dy_c) {
            *d += v;
        }
    }
}

/// (1)ᵀ's recurrent part with layer norm: dW_hh += dz_hᵀ h_prev, and both biases Σ da.
pub(crate) fn recurrent_grad<'a, T>(hidden: usize, s: &Slabs<'a, T>) -> RecurrentGrad<'a, T> {
    let (gh, ld) = (4 * hidden, 9 * hidden);
    RecurrentGrad {
        dq: Some((&s.dalt[gh..], ld)),
        other: None,
        bias: Some([(s.dalt, ld); 2]),
    }
}
