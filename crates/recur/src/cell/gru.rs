//! GRU: Cho et al. 2014. Gates stacked r, z, n (PyTorch's order); σ = gate activation
//! (sigmoid), act = candidate activation (tanh).
//!
//! Reset after the recurrent product (PyTorch, cuDNN, ONNX `linear_before_reset = 1`, Keras
//! `reset_after = True`):
//! ```text
//! (1) a = W_ih x + b_ih + [b_hr, b_hz, 0]          (input part: one GEMM for all t)
//! (2) q = W_hh h_prev + [0, 0, b_hn]               q = [q_r, q_z, q_n]
//! (3) r = σ(a_r + q_r),  z = σ(a_z + q_z)
//! (4) n = act(a_n + r ⊙ q_n)
//! (5) h = (1 − z) ⊙ n + z ⊙ h_prev
//! ```
//! Backward:
//! ```text
//! (5)ᵀ dn = dh ⊙ (1 − z);  dz = dh ⊙ (h_prev − n);  dh_prev = dh ⊙ z
//! (4)ᵀ da_n = dn ⊙ act'(n);  dr = da_n ⊙ q_n;  dq_n = da_n ⊙ r
//! (3)ᵀ da_r = dr ⊙ σ'(r);  da_z = dz ⊙ σ'(z)
//! (2)ᵀ dq = [da_r, da_z, dq_n];  dh_prev += dq W_hh;  dW_hh += dqᵀ h_prev;  db_hn += Σ dq_n
//! (1)ᵀ da = [da_r, da_z, da_n]  (to the input projection)
//! ```
//! The weight gradients (dW_hh += dqᵀ h_prev, db_hh += Σ dq, dq kept by the step) are
//! products over all steps after the loop, in the driver with (1)ᵀ.
//! Reset before the product (Cho 2014, ONNX default, Keras `reset_after = False`):
//! ```text
//! (1) a = W_ih x + b_ih + b_hh                      (all of b_hh sits outside r here)
//! (2) q_rz = W_h{r,z} h_prev;  r = σ(a_r + q_r),  z = σ(a_z + q_z)
//! (3) s = r ⊙ h_prev
//! (4) n = act(a_n + W_hn s)
//! (5) h = (1 − z) ⊙ n + z ⊙ h_prev
//! ```
//! Backward:
//! ```text
//! (5)ᵀ dn = dh ⊙ (1 − z);  dz = dh ⊙ (h_prev − n);  dh_prev = dh ⊙ z
//! (4)ᵀ da_n = dn ⊙ act'(n);  ds = da_n W_hn;  dW_hn += da_nᵀ s
//! (3)ᵀ dr = ds ⊙ h_prev;  dh_prev += ds ⊙ r
//! (2)ᵀ da_r = dr ⊙ σ'(r);  da_z = dz ⊙ σ'(z);  dh_prev += [da_r, da_z] W_h{r,z};
//!      dW_h{r,z} += [da_r, da_z]ᵀ h_prev
//! (1)ᵀ da = [da_r, da_z, da_n];  db_hh += Σ da
//! ```
//! dW_hn, dW_h{r,z} and db_hh are products over all steps after the loop, in the driver
//! with (1)ᵀ (W_hn's reads s, which the forward keeps).
//!
//! ONNX `clip` (ONNX Runtime's `deep_cpu_gru.cc`): the pre-activations of r and z
//! (`a_r + q_r`, `a_z + q_z`, both biases included) and the whole pre-activation of n are
//! clamped to [−clip, clip] before their activations. For n that is, reset after,
//! `a_n + r ⊙ q_n` (ORT adds `W_bn` and clips after forming `r ⊙ (W_hn h_prev + b_hn)`; the
//! inner `q_n` itself is not clipped), and reset before, `a_n + W_hn s` (both n biases
//! included). Backward: da of a clamped pre-activation is 0, before anything reads it.
//!
//! Layer norm (`layer_norm`, reset after only; haste's `LayerNormGRU`, Ba et al. 2016): the
//! input and recurrent products are normalised over their 3H values, each with its gain,
//! before their biases (LN as in the LSTM's module docs):
//! ```text
//! (1) a = LN(W_ih x; γ_ih) + b_ih      (2) q = LN(W_hh h_prev; γ_hh) + b_hh
//! ```
//! and (3)…(5) as above. The projection carries no bias; the row pass normalises the raw
//! products (x̂, q̂ and their 1/√(σ² + ε) kept in `aux` after q_n). Backward: with da and dq of
//! (5)ᵀ…(2)ᵀ, db_ih += Σ da, db_hh += Σ dq, dγ_ih += Σ da ⊙ x̂, dγ_hh += Σ dq ⊙ q̂,
//! dz_x = LN'(da ⊙ γ_ih; x̂) → dX, dW_ih (in `dgates`); dz_h = LN'(dq ⊙ γ_hh; q̂) → dh_prev, dW_hh;
//! `dalt` keeps dq, dz_h and da. haste has no reset-before form with layer norm, and it has no
//! one recurrent product to normalise (W_hn reads r ⊙ h_prev): refused.
//!
//! Recurrent dropout: every product with `W_hh` reads `m ⊙ h_prev` (reset before:
//! `s = r ⊙ m ⊙ h_prev`); the blend (5) reads h_prev itself. The gradient that the products
//! send to the state is multiplied by m: reset after, dh_prev = dh ⊙ z + m ⊙ (dq W_hh); reset
//! before, dh_prev = dh ⊙ z + m ⊙ (ds ⊙ r + [da_r, da_z] W_h{r,z}), with dr = ds ⊙ m ⊙ h_prev.

