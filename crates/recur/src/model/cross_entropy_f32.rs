//! Softmax cross-entropy over `f32` logits, fast: in place and on every core.
//!
//! [`cross_entropy`](fn@super::cross_entropy) is the reference (f64 sums, any `T`); these compute the same
//! quantities for `f32` logits without a `[rows, classes]` buffer of their own and with the
//! vectorised exponential of [`crate::kernel::fast_f32`]: [`cross_entropy_in_place`] turns
//! the logits themselves into the gradient (a language model's training step), and
//! [`cross_entropy_sums`] gives the loss alone (evaluation). Both sum over the rows
//! (`Reduction::Sum`, nothing ignored) and count the rows whose first largest logit is the
//! target. For each row x with target t:
//! ```text
//! m = max x;  s = Σ exp(x − m);  ℓ = ln s − (x_t − m)
//! dx = dl · (exp(x − m) / s − onehot(t))
//! ```
//! Rows run in parallel (rayon), each row's sums in 16 fixed lanes, compiled for the
//! instruction set [`fast_f32::Isa::detected`] finds, with plain `+ − × ÷`: every build gives
//! the same bits, and so does every thread count (the rows' losses are summed in f64).

use rayon::prelude::*;

use super::cross_entropy::{CrossEntropyConfig, check};
use super::loss::Reduction;
use crate::Tensor;
use crate::error::Result;
use crate::kernel::fast_f32::{self, Isa};

/// Every row counted (what the checks need to know).
const ALL_ROWS: CrossEntropyConfig = CrossEntropyConfig {
    ignore_index: None,
    reduction: Reduction::Sum,
};

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 8;

/// What one pass gives: the sum of the rows' losses and how many rows had their first
/// largest logit at the target.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CrossEntropySums {
    pub loss: f64,
    pub correct: usize,
}

impl CrossEntropySums {
    fn add(self, o: Self) -> Self {
        CrossEntropySums {
            loss: self.loss + o.loss,
            correct: self.correct + o.correct,
        }
    }
}

/// Replaces `logits` (`[…, C]`, the classes on the last axis) by `dl · ∂ℓ_row/∂logits` for
/// every row and returns the summed loss and the correct rows.
///
/// # Errors
/// As [`cross_entropy`]: [`crate::Error::Rank`], [`crate::Error::Empty`],
/// [`crate::Error::Shape`] for targets that are not one per row, [`crate::Error::Index`] for a
/// target that is not a class. `logits` is unchanged when an error is returned.
///
/// [`cross_entropy`]: fn@super::cross_entropy
pub fn cross_entropy_in_place(
    logits: &mut Tensor<f32>,
    targets: &[usize],
    dl: f32,
) -> Result<CrossEntropySums> {
    let classes = check(logits, targets, &ALL_ROWS)?;
    let isa = Isa::detected();
    Ok(logits
        .data_mut()
        .par_chunks_mut(classes * ROWS_PER_TASK)
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .map(|(rows, ts)| {
            let mut acc = CrossEntropySums::default();
            for (x, &t) in rows.chunks_exact_mut(classes).zip(ts) {
                // SAFETY: `Isa::detected` only returns an instruction set this CPU supports.
                let (loss, hit) = unsafe { row_grad_on(isa, x, t, dl) };
                acc.loss += loss;
                acc.correct += usize::from(hit);
            }
            acc
        })
        .reduce(CrossEntropySums::default, CrossEntropySums::add))
}

/// The summed loss and the correct rows, leaving `logits` as it is.
///
/// # Errors
/// As [`cross_entropy_in_place`].
pub fn cross_entropy_sums(logits: &Tensor<f32>, targets: &[usize]) -> Result<CrossEntropySums> {
    let classes = check(logits, targets, &ALL_ROWS)?;
    let isa = Isa::detected();
    Ok(logits
        .data()
        .par_chunks(classes * ROWS_PER_TASK)
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .map(|(rows, ts)| {
            let mut acc = CrossEntropySums::default();
            for (x, &t) in rows.chunks_exact(classes).zip(ts) {
                // SAFETY: as above.
                let (loss, hit) = unsafe { row_loss_on(isa, x, t) };
                acc.loss += loss;
                acc.correct += usize::from(hit);
            }
            acc
        })
        .reduce(CrossEntropySums::default, CrossEntropySums::add))
}

/// [`row_grad`] compiled for `isa`.
///
/// # Safety
/// `isa.is_supported()` must hold.
#[inline]
unsafe fn row_grad_on(isa: Isa, x: &mut [f32], t: usize, dl: f32) -> (f64, bool) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees the CPU has these features.
        Isa::Avx512 => unsafe { avx512::row_grad(x, t, dl) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::row_grad(x, t, dl) },
        _ => row_grad(x, t, dl),
    }
}

/// [`row_loss`] compiled for `isa`.
///
/// # Safety
/// `isa.is_supported()` must hold.
#[inline]
unsafe fn row_loss_on(isa: Isa, x: &[f32], t: usize) -> (f64, bool) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees the CPU has these features.
        Isa::Avx512 => unsafe { avx512::row_loss(x, t) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { avx2::row_loss(x, t) },
        _ => row_loss(x, t),
    }
}

