//! The temporal-order problem (Hochreiter & Schmidhuber 1997, "Long short-term memory",
//! §5.6, experiment 6a and 6b): classify a long sequence by the order in which two (or three)
//! widely separated symbols appeared.
//!
//! Eight symbols, one-hot: `a b c d` (distractors), `X Y` (the relevant ones), `E` (the first
//! step) and `B` (the last, the trigger). With minimal length T (the paper's T = 100) a
//! sequence has a length L drawn uniformly from T ..= T + ⌊T/10⌋ and the steps (counted from
//! 0, E at step 0):
//! ```text
//! two symbols (6a):    t₁ ∈ [T/10, T/5],  t₂ ∈ [T/2, T/2 + T/10]
//! three symbols (6b):  t₁ ∈ [T/10, T/5],  t₂ ∈ [T/3, T/3 + T/10],  t₃ ∈ [2T/3, 2T/3 + T/10]
//! step 0 = E, step L − 1 = B, steps tᵢ ∈ {X, Y}, every other step ∈ {a, b, c, d}
//! ```
//! (integer divisions; at T = 100 these are the paper's ranges 10–20, 50–60 and 10–20, 33–43,
//! 66–76). The class is the relevant symbols read as a binary number, X = 0 and Y = 1, the
//! first one most significant: the paper's X,X → Q, X,Y → R, Y,X → S, Y,Y → U are classes
//! 0…3 and its eight classes Q, R, S, U, V, A, B, C of 6b are 0…7. The paper's outputs are
//! sigmoids with a target only at the end, a sequence counting as correct when every output
//! is within 0.3 of its target; recur's model emits one logit per class after the last step
//! and a sequence counts as correct when the largest logit is its class.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ClassBatch, Split};
use crate::error::{Error, Result, config_err};
use crate::kernel::scalar::Float;
use crate::tensor::Tensor;

/// A seeded, deterministic generator of temporal-order batches.
///
/// ```
/// use recur::data::{Split, TemporalOrder};
/// let mut task = TemporalOrder::new(2, 100, 7, Split::Train)?;
/// assert_eq!(task.classes(), 4);
/// let batch = task.sample::<f32>(3)?;
/// assert!(batch.lengths.iter().all(|&l| (100..=110).contains(&l)));
/// assert_eq!(batch.input.shape()[1..], [3, TemporalOrder::INPUT_SIZE]);
/// assert!(batch.class.iter().all(|&c| c < 4));
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TemporalOrder {
    relevant: usize,
    min_len: usize,
    rng: ChaCha8Rng,
}

impl TemporalOrder {
    /// One-hot inputs: a, b, c, d, X, Y, E, B.
    pub const INPUT_SIZE: usize = 8;
    /// Index of X; Y is `X + 1`.
    pub const X: usize = 4;
    pub const Y: usize = 5;
    /// The first step's symbol.
    pub const E: usize = 6;
    /// The last step's symbol (the trigger).
    pub const B: usize = 7;
    /// The smallest T whose ranges keep every relevant step apart and inside the sequence.
    pub const MIN_SEQ_LEN: usize = 10;