use super::ParamKind::{BiasHh, BiasIh, GammaHh, GammaIh, WeightHh};
use super::{
    Block, BwdStep, FwdStep, RecurrentGrad, SlabWidths, Slabs, StepWeights, layer_norm,
    layer_norm_backward,
};
use crate::error::{Result, config_err};
use crate::kernel::activation::Activation;
use crate::kernel::rows::{self, Streams};
use crate::kernel::scalar::Float;
use crate::kernel::{Accumulate, Mat, matmul};

/// Where the reset gate multiplies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResetPlacement {
    /// `n = act(W_in x + b_in + r ⊙ (W_hn h_prev + b_hn))`: PyTorch, cuDNN, ONNX
    /// `linear_before_reset = 1`, Keras `reset_after = True`.
    #[default]
    AfterMatmul,
    /// `n = act(W_in x + b_in + W_hn (r ⊙ h_prev) + b_hn)`: Cho et al. 2014, ONNX's default,
    /// Keras `reset_after = False`.
    BeforeMatmul,
}

/// The activations of a GRU (ONNX's f, g).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GruActivations {
    /// r, z (default sigmoid)
    pub gate: Activation,
    /// n (default tanh)
    pub candidate: Activation,
}

impl Default for GruActivations {
    fn default() -> Self {
        Self {
            gate: Activation::Sigmoid,
            candidate: Activation::Tanh,
        }
    }
}

/// GRU options. The default is PyTorch's `nn.GRU`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GruCell {
    pub reset: ResetPlacement,
    pub activations: GruActivations,
    /// ONNX `clip`: every gate pre-activation clamped to [−clip, clip] (finite, > 0); `None`
    /// = off (PyTorch).
    pub clip: Option<f64>,
    /// Layer normalisation of the input and recurrent products (haste's `LayerNormGRU`; reset
    /// after only; see the module docs): adds `gamma_ih`, `gamma_hh`. Default off (PyTorch).
    pub layer_norm: bool,
}

impl GruCell {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.layer_norm && self.reset == ResetPlacement::BeforeMatmul {
            return Err(config_err(
                "layer_norm",
                "a layer-normalised GRU resets after the recurrent product (reset \"after\"): \
                 with the reset before it, W_hn reads r ⊙ h_prev and there is no one recurrent \
                 product to normalise",
            ));
        }
        Ok(())
    }
}

pub(crate) fn slab_widths(cell: &GruCell, hidden: usize) -> SlabWidths {
    let keep = if cell.clip.is_some() { 3 * hidden } else { 0 };
    if cell.layer_norm {
        // (reset after) aux: q_n, x̂, q̂ and two 1/√(σ² + ε); dalt: dq, dz_h, da
        return SlabWidths {
            aux: 7 * hidden + 2,
            dalt: 9 * hidden,
            fwd_scratch: 3 * hidden,
            keep,
            ..SlabWidths::default()
        };
    }
    match cell.reset {
        ResetPlacement::AfterMatmul => SlabWidths {
            aux: hidden,             // q_n (b_hn included)
            dalt: 3 * hidden,        // dq, the gradient at the recurrent product
            fwd_scratch: 3 * hidden, // q
            keep,
            ..SlabWidths::default()
        },
        ResetPlacement::BeforeMatmul => SlabWidths {
            aux: hidden,             // s = r ⊙ h_prev
            fwd_scratch: 3 * hidden, // q
            bwd_scratch: hidden,     // ds
            keep,
            ..SlabWidths::default()
        },
    }
}

