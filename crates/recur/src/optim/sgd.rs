//! Stochastic gradient descent with momentum, PyTorch's `torch.optim.SGD`.
//!
//! With learning rate γ, momentum μ, dampening τ, weight decay λ, at step t:
//! ```text
//! (1) g = ∇ + λ θ                         (λ ≠ 0)
//! (2) b = g                               (t = 1)
//!     b = μ b + (1 − τ) g                 (t > 1)      (μ ≠ 0)
//! (3) g = g + μ b                         (Nesterov)
//!     g = b                               (otherwise)  (μ ≠ 0)
//! (4) θ = θ − γ g
//! ```
//! exactly as PyTorch writes it (its momentum buffer starts as a copy of the first gradient,
//! not as zero, and ignores τ on that first step).

use super::{Optimizer, check_len, check_lr, check_non_negative};
use serde::{Deserialize, Serialize};

use crate::error::{Result, config_err};
use crate::kernel::scalar::Float;

/// Whether the momentum is Nesterov's (PyTorch `nesterov`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nesterov {
    #[default]
    Disabled,
    Enabled,
}

/// Settings of [`Sgd`]. The defaults are PyTorch's, except that PyTorch has no default
/// learning rate (here 0.01, its historic one).
///
/// ```
/// use recur::optim::{Nesterov, SgdConfig};
/// let config = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: Nesterov::Enabled, ..Default::default() };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgdConfig {
    /// γ
    pub lr: f64,
    /// μ, default 0
    pub momentum: f64,
    /// τ, default 0
    pub dampening: f64,
    /// λ (L2 penalty added to the gradient), default 0
    pub weight_decay: f64,
    pub nesterov: Nesterov,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: Nesterov::Disabled,
        }
    }
}

impl SgdConfig {
    /// Checks every setting as PyTorch does.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the first setting that is out of range, or Nesterov momentum
    /// without momentum or with dampening.
    pub fn validate(&self) -> Result<()> {
        check_lr(self.lr)?;
        check_non_negative("momentum", self.momentum)?;
        check_non_negative("dampening", self.dampening)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        if self.nesterov == Nesterov::Enabled && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(config_err("nesterov", "needs momentum > 0 and dampening 0"));
        }
        Ok(())
    }
}

/// SGD over one flat buffer of `len` parameters; its momentum buffer has the same layout.
#[derive(Clone, Debug)]
pub struct Sgd<T> {
    config: SgdConfig,
    len: usize,
    step: u64,
    /// b, empty until the first step with momentum
    momentum_buffer: Vec<T>,
}

impl<T: Float> Sgd<T> {
    /// An optimizer for a flat buffer of `len` parameters.
    ///
    /// # Errors
    /// [`crate::Error::Config`] when the configuration is invalid.
    pub fn new(config: SgdConfig, len: usize) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            len,
            step: 0,
            momentum_buffer: Vec::new(),
        })
    }

    /// The momentum buffer b, once a step with momentum has made it.
    pub fn momentum_buffer(&self) -> Option<&[T]> {
        (!self.momentum_buffer.is_empty()).then_some(&self.momentum_buffer[..])
    }

    /// The state buffers under PyTorch's state names: `momentum_buffer` (b) once a step with
    /// momentum has made it, else none.
    pub fn state_buffers(&self) -> Vec<(&'static str, &[T])> {
        self.momentum_buffer()
            .map(|b| vec![("momentum_buffer", b)])
            .unwrap_or_default()
    }

    /// Restores b (`None`: no step with momentum has been taken yet, so the next step starts
    /// it from the gradient, as PyTorch does).
    ///
    /// # Errors
    /// [`crate::Error::Length`] for a buffer of the wrong length; [`crate::Error::Config`]
    /// for a buffer given to SGD without momentum.
    pub fn set_momentum_buffer(&mut self, buffer: Option<Vec<T>>) -> Result<()> {
        if let Some(b) = &buffer {
            self.check_len("momentum_buffer", b.len())?;
            if self.config.momentum == 0.0 {
                return Err(config_err(
                    "momentum_buffer",
                    "SGD without momentum keeps no momentum buffer",
                ));
            }
        }
        self.momentum_buffer = buffer.unwrap_or_default();
        Ok(())
    }

    fn check_len(&self, what: &str, len: usize) -> Result<()> {
        check_len(what, self.len, len)
    }
}

impl<T: Float> Sgd<T> {
    /// One step of the rule above; what [`Optimizer::step`] runs.
    fn update(&mut self, params: &mut [T], grads: &[T]) -> Result<()> {
        self.check_len("params", params.len())?;
        self.check_len("grads", grads.len())?;
        let c = &self.config;
        let cast = |v: f64| T::from_f64(v).unwrap_or_else(T::zero);
        let (lr, mu, wd) = (cast(c.lr), cast(c.momentum), cast(c.weight_decay));
        let keep = cast(1.0 - c.dampening);
        let nesterov = c.nesterov == Nesterov::Enabled;
        let first = self.momentum_buffer.is_empty();
        self.step += 1;
        if c.momentum != 0.0 && first {
            self.momentum_buffer = vec![T::zero(); self.len];
        }
        for (k, (p, &grad)) in params.iter_mut().zip(grads).enumerate() {
            // (1) g = ∇ + λ θ
            let mut g = grad;
            if c.weight_decay != 0.0 {
                g += wd * *p;
            }
            if c.momentum != 0.0 {
                // (2) b = g (first step), b = μ b + (1 − τ) g
                let b = &mut self.momentum_buffer[k];
                *b = if first { g } else { mu * *b + keep * g };
                // (3) g = g + μ b (Nesterov), g = b
                g = if nesterov { g + mu * *b } else { *b };
            }
            // (4) θ = θ − γ g
            *p -= lr * g;
        }
        Ok(())
    }
}

