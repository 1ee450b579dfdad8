//! What the products of one direction read: its weight matrices packed into the layout each
//! product reads best, and the bias row that starts every step's gate pre-activations.
//!
//! The forward step product reads `W_hhᵀ` (and `W_hrᵀ`): panels where the panel kernel runs
//! (`f32` with AVX-512F, see [`crate::kernel::panels`]), else a row-major transposed copy for
//! the `gemm` crate, or, for a single row, the stored matrix through a transposed view. The
//! backward step product reads `W_hh` (and `W_hr`) as stored, packed where the panel kernel
//! runs. [`ForwardPanels`] are what [`crate::Recurrent`] keeps between calls.

use std::sync::Arc;

use super::WeightFormat;
use super::driver::DirSpec;
use crate::cell::ParamKind::{BiasHh, BiasIh, WeightHh, WeightHr, WeightIh};
use crate::cell::StepWeights;
use crate::kernel::scalar::Float;
use crate::kernel::{Mat, Panels};

/// `W_hhᵀ` and `W_hrᵀ` as the forward step product reads them (see [`DirSpec::pack_with`]).
#[derive(Clone, Debug)]
pub(crate) struct Packed<T> {
    /// the stored matrices are read through transposed views (batch 1, or panels): nothing
    /// is transposed
    view: bool,
    /// `[R, G*H]` row-major, or empty
    w_hh_t: Vec<T>,
    /// `[H, P]` row-major, or empty
    w_hr_t: Vec<T>,
    /// `W_hhᵀ` for the panel kernel (`f32` with AVX-512F), else `None`
    w_hh_p: Option<Arc<Panels>>,
    /// `W_hrᵀ` likewise
    w_hr_p: Option<Arc<Panels>>,
}

impl<T> Packed<T> {
    /// Whether the recurrent product runs on the panel kernel.
    pub fn on_panels(&self) -> bool {
        self.w_hh_p.is_some()
    }
}

/// The forward products' weights of one (layer, direction) packed for the panel kernel in
/// f32: what [`crate::Recurrent`] keeps between calls (until its parameters change), so
/// that inference does not repack them on every call.
#[derive(Clone, Debug, Default)]
pub(crate) struct ForwardPanels {
    /// `W_ihᵀ`
    pub w_ih: Option<Arc<Panels>>,
    /// `W_hhᵀ`
    w_hh: Option<Arc<Panels>>,
    /// `W_hrᵀ`
    w_hr: Option<Arc<Panels>>,
}

/// The backward step product's right operands, `W_hh` `[G*H, R]` and `W_hr` `[P, H]` as
/// stored, packed for the panel kernel where there is one (see [`DirSpec::pack_backward`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct PackedBwd {
    w_hh: Option<Panels>,
    w_hr: Option<Panels>,
    /// `W_ih` `[G*H, I]` as stored, for the input gradient dX = δG · W_ih: packed in bf16
    /// training only (f32 reads it in place)
    w_ih: Option<Panels>,
}

impl PackedBwd {
    /// Whether the recurrent product runs on the panel kernel.
    pub fn on_panels(&self) -> bool {
        self.w_hh.is_some()
    }

    /// `W_ih`'s panels for the input gradient, where there are some.
    pub fn w_ih(&self) -> Option<&Panels> {
        self.w_ih.as_ref()
    }
}

