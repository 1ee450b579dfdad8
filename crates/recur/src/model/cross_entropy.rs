//! Fused softmax cross-entropy, PyTorch's `nn.CrossEntropyLoss` (`F.cross_entropy`) with
//! integer targets, and the metrics read off it: accuracy, perplexity, bits per character.
//!
//! Over logits x `[N, C]` and targets t `[N]`, with the rows whose target is the ignore
//! index left out (the set K of counted rows, |K| of them):
//! ```text
//! (1) m_n = max_j x_nj
//! (2) s_n = Σ_j exp(x_nj − m_n)
//! (3) log p_nj = (x_nj − m_n) − ln s_n                  (log-softmax, never overflows)
//! (4) ℓ_n = −log p_n,t_n                                n ∈ K
//! (5) L = (1/|K|) Σ_K ℓ_n     (Reduction::Mean, PyTorch's default)
//!     L =         Σ_K ℓ_n     (Reduction::Sum)
//! ```
//! Backward, given dL (1 when L is the loss being minimised), in the same pass:
//! ```text
//! (5)ᵀ dℓ_n = dL / |K|  (Mean)      dℓ_n = dL  (Sum)           n ∈ K
//! (4)ᵀ–(1)ᵀ dx_nj = dℓ_n (p_nj − [j = t_n])                    n ∈ K
//!       dx_nj = 0                                               n ∉ K (ignored rows)
//! ```
//! The max m_n cancels in the gradient, so it needs no backward of its own.
//!
//! When every row is ignored (or N = 0), PyTorch's mean is 0/0 = NaN, its sum 0, and its
//! gradient zero in both cases; recur returns exactly that (checked against PyTorch 2.15).
//!
//! Unlike PyTorch, the class axis is the **last** one: logits `[seq_len, batch, C]` (what
//! [`crate::model::Linear`] gives on every step) are read as `[seq_len · batch, C]` with
//! targets `[seq_len, batch]` flattened the same way. PyTorch's K-dimensional form puts the
//! classes on axis 1 instead; class weights and label smoothing are not offered.

use super::embedding::check_ids;
use super::loss::Reduction;
use crate::error::{Error, Result, shape_err};
use crate::kernel::scalar::Float;
use crate::tensor::Tensor;

/// Options of [`cross_entropy`]. The defaults are PyTorch's: nothing ignored (its default
/// `ignore_index = −100` can never equal a class), mean over the counted rows.
///
/// ```
/// use recur::model::{CrossEntropyConfig, Reduction};
/// // A language model whose vocabulary keeps id 0 for padding.
/// let config = CrossEntropyConfig { ignore_index: Some(0), reduction: Reduction::Mean };
/// # let _ = config;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrossEntropyConfig {
    /// The target value that marks a row to leave out of the loss, its mean and its
    /// gradient (padding). It may be any value, a class or not.
    pub ignore_index: Option<usize>,
    pub reduction: Reduction,
}

/// What [`cross_entropy`] computes in its one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyOutput<T> {
    /// (5) L, reduced as asked (NaN for a mean over no counted rows, as PyTorch).
    pub loss: T,
    /// dL · ∂L/∂x, shaped like the logits; zero on ignored rows.
    pub grad: Tensor<T>,
    /// |K|: the rows whose target is not the ignore index.
    pub count: usize,
    /// The counted rows whose largest logit (the first, on a tie) is at the target.
    pub correct: usize,
}

impl<T: Float> CrossEntropyOutput<T> {
    /// `correct / count`, NaN when no row is counted.
    pub fn accuracy(&self) -> f64 {
        fraction(self.correct, self.count)
    }
}

