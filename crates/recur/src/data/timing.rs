//! A spike-timing task after Gers, Schraudolph & Schmidhuber (2002), "Learning precise timing
//! with LSTM recurrent networks": tell spike trains whose spikes are T steps apart from those
//! whose spikes are T − 1 apart (the paper's headline: 50 against 49, learnt by the LSTM with
//! peephole connections).
//!
//! This is recur's form of it, not a copy of the paper's "measuring spike delays" setup (whose
//! targets are given at each spike): one input channel, 1 at a spike and 0 elsewhere; each
//! sequence holds [`TimingTask::SPIKES`] = 3 spikes spaced by one interval D, the first at a
//! step s₀ drawn uniformly from 0 ..= T − 1, and ends on its last spike:
//! ```text
//! D = T (class 1) or T − 1 (class 0), each with probability 1/2
//! x_t = 1 at t = s₀, s₀ + D, s₀ + 2D;  0 elsewhere;  length L = s₀ + 2D + 1
//! ```
//! The model reads the whole train and emits two logits after the last spike. Since s₀ is
//! drawn over a whole interval, the length L says nothing about D except in the 2 of T
//! values at its ends: the spacing must be measured between spikes. Chance is 50%.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ClassBatch, Split};
use crate::error::{Error, Result, config_err};
use crate::kernel::scalar::Float;
use crate::tensor::Tensor;

/// A seeded, deterministic generator of spike trains spaced T or T − 1 apart.
///
/// ```
/// use recur::data::{Split, TimingTask};
/// let mut task = TimingTask::new(50, 3, Split::Train)?;
/// let b = task.sample::<f32>(2)?;
/// assert_eq!(b.input.shape()[1..], [2, 1]);
/// assert!(b.lengths.iter().all(|&l| (99..=150).contains(&l)));
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TimingTask {
    interval: usize,
    rng: ChaCha8Rng,
}

impl TimingTask {
    /// One input channel.
    pub const INPUT_SIZE: usize = 1;
    /// Spikes per sequence (two intervals).
    pub const SPIKES: usize = 3;
    /// Two classes: spaced T − 1 (0) or T (1).
    pub const CLASSES: usize = 2;

    /// Spikes spaced `interval` (T ≥ 2) or `interval − 1` apart, drawing from the stream of
    /// `split` of a ChaCha8 generator seeded with `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] when `interval` < 2 or its sequences' length overflows.
    pub fn new(interval: usize, seed: u64, split: Split) -> Result<Self> {
        if interval < 2 {
            return Err(config_err(
                "seq_len",
                format!("the timing task needs an interval T ≥ 2, got {interval}"),
            ));
        }
        if interval.checked_mul(Self::SPIKES).is_none() {
            return Err(config_err("seq_len", format!("{interval} overflows 3T")));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(split.stream());
        Ok(Self { interval, rng })
    }

    /// T, the longer interval.
    pub fn interval(&self) -> usize {
        self.interval
    }

    /// The next `batch` spike trains: input `[seq_len, batch, 1]` (zero past each end), the
    /// lengths and the classes (1: spaced T).
    ///
    /// # Errors
    /// [`Error::Empty`] when `batch` is 0; [`Error::Config`] when the batch's size overflows.
    pub fn sample<T: Float>(&mut self, batch: usize) -> Result<ClassBatch<T>> {
        if batch == 0 {
            return Err(Error::Empty("a timing batch of 0 sequences".into()));
        }
        let t = self.interval;
        let n = Self::SPIKES * t;
        n.checked_mul(batch)
            .ok_or_else(|| config_err("batch", format!("{batch} sequences of {n} overflow")))?;
        let draws: Vec<(usize, usize)> = (0..batch)
            .map(|_| {
                let class = usize::from(self.rng.random_bool(0.5));
                let s0 = self.rng.random_range(0..t);
                (class, s0)
            })
            .collect();
        let spacing = |class: usize| t - 1 + class;
        let lengths: Vec<usize> = draws
            .iter()
            .map(|&(c, s0)| s0 + (Self::SPIKES - 1) * spacing(c) + 1)
            .collect();
        let seq_len = lengths.iter().copied().max().unwrap_or(0);
        let mut x = vec![T::zero(); seq_len * batch];
        for (b, &(c, s0)) in draws.iter().enumerate() {
            for k in 0..Self::SPIKES {
                x[(s0 + k * spacing(c)) * batch + b] = T::one();
            }
        }
        Ok(ClassBatch {
            input: Tensor::new(x, &[seq_len, batch, 1])?,
            lengths,
            class: draws.iter().map(|&(c, _)| c).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle: find the spikes in the raw input and measure their spacing.
    #[test]
    fn the_class_is_the_measured_spacing() {
        for t in [2usize, 5, 50] {
            let mut g = TimingTask::new(t, 9, Split::Train).unwrap();
            let batch = 300;
            let b = g.sample::<f64>(batch).unwrap();
            let n = b.input.shape()[0];
            let mut counts = [0usize; 2];
            for s in 0..batch {
                let x: Vec<f64> = (0..n).map(|i| b.input.data()[i * batch + s]).collect();
                let spikes: Vec<usize> = (0..n).filter(|&i| x[i] == 1.0).collect();
                assert!(x.iter().all(|&v| v == 0.0 || v == 1.0));
                assert_eq!(spikes.len(), TimingTask::SPIKES);
                assert!(spikes[0] < t, "first spike within the first interval");
                assert_eq!(b.lengths[s], spikes[2] + 1, "the sequence ends on a spike");
                let gaps: Vec<usize> = spikes.windows(2).map(|w| w[1] - w[0]).collect();
                assert_eq!(gaps[0], gaps[1]);
                let class = if gaps[0] == t {
                    1
                } else {
                    assert_eq!(gaps[0], t - 1);
                    0
                };
                assert_eq!(b.class[s], class);
                counts[class] += 1;
            }
            assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
        }
    }

    #[test]
    fn seeded_and_checked() {
        let draw = |seed, split| {
            TimingTask::new(10, seed, split)
                .unwrap()
                .sample::<f32>(6)
                .unwrap()
        };
        assert_eq!(draw(4, Split::Test), draw(4, Split::Test));
        assert_ne!(draw(4, Split::Test), draw(4, Split::Train));
        assert_ne!(draw(4, Split::Test), draw(5, Split::Test));
        assert!(TimingTask::new(1, 0, Split::Train).is_err());
        assert!(TimingTask::new(usize::MAX / 2, 0, Split::Train).is_err());
        let mut g = TimingTask::new(10, 0, Split::Train).unwrap();
        assert!(matches!(g.sample::<f32>(0), Err(Error::Empty(_))));
        let mut g = TimingTask::new(usize::MAX / 4, 0, Split::Train).unwrap();
        assert!(matches!(
            g.sample::<f32>(1 << 40),
            Err(Error::Config { .. })
        ));
    }
}