impl<T: Float> DirSpec<'_, T> {
    /// `W_hhᵀ` and `W_hrᵀ` in the layout the forward step product reads best, for `batch`
    /// rows: panels where the panel kernel runs (`f32` with AVX-512F, see
    /// [`crate::kernel::panels`]); otherwise, for the `gemm` crate, a row-major transposed
    /// copy, except for a single row (streaming at batch 1), which reads them best as they
    /// are stored: the product is then a dot product per weight row, and packing would cost
    /// more than it.
    /// With [`WeightFormat::Bf16`] the panels hold bf16 values (the caller has checked
    /// that they exist).
    /// `cached`: the panels already made for these weights in `format`.
    pub fn pack_with(&self, format: WeightFormat, cached: Option<&ForwardPanels>) -> Packed<T> {
        let (gh, h, r) = (self.gh(), self.hidden, self.h_out);
        let (w_hh_p, w_hr_p) = match cached {
            Some(fp) => (fp.w_hh.clone(), fp.w_hr.clone()),
            _ => (
                pack_panels::<T>(Mat::rows(self.w[WeightHh], gh, r, r).t(), format).map(Arc::new),
                self.w
                    .get(WeightHr)
                    .and_then(|w| pack_panels::<T>(Mat::rows(w, r, h, h).t(), format))
                    .map(Arc::new),
            ),
        };
        let view = self.batch == 1 || w_hh_p.is_some();
        Packed {
            view,
            w_hh_t: if view {
                Vec::new()
            } else {
                transpose(self.w[WeightHh], gh, r)
            },
            w_hr_t: match self.w.get(WeightHr) {
                Some(w) if !view => transpose(w, r, h),
                _ => Vec::new(),
            },
            w_hh_p,
            w_hr_p,
        }
    }

    /// The forward products' weights packed for the panel kernel in `format` (all `None`
    /// where it does not run).
    pub fn forward_panels(&self, format: WeightFormat) -> ForwardPanels {
        let (gh, h, r, n_in) = (self.gh(), self.hidden, self.h_out, self.input_size);
        let pack = |b: Mat<'_, T>| pack_panels::<T>(b, format).map(Arc::new);
        ForwardPanels {
            w_ih: pack(Mat::rows(self.w[WeightIh], gh, n_in, n_in).t()),
            w_hh: pack(Mat::rows(self.w[WeightHh], gh, r, r).t()),
            w_hr: self
                .w
                .get(WeightHr)
                .and_then(|w| pack(Mat::rows(w, r, h, h).t())),
        }
    }

    /// `W_hh` and `W_hr` packed for the backward step product, where the panel kernel runs,
    /// in the direction's format; in bf16 also `W_ih` for the input gradient.
    pub fn pack_backward(&self) -> PackedBwd {
        let (gh, h, r, n_in) = (self.gh(), self.hidden, self.h_out, self.input_size);
        let format = self.format;
        PackedBwd {
            w_hh: pack_panels::<T>(Mat::rows(self.w[WeightHh], gh, r, r), format),
            w_hr: self
                .w
                .get(WeightHr)
                .and_then(|w| pack_panels::<T>(Mat::rows(w, r, h, h), format)),
            w_ih: match format {
                WeightFormat::F32 => None,
                WeightFormat::Bf16 => {
                    pack_panels::<T>(Mat::rows(self.w[WeightIh], gh, n_in, n_in), format)
                }
            },
        }
    }

    /// The step weights of the forward, with the step product's operands from `packed`
    /// (made by [`Self::pack_with`] for this direction).
    pub fn forward_weights<'b>(&'b self, packed: &'b Packed<T>) -> StepWeights<'b, T> {
        let (gh, h, r) = (self.gh(), self.hidden, self.h_out);
        let view = packed.view;
        self.step_weights(
            transposed(view, self.w[WeightHh], &packed.w_hh_t, gh, r)
                .with_panels(packed.w_hh_p.as_deref()),
            transposed(
                view,
                self.w.get(WeightHr).unwrap_or(&[]),
                &packed.w_hr_t,
                r,
                h,
            )
            .with_panels(packed.w_hr_p.as_deref()),
            None,
        )
    }

    /// The step weights of the backward, with the step product's operands from `packed`
    /// (made by [`Self::pack_backward`]).
    pub fn backward_weights<'b>(&'b self, packed: &'b PackedBwd) -> StepWeights<'b, T> {
        self.step_weights(
            Mat::rows(&[], 0, 0, 0),
            Mat::rows(&[], 0, 0, 0),
            Some(packed),
        )
    }

    fn step_weights<'b>(
        &'b self,
        w_hh_t: Mat<'b, T>,
        w_hr_t: Mat<'b, T>,
        bwd: Option<&'b PackedBwd>,
    ) -> StepWeights<'b, T> {
        let (gh, h, r) = (self.gh(), self.hidden, self.h_out);
        StepWeights {
            hidden: self.hidden,
            h_out: self.h_out,
            params: self.w,
            w_hh_b: Mat::rows(self.w[WeightHh], gh, r, r)
                .with_panels(bwd.and_then(|b| b.w_hh.as_ref())),
            w_hh_t,
            w_hr_b: match self.w.get(WeightHr) {
                Some(w) => Mat::rows(w, r, h, h).with_panels(bwd.and_then(|b| b.w_hr.as_ref())),
                None => Mat::rows(&[], 0, 0, 0),
            },
            w_hr_t,
            leak: self.leak,
        }
    }

    /// `W_ihᵀ` as the input product reads it: the stored matrix through a transposed view,
    /// with its panels where there are some.
    pub fn w_ih_t<'b>(&'b self, panels: Option<&'b Panels>) -> Mat<'b, T> {
        let (gh, n_in) = (self.gh(), self.input_size);
        Mat::rows(self.w[WeightIh], gh, n_in, n_in)
            .t()
            .with_panels(panels)
    }

    /// The bias row `[G*H]` that starts every step's gate pre-activations: `b_ih`, plus the
    /// rows of `b_hh` the cell lets the input projection carry.
    pub fn input_bias(&self) -> Vec<T> {
        let h = self.hidden;
        let mut bias = vec![T::zero(); self.gh()];
        if self.cell.layer_norm() {
            // the biases come after the norms, in the cell's row pass
            return bias;
        }
        if let Some(b) = self.w.get(BiasIh) {
            bias.copy_from_slice(b);
        }
        if let Some(b) = self.w.get(BiasHh) {
            for (row, v) in bias.iter_mut().enumerate() {
                if self.cell.folds_hh_bias(row, h) {
                    *v += b[row];
                }
            }
        }
        bias
    }
}

