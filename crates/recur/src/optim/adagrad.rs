//! Adagrad, PyTorch's `torch.optim.Adagrad`
//! ([Duchi, Hazan & Singer 2011](https://jmlr.org/papers/v12/duchi11a.html)).
//!
//! With learning rate γ, learning-rate decay η, ε, weight decay λ, at step t = 1, 2, …:
//! ```text
//! (1) g = ∇ + λ θ                        (λ ≠ 0)
//! (2) γₜ = γ / (1 + (t − 1) η)
//! (3) s = s + g²                          (s starts at initial_accumulator_value)
//! (4) θ = θ − γₜ g / (√s + ε)
//! ```
//! in PyTorch's operation order.

use super::Optimizer;
use super::{check_len, check_lr, check_non_negative};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::kernel::scalar::Float;

/// Settings of [`Adagrad`]. The defaults are PyTorch's.
///
/// ```
/// use recur::optim::AdagradConfig;
/// let config = AdagradConfig { lr: 0.1, lr_decay: 1e-4, ..Default::default() };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdagradConfig {
    /// γ, default 1e-2
    pub lr: f64,
    /// η, default 0
    pub lr_decay: f64,
    /// λ (L2 penalty added to the gradient), default 0
    pub weight_decay: f64,
    /// The starting value of every element of s, default 0
    pub initial_accumulator_value: f64,
    /// ε, default 1e-10
    pub eps: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
        }
    }
}

impl AdagradConfig {
    /// Checks every setting as PyTorch does.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the first setting that is out of range.
    pub fn validate(&self) -> Result<()> {
        check_lr(self.lr)?;
        check_non_negative("lr_decay", self.lr_decay)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        check_non_negative("initial_accumulator_value", self.initial_accumulator_value)?;
        check_non_negative("eps", self.eps)
    }
}

/// Adagrad over one flat buffer of `len` parameters; its accumulator has the same layout.
#[derive(Clone, Debug)]
pub struct Adagrad<T> {
    config: AdagradConfig,
    step: u64,
    /// s
    sum: Vec<T>,
}

impl<T: Float> Adagrad<T> {
    /// An optimizer for a flat buffer of `len` parameters, s filled with
    /// `initial_accumulator_value`.
    ///
    /// # Errors
    /// [`crate::Error::Config`] when the configuration is invalid.
    pub fn new(config: AdagradConfig, len: usize) -> Result<Self> {
        config.validate()?;
        let s0 = T::from_f64(config.initial_accumulator_value).unwrap_or_else(T::nan);
        Ok(Self {
            config,
            step: 0,
            sum: vec![s0; len],
        })
    }

    /// The state buffer under PyTorch's state name, laid out as the parameters: `sum` (s).
    pub fn state_buffers(&self) -> Vec<(&'static str, &[T])> {
        vec![("sum", &self.sum[..])]
    }

    /// The state buffer of [`Adagrad::state_buffers`], writable.
    pub fn state_buffers_mut(&mut self) -> Vec<(&'static str, &mut [T])> {
        vec![("sum", &mut self.sum[..])]
    }
}

impl<T: Float> Adagrad<T> {
    /// One step of the rule above; what [`Optimizer::step`] runs.
    fn update(&mut self, params: &mut [T], grads: &[T]) -> Result<()> {
        let len = self.sum.len();
        check_len("params", len, params.len())?;
        check_len("grads", len, grads.len())?;
        self.step += 1;
        let c = &self.config;
        let cast = |v: f64| T::from_f64(v).unwrap_or_else(T::nan);
        // (2) γₜ, in f64 as PyTorch's Python floats
        let clr = cast(c.lr / (1.0 + (self.step - 1) as f64 * c.lr_decay));
        let (wd, eps) = (cast(c.weight_decay), cast(c.eps));
        for ((p, &grad), s) in params.iter_mut().zip(grads).zip(&mut self.sum) {
            // (1) g = ∇ + λθ
            let mut g = grad;
            if c.weight_decay != 0.0 {
                g += wd * *p;
            }
            // (3) s = s + g²
            *s += g * g;
            // (4) θ = θ − γₜ g / (√s + ε)
            *p += -clr * (g / (s.sqrt() + eps));
        }
        Ok(())
    }
}

optimizer_common!(
    Adagrad,
    AdagradConfig,
    r#"t: the number of steps taken (PyTorch's `state["step"]`)."#
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Hand-computed values against f64 arithmetic in a different order.
    const HAND_TOL: f64 = 1e-15;

    /// By hand, one parameter, γ = 0.1, η = 0.5, s₀ = 1, gradients 2 then 1:
    /// t = 1: s = 5, θ = 1 − 0.1·2/√5; t = 2: γ₂ = 0.1/1.5, s = 6, θ −= γ₂·1/√6.
    #[test]
    fn two_steps_by_hand() {
        let mut opt = Adagrad::new(
            AdagradConfig {
                lr: 0.1,
                lr_decay: 0.5,
                initial_accumulator_value: 1.0,
                eps: 0.0,
                ..Default::default()
            },
            1,
        )
        .unwrap();
        let mut p = [1.0f64];
        opt.step(&mut p, &[2.0]).unwrap();
        let want1 = 1.0 - 0.2 / 5f64.sqrt();
        assert!((p[0] - want1).abs() < HAND_TOL);
        opt.step(&mut p, &[1.0]).unwrap();
        let want2 = want1 - (0.1 / 1.5) / 6f64.sqrt();
        assert!((p[0] - want2).abs() < HAND_TOL);
        assert_eq!(opt.state_buffers()[0], ("sum", &[6.0][..]));
        assert_eq!(opt.step_count(), 2);
    }

    #[test]
    fn bad_settings_and_lengths_are_errors() {
        for config in [
            AdagradConfig {
                lr_decay: -1.0,
                ..Default::default()
            },
            AdagradConfig {
                initial_accumulator_value: -0.1,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                Adagrad::<f64>::new(config, 1),
                Err(Error::Config { .. })
            ));
        }
        let mut opt = Adagrad::<f64>::new(AdagradConfig::default(), 2).unwrap();
        assert!(matches!(
            opt.step(&mut [0.0; 2], &[0.0; 3]),
            Err(Error::Length { .. })
        ));
    }
}