/// Reset-after keeps b_hn out of the input projection: it sits inside r ⊙ (…).
pub(crate) fn folds_hh_bias(cell: &GruCell, row: usize, hidden: usize) -> bool {
    cell.reset == ResetPlacement::BeforeMatmul || row < 2 * hidden
}

/// The forward step's products over all its rows. Reset after: 0, (2) q; 1, none. Reset
/// before: 0, (2) q_rz; 1, (4) q_n = s W_hnᵀ; 2, none.
pub(crate) fn forward_product<T: Float>(
    cell: &GruCell,
    k: usize,
    w: &StepWeights<'_, T>,
    s: &mut FwdStep<'_, T>,
) {
    let (n, h) = (s.n, w.hidden);
    let gh = 3 * h;
    let (cols, input) = match (cell.reset, k) {
        // (2) q = h_prev W_hhᵀ (+ b_hn in the row pass; recurrent dropout: (m ⊙ h_prev) W_hhᵀ)
        (ResetPlacement::AfterMatmul, 0) => (0..gh, s.h_rec),
        // (2) q_rz = h_prev W_h{r,z}ᵀ: the first 2H columns of the packed W_hhᵀ (recurrent
        // dropout: (m ⊙ h_prev) W_h{r,z}ᵀ)
        (ResetPlacement::BeforeMatmul, 0) => (0..2 * h, s.h_rec),
        // (4) q_n = s W_hnᵀ: the last H columns of the packed W_hhᵀ
        (ResetPlacement::BeforeMatmul, 1) => (2 * h..gh, &*s.aux),
        _ => return,
    };
    let w_hh_t = if cols.len() == gh {
        w.w_hh_t
    } else {
        w.w_hh_t.columns(cols.start, cols.len())
    };
    matmul(
        &mut s.scratch[cols.start..],
        gh,
        Mat::rows(input, n, h, h),
        w_hh_t,
        Accumulate::Overwrite,
    );
}

/// Row pass `k` of the forward step over the rows of `s`. Reset after: (3)…(5). Reset
/// before: 0, (2) r, z and (3) s; 1, (4) n and (5).
pub(crate) fn forward_rows<T: Float>(
    cell: &GruCell,
    k: usize,
    w: &StepWeights<'_, T>,
    s: FwdStep<'_, T>,
) {
    let h = w.hidden;
    let gh = 3 * h;
    let keep_w = if cell.clip.is_some() { gh } else { 0 };
    let norms = cell.layer_norm.then(|| Norms::of(w));
    // with layer norm, b_hh is added to all of q by the norm
    let b_hh = if norms.is_some() {
        None
    } else {
        w.params.get(BiasHh)
    };
    let aux_w = if norms.is_some() { 7 * h + 2 } else { h };
    for row in 0..s.n {
        let rows = |w: usize| row * w..(row + 1) * w;
        let (a, q, aux) = (
            &mut s.gates[rows(gh)],
            &mut s.scratch[rows(gh)],
            &mut s.aux[rows(aux_w)],
        );
        let (qn, saved) = aux.split_at_mut(h);
        if let Some(ln) = &norms {
            // (1) a = LN(W_ih x) + b_ih;  (2) q = LN(W_hh h_prev) + b_hh
            let (x_hat, rest) = saved.split_at_mut(gh);
            let (q_hat, rstd) = rest.split_at_mut(gh);
            rstd[0] = layer_norm(a, x_hat, ln.g_ih, ln.b_ih);
            rstd[1] = layer_norm(q, q_hat, ln.g_hh, ln.b_hh);
        }
        forward_row(
            cell,
            k,
            b_hh,
            (&*q, &s.h_prev[rows(h)], &s.h_rec[rows(h)]),
            a,
            &mut s.keep[rows(keep_w)],
            qn,
            &mut s.h[rows(h)],
        );
    }
}

/// A layer-normalised GRU's gains, and its biases (which come after the norms).
struct Norms<'a, T> {
    g_ih: &'a [T],
    g_hh: &'a [T],
    b_ih: Option<&'a [T]>,
    b_hh: Option<&'a [T]>,
}

