//! Softmax cross-entropy over `f32` logits, fast: in place and on every core.
//!
//! [`cross_entropy`](fn@super::cross_entropy) is the reference (f64 sums, any `T`); these compute the same
//! quantities for `f32` logits without a `[rows, classes]` buffer of their own and with the
//! vectorised exponential of `kernel::fast_f32`: [`cross_entropy_in_place`] turns
//! the logits themselves into the gradient (a language model's training step), and
//! [`cross_entropy_sums`] gives the loss alone (evaluation). Both sum over the rows
//! (`Reduction::Sum`, nothing ignored) and count the rows whose first largest logit is the
//! target. For each row x with target t:
//! ```text
//! m = max x;  s = Σ exp(x − m);  ℓ = ln s − (x_t − m)
//! dx = dl · (exp(x − m) / s − onehot(t))
//! ```
//! Rows run in parallel (rayon), each row in the kernel's `kernel::softmax`: every
//! build gives the same bits, and so does every thread count (the rows' losses are summed in
//! f64).

use rayon::prelude::*;

use super::cross_entropy::{CrossEntropyConfig, check};
use super::loss::Reduction;
use crate::error::Result;
use crate::kernel::softmax;
use crate::tensor::Tensor;

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
    Ok(logits
        .data_mut()
        .par_chunks_mut(classes * ROWS_PER_TASK)
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .map(|(rows, ts)| {
            let (loss, correct) = softmax::rows_grad(rows, classes, ts, dl);
            CrossEntropySums { loss, correct }
        })
        .reduce(CrossEntropySums::default, CrossEntropySums::add))
}

/// The summed loss and the correct rows, leaving `logits` as it is.
///
/// # Errors
/// As [`cross_entropy_in_place`].
pub fn cross_entropy_sums(logits: &Tensor<f32>, targets: &[usize]) -> Result<CrossEntropySums> {
    let classes = check(logits, targets, &ALL_ROWS)?;
    Ok(logits
        .data()
        .par_chunks(classes * ROWS_PER_TASK)
        .zip(targets.par_chunks(ROWS_PER_TASK))
        .map(|(rows, ts)| {
            let (loss, correct) = softmax::rows_loss(rows, classes, ts);
            CrossEntropySums { loss, correct }
        })
        .reduce(CrossEntropySums::default, CrossEntropySums::add))
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