optimizer_common!(
    Sgd,
    SgdConfig,
    r#"The number of steps taken (PyTorch's SGD keeps no count; recur keeps one so that every optimizer reports it alike)."#
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Both sides compute in f64 with the same operation order; only the rounding of the
    /// constants (0.1, 0.9, …) may differ in the last bit.
    const STEP_TOL: f64 = 1e-14;

    const GRADS: [[f64; 3]; 3] = [[0.1, -0.3, 0.2], [0.4, 0.0, -0.5], [-0.2, 0.1, 0.3]];

    fn run(config: SgdConfig) -> Vec<[f64; 3]> {
        let mut p = [1.0, -2.0, 0.5];
        let mut opt = Sgd::new(config, 3).unwrap();
        GRADS
            .iter()
            .map(|g| {
                opt.step(&mut p, g).unwrap();
                p
            })
            .collect()
    }

    fn assert_close(got: &[[f64; 3]], want: &[[f64; 3]]) {
        for (t, (g, w)) in got.iter().zip(want).enumerate() {
            for k in 0..3 {
                assert!(
                    (g[k] - w[k]).abs() < STEP_TOL,
                    "step {} param {k}: {} vs {}",
                    t + 1,
                    g[k],
                    w[k]
                );
            }
        }
    }

    /// θ after each of three steps, from
    /// ```python
    /// p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    /// opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)          # (nesterov=True, …)
    /// for g in GRADS: p.grad = torch.tensor(g, dtype=torch.float64); opt.step()
    /// ```
    /// By hand for θ₀ (classical): b = 0.1, θ = 1 − 0.01 = 0.99; b = 0.9·0.1 + 0.4 = 0.49,
    /// θ = 0.99 − 0.049 = 0.941; b = 0.9·0.49 − 0.2 = 0.241, θ = 0.941 − 0.0241 = 0.9169.
    #[test]
    fn momentum_matches_pytorch() {
        let got = run(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        });
        assert_close(
            &got,
            &[
                [0.99, -1.97, 0.48],
                [0.941, -1.943, 0.512],
                [0.9169, -1.9287, 0.5108],
            ],
        );
    }

    /// By hand for θ₀ (Nesterov): b = 0.1, g = 0.1 + 0.09 = 0.19, θ = 0.981; b = 0.49,
    /// g = 0.4 + 0.441 = 0.841, θ = 0.8969; b = 0.241, g = −0.2 + 0.2169 = 0.0169,
    /// θ = 0.89521.
    #[test]
    fn nesterov_matches_pytorch() {
        let got = run(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: Nesterov::Enabled,
            ..Default::default()
        });
        assert_close(
            &got,
            &[
                [0.981, -1.943, 0.462],
                [0.8969, -1.9187, 0.5408],
                [0.89521, -1.91583, 0.50972],
            ],
        );
    }

    /// PyTorch with `weight_decay=0.01`: by hand for θ₀ (classical), g = 0.1 + 0.01 = 0.11,
    /// θ = 1 − 0.011 = 0.989.
    #[test]
    fn weight_decay_matches_pytorch() {
        let got = run(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
            ..Default::default()
        });
        assert_close(
            &got,
            &[
                [0.989, -1.968, 0.4795],
                [0.938111, -1.937232, 0.5105705],
                [0.911372789, -1.917603568, 0.5080233795],
            ],
        );
        let got = run(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov: Nesterov::Enabled,
            ..Default::default()
        });
        assert_close(
            &got,
            &[
                [0.9791, -1.9392, 0.46105],
                [0.89232971, -1.90959552, 0.538569005],
                [0.887422212551, -1.900068536512, 0.5057277733905],
            ],
        );
    }

    /// Plain SGD and dampened momentum (PyTorch ignores the dampening on the first step).
    #[test]
    fn plain_and_dampened_match_pytorch() {
        let got = run(SgdConfig {
            lr: 0.1,
            ..Default::default()
        });
        assert_close(
            &got,
            &[[0.99, -1.97, 0.48], [0.95, -1.97, 0.53], [0.97, -1.98, 0.5]],
        );
        let got = run(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.5,
            ..Default::default()
        });
        assert_close(
            &got,
            &[
                [0.99, -1.97, 0.48],
                [0.961, -1.943, 0.487],
                [0.9449, -1.9237, 0.4783],
            ],
        );
    }

    #[test]
    fn bad_settings_and_lengths_are_errors() {
        for config in [
            SgdConfig {
                lr: -1.0,
                ..Default::default()
            },
            SgdConfig {
                lr: f64::NAN,
                ..Default::default()
            },
            SgdConfig {
                momentum: -0.5,
                ..Default::default()
            },
            SgdConfig {
                nesterov: Nesterov::Enabled,
                ..Default::default()
            },
            SgdConfig {
                momentum: 0.9,
                dampening: 0.1,
                nesterov: Nesterov::Enabled,
                ..Default::default()
            },
        ] {
            assert!(
                matches!(
                    Sgd::<f32>::new(config.clone(), 1),
                    Err(Error::Config { .. })
                ),
                "{config:?}"
            );
        }
        let mut opt = Sgd::<f32>::new(SgdConfig::default(), 3).unwrap();
        let e = opt.step(&mut [0.0; 2], &[0.0; 3]).unwrap_err();
        assert_eq!(e.to_string(), "params: 2 values do not fill shape [3]");
        assert!(opt.set_lr(f64::INFINITY).is_err());
        opt.set_lr(0.5).unwrap();
        assert_eq!(opt.lr(), 0.5);
    }
}
