//! A noisy sum of two sines, for next-value prediction with an output at every step (the
//! generated task of `recur train --task sines`):
//! ```text
//! s_t = sin(2π t / P₁ + φ₁) + A₂ sin(2π t / P₂ + φ₂) + u_t,    t = 0 … L − 1
//! P₁ = 20, P₂ = 7, A₂ = 0.5;   φ₁, φ₂ uniform in [0, 2π) per sequence;   u_t uniform in ±NOISE
//! ```
//! A model reads s_0 … s_{t} (or, fed back, its own predictions of them) and predicts s_{t+1}.
//! One value does not fix the phase of the sum, so the series can be continued only from a
//! memory of several past values: what a hidden-to-hidden recurrence keeps and an
//! output-to-hidden one does not.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Split;
use crate::error::{Error, Result, config_err};

/// A batch of noisy sine sums.
#[derive(Clone, Debug, PartialEq)]
pub struct SinesBatch {
    /// `[len, batch]` row-major: s_t of sequence b at `t * batch + b`.
    pub values: Vec<f64>,
    /// (φ₁, φ₂) of each sequence.
    pub phases: Vec<(f64, f64)>,
}

/// A seeded generator of noisy sine sums of a fixed length.
///
/// ```
/// use recur::data::{NoisySines, Split};
/// let mut g = NoisySines::new(40, 3, Split::Train)?;
/// let b = g.sample(2)?;
/// assert_eq!(b.values.len(), 40 * 2);
/// assert!(b.values.iter().all(|v| v.abs() <= 1.5 + NoisySines::NOISE));
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct NoisySines {
    len: usize,
    rng: ChaCha8Rng,
}

impl NoisySines {
    /// P₁, the longer period, in steps.
    pub const PERIOD_1: f64 = 20.0;
    /// P₂, the shorter period, in steps.
    pub const PERIOD_2: f64 = 7.0;
    /// A₂, the second sine's amplitude.
    pub const AMPLITUDE_2: f64 = 0.5;
    /// The bound of the uniform noise added to each value.
    pub const NOISE: f64 = 0.05;
    /// The longest sequence accepted.
    pub const MAX_LEN: usize = 1 << 20;

    /// Sequences of `len` values (at least 2), drawn from the stream of `split` of a ChaCha8
    /// generator seeded with `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] for `len` below 2 or above [`NoisySines::MAX_LEN`].
    pub fn new(len: usize, seed: u64, split: Split) -> Result<Self> {
        if !(2..=Self::MAX_LEN).contains(&len) {
            return Err(config_err(
                "seq_len",
                format!(
                    "noisy sines need 2 ..= {} values a sequence, got {len}",
                    Self::MAX_LEN
                ),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(split.stream());
        Ok(Self { len, rng })
    }

    /// Values per sequence.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the sequences are empty (never: at least 2 values).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The noiseless sum at step `t` for phases (φ₁, φ₂).
    pub fn clean(t: usize, phases: (f64, f64)) -> f64 {
        let tau = std::f64::consts::TAU;
        let t = t as f64;
        (tau * t / Self::PERIOD_1 + phases.0).sin()
            + Self::AMPLITUDE_2 * (tau * t / Self::PERIOD_2 + phases.1).sin()
    }

    /// The next `batch` sequences: for each its phases, then its noise, step by step.
    ///
    /// # Errors
    /// [`Error::Empty`] for a batch of 0; [`Error::Config`] when its size overflows.
    pub fn sample(&mut self, batch: usize) -> Result<SinesBatch> {
        if batch == 0 {
            return Err(Error::Empty("a batch of 0 noisy sine sums".into()));
        }
        let n = self
            .len
            .checked_mul(batch)
            .filter(|&n| n <= Self::MAX_LEN * 64)
            .ok_or_else(|| {
                config_err(
                    "batch",
                    format!("{batch} sequences of {} values are too many", self.len),
                )
            })?;
        let tau = std::f64::consts::TAU;
        let mut values = vec![0.0; n];
        let mut phases = Vec::with_capacity(batch);
        for b in 0..batch {
            let p = (
                self.rng.random_range(0.0..tau),
                self.rng.random_range(0.0..tau),
            );
            phases.push(p);
            for t in 0..self.len {
                let u = self.rng.random_range(-Self::NOISE..=Self::NOISE);
                values[t * batch + b] = Self::clean(t, p) + u;
            }
        }
        Ok(SinesBatch { values, phases })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle: each value is the formula's at the drawn phases, within the noise bound,
    /// and the noise is spread over the bound (not all zero, centred).
    #[test]
    fn values_are_the_formula_plus_bounded_noise() {
        let (len, batch) = (60, 50);
        let b = NoisySines::new(len, 9, Split::Train)
            .unwrap()
            .sample(batch)
            .unwrap();
        let mut noise = Vec::new();
        for (j, &p) in b.phases.iter().enumerate() {
            assert!((0.0..std::f64::consts::TAU).contains(&p.0));
            assert!((0.0..std::f64::consts::TAU).contains(&p.1));
            for t in 0..len {
                let d = b.values[t * batch + j] - NoisySines::clean(t, p);
                assert!(d.abs() <= NoisySines::NOISE + 1e-12, "t {t} b {j}: {d}");
                noise.push(d);
            }
        }
        let n = noise.len() as f64;
        let mean = noise.iter().sum::<f64>() / n;
        let var = noise.iter().map(|d| d * d).sum::<f64>() / n;
        // uniform in ±a: mean 0, variance a²/3; 3000 draws put both well within these
        assert!(mean.abs() < 0.005, "{mean}");
        let want = NoisySines::NOISE * NoisySines::NOISE / 3.0;
        assert!((var / want - 1.0).abs() < 0.1, "{var} vs {want}");
    }

    /// The formula itself at hand-computed points.
    #[test]
    fn clean_values() {
        assert!((NoisySines::clean(0, (0.0, 0.0))).abs() < 1e-15);
        // t = 5: a quarter of P₁ (sin = 1); 2π·5/7 + 0 for the second
        let want = 1.0 + 0.5 * (std::f64::consts::TAU * 5.0 / 7.0).sin();
        assert!((NoisySines::clean(5, (0.0, 0.0)) - want).abs() < 1e-12);
        let half_pi = std::f64::consts::FRAC_PI_2;
        assert!((NoisySines::clean(0, (half_pi, 0.0)) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn seeds_and_splits() {
        let draw = |seed, split| NoisySines::new(10, seed, split).unwrap().sample(3).unwrap();
        assert_eq!(draw(1, Split::Train), draw(1, Split::Train));
        assert_ne!(draw(1, Split::Train), draw(2, Split::Train));
        assert_ne!(draw(1, Split::Train), draw(1, Split::Test));
        assert!(NoisySines::new(1, 0, Split::Train).is_err());
        assert!(
            NoisySines::new(5, 0, Split::Train)
                .unwrap()
                .sample(0)
                .is_err()
        );
    }
}