/// (1)–(5) and their backward in one pass: the cross-entropy of `logits` `[*, C]` against
/// `targets` `[*]` (row-major, the leading axes of `logits`), and `dloss · ∂L/∂logits`.
///
/// # Errors
/// [`Error::Rank`] when `logits` is a scalar, [`Error::Empty`] when `C = 0`,
/// [`Error::Shape`] when `targets` does not have one entry per row, and [`Error::Index`]
/// naming the first target that is neither a class (`< C`) nor the ignore index (PyTorch's
/// "Target 5 is out of bounds").
pub fn cross_entropy<T: Float>(
    logits: &Tensor<T>,
    targets: &[usize],
    config: &CrossEntropyConfig,
    dloss: T,
) -> Result<CrossEntropyOutput<T>> {
    let c = check(logits, targets, config)?;
    let count = counted(targets, config);
    let mut grad = vec![T::zero(); logits.data().len()];
    let mut sum = T::zero();
    let mut correct = 0;
    // (5)ᵀ dℓ_n, the same for every counted row
    let dl = match config.reduction {
        Reduction::Mean => dloss / T::from_usize(count).unwrap_or_else(T::nan),
        Reduction::Sum => dloss,
    };
    for ((x, dx), &t) in logits
        .data()
        .chunks_exact(c)
        .zip(grad.chunks_exact_mut(c))
        .zip(targets)
    {
        if Some(t) == config.ignore_index {
            continue;
        }
        let (m, argmax) = max_and_argmax(x);
        correct += usize::from(argmax == t);
        // (2) s = Σ exp(x − m), keeping each exp(x − m) in dx
        let mut s = T::zero();
        for (d, &v) in dx.iter_mut().zip(x) {
            *d = (v - m).exp();
            s += *d;
        }
        let ln_s = s.ln();
        // (3)–(4) ℓ = −((x_t − m) − ln s)
        sum += ln_s - (x[t] - m);
        // (4)ᵀ dx = dℓ (p − onehot), p = exp(x − m) / s
        for d in dx.iter_mut() {
            *d = dl * (*d / s);
        }
        dx[t] -= dl;
    }
    Ok(CrossEntropyOutput {
        loss: reduce(sum, count, config.reduction),
        grad: Tensor::new(grad, logits.shape())?,
        count,
        correct,
    })
}

/// The loss alone (for evaluation: no gradient buffer is made), with the same counts as
/// [`cross_entropy`]: `(loss, count, correct)`.
///
/// # Errors
/// As [`cross_entropy`].
pub fn cross_entropy_loss<T: Float>(
    logits: &Tensor<T>,
    targets: &[usize],
    config: &CrossEntropyConfig,
) -> Result<(T, usize, usize)> {
    let c = check(logits, targets, config)?;
    let count = counted(targets, config);
    let mut sum = T::zero();
    let mut correct = 0;
    for (x, &t) in logits.data().chunks_exact(c).zip(targets) {
        if Some(t) == config.ignore_index {
            continue;
        }
        let (m, argmax) = max_and_argmax(x);
        correct += usize::from(argmax == t);
        // (2)–(4)
        let s: T = x.iter().map(|&v| (v - m).exp()).sum();
        sum += s.ln() - (x[t] - m);
    }
    Ok((reduce(sum, count, config.reduction), count, correct))
}

/// The fraction of rows whose largest logit (the first, on a tie, as `torch.argmax`) is at
/// the target, over the rows whose target is not `ignore_index`; NaN when there are none.
///
/// # Errors
/// As [`cross_entropy`].
pub fn accuracy<T: Float>(
    logits: &Tensor<T>,
    targets: &[usize],
    ignore_index: Option<usize>,
) -> Result<f64> {
    let config = CrossEntropyConfig {
        ignore_index,
        reduction: Reduction::Mean,
    };
    let c = check(logits, targets, &config)?;
    let correct = logits
        .data()
        .chunks_exact(c)
        .zip(targets)
        .filter(|&(x, &t)| Some(t) != ignore_index && max_and_argmax(x).1 == t)
        .count();
    Ok(fraction(correct, counted(targets, &config)))
}

/// Perplexity, `exp(L)` of a mean cross-entropy `L` in nats.
pub fn perplexity(mean_loss: f64) -> f64 {
    mean_loss.exp()
}

/// Bits per character, `L / ln 2` of a mean (per-character) cross-entropy `L` in nats.
pub fn bits_per_character(mean_loss: f64) -> f64 {
    mean_loss / std::f64::consts::LN_2
}

/// Number of classes C, after checking every input.
pub(super) fn check<T: Float>(
    logits: &Tensor<T>,
    targets: &[usize],
    config: &CrossEntropyConfig,
) -> Result<usize> {
    let Some(&c) = logits.shape().last() else {
        return Err(Error::Rank {
            what: "logits".into(),
            expected_rank: 2,
            expected: "[N, C]".into(),
            got: crate::Shape(vec![]),
        });
    };
    if c == 0 {
        return Err(Error::Empty("cross-entropy over zero classes".into()));
    }
    let rows = &logits.shape()[..logits.shape().len() - 1];
    let n = logits.data().len() / c;
    if targets.len() != n {
        let want = if rows.is_empty() {
            vec![1]
        } else {
            rows.to_vec()
        };
        return Err(shape_err("targets", &want, &[targets.len()]));
    }
    check_ids(
        "targets",
        targets,
        c,
        "the number of classes",
        config.ignore_index,
    )?;
    Ok(c)
}