impl<'a, T: Float> Norms<'a, T> {
    fn of(w: &StepWeights<'a, T>) -> Self {
        let p = &w.params;
        let get = |k| p.get(k).expect("a layer-normalised GRU has its gains");
        Self {
            g_ih: get(GammaIh),
            g_hh: get(GammaHh),
            b_ih: p.get(BiasIh),
            b_hh: p.get(BiasHh),
        }
    }
}

/// One row of [`forward_rows`]: reads q, h_prev and h_rec; writes the gates `a` in place,
/// the clamp record, `aux` and h. (A function of its own, so that the compiler knows the
/// rows it writes apart and vectorises every loop.)
#[allow(clippy::too_many_arguments)]
#[inline]
fn forward_row<T: Float>(
    cell: &GruCell,
    k: usize,
    b_hh: Option<&[T]>,
    (q, h_prev, h_rec): (&[T], &[T], &[T]),
    a: &mut [T],
    keep: &mut [T],
    aux: &mut [T],
    hb: &mut [T],
) {
    let h = hb.len();
    let act = cell.activations;
    let clip = super::clip_bound::<T>(cell.clip);
    // Gate by gate, each a contiguous pass over H (or [r | z], 2H) values of a row.
    let (a_rz, a_n) = a.split_at_mut(2 * h);
    let (q_rz, q_n) = q.split_at(2 * h);
    match (cell.reset, k) {
        (ResetPlacement::AfterMatmul, _) => {
            let qn = aux;
            // (3) r, z = σ([a_r | a_z] + [q_r | q_z]): one pass over 2H
            add_assign(a_rz, q_rz);
            if let Some(clip) = clip {
                super::clamp(a_rz, &mut keep[..2 * h], clip);
            }
            act.gate.apply_slice(a_rz);
            // (2) b_hn
            match b_hh {
                Some(b_hh) => {
                    for ((qn, &q), &b) in qn.iter_mut().zip(q_n).zip(&b_hh[2 * h..]) {
                        *qn = q + b;
                    }
                }
                None => qn.copy_from_slice(q_n),
            }
            // (4) n = act(a_n + r ⊙ q_n)
            let (r, z) = a_rz.split_at(h);
            add_product(a_n, r, qn);
            if let Some(clip) = clip {
                super::clamp(a_n, &mut keep[2 * h..], clip);
            }
            act.candidate.apply_slice(a_n);
            // (5)
            blend(hb, z, a_n, h_prev);
        }
        (ResetPlacement::BeforeMatmul, 0) => {
            // (2) r, z = σ([a_r | a_z] + [q_r | q_z])
            add_assign(a_rz, q_rz);
            if let Some(clip) = clip {
                super::clamp(a_rz, &mut keep[..2 * h], clip);
            }
            act.gate.apply_slice(a_rz);
            // (3) s = r ⊙ h_prev (recurrent dropout: r ⊙ m ⊙ h_prev)
            for ((s, &r), &hp) in aux.iter_mut().zip(&*a_rz).zip(h_rec) {
                *s = r * hp;
            }
        }
        (ResetPlacement::BeforeMatmul, _) => {
            // (4) n = act(a_n + q_n)
            add_assign(a_n, q_n);
            if let Some(clip) = clip {
                super::clamp(a_n, &mut keep[2 * h..], clip);
            }
            act.candidate.apply_slice(a_n);
            // (5)
            blend(hb, &a_rz[h..], a_n, h_prev);
        }
    }
}