/// `b` packed for the panel kernel in `format`, where the type and CPU have one.
pub(crate) fn pack_panels<T: Float>(b: Mat<'_, T>, format: WeightFormat) -> Option<Panels> {
    match format {
        WeightFormat::F32 => T::pack_panels(b),
        WeightFormat::Bf16 => T::pack_panels_bf16(b),
    }
}

/// The transpose of a stored `[rows, cols]` matrix: a strided view of it, or its packed copy.
pub(crate) fn transposed<'a, T>(
    view: bool,
    stored: &'a [T],
    packed: &'a [T],
    rows: usize,
    cols: usize,
) -> Mat<'a, T> {
    if view {
        Mat::rows(stored, rows, cols, cols).t()
    } else {
        Mat::rows(packed, cols, rows, rows)
    }
}

/// `[rows, cols]` → `[cols, rows]`, in square tiles so that neither side is walked with a
/// page-sized stride (a plain loop costs ~1.3 ms for a 1024 × 256 matrix here, the tiled one
/// a small fraction of that).
pub(crate) fn transpose<T: Float>(a: &[T], rows: usize, cols: usize) -> Vec<T> {
    const TILE: usize = 32;
    let mut out = vec![T::zero(); rows * cols];
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            for i in i0..(i0 + TILE).min(rows) {
                for j in j0..(j0 + TILE).min(cols) {
                    out[j * rows + i] = a[i * cols + j];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn transpose_over_awkward_sizes() {
        for (rows, cols) in [
            (0, 3),
            (1, 1),
            (1, 70),
            (33, 1),
            (31, 65),
            (64, 64),
            (100, 37),
        ] {
            let a: Vec<f64> = (0..rows * cols).map(|v| v as f64).collect();
            let t = super::transpose(&a, rows, cols);
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(t[j * rows + i], a[i * cols + j]);
                }
            }
        }
    }
}