/// The row kernels compiled with the features of [`fast_f32`]'s builds.
macro_rules! row_builds {
    ($isa:ident, $features:literal) => {
        mod $isa {
            #[target_feature(enable = $features)]
            pub(super) unsafe fn row_grad(x: &mut [f32], t: usize, dl: f32) -> (f64, bool) {
                super::row_grad(x, t, dl)
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn row_loss(x: &[f32], t: usize) -> (f64, bool) {
                super::row_loss(x, t)
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
row_builds!(avx512, "avx512f,avx2,fma");
#[cfg(target_arch = "x86_64")]
row_builds!(avx2, "avx2,fma");

/// Lanes of the vectorised sums and maxima.
const LANES: usize = 16;

/// One row: x ← dl · (softmax(x) − onehot(t)); returns (ℓ, argmax x = t).
#[inline(always)]
fn row_grad(x: &mut [f32], t: usize, dl: f32) -> (f64, bool) {
    let m = max(x);
    let hit = first_max_at(x, m, t);
    let xt = x[t];
    for v in x.iter_mut() {
        *v = fast_f32::exp_nonpositive(*v - m);
    }
    let s = sum(x);
    let k = dl / s;
    for v in x.iter_mut() {
        *v *= k;
    }
    x[t] -= dl;
    (f64::from(s.ln() - (xt - m)), hit)
}

/// One row's ℓ and whether its largest logit is at t.
#[inline(always)]
fn row_loss(x: &[f32], t: usize) -> (f64, bool) {
    let m = max(x);
    let hit = first_max_at(x, m, t);
    let mut lanes = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += fast_f32::exp_nonpositive(v - m);
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += fast_f32::exp_nonpositive(v - m);
    }
    let s = fold(lanes);
    (f64::from(s.ln() - (x[t] - m)), hit)
}

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l { v } else { *l };
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l = if v > *l { v } else { *l };
    }
    lanes
        .into_iter()
        .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a })
}

/// Whether the first position of the maximum `m` is `t` (`torch.argmax`'s tie rule).
#[inline(always)]
fn first_max_at(x: &[f32], m: f32, t: usize) -> bool {
    x[t] == m && !x[..t].contains(&m)
}

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += v;
    }
    fold(lanes)
}

#[inline(always)]
fn fold(lanes: [f32; LANES]) -> f32 {
    lanes.into_iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cross_entropy;

    /// The fast f32 pass against the f64-summed reference (relative, loss and gradient).
    const FAST_XENT_TOL: f64 = 1e-5;

    fn case(rows: usize, c: usize) -> (Vec<f32>, Vec<usize>) {
        let logits = (0..rows * c)
            .map(|i| ((i * 7919) % 113) as f32 * 0.07 - 4.0)
            .collect();
        let targets = (0..rows).map(|r| (r * 5) % c).collect();
        (logits, targets)
    }

    #[test]
    fn matches_the_reference_cross_entropy() {
        // 37 rows: tasks of 8 and a remainder; 11 and 40 classes: under and over 16 lanes
        for (rows, c) in [(37, 11), (37, 40), (1, 1)] {
            let (logits, targets) = case(rows, c);
            let t = Tensor::new(logits.clone(), &[rows, c]).unwrap();
            let cfg = CrossEntropyConfig {
                ignore_index: None,
                reduction: Reduction::Sum,
            };
            let want = cross_entropy(&t, &targets, &cfg, 3.0f32).unwrap();
            let mut got = t.clone();
            let sums = cross_entropy_in_place(&mut got, &targets, 3.0).unwrap();
            let scale = f64::from(want.loss).abs().max(1.0);
            assert!(
                (sums.loss - f64::from(want.loss)).abs() / scale < FAST_XENT_TOL,
                "{rows}×{c}: {} vs {}",
                sums.loss,
                want.loss
            );
            assert_eq!(sums.correct, want.correct);
            for (a, b) in got.data().iter().zip(want.grad.data()) {
                assert!(
                    f64::from((a - b).abs()) <= FAST_XENT_TOL * (1.0 + f64::from(b.abs())),
                    "{rows}×{c}: {a} vs {b}"
                );
            }
            // the loss alone is the in-place pass's, to the bit
            let eval = cross_entropy_sums(&t, &targets).unwrap();
            assert_eq!(eval, sums);
        }
    }

    #[test]
    fn bad_targets_are_typed_errors_and_change_nothing() {
        let (logits, _) = case(4, 5);
        let mut t = Tensor::new(logits.clone(), &[4, 5]).unwrap();
        assert!(matches!(
            cross_entropy_in_place(&mut t, &[0, 1, 5, 2], 1.0),
            Err(crate::Error::Index { position: 2, .. })
        ));
        assert_eq!(t.data(), &logits[..]);
        assert!(matches!(
            cross_entropy_sums(&t, &[0, 1]),
            Err(crate::Error::Shape { .. })
        ));
    }

    /// Large logits do not overflow: the row's maximum is subtracted first.
    #[test]
    fn large_logits_are_finite() {
        let mut t = Tensor::new(vec![1000.0f32, 0.0, -1000.0, 999.0], &[1, 4]).unwrap();
        let s = cross_entropy_in_place(&mut t, &[3], 1.0).unwrap();
        let want = (1.0f64 + (-1.0f64).exp()).ln() + 1.0;
        assert!((s.loss - want).abs() < 1e-6, "{}", s.loss);
        assert!(t.data().iter().all(|v| v.is_finite()));
    }
}
