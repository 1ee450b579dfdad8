//! The copy-memory problem (Hochreiter & Schmidhuber 1997, §5.2; in the form of Arjovsky,
//! Shah & Bengio 2016, "Unitary Evolution Recurrent Neural Networks", §4.1): remember ten
//! symbols across a delay of T steps, then reproduce them.
//!
//! The alphabet has ten symbols: 0 the blank, 1 ..= 8 the data categories, 9 the delimiter.
//! With delay T a sequence has T + 20 steps:
//! ```text
//! input   s₁ … s₁₀  0 … 0 (T − 1)  9  0 … 0 (10)       s_i ~ uniform over 1 ..= 8
//! target  0 … 0 (T + 10)                s₁ … s₁₀
//! ```
//! The model emits one of the ten symbols at every step (an `OutputForm::EveryStep` head with
//! 10 outputs, trained with cross-entropy at every step). A model that has learnt only to emit
//! blanks and then guesses each symbol uniformly scores the baseline cross-entropy
//! `10 ln 8 / (T + 20)` nats per step ([`CopyTask::baseline_loss`]); the task is learnt when
//! the loss falls well below it.
//!
//! Accuracy criterion ([`CopyTask::recall_accuracy`]): only the last ten steps count, the
//! prediction at each being the argmax over the ten symbols; a symbol is recalled when that
//! argmax equals the target symbol, and a sequence is solved when all ten of its symbols are.
//! Chance level is 1/8 per symbol.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Split;
use crate::error::{Error, Result, config_err, shape_err};
use crate::kernel::scalar::Float;
use crate::tensor::Tensor;

/// One batch of copy-problem sequences, sequence-first (`[seq_len, batch]`, row-major).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyBatch {
    /// Input symbols, `[seq_len, batch]`.
    pub input: Vec<usize>,
    /// Target symbols, `[seq_len, batch]`.
    pub target: Vec<usize>,
    /// `[seq_len, batch]`.
    pub shape: [usize; 2],
}

impl CopyBatch {
    /// The input as one-hot vectors `[seq_len, batch, 10]`, for a model with dense input.
    pub fn one_hot<T: Float>(&self) -> Tensor<T> {
        let v = CopyTask::VOCAB;
        let mut x = vec![T::zero(); self.input.len() * v];
        for (row, &s) in self.input.iter().enumerate() {
            x[row * v + s] = T::one();
        }
        Tensor::new(x, &[self.shape[0], self.shape[1], v]).expect("sized from the batch")
    }
}

/// A seeded, deterministic generator of copy-problem batches.
///
/// ```
/// use recur::data::{CopyTask, Split};
/// let mut task = CopyTask::new(100, 3, Split::Train)?;
/// let batch = task.sample(2)?;
/// assert_eq!(batch.shape, [120, 2]);
/// // [seq_len, batch] row-major: the delimiter is step T + 9 of every sequence
/// assert_eq!(batch.input[109 * 2], CopyTask::DELIMITER);
/// assert_eq!(batch.target[110 * 2..112 * 2], batch.input[..2 * 2]);
/// assert!((task.baseline_loss() - 10.0 * 8f64.ln() / 120.0).abs() < 1e-15);
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CopyTask {
    delay: usize,
    rng: ChaCha8Rng,
}

impl CopyTask {
    /// The number of symbols: blank, eight categories, delimiter (input and output alike).
    pub const VOCAB: usize = 10;
    /// The data categories 1 ..= 8.
    pub const CATEGORIES: usize = 8;
    /// How many symbols are copied.
    pub const COPY_LEN: usize = 10;
    pub const BLANK: usize = 0;
    pub const DELIMITER: usize = 9;