    /// A generator with `relevant` (2 or 3) relevant symbols and minimal length `seq_len`
    /// (T), drawing from the stream of `split` of a ChaCha8 generator seeded with `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] when `relevant` is not 2 or 3, or `seq_len` < 10.
    pub fn new(relevant: usize, seq_len: usize, seed: u64, split: Split) -> Result<Self> {
        if !(2..=3).contains(&relevant) {
            return Err(config_err(
                "relevant",
                format!("the temporal-order problem has 2 or 3 relevant symbols, got {relevant}"),
            ));
        }
        if seq_len < Self::MIN_SEQ_LEN {
            return Err(config_err(
                "seq_len",
                format!(
                    "the temporal-order problem needs T ≥ {}, got {seq_len}",
                    Self::MIN_SEQ_LEN
                ),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(split.stream());
        Ok(Self {
            relevant,
            min_len: seq_len,
            rng,
        })
    }

    /// The number of classes, 2^relevant (4 or 8).
    pub fn classes(&self) -> usize {
        1 << self.relevant
    }

    /// The inclusive range of steps each relevant symbol is drawn from.
    pub fn windows(&self) -> Vec<(usize, usize)> {
        let t = self.min_len;
        let w = t / 10;
        let starts: Vec<usize> = if self.relevant == 2 {
            vec![t / 10, t / 2]
        } else {
            vec![t / 10, t / 3, 2 * t / 3]
        };
        starts
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, if i == 0 { t / 5 } else { s + w }))
            .collect()
    }

    /// The next `batch` sequences: the input `[seq_len, batch, 8]` (zero past each end), the
    /// lengths and the classes.
    ///
    /// # Errors
    /// [`Error::Empty`] when `batch` is 0.
    pub fn sample<T: Float>(&mut self, batch: usize) -> Result<ClassBatch<T>> {
        if batch == 0 {
            return Err(Error::Empty("a temporal-order batch of 0 sequences".into()));
        }
        let windows = self.windows();
        let seqs: Vec<(Vec<usize>, usize)> = (0..batch)
            .map(|_| {
                let len = self
                    .rng
                    .random_range(self.min_len..=self.min_len + self.min_len / 10);
                let mut s: Vec<usize> = (0..len).map(|_| self.rng.random_range(0..4)).collect();
                s[0] = Self::E;
                s[len - 1] = Self::B;
                let mut class = 0;
                for &(lo, hi) in &windows {
                    let at = self.rng.random_range(lo..=hi);
                    let y = usize::from(self.rng.random_bool(0.5));
                    s[at] = Self::X + y;
                    class = 2 * class + y;
                }
                (s, class)
            })
            .collect();
        let lengths: Vec<usize> = seqs.iter().map(|(s, _)| s.len()).collect();
        let n = lengths.iter().copied().max().unwrap_or(0);
        let mut x = vec![T::zero(); n * batch * Self::INPUT_SIZE];
        for (b, (s, _)) in seqs.iter().enumerate() {
            for (t, &sym) in s.iter().enumerate() {
                x[(t * batch + b) * Self::INPUT_SIZE + sym] = T::one();
            }
        }
        Ok(ClassBatch {
            input: Tensor::new(x, &[n, batch, Self::INPUT_SIZE])?,
            lengths,
            class: seqs.iter().map(|&(_, c)| c).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle: read each sequence's symbols back from the one-hot input, check the layout
    /// against the paper's ranges and recompute the class from the order of X and Y.
    #[test]
    fn classes_follow_the_order_of_the_relevant_symbols() {
        for (relevant, t) in [(2, 100), (3, 100), (2, 10), (3, 37)] {
            let mut g = TemporalOrder::new(relevant, t, 5, Split::Train).unwrap();
            let batch = 400;
            let b = g.sample::<f64>(batch).unwrap();
            let n = b.input.shape()[0];
            let ranges: Vec<(usize, usize)> = match (relevant, t) {
                (2, 100) => vec![(10, 20), (50, 60)],
                (3, 100) => vec![(10, 20), (33, 43), (66, 76)],
                _ => g.windows(),
            };
            let mut seen = vec![0usize; 1 << relevant];
            for s in 0..batch {
                let len = b.lengths[s];
                assert!((t..=t + t / 10).contains(&len));
                let sym = |step: usize| -> Option<usize> {
                    let row = &b.input.data()[(step * batch + s) * 8..(step * batch + s + 1) * 8];
                    let hot: Vec<usize> = (0..8).filter(|&k| row[k] == 1.0).collect();
                    assert!(row.iter().all(|&v| v == 0.0 || v == 1.0));
                    assert!(hot.len() <= 1);
                    hot.first().copied()
                };
                assert_eq!(sym(0), Some(TemporalOrder::E));
                assert_eq!(sym(len - 1), Some(TemporalOrder::B));
                let relevant_steps: Vec<usize> = (0..len)
                    .filter(|&i| matches!(sym(i), Some(4 | 5)))
                    .collect();
                assert_eq!(relevant_steps.len(), relevant);
                for (&at, &(lo, hi)) in relevant_steps.iter().zip(&ranges) {
                    assert!(
                        (lo..=hi).contains(&at),
                        "T={t}: step {at} outside {lo}..={hi}"
                    );
                }
                for i in 1..len - 1 {
                    if !relevant_steps.contains(&i) {
                        assert!(sym(i).is_some_and(|k| k < 4), "a distractor at step {i}");
                    }
                }
                for i in len..n {
                    assert_eq!(sym(i), None, "zero past the end");
                }
                let class = relevant_steps
                    .iter()
                    .fold(0, |c, &i| 2 * c + usize::from(sym(i) == Some(5)));
                assert_eq!(b.class[s], class);
                seen[class] += 1;
            }
            assert!(seen.iter().all(|&c| c > 0), "every class drawn: {seen:?}");
        }
    }

    #[test]
    fn seeded_and_checked() {
        let draw = |seed, split| {
            TemporalOrder::new(3, 50, seed, split)
                .unwrap()
                .sample::<f32>(4)
                .unwrap()
        };
        assert_eq!(draw(1, Split::Train), draw(1, Split::Train));
        assert_ne!(draw(1, Split::Train), draw(1, Split::Valid));
        assert_ne!(draw(1, Split::Train), draw(2, Split::Train));
        assert!(TemporalOrder::new(4, 100, 0, Split::Train).is_err());
        assert!(TemporalOrder::new(2, 9, 0, Split::Train).is_err());
        let mut g = TemporalOrder::new(2, 100, 0, Split::Train).unwrap();
        assert!(matches!(g.sample::<f32>(0), Err(Error::Empty(_))));
    }
}
