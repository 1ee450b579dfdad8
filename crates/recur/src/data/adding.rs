//! The adding problem (Hochreiter & Schmidhuber 1997, "Long short-term memory", §5.4,
//! experiment 4): a long-lag task that a gated RNN solves and a plain one does not.
//!
//! A sequence with minimal length T has a length L drawn uniformly from T ..= T + ⌊T/10⌋.
//! Each step carries two inputs `(v, m)`:
//! ```text
//! v_t ~ U(−1, 1)                                   the value
//! m_t ∈ {1, 0, −1}                                 the marker
//! p₁ ~ uniform over the first min(10, L) steps     m_{p₁} = 1, X₁ = v_{p₁}
//! p₂ ~ uniform over the first ⌊T/2⌋ − 1 steps      m_{p₂} = 1, X₂ = v_{p₂}
//!      that are still unmarked (p₂ ≠ p₁)
//! m_0 = m_{L−1} = −1 where unmarked, every other m_t = 0
//! v_0 = 0 when step 0 is marked                    (the paper's "we set X₁ to zero")
//! target  y = 0.5 + (X₁ + X₂) / 4  ∈ [0, 1]
//! ```
//! A sequence is solved when the prediction after its last step is within
//! [`AddingProblem::SOLVED_TOLERANCE`] (0.04) of y. Predicting the mean 0.5 everywhere gives
//! an MSE of (2 − P(p₁ = 0) − P(p₂ = 0)) / 48, a little under 1/24 ≈ 0.042 (0.039 at T = 50,
//! since a marked first step adds nothing), and solves about 15% of sequences.
//!
//! The paper states the zeroing of the first value for X₁ only; X₂ can fall on step 0 too,
//! and gets the same rule.
//!
//! The multiplication problem (the paper's experiment 5, [`AddingProblem::multiplication`])
//! is the same sequence with values `v_t ~ U(0, 1)` and target `y = X₁ · X₂ ∈ [0, 1]`, solved
//! under the same 0.04; predicting the mean 1/4 gives an MSE of about 1/9 − 1/16 = 7/144 ≈
//! 0.049 (a little less where a marker falls on the zeroed first step).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{SequenceBatch, Split};
use crate::error::{Error, Result, config_err};
use crate::kernel::scalar::Float;
use crate::tensor::Tensor;

/// A seeded, deterministic generator of adding-problem batches.
///
/// ```
/// use recur::data::{AddingProblem, Split};
/// let mut train = AddingProblem::new(50, 7, Split::Train)?;
/// let batch = train.sample::<f32>(4)?;
/// assert_eq!(batch.lengths.len(), 4);
/// assert!(batch.lengths.iter().all(|&l| (50..=55).contains(&l)));
/// assert_eq!(batch.input.shape()[1..], [4, 2]);
/// assert_eq!(batch.target.shape(), &[4, 1]);
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct AddingProblem {
    min_len: usize,
    op: Operation,
    rng: ChaCha8Rng,
}

/// What the two marked values are combined by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// values U(−1, 1), target 0.5 + (X₁ + X₂) / 4 (experiment 4)
    Add,
    /// values U(0, 1), target X₁ · X₂ (experiment 5)
    Multiply,
}

impl AddingProblem {
    /// Inputs per step: the value and the marker.
    pub const INPUT_SIZE: usize = 2;
    /// The paper's criterion: a sequence is solved when |prediction − target| < 0.04.
    pub const SOLVED_TOLERANCE: f64 = 0.04;
    /// The smallest T for which both markers have room (⌊T/2⌋ − 1 ≥ 1).
    pub const MIN_SEQ_LEN: usize = 4;

    /// A generator of sequences of minimal length `seq_len` (T), drawing from the stream of
    /// `split` of a ChaCha8 generator seeded with `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] when `seq_len` < [`AddingProblem::MIN_SEQ_LEN`].
    pub fn new(seq_len: usize, seed: u64, split: Split) -> Result<Self> {
        Self::with_operation(seq_len, Operation::Add, seed, split)
    }