/// The backward step's products over all its rows. Reset after: 0, none; 1, (2)ᵀ
/// dh_prev += dq W_hh. Reset before: 0, none; 1, (4)ᵀ ds = da_n W_hn; 2, (2)ᵀ
/// dh_prev += [da_r, da_z] W_h{r,z}.
pub(crate) fn backward_product<T: Float>(
    cell: &GruCell,
    k: usize,
    w: &StepWeights<'_, T>,
    s: &mut BwdStep<'_, T>,
) {
    let (n, h) = (s.n, w.hidden);
    let gh = 3 * h;
    let w_hh = w.params[WeightHh];
    // the gradient at the product's output, and W_hh's rows it meets
    let (dq, w_rows) = match (cell.reset, k) {
        // (2)ᵀ dh_prev += dq W_hh (recurrent dropout: m ⊙ (dq W_hh)); layer norm: dz_h W_hh
        (ResetPlacement::AfterMatmul, 1) if cell.layer_norm => {
            (Mat::rows(&s.dalt[gh..], n, gh, 3 * gh), w.w_hh_b)
        }
        (ResetPlacement::AfterMatmul, 1) => (Mat::rows(&*s.dalt, n, gh, gh), w.w_hh_b),
        (ResetPlacement::BeforeMatmul, 1) => {
            // (4)ᵀ ds = da_n W_hn
            matmul(
                s.scratch,
                h,
                Mat::rows(&s.dgates[2 * h..], n, h, gh),
                Mat::rows(&w_hh[2 * h * h..], h, h, h),
                Accumulate::Overwrite,
            );
            return;
        }
        // (2)ᵀ dh_prev += [da_r, da_z] W_h{r,z} (recurrent dropout: m ⊙ (ds ⊙ r + …), the
        // first term already in dh_rec)
        (ResetPlacement::BeforeMatmul, 2) => (
            Mat::rows(&*s.dgates, n, 2 * h, gh),
            Mat::rows(w_hh, 2 * h, h, h),
        ),
        _ => return,
    };
    if s.mask.is_empty() {
        matmul(s.dh, h, dq, w_rows, Accumulate::Add);
    } else {
        let acc = match cell.reset {
            ResetPlacement::AfterMatmul => Accumulate::Overwrite,
            ResetPlacement::BeforeMatmul => Accumulate::Add,
        };
        matmul(s.dh_rec, h, dq, w_rows, acc);
        super::add_masked(s.dh, s.mask, s.dh_rec);
    }
}

/// Row pass `k` of the backward step over the rows of `s`. Reset after: (5)ᵀ…(3)ᵀ. Reset
/// before: 0, (5)ᵀ and (4)ᵀ's da_n, da_z; 1, (3)ᵀ and (2)ᵀ's da_r.
pub(crate) fn backward_rows<T: Float>(
    cell: &GruCell,
    k: usize,
    w: &StepWeights<'_, T>,
    s: BwdStep<'_, T>,
) {
    let h = w.hidden;
    let gh = 3 * h;
    let keep_w = if cell.clip.is_some() { gh } else { 0 };
    let masked_w = if s.mask.is_empty() { 0 } else { h };
    let norms = cell.layer_norm.then(|| Norms::of(w));
    let (dalt_w, scratch_w) = match cell.reset {
        _ if norms.is_some() => (3 * gh, 0),
        ResetPlacement::AfterMatmul => (gh, 0),
        ResetPlacement::BeforeMatmul => (0, h),
    };
    let aux_w = if norms.is_some() { 7 * h + 2 } else { h };
    for row in 0..s.n {
        let rows = |w: usize| row * w..(row + 1) * w;
        let (aux, da, dalt) = (
            &s.aux[rows(aux_w)],
            &mut s.dgates[rows(gh)],
            &mut s.dalt[rows(dalt_w)],
        );
        let (dq, rest) = dalt.split_at_mut(dalt_w.min(gh));
        backward_row(
            cell,
            k,
            (&s.gates[rows(gh)], &s.h_prev[rows(h)], &s.h_rec[rows(h)]),
            (
                &aux[..h],
                &s.scratch[rows(scratch_w)],
                &s.keep[rows(keep_w)],
            ),
            &mut s.dh[rows(h)],
            da,
            dq,
            &mut s.dh_rec[rows(masked_w)],
        );
        if let Some(ln) = &norms {
            // (2)ᵀ (1)ᵀ through the norms: dq, da kept; dz_h beside them, dz_x in `dgates`
            let (x_hat, rest_aux) = aux[h..].split_at(gh);
            let (q_hat, rstd) = rest_aux.split_at(gh);
            let (dz_h, da_kept) = rest.split_at_mut(gh);
            dz_h.copy_from_slice(dq);
            da_kept.copy_from_slice(da);
            layer_norm_backward(dz_h, q_hat, ln.g_hh, rstd[1]);
            layer_norm_backward(da, x_hat, ln.g_ih, rstd[0]);
        }
    }
}

