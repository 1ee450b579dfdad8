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
//!
//! ONNX `clip` (ONNX Runtime's `deep_cpu_gru.cc`): the pre-activations of r and z
//! (`a_r + q_r`, `a_z + q_z`, both biases included) and the whole pre-activation of n are
//! clamped to [−clip, clip] before their activations. For n that is, reset after,
//! `a_n + r ⊙ q_n` (ORT adds `W_bn` and clips after forming `r ⊙ (W_hn h_prev + b_hn)`; the
//! inner `q_n` itself is not clipped), and reset before, `a_n + W_hn s` (both n biases
//! included). Backward: da of a clamped pre-activation is 0, before anything reads it.
//!
//! Recurrent dropout: every product with `W_hh` reads `m ⊙ h_prev` (reset before:
//! `s = r ⊙ m ⊙ h_prev`); the blend (5) reads h_prev itself. The gradient that the products
//! send to the state is multiplied by m: reset after, dh_prev = dh ⊙ z + m ⊙ (dq W_hh); reset
//! before, dh_prev = dh ⊙ z + m ⊙ (ds ⊙ r + [da_r, da_z] W_h{r,z}), with dr = ds ⊙ m ⊙ h_prev.

use super::{Block, BwdStep, FwdStep, ParamKind, SlabWidths, Slabs, StepWeights};
use crate::error::Result;
use crate::kernel::activation::Activation;
use crate::kernel::scalar::Float;
use crate::kernel::split::split_rows_mut;
use crate::kernel::{Accumulate, Mat, add_column_sums, matmul};

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
}

impl GruCell {
    pub(crate) fn validate(&self) -> Result<()> {
        Ok(())
    }
}