    /// A generator with delay `delay` (T ≥ 1), drawing from the stream of `split` of a ChaCha8
    /// generator seeded with `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] when `delay` is 0 (the delimiter needs T − 1 ≥ 0 blanks before it).
    pub fn new(delay: usize, seed: u64, split: Split) -> Result<Self> {
        if delay == 0 {
            return Err(config_err("delay", "the copy problem needs T ≥ 1"));
        }
        if delay.checked_add(2 * Self::COPY_LEN).is_none() {
            return Err(config_err("delay", format!("{delay} overflows T + 20")));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(split.stream());
        Ok(Self { delay, rng })
    }

    /// T.
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// T + 20, every sequence's length.
    pub fn seq_len(&self) -> usize {
        self.delay + 2 * Self::COPY_LEN
    }

    /// `10 ln 8 / (T + 20)`: the mean cross-entropy per step of emitting blanks for T + 10
    /// steps and then a uniform guess over the eight categories.
    pub fn baseline_loss(&self) -> f64 {
        Self::COPY_LEN as f64 * (Self::CATEGORIES as f64).ln() / self.seq_len() as f64
    }

    /// The next `batch` sequences.
    ///
    /// # Errors
    /// [`Error::Empty`] when `batch` is 0; [`Error::Config`] when `batch × (T + 20)`
    /// overflows.
    pub fn sample(&mut self, batch: usize) -> Result<CopyBatch> {
        if batch == 0 {
            return Err(Error::Empty("a copy-problem batch of 0 sequences".into()));
        }
        let (n, t) = (self.seq_len(), self.delay);
        n.checked_mul(batch).ok_or_else(|| {
            config_err("batch", format!("{batch} sequences of {n} steps overflow"))
        })?;
        let mut input = vec![Self::BLANK; n * batch];
        let mut target = vec![Self::BLANK; n * batch];
        for b in 0..batch {
            for i in 0..Self::COPY_LEN {
                let s = self.rng.random_range(1..=Self::CATEGORIES);
                input[i * batch + b] = s;
                target[(t + Self::COPY_LEN + i) * batch + b] = s;
            }
            input[(t + Self::COPY_LEN - 1) * batch + b] = Self::DELIMITER;
        }
        Ok(CopyBatch {
            input,
            target,
            shape: [n, batch],
        })
    }

    /// The accuracy criterion of the module docs on `logits` `[seq_len, batch, 10]` for the
    /// batch's `target` `[seq_len, batch]`: (the share of the last ten steps' symbols
    /// recalled, the share of sequences with all ten recalled).
    ///
    /// # Errors
    /// [`Error::Shape`] when `logits` is not `[seq_len, batch, 10]` with seq_len ≥ 10;
    /// [`Error::Length`] when `target` does not fill `[seq_len, batch]`.
    pub fn recall_accuracy<T: Float>(logits: &Tensor<T>, target: &[usize]) -> Result<(f64, f64)> {
        let s = logits.shape();
        if s.len() != 3 || s[2] != Self::VOCAB || s[0] < Self::COPY_LEN || s[1] == 0 {
            let (n, b) = (
                s.first().copied().unwrap_or(0),
                s.get(1).copied().unwrap_or(0),
            );
            return Err(shape_err(
                "logits",
                &[n.max(Self::COPY_LEN), b.max(1), Self::VOCAB],
                s,
            ));
        }
        let (n, batch) = (s[0], s[1]);
        if target.len() != n * batch {
            return Err(Error::Length {
                what: "target".into(),
                shape: crate::Shape(vec![n, batch]),
                len: target.len(),
            });
        }
        let z = logits.data();
        let (mut recalled, mut solved) = (0usize, 0usize);
        for b in 0..batch {
            let mut all = true;
            for t in n - Self::COPY_LEN..n {
                let row = t * batch + b;
                let scores = &z[row * Self::VOCAB..(row + 1) * Self::VOCAB];
                // argmax, the first of equal maxima (as torch.argmax on CPU)
                let best =
                    (1..Self::VOCAB).fold(0, |m, k| if scores[k] > scores[m] { k } else { m });
                if best == target[row] {
                    recalled += 1;
                } else {
                    all = false;
                }
            }
            solved += usize::from(all);
        }
        Ok((
            recalled as f64 / (batch * Self::COPY_LEN) as f64,
            solved as f64 / batch as f64,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_have_the_papers_layout() {
        let t = 7;
        let mut task = CopyTask::new(t, 11, Split::Train).unwrap();
        let batch = 5;
        let b = task.sample(batch).unwrap();
        let n = t + 20;
        assert_eq!(b.shape, [n, batch]);
        for s in 0..batch {
            let col = |v: &[usize]| (0..n).map(|i| v[i * batch + s]).collect::<Vec<_>>();
            let (x, y) = (col(&b.input), col(&b.target));
            assert!(x[..10].iter().all(|&v| (1..=8).contains(&v)), "{x:?}");
            assert!(x[10..t + 9].iter().all(|&v| v == CopyTask::BLANK));
            assert_eq!(x[t + 9], CopyTask::DELIMITER);
            assert!(x[t + 10..].iter().all(|&v| v == CopyTask::BLANK));
            assert!(y[..t + 10].iter().all(|&v| v == CopyTask::BLANK));
            assert_eq!(y[t + 10..], x[..10]);
        }
        // the delimiter sits at step T + 9 for every sequence
        assert!((0..batch).all(|s| b.input[(t + 9) * batch + s] == CopyTask::DELIMITER));
        let one_hot = b.one_hot::<f32>();
        assert_eq!(one_hot.shape(), &[n, batch, 10]);
        assert_eq!(one_hot.data().iter().sum::<f32>(), (n * batch) as f32);
    }

    #[test]
    fn seeded_splits_are_reproducible_and_independent() {
        let draw = |seed, split| CopyTask::new(30, seed, split).unwrap().sample(4).unwrap();
        assert_eq!(draw(1, Split::Train), draw(1, Split::Train));
        assert_ne!(draw(1, Split::Train), draw(1, Split::Valid));
        assert_ne!(draw(1, Split::Train), draw(2, Split::Train));
        // symbols are uniform over 1..=8: every category appears in a large sample
        let b = CopyTask::new(1, 5, Split::Test)
            .unwrap()
            .sample(200)
            .unwrap();
        let mut counts = [0usize; 10];
        for &s in &b.input[..10 * 200] {
            counts[s] += 1;
        }
        assert_eq!(counts[0] + counts[9], 0);
        assert!(
            counts[1..9].iter().all(|&c| (180..=320).contains(&c)),
            "{counts:?}"
        );
    }

    /// The baseline is what its strategy scores under the fused cross-entropy: blanks for
    /// T + 10 steps (probability → 1), then uniform over the eight categories.
    #[test]
    fn the_baseline_strategy_scores_the_baseline_loss() {
        use crate::model::{CrossEntropyConfig, cross_entropy_loss};
        let mut task = CopyTask::new(25, 4, Split::Valid).unwrap();
        let b = task.sample(3).unwrap();
        let n = b.shape[0];
        let mut z = vec![-60.0f64; n * 3 * 10];
        for t in 0..n {
            for s in 0..3 {
                let row = (t * 3 + s) * 10;
                if t < task.delay() + 10 {
                    z[row] = 60.0;
                } else {
                    z[row + 1..row + 9].fill(0.0);
                }
            }
        }
        let logits = Tensor::new(z, &[n, 3, 10]).unwrap();
        let config = CrossEntropyConfig {
            ignore_index: None,
            ..Default::default()
        };
        let (loss, _, _) = cross_entropy_loss(&logits, &b.target, &config).unwrap();
        assert!(
            (loss - task.baseline_loss()).abs() < 1e-12,
            "{loss} vs {}",
            task.baseline_loss()
        );
    }

    #[test]
    fn baseline_and_accuracy() {
        let task = CopyTask::new(100, 0, Split::Train).unwrap();
        assert!((task.baseline_loss() - 10.0 * 8f64.ln() / 120.0).abs() < 1e-15);
        let mut task = CopyTask::new(3, 0, Split::Train).unwrap();
        let b = task.sample(2).unwrap();
        let n = b.shape[0];
        // logits that put the target first everywhere except one recalled step of sequence 1
        let mut z = vec![0.0f64; n * 2 * 10];
        for (row, &y) in b.target.iter().enumerate() {
            z[row * 10 + y] = 1.0;
        }
        let wrong_row = (n - 1) * 2 + 1;
        z[wrong_row * 10 + (b.target[wrong_row] % 9) + 1] = 2.0;
        let logits = Tensor::new(z, &[n, 2, 10]).unwrap();
        let (symbols, sequences) = CopyTask::recall_accuracy(&logits, &b.target).unwrap();
        assert_eq!(symbols, 19.0 / 20.0);
        assert_eq!(sequences, 0.5);
        assert!(CopyTask::recall_accuracy(&logits, &b.target[1..]).is_err());
        let flat = Tensor::new(vec![0.0f64; n * 2], &[n, 2]).unwrap();
        assert!(matches!(
            CopyTask::recall_accuracy(&flat, &b.target),
            Err(Error::Shape { .. })
        ));
        assert!(CopyTask::new(0, 0, Split::Train).is_err());
        assert!(CopyTask::new(usize::MAX, 0, Split::Train).is_err());
        assert!(matches!(task.sample(0), Err(Error::Empty(_))));
        assert!(matches!(task.sample(usize::MAX), Err(Error::Config { .. })));
    }
}