fn counted(targets: &[usize], config: &CrossEntropyConfig) -> usize {
    targets
        .iter()
        .filter(|&&t| Some(t) != config.ignore_index)
        .count()
}

/// (5): the mean or the sum; a mean over no rows is 0/0 = NaN, as in PyTorch.
fn reduce<T: Float>(sum: T, count: usize, reduction: Reduction) -> T {
    match reduction {
        Reduction::Mean => sum / T::from_usize(count).unwrap_or_else(T::nan),
        Reduction::Sum => sum,
    }
}

/// (1) m = max x, and the first index holding it.
fn max_and_argmax<T: Float>(x: &[T]) -> (T, usize) {
    let mut best = (x[0], 0);
    for (j, &v) in x.iter().enumerate().skip(1) {
        if v > best.0 {
            best = (v, j);
        }
    }
    best
}

fn fraction(num: usize, den: usize) -> f64 {
    num as f64 / den as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `F.cross_entropy` in float64 against these sums is exact up to summation order.
    const VALUE_TOL: f64 = 1e-14;

    fn logits(n: usize, c: usize, seed: u64) -> Tensor<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v = (0..n * c).map(|_| rng.random_range(-3.0..3.0)).collect();
        Tensor::new(v, &[n, c]).unwrap()
    }

    fn configs(ignore_index: Option<usize>) -> [CrossEntropyConfig; 2] {
        [Reduction::Mean, Reduction::Sum].map(|reduction| CrossEntropyConfig {
            ignore_index,
            reduction,
        })
    }

    fn check_grad(x: &Tensor<f64>, targets: &[usize], config: &CrossEntropyConfig) {
        let dloss = 0.7;
        let out = cross_entropy(x, targets, config, dloss).unwrap();
        let shape = x.shape().to_vec();
        gradcheck::check(
            &format!("logits ({config:?})"),
            x.data(),
            out.grad.data(),
            |v| {
                let v = Tensor::new(v.to_vec(), &shape).unwrap();
                dloss * cross_entropy(&v, targets, config, 1.0).unwrap().loss
            },
        );
    }

    #[test]
    fn gradcheck_logits() {
        let x = logits(5, 4, 1);
        for config in configs(None) {
            check_grad(&x, &[3, 0, 1, 1, 2], &config);
        }
    }

    /// Ignored rows: no loss, no gradient, not in the mean; here the ignore index is a
    /// class (0, a padding id) and, separately, a value outside the classes.
    #[test]
    fn gradcheck_with_ignored_rows() {
        let x = logits(6, 3, 2);
        for config in configs(Some(0)) {
            let targets = [0, 2, 1, 0, 0, 1];
            check_grad(&x, &targets, &config);
            let out = cross_entropy(&x, &targets, &config, 1.0).unwrap();
            assert_eq!(out.count, 3);
            for n in [0, 3, 4] {
                assert!(out.grad.data()[n * 3..n * 3 + 3].iter().all(|&g| g == 0.0));
            }
        }
        for config in configs(Some(usize::MAX)) {
            check_grad(&x, &[2, usize::MAX, 1, 0, 2, usize::MAX], &config);
        }
    }

    /// PyTorch: `F.cross_entropy(x, t, ignore_index=0)` with every t = 0 is `nan` (mean) or
    /// `0.0` (sum), and `x.grad` is all zeros in both cases; an empty batch gives `nan`.
    #[test]
    fn all_ignored_is_nan_mean_zero_sum_zero_grad() {
        let x = logits(3, 4, 3);
        let [mean, sum] = configs(Some(0));
        let out = cross_entropy(&x, &[0, 0, 0], &mean, 1.0).unwrap();
        assert!(out.loss.is_nan());
        assert!(out.grad.data().iter().all(|&g| g == 0.0));
        assert_eq!((out.count, out.correct), (0, 0));
        assert!(out.accuracy().is_nan());
        let out = cross_entropy(&x, &[0, 0, 0], &sum, 1.0).unwrap();
        assert_eq!(out.loss, 0.0);
        assert!(out.grad.data().iter().all(|&g| g == 0.0));
        // The numeric derivative of a constant 0 is 0: the gradcheck holds for the sum.
        check_grad(&x, &[0, 0, 0], &sum);
        let empty = Tensor::<f64>::new(vec![], &[0, 4]).unwrap();
        assert!(
            cross_entropy(&empty, &[], &mean, 1.0)
                .unwrap()
                .loss
                .is_nan()
        );
    }

    /// ```python
    /// x = torch.tensor([[1., 2., 3.], [1000., 0., -1000.], [0.5, 0.5, -2.]], dtype=torch.float64)
    /// F.cross_entropy(x, torch.tensor([2, 1, 0]))                    # 333.7136585864239
    /// F.cross_entropy(x, torch.tensor([2, 1, 0]), reduction="sum")   # 1001.1409757592717
    /// ```
    /// (the 1000s would overflow a naive exp; the log-sum-exp form keeps them exact).
    #[test]
    fn values_match_pytorch_and_large_logits_are_stable() {
        let x = Tensor::new(
            vec![1.0, 2.0, 3.0, 1000.0, 0.0, -1000.0, 0.5, 0.5, -2.0],
            &[3, 3],
        )
        .unwrap();
        let t = [2, 1, 0];
        // By hand: ℓ₀ = ln(e⁻² + e⁻¹ + 1), ℓ₁ = 1000 + ln(1 + e⁻¹⁰⁰⁰ + e⁻²⁰⁰⁰) = 1000,
        // ℓ₂ = ln(2 + e⁻²·⁵).
        let l0 = ((-2.0f64).exp() + (-1.0f64).exp() + 1.0).ln();
        let l2 = (2.0 + (-2.5f64).exp()).ln();
        let want_sum = l0 + 1000.0 + l2;
        let [mean, sum] = configs(None);
        let out = cross_entropy(&x, &t, &sum, 1.0).unwrap();
        assert!(
            (out.loss - want_sum).abs() < VALUE_TOL * want_sum,
            "{}",
            out.loss
        );
        assert!((out.loss - 1001.1409757592717).abs() < VALUE_TOL * want_sum);
        let out = cross_entropy(&x, &t, &mean, 1.0).unwrap();
        assert!((out.loss - want_sum / 3.0).abs() < VALUE_TOL * want_sum);
        assert!((out.loss - 333.7136585864239).abs() < VALUE_TOL * want_sum);
        assert!(out.grad.data().iter().all(|g| g.is_finite()));
        // Row 1: p = (1, 0, 0), target 1 → grad (1, −1, 0) / 3.
        let g1 = &out.grad.data()[3..6];
        assert!((g1[0] - 1.0 / 3.0).abs() < VALUE_TOL && (g1[1] + 1.0 / 3.0).abs() < VALUE_TOL);
        // Rows 0 and 2 have their largest logit at the target (row 2 ties, and the first
        // wins); row 1 does not.
        assert_eq!(out.correct, 2);
        let (loss, count, correct) = cross_entropy_loss(&x, &t, &mean).unwrap();
        assert_eq!((loss, count, correct), (out.loss, 3, 2));
        assert!((accuracy(&x, &t, None).unwrap() - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn class_axis_is_last_for_any_leading_shape() {
        let x = logits(6, 5, 4);
        let x3 = Tensor::new(x.data().to_vec(), &[3, 2, 5]).unwrap();
        let t = [4, 0, 1, 2, 3, 4];
        let [mean, _] = configs(None);
        let a = cross_entropy(&x, &t, &mean, 1.0).unwrap();
        let b = cross_entropy(&x3, &t, &mean, 1.0).unwrap();
        assert_eq!(a.loss, b.loss);
        assert_eq!(a.grad.data(), b.grad.data());
        assert_eq!(b.grad.shape(), &[3, 2, 5]);
    }

    #[test]
    fn metrics() {
        assert!((perplexity(2.0f64.ln()) - 2.0).abs() < 1e-15);
        assert!((bits_per_character(2.0f64.ln()) - 1.0).abs() < 1e-15);
        assert_eq!(perplexity(0.0), 1.0);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let x = logits(3, 4, 5);
        let [mean, _] = configs(Some(9));
        let e = cross_entropy(&x, &[0, 4, 9], &mean, 1.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "targets[1] = 4 is not below the number of classes = 4"
        );
        let e = cross_entropy(&x, &[0, 1], &mean, 1.0).unwrap_err();
        assert_eq!(e.to_string(), "targets: expected shape [3], got [2]");
        let no_classes = Tensor::<f64>::new(vec![], &[3, 0]).unwrap();
        assert!(matches!(
            cross_entropy_loss(&no_classes, &[0, 0, 0], &mean),
            Err(Error::Empty(_))
        ));
        assert!(accuracy(&x, &[7, 0, 0], None).is_err());
    }
}