pub(crate) fn slab_widths(cell: &GruCell, hidden: usize) -> SlabWidths {
    let keep = if cell.clip.is_some() { 3 * hidden } else { 0 };
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

pub(crate) fn forward_step<T: Float>(cell: &GruCell, w: &StepWeights<'_, T>, s: FwdStep<'_, T>) {
    let (n, h) = (s.n, w.hidden);
    let gh = 3 * h;
    let act = cell.activations;
    let clip = super::clip_bound::<T>(cell.clip);
    // Gate by gate, each a contiguous pass over H (or [r | z], 2H) values of a row.
    match cell.reset {
        ResetPlacement::AfterMatmul => {
            // (2) q = h_prev W_hhᵀ (+ b_hn below; recurrent dropout: (m ⊙ h_prev) W_hhᵀ)
            matmul(
                s.scratch,
                gh,
                Mat::rows(s.h_rec, n, h, h),
                w.w_hh_t,
                Accumulate::Overwrite,
            );
            // The rows are independent: at small batches the pair of threads takes half of
            // them each.
            let keep_w = if clip.is_some() { gh } else { 0 };
            let bufs = [
                (&mut *s.gates, gh),
                (&mut *s.h, h),
                (&mut *s.aux, h),
                (&mut *s.keep, keep_w),
            ];
            let (q_all, h_prev_all) = (&*s.scratch, s.h_prev);
            split_rows_mut(n, gh, bufs, |rows, [gates, hs, qns, keeps]| {
                for (row, b) in rows.enumerate() {
                    let a = &mut gates[row * gh..(row + 1) * gh];
                    let hb = &mut hs[row * h..(row + 1) * h];
                    let qn = &mut qns[row * h..(row + 1) * h];
                    let keep = &mut keeps[row * keep_w..(row + 1) * keep_w];
                    let q = &q_all[b * gh..(b + 1) * gh];
                    let h_prev = &h_prev_all[b * h..(b + 1) * h];
                    let (a_rz, a_n) = a.split_at_mut(2 * h);
                    let (q_rz, q_n) = q.split_at(2 * h);
                    // (3) r, z = σ([a_r | a_z] + [q_r | q_z]): one pass over 2H
                    add_assign(a_rz, q_rz);
                    if let Some(clip) = clip {
                        super::clamp(a_rz, &mut keep[..2 * h], clip);
                    }
                    act.gate.apply_slice(a_rz);
                    // (2) b_hn
                    match w.params.get(ParamKind::BiasHh) {
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
            });
        }
        ResetPlacement::BeforeMatmul => {
            // (2) q_rz = h_prev W_h{r,z}ᵀ: the first 2H columns of the packed W_hhᵀ
            // (recurrent dropout: (m ⊙ h_prev) W_h{r,z}ᵀ)
            matmul(
                s.scratch,
                gh,
                Mat::rows(s.h_rec, n, h, h),
                w.w_hh_t.columns(0, 2 * h),
                Accumulate::Overwrite,
            );
            for b in 0..n {
                let a_rz = &mut s.gates[b * gh..b * gh + 2 * h];
                let q_rz = &s.scratch[b * gh..b * gh + 2 * h];
                let h_rec = &s.h_rec[b * h..(b + 1) * h];
                let sb = &mut s.aux[b * h..(b + 1) * h];
                add_assign(a_rz, q_rz);
                if let Some(clip) = clip {
                    super::clamp(a_rz, &mut s.keep[b * gh..b * gh + 2 * h], clip);
                }
                act.gate.apply_slice(a_rz);
                // (3) s = r ⊙ h_prev (recurrent dropout: r ⊙ m ⊙ h_prev)
                for ((s, &r), &hp) in sb.iter_mut().zip(&*a_rz).zip(h_rec) {
                    *s = r * hp;
                }
            }
            // (4) q_n = s W_hnᵀ: the last H columns of the packed W_hhᵀ
            let (_, q_n) = s.scratch.split_at_mut(2 * h);
            matmul(
                q_n,
                gh,
                Mat::rows(s.aux, n, h, h),
                w.w_hh_t.columns(2 * h, h),
                Accumulate::Overwrite,
            );
            for b in 0..n {
                let (a_rz, a_n) = s.gates[b * gh..(b + 1) * gh].split_at_mut(2 * h);
                let q_n = &s.scratch[b * gh + 2 * h..(b + 1) * gh];
                let h_prev = &s.h_prev[b * h..(b + 1) * h];
                let hb = &mut s.h[b * h..(b + 1) * h];
                add_assign(a_n, q_n);
                if let Some(clip) = clip {
                    super::clamp(a_n, &mut s.keep[b * gh + 2 * h..(b + 1) * gh], clip);
                }
                act.candidate.apply_slice(a_n);
                // (5)
                blend(hb, &a_rz[h..], a_n, h_prev);
            }
        }
    }
}

pub(crate) fn backward_step<T: Float>(cell: &GruCell, w: &StepWeights<'_, T>, s: BwdStep<'_, T>) {
    let (n, h) = (s.n, w.hidden);
    let gh = 3 * h;
    let act = cell.activations;
    let one = T::one();
    let clipped = cell.clip.is_some();
    let masked = !s.mask.is_empty();
    match cell.reset {
        ResetPlacement::AfterMatmul => {
            // As in the forward, the pair of threads takes half of the rows each at small
            // batches.
            let bufs = [(&mut *s.dh, h), (&mut *s.dgates, gh), (&mut *s.dalt, gh)];
            let (gates_all, aux_all, h_prev_all, keep_all) = (s.gates, s.aux, s.h_prev, s.keep);
            split_rows_mut(n, gh, bufs, |rows, [dhs, dgates, dalts]| {
                for (row, b) in rows.enumerate() {
                    let g = &gates_all[b * gh..(b + 1) * gh];
                    let (r, rest) = g.split_at(h);
                    let (z, nn) = rest.split_at(h);
                    let qn = &aux_all[b * h..(b + 1) * h];
                    let h_prev = &h_prev_all[b * h..(b + 1) * h];
                    let dh = &mut dhs[row * h..(row + 1) * h];
                    let da = &mut dgates[row * gh..(row + 1) * gh];
                    let dq = &mut dalts[row * gh..(row + 1) * gh];
                    let (da_rz, da_n) = da.split_at_mut(2 * h);
                    let (da_r, da_z) = da_rz.split_at_mut(h);
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
                        super::mul_assign(da_n, &keep_all[b * gh + 2 * h..(b + 1) * gh]);
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
                    act.gate.mul_derivative_from_output(da_rz, &g[..2 * h]);
                    if clipped {
                        super::mul_assign(da_rz, &keep_all[b * gh..b * gh + 2 * h]);
                    }
                    dq_rz.copy_from_slice(da_rz);
                }
            });
            // (2)ᵀ dh_prev += dq W_hh (recurrent dropout: m ⊙ (dq W_hh))
            let dq = Mat::rows(&*s.dalt, n, gh, gh);
            let w_hh = w.w_hh_b;
            if masked {
                matmul(s.dh_rec, h, dq, w_hh, Accumulate::Overwrite);
                super::add_masked(s.dh, s.mask, s.dh_rec);
            } else {
                matmul(s.dh, h, dq, w_hh, Accumulate::Add);
            }
        }
        ResetPlacement::BeforeMatmul => {
            for b in 0..n {
                let (z, nn) = s.gates[b * gh + h..(b + 1) * gh].split_at(h);
                let h_prev = &s.h_prev[b * h..(b + 1) * h];
                let dh = &s.dh[b * h..(b + 1) * h];
                let (da_z, da_n) = s.dgates[b * gh + h..(b + 1) * gh].split_at_mut(h);
                // (5)ᵀ, (4)ᵀ first half
                for ((((dz, dn), &dh), &z), (&nn, &hp)) in da_z
                    .iter_mut()
                    .zip(da_n.iter_mut())
                    .zip(dh)
                    .zip(z)
                    .zip(nn.iter().zip(h_prev))
                {
                    *dn = dh * (one - z);
                    *dz = dh * (hp - nn);
                }
                act.gate.mul_derivative_from_output(da_z, z);
                act.candidate.mul_derivative_from_output(da_n, nn);
                if clipped {
                    super::mul_assign(da_z, &s.keep[b * gh + h..b * gh + 2 * h]);
                    super::mul_assign(da_n, &s.keep[b * gh + 2 * h..(b + 1) * gh]);
                }
            }
            // (4)ᵀ ds = da_n W_hn
            matmul(
                s.scratch,
                h,
                Mat::rows(&s.dgates[2 * h..], n, h, gh),
                Mat::rows(&w.params[ParamKind::WeightHh][2 * h * h..], h, h, h),
                Accumulate::Overwrite,
            );
            for b in 0..n {
                let r = &s.gates[b * gh..b * gh + h];
                let h_rec = &s.h_rec[b * h..(b + 1) * h];
                let ds = &s.scratch[b * h..(b + 1) * h];
                let dh = &mut s.dh[b * h..(b + 1) * h];
                let da_r = &mut s.dgates[b * gh..b * gh + h];
                let z = &s.gates[b * gh + h..b * gh + 2 * h];
                // (3)ᵀ dr = ds ⊙ h_prev;  dh_prev += ds ⊙ r;  (2)ᵀ da_r = dr ⊙ σ'(r)
                // (recurrent dropout: dr = ds ⊙ m ⊙ h_prev, and ds ⊙ r goes to dh_rec, which
                // is masked below)
                if masked {
                    let dr_rec = &mut s.dh_rec[b * h..(b + 1) * h];
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
                    super::mul_assign(da_r, &s.keep[b * gh..b * gh + h]);
                }
            }
            // (2)ᵀ dh_prev += [da_r, da_z] W_h{r,z} (recurrent dropout: m ⊙ (ds ⊙ r + …))
            let da_rz = Mat::rows(&*s.dgates, n, 2 * h, gh);
            let w_rz = Mat::rows(w.params[ParamKind::WeightHh], 2 * h, h, h);
            if masked {
                matmul(s.dh_rec, h, da_rz, w_rz, Accumulate::Add);
                super::add_masked(s.dh, s.mask, s.dh_rec);
            } else {
                matmul(s.dh, h, da_rz, w_rz, Accumulate::Add);
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
#[inline]
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

pub(crate) fn weight_grads<T: Float>(
    cell: &GruCell,
    w: &StepWeights<'_, T>,
    s: &Slabs<'_, T>,
    mut g: Block<&mut [T]>,
) {
    let (rows, h) = (s.rows, w.hidden);
    let gh = 3 * h;
    // (1)ᵀ dW_ih, dX, db_ih: the driver's
    let Some(dw_hh) = g.take(ParamKind::WeightHh) else {
        return;
    };
    match cell.reset {
        ResetPlacement::AfterMatmul => {
            // (2)ᵀ dW_hh += dqᵀ h_prev, db_hh += Σ dq
            matmul(
                dw_hh,
                h,
                Mat::rows(s.dalt, rows, gh, gh).t(),
                Mat::rows(s.h_prev, rows, h, h),
                Accumulate::Add,
            );
            if let Some(db) = g.take(ParamKind::BiasHh) {
                add_column_sums(db, s.dalt, rows, gh);
            }
        }
        ResetPlacement::BeforeMatmul => {
            // (2)ᵀ dW_h{r,z} += [da_r, da_z]ᵀ h_prev;  (4)ᵀ dW_hn += da_nᵀ s
            let (dw_rz, dw_n) = dw_hh.split_at_mut(2 * h * h);
            matmul(
                dw_rz,
                h,
                Mat::rows(s.dgates, rows, 2 * h, gh).t(),
                Mat::rows(s.h_prev, rows, h, h),
                Accumulate::Add,
            );
            matmul(
                dw_n,
                h,
                Mat::rows(&s.dgates[2 * h..], rows, h, gh).t(),
                Mat::rows(s.aux, rows, h, h),
                Accumulate::Add,
            );
            if let Some(db) = g.take(ParamKind::BiasHh) {
                add_column_sums(db, s.dgates, rows, gh);
            }
        }
    }
}