/// One row of [`backward_rows`], the mirror of [`forward_row`]: reads the gates, h_prev,
/// h_rec, `aux`, ds (`scratch`, reset before) and the clamp record; writes dh, da, dq
/// (`dalt`, reset after) and, under recurrent dropout, `dh_rec`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn backward_row<T: Float>(
    cell: &GruCell,
    k: usize,
    (g, h_prev, h_rec): (&[T], &[T], &[T]),
    (aux, scratch, keep): (&[T], &[T], &[T]),
    dh: &mut [T],
    da: &mut [T],
    dalt: &mut [T],
    dh_rec: &mut [T],
) {
    let h = dh.len();
    let act = cell.activations;
    let one = T::one();
    let clipped = cell.clip.is_some();
    let masked = !dh_rec.is_empty();
    let (r, rest) = g.split_at(h);
    let (z, nn) = rest.split_at(h);
    let (da_rz, da_n) = da.split_at_mut(2 * h);
    let (da_r, da_z) = da_rz.split_at_mut(h);
    match (cell.reset, k) {
        (ResetPlacement::AfterMatmul, _) => {
            let (qn, dq) = (aux, dalt);
            let (dq_rz, dq_n) = dq.split_at_mut(2 * h);
            // (5)ᵀ dn = dh ⊙ (1 − z);  dz = dh ⊙ (h_prev − n);  dh_prev = dh ⊙ z
            for ((((dh, dn), dz), &z), (&nn, &hp)) in dh
                .iter_mut()
                .zip(da_n.iter_mut())
                .zip(da_z.iter_mut())
                .zip(z)
                .zip(nn.iter().zip(h_prev))
            {
                *dn = *dh * (one - z);
                *dz = *dh * (hp - nn);
                *dh *= z;
            }
            // (4)ᵀ da_n = dn ⊙ act'(n) (0 where clipped);  dr = da_n ⊙ q_n;  dq_n = da_n ⊙ r
            act.candidate.mul_derivative_from_output(da_n, nn);
            if clipped {
                super::mul_assign(da_n, &keep[2 * h..]);
            }
            for (((dr, dqn), &dan), (&qn, &r)) in da_r
                .iter_mut()
                .zip(dq_n.iter_mut())
                .zip(&*da_n)
                .zip(qn.iter().zip(r))
            {
                *dr = dan * qn;
                *dqn = dan * r;
            }
            // (3)ᵀ da_r = dr ⊙ σ'(r);  da_z = dz ⊙ σ'(z): one pass over 2H
            let da_rz = &mut da[..2 * h];
            act.gate.mul_derivative_from_output(da_rz, &g[..2 * h]);
            if clipped {
                super::mul_assign(da_rz, &keep[..2 * h]);
            }
            dq_rz.copy_from_slice(da_rz);
        }
        (ResetPlacement::BeforeMatmul, 0) => {
            // (5)ᵀ, (4)ᵀ first half
            for ((((dz, dn), &dh), &z), (&nn, &hp)) in da_z
                .iter_mut()
                .zip(da_n.iter_mut())
                .zip(&*dh)
                .zip(z)
                .zip(nn.iter().zip(h_prev))
            {
                *dn = dh * (one - z);
                *dz = dh * (hp - nn);
            }
            act.gate.mul_derivative_from_output(da_z, z);
            act.candidate.mul_derivative_from_output(da_n, nn);
            if clipped {
                super::mul_assign(da_z, &keep[h..2 * h]);
                super::mul_assign(da_n, &keep[2 * h..]);
            }
        }
        (ResetPlacement::BeforeMatmul, _) => {
            let ds = scratch;
            // (3)ᵀ dr = ds ⊙ h_prev;  dh_prev += ds ⊙ r;  (2)ᵀ da_r = dr ⊙ σ'(r)
            // (recurrent dropout: dr = ds ⊙ m ⊙ h_prev, and ds ⊙ r goes to dh_rec, which
            // is masked after the product)
            if masked {
                let dr_rec = dh_rec;
                for (((((dr, dh), d_rec), &ds), &hp), (&r, &z)) in da_r
                    .iter_mut()
                    .zip(dh.iter_mut())
                    .zip(dr_rec.iter_mut())
                    .zip(ds)
                    .zip(h_rec)
                    .zip(r.iter().zip(z))
                {
                    *dr = ds * hp;
                    *dh *= z;
                    *d_rec = ds * r;
                }
            } else {
                for ((((dr, dh), &ds), &hp), (&r, &z)) in da_r
                    .iter_mut()
                    .zip(dh.iter_mut())
                    .zip(ds)
                    .zip(h_rec)
                    .zip(r.iter().zip(z))
                {
                    *dr = ds * hp;
                    *dh = *dh * z + ds * r;
                }
            }
            act.gate.mul_derivative_from_output(da_r, r);
            if clipped {
                super::mul_assign(da_r, &keep[..h]);
            }
        }
    }
}