    /// The multiplication problem (experiment 5): the same sequences with values in [0, 1)
    /// and target X₁ · X₂.
    ///
    /// # Errors
    /// [`Error::Config`] when `seq_len` < [`AddingProblem::MIN_SEQ_LEN`].
    pub fn multiplication(seq_len: usize, seed: u64, split: Split) -> Result<Self> {
        Self::with_operation(seq_len, Operation::Multiply, seed, split)
    }

    /// A generator of either problem.
    ///
    /// # Errors
    /// [`Error::Config`] when `seq_len` < [`AddingProblem::MIN_SEQ_LEN`].
    pub fn with_operation(seq_len: usize, op: Operation, seed: u64, split: Split) -> Result<Self> {
        if seq_len < Self::MIN_SEQ_LEN {
            return Err(config_err(
                "seq_len",
                format!(
                    "the adding problem needs at least {}, got {seq_len}",
                    Self::MIN_SEQ_LEN
                ),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(split.stream());
        Ok(Self {
            min_len: seq_len,
            op,
            rng,
        })
    }

    /// Which problem this is.
    pub fn operation(&self) -> Operation {
        self.op
    }

    /// The targets' mean, what a constant prediction should give: 1/2 for the adding problem;
    /// for the multiplication problem 1/4 times the chance that neither marker falls on the
    /// zeroed first step, (1 − 1/10)(1 − 1/(⌊T/2⌋ − 1)) (exact for T ≥ 10; below it p₁ has
    /// fewer than ten places and the figure is close).
    pub fn mean_target(&self) -> f64 {
        match self.op {
            Operation::Add => 0.5,
            Operation::Multiply => {
                let q1 = 1.0 / self.min_len.min(10) as f64;
                let q2 = 1.0 / (self.min_len / 2 - 1) as f64;
                0.25 * (1.0 - q1) * (1.0 - q2)
            }
        }
    }

    /// T, the shortest length a sequence can have.
    pub fn min_len(&self) -> usize {
        self.min_len
    }

    /// T + ⌊T/10⌋, the longest length a sequence can have.
    pub fn max_len(&self) -> usize {
        self.min_len + self.min_len / 10
    }

    /// The next `batch` sequences. The input is `[seq_len, batch, 2]` with `seq_len` the
    /// longest of them, zero past each sequence's end; the target is `[batch, 1]`.
    ///
    /// # Errors
    /// [`Error::Empty`] when `batch` is 0.
    pub fn sample<T: Float>(&mut self, batch: usize) -> Result<SequenceBatch<T>> {
        if batch == 0 {
            return Err(Error::Empty(
                "an adding-problem batch of 0 sequences".into(),
            ));
        }
        let seqs: Vec<Sequence> = (0..batch).map(|_| self.sequence()).collect();
        let lengths: Vec<usize> = seqs.iter().map(|s| s.steps.len()).collect();
        let seq_len = lengths.iter().copied().max().unwrap_or(0);
        let cast = |v: f64| T::from_f64(v).unwrap_or_else(T::zero);
        let mut input = vec![T::zero(); seq_len * batch * Self::INPUT_SIZE];
        for (b, s) in seqs.iter().enumerate() {
            for (t, &(v, m)) in s.steps.iter().enumerate() {
                let at = (t * batch + b) * Self::INPUT_SIZE;
                input[at] = cast(v);
                input[at + 1] = cast(m);
            }
        }
        let target = seqs.iter().map(|s| cast(s.target)).collect();
        Ok(SequenceBatch {
            input: Tensor::new(input, &[seq_len, batch, Self::INPUT_SIZE])?,
            lengths,
            target: Tensor::new(target, &[batch, 1])?,
        })
    }

    /// Whether a prediction solves its sequence (|prediction − target| < 0.04).
    pub fn is_solved<T: Float>(prediction: T, target: T) -> bool {
        let e = (prediction - target)
            .abs()
            .to_f64()
            .unwrap_or(f64::INFINITY);
        e < Self::SOLVED_TOLERANCE
    }

    /// One sequence, drawn in a fixed order: length, values, p₁, p₂.
    fn sequence(&mut self) -> Sequence {
        let t_min = self.min_len;
        let len = self.rng.random_range(t_min..=self.max_len());
        let low = match self.op {
            Operation::Add => -1.0,
            Operation::Multiply => 0.0,
        };
        let mut steps: Vec<(f64, f64)> = (0..len)
            .map(|_| (self.rng.random_range(low..1.0), 0.0))
            .collect();
        steps[0].1 = -1.0;
        steps[len - 1].1 = -1.0;
        let p1 = self.rng.random_range(0..len.min(10));
        // The k-th still unmarked step among the first ⌊T/2⌋ − 1 of them.
        let k = self.rng.random_range(0..t_min / 2 - 1);
        let p2 = if k < p1 { k } else { k + 1 };
        for p in [p1, p2] {
            steps[p].1 = 1.0;
            if p == 0 {
                steps[0].0 = 0.0;
            }
        }
        let (x1, x2) = (steps[p1].0, steps[p2].0);
        let target = match self.op {
            Operation::Add => 0.5 + (x1 + x2) / 4.0,
            Operation::Multiply => x1 * x2,
        };
        Sequence { steps, target }
    }
}

/// One generated sequence: `(value, marker)` per step, and its target.
struct Sequence {
    steps: Vec<(f64, f64)>,
    target: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sequence of a few thousand, checked against the definition.
    #[test]
    fn sequences_follow_the_definition() {
        for t in [4usize, 5, 12, 50, 100] {
            let mut problem = AddingProblem::new(t, 11, Split::Train).unwrap();
            let b = problem.sample::<f64>(600).unwrap();
            let (seq_len, batch) = (b.input.shape()[0], b.input.shape()[1]);
            assert_eq!(batch, 600);
            assert_eq!(seq_len, *b.lengths.iter().max().unwrap());
            let (mut shortest, mut longest) = (usize::MAX, 0);
            for (s, &len) in b.lengths.iter().enumerate() {
                assert!((t..=t + t / 10).contains(&len), "T={t}: length {len}");
                shortest = shortest.min(len);
                longest = longest.max(len);
                let at = |step: usize| {
                    let i = (step * batch + s) * 2;
                    (b.input.data()[i], b.input.data()[i + 1])
                };
                let marked: Vec<usize> = (0..len).filter(|&i| at(i).1 == 1.0).collect();
                assert_eq!(marked.len(), 2, "T={t}: exactly two marked steps");
                let (p, q) = (marked[0], marked[1]);
                let ten = 10.min(len);
                assert!(
                    (p < ten && q < t / 2) || (q < ten && p < t / 2),
                    "T={t}: one marker in the first ten steps, the other in the first half"
                );
                for i in 0..len {
                    let (v, m) = at(i);
                    assert!((-1.0..1.0).contains(&v), "value {v}");
                    let end = i == 0 || i == len - 1;
                    match m {
                        1.0 => {}
                        -1.0 => assert!(end, "T={t}: −1 only at the first and last step"),
                        0.0 => assert!(!end, "T={t}: first and last steps are marked"),
                        _ => panic!("marker {m}"),
                    }
                }
                if at(0).1 == 1.0 {
                    assert_eq!(at(0).0, 0.0, "a marked first step has value 0");
                }
                for i in len..seq_len {
                    assert_eq!(at(i), (0.0, 0.0), "zero past the end");
                }
                let sum: f64 = marked.iter().map(|&i| at(i).0).sum();
                let y = b.target.data()[s];
                assert!((y - (0.5 + sum / 4.0)).abs() < 1e-15);
                assert!((0.0..=1.0).contains(&y));
            }
            if t >= 10 {
                assert_eq!(
                    (shortest, longest),
                    (t, t + t / 10),
                    "T={t}: both ends drawn"
                );
            }
        }
    }

    /// The oracle of the multiplication problem: the product of the two values whose marker
    /// is 1, recomputed from the raw input; values in [0, 1).
    #[test]
    fn multiplication_targets_are_the_product_of_the_marked_values() {
        let mut g = AddingProblem::multiplication(20, 3, Split::Train).unwrap();
        assert_eq!(g.operation(), Operation::Multiply);
        let b = g.sample::<f64>(500).unwrap();
        let batch = 500;
        let x = b.input.data();
        for (s, &len) in b.lengths.iter().enumerate() {
            let step = |t: usize| (x[(t * batch + s) * 2], x[(t * batch + s) * 2 + 1]);
            let marked: Vec<f64> = (0..len)
                .map(step)
                .filter(|&(_, m)| m == 1.0)
                .map(|(v, _)| v)
                .collect();
            assert_eq!(marked.len(), 2);
            assert!((0..len).all(|t| (0.0..1.0).contains(&step(t).0)));
            let y = b.target.data()[s];
            assert!(
                (y - marked[0] * marked[1]).abs() < 1e-15,
                "{y} vs {marked:?}"
            );
        }
        let mean = b.target.data().iter().sum::<f64>() / batch as f64;
        // 0.25 · 0.9 · (1 − 1/9) = 0.2; the sample mean of 500 is within ±0.03 of it
        assert!((g.mean_target() - 0.2).abs() < 1e-15);
        assert!((mean - g.mean_target()).abs() < 0.03, "{mean}");
    }

    #[test]
    fn generation_is_seeded_and_splits_differ() {
        let draw = |seed, split| {
            let mut g = AddingProblem::new(20, seed, split).unwrap();
            (g.sample::<f32>(8).unwrap(), g.sample::<f32>(8).unwrap())
        };
        assert_eq!(draw(1, Split::Train), draw(1, Split::Train));
        assert_ne!(draw(1, Split::Train).0, draw(2, Split::Train).0);
        assert_ne!(draw(1, Split::Train).0, draw(1, Split::Test).0);
        let (a, b) = draw(1, Split::Train);
        assert_ne!(a, b, "consecutive batches differ");
    }

    /// The statistics the docs state: targets centred on 0.5 with variance
    /// (2 − P(p₁ = 0) − P(p₂ = 0)) / 48, P(p₁ = 0) = 1/10, P(p₂ = 0) = (9/10) / (⌊T/2⌋ − 1),
    /// and predicting 0.5 solves about 15% (P(|X₁ + X₂| < 0.16) ≈ 0.154).
    #[test]
    fn constant_prediction_is_the_baseline() {
        let t = 30;
        let want_mse = (2.0 - 0.1 - 0.9 / (t / 2 - 1) as f64) / 48.0;
        let mut g = AddingProblem::new(t, 5, Split::Test).unwrap();
        let b = g.sample::<f64>(20_000).unwrap();
        let y = b.target.data();
        let n = y.len() as f64;
        let mean = y.iter().sum::<f64>() / n;
        let mse = y.iter().map(|v| (v - 0.5) * (v - 0.5)).sum::<f64>() / n;
        let solved = y
            .iter()
            .filter(|&&v| AddingProblem::is_solved(0.5, v))
            .count() as f64
            / n;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        assert!((mse - want_mse).abs() < 0.001, "{mse} vs {want_mse}");
        assert!((solved - 0.154).abs() < 0.015, "{solved}");
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(matches!(
            AddingProblem::new(3, 0, Split::Train),
            Err(Error::Config { .. })
        ));
        let mut g = AddingProblem::new(10, 0, Split::Train).unwrap();
        assert!(matches!(g.sample::<f32>(0), Err(Error::Empty(_))));
    }
}
