//! How far back in time a gradient reaches: ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖) of every sequence at
//! every step, recorded by [`super::Recurrent::backward_with_norms`].
//!
//! The backward's time loop (`layer/driver.rs`) carries, at the top of step t, before the
//! cell's step backward:
//! ```text
//! dh = ∂L/∂h_t   everything downstream of h_t: the output at t and step t + 1
//! dc = ∂L/∂c_t   with h_t held fixed: what step t + 1 carries back to c_t (LSTM only; the
//!                constant error carousel); the total dL/dc_t adds h_t's path, (∂h_t/∂c_t)ᵀ dh
//! ```
//! that is, the gradient of the loss with respect to the state (h_t, c_t) that the recurrence
//! hands to step t + 1, the two taken as independent inputs of the rest of the computation
//! (what a truncated backward started at t + 1 returns as its initial-state gradient, plus
//! the output's own gradient at t). Each sequence's L2 norm of each is recorded, summed in
//! f64 (a vanishing gradient's squares would underflow f32), once per step: a handful of
//! operations per state value, and nothing at all when no record is asked for.

use crate::kernel::scalar::Float;
use crate::tensor::Tensor;

/// ‖∂L/∂h_t‖ and ‖∂L/∂c_t‖ of every sequence at every step of a backward pass (see the module
/// docs for which derivatives these are).
#[derive(Clone, Debug, PartialEq)]
pub struct StateGradNorms<T> {
    /// `[num_layers * D, seq_len, batch]` (time-major whatever the batch layout; index
    /// `layer * D + direction`, the caller's batch order): the L2 norm of each sequence's
    /// ∂L/∂h_t over its `H_out` values; 0 at the steps past a sequence's end.
    pub h: Tensor<T>,
    /// The same of ∂L/∂c_t over its `hidden_size` values (LSTM only).
    pub c: Option<Tensor<T>>,
}

/// Each of the `n` rows' norms of `dh` (`[n, r]`) and, where `out` is two wide, of `dc`
/// (`[n, ·]`), into `out` (`[n, 1 or 2]`).
pub(crate) fn record<T: Float>(out: &mut [T], n: usize, dh: &[T], dc: &[T]) {
    let norm = |v: &[T]| {
        let sq: f64 = v
            .iter()
            .map(|x| x.to_f64().map_or(f64::NAN, |x| x * x))
            .sum();
        T::from_f64(sq.sqrt()).unwrap_or_else(T::nan)
    };
    if n == 0 {
        return;
    }
    let (w, r) = (out.len() / n, dh.len() / n);
    let ch = if w == 2 { dc.len() / n } else { 0 };
    for (b, o) in out.chunks_exact_mut(w).enumerate() {
        o[0] = norm(&dh[b * r..(b + 1) * r]);
        if w == 2 {
            o[1] = norm(&dc[b * ch..(b + 1) * ch]);
        }
    }
}

impl<T: Float> StateGradNorms<T> {
    /// Zeros for `ld` (layer, direction) pairs of `seq_len` steps of `batch` sequences.
    pub(crate) fn zeros(ld: usize, seq_len: usize, batch: usize, has_c: bool) -> Self {
        let shape = [ld, seq_len, batch];
        Self {
            h: Tensor::zeros(&shape),
            c: has_c.then(|| Tensor::zeros(&shape)),
        }
    }

    /// Values a (layer, direction)'s record holds per row: 1 (h) or 2 (h and c).
    pub(crate) fn width(&self) -> usize {
        1 + usize::from(self.c.is_some())
    }

    /// Puts (layer, direction) `ld`'s record `slab` (`[seq_len * batch, width]`, time-major in
    /// sorted order; `perm[s]` the caller's index of sorted row `s`) in place.
    pub(crate) fn scatter(&mut self, ld: usize, perm: &[usize], slab: &[T]) {
        let (tl, bs, w) = (self.h.shape()[1], self.h.shape()[2], self.width());
        for t in 0..tl {
            let base = (ld * tl + t) * bs;
            for (s, &orig) in perm.iter().enumerate() {
                let row = (t * bs + s) * w;
                self.h.data_mut()[base + orig] = slab[row];
                if let Some(c) = &mut self.c {
                    c.data_mut()[base + orig] = slab[row + 1];
                }
            }
        }
    }
}