/// `acc[j] += a[j]`
#[inline]
fn add_assign<T: Float>(acc: &mut [T], a: &[T]) {
    for (acc, &a) in acc.iter_mut().zip(a) {
        *acc += a;
    }
}

/// `acc[j] += a[j] · b[j]`
#[inline(always)]
fn add_product<T: Float>(acc: &mut [T], a: &[T], b: &[T]) {
    for ((acc, &a), &b) in acc.iter_mut().zip(a).zip(b) {
        *acc += a * b;
    }
}

/// (5) `h = (1 − z) ⊙ n + z ⊙ h_prev`
#[inline]
fn blend<T: Float>(h: &mut [T], z: &[T], n: &[T], h_prev: &[T]) {
    let one = T::one();
    for (((h, &z), &n), &hp) in h.iter_mut().zip(z).zip(n).zip(h_prev) {
        *h = (one - z) * n + z * hp;
    }
}

/// (1)ᵀ's recurrent part (the driver's): reset after, dW_hh += dqᵀ h_prev and
/// db_hh += Σ dq from the dq the backward keeps; reset before, dW_h{r,z} += [da_r, da_z]ᵀ h_prev,
/// dW_hn += da_nᵀ s and db_hh += Σ da.
pub(crate) fn recurrent_grad<'a, T>(
    cell: &GruCell,
    hidden: usize,
    s: &Slabs<'a, T>,
) -> RecurrentGrad<'a, T> {
    let gh = 3 * hidden;
    match cell.reset {
        // layer norm: dW_hh reads dz_h; b_ih, b_hh read da and dq (see the module docs)
        _ if cell.layer_norm => RecurrentGrad {
            dq: Some((&s.dalt[gh..], 3 * gh)),
            other: None,
            bias: Some([(&s.dalt[2 * gh..], 3 * gh), (s.dalt, 3 * gh)]),
        },
        ResetPlacement::AfterMatmul => RecurrentGrad {
            dq: Some((s.dalt, gh)),
            other: None,
            bias: None,
        },
        ResetPlacement::BeforeMatmul => RecurrentGrad {
            dq: None,
            other: Some((2 * hidden, s.aux)),
            bias: None,
        },
    }
}

/// The gains' gradients with layer norm: dγ_ih += Σ da ⊙ x̂, dγ_hh += Σ dq ⊙ q̂ (every other
/// weight gradient is the driver's (1)ᵀ).
pub(crate) fn weight_grads<T: Float>(
    cell: &GruCell,
    hidden: usize,
    s: &Slabs<'_, T>,
    mut g: Block<&mut [T]>,
) {
    if !cell.layer_norm {
        return;
    }
    let (Some(d_gih), Some(d_ghh)) = (g.take(GammaIh), g.take(GammaHh)) else {
        unreachable!("a layer-normalised GRU has its gains")
    };
    let (gh, aux_w) = (3 * hidden, 7 * hidden + 2);
    for row in 0..s.rows {
        let dalt = &s.dalt[row * 3 * gh..(row + 1) * 3 * gh];
        let aux = &s.aux[row * aux_w..(row + 1) * aux_w];
        let (x_hat, q_hat) = (
            &aux[hidden..hidden + gh],
            &aux[hidden + gh..hidden + 2 * gh],
        );
        rows::run(
            GainGrads,
            [d_gih, d_ghh, &mut [], &mut []],
            [&dalt[2 * gh..], x_hat, &dalt[..gh], q_hat, &[], &[]],
        );
    }
}

/// One row of [`weight_grads`]: dγ_ih += da ⊙ x̂, dγ_hh += dq ⊙ q̂, compiled for the CPU's
/// instruction set ([`rows`]).
struct GainGrads;

impl<T: Float> Streams<T> for GainGrads {
    type Output = ();

    #[inline(always)]
    fn run(self, [d_gih, d_ghh, ..]: [&mut [T]; 4], [da, x_hat, dq, q_hat, ..]: [&[T]; 6]) {
        add_product(d_gih, da, x_hat);
        add_product(d_ghh, dq, q_hat);
    }
}
