//! RMSprop, PyTorch's `torch.optim.RMSprop` (Hinton's lecture 6e; the centered form is
//! [Graves 2013](https://arxiv.org/abs/1308.0850), eq. 38–45).
//!
//! With learning rate γ, smoothing α, ε, weight decay λ, momentum μ, at every step:
//! ```text
//! (1) g = ∇ + λ θ                        (λ ≠ 0)
//! (2) v = α v + (1 − α) g²
//! (3) ḡ = ḡ + (1 − α)(g − ḡ)             (Centered::Enabled, as torch's lerp_)
//! (4) d = √(v − ḡ²) + ε                   (centered)
//!     d = √v + ε                          (otherwise)
//! (5) b = μ b + g / d,  θ = θ − γ b       (μ > 0)
//!     θ = θ − γ g / d                     (μ = 0)
//! ```
//! in PyTorch's operation order; v, ḡ and b start at zero (unlike SGD's momentum, which
//! starts as a copy of the first gradient).

use super::Optimizer;
use super::{check_len, check_lr, check_non_negative, lerp};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::kernel::scalar::Float;

/// Whether the second moment is centered by the running mean of the gradient (PyTorch
/// `centered`), normalising by an estimate of its variance instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Centered {
    #[default]
    Disabled,
    Enabled,
}

/// Settings of [`Rmsprop`]. The defaults are PyTorch's.
///
/// ```
/// use recur::optim::{Centered, RmspropConfig};
/// let config = RmspropConfig { lr: 1e-3, momentum: 0.9, centered: Centered::Enabled, ..Default::default() };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RmspropConfig {
    /// γ, default 1e-2
    pub lr: f64,
    /// α, default 0.99
    pub alpha: f64,
    /// ε, default 1e-8
    pub eps: f64,
    /// λ (L2 penalty added to the gradient), default 0
    pub weight_decay: f64,
    /// μ, default 0
    pub momentum: f64,
    pub centered: Centered,
}

impl Default for RmspropConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: Centered::Disabled,
        }
    }
}

impl RmspropConfig {
    /// Checks every setting as PyTorch does.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the first setting that is out of range.
    pub fn validate(&self) -> Result<()> {
        check_lr(self.lr)?;
        check_non_negative("alpha", self.alpha)?;
        check_non_negative("eps", self.eps)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        check_non_negative("momentum", self.momentum)
    }
}

/// RMSprop over one flat buffer of `len` parameters; its state has the same layout.
#[derive(Clone, Debug)]
pub struct Rmsprop<T> {
    config: RmspropConfig,
    step: u64,
    /// v
    square_avg: Vec<T>,
    /// ḡ, empty unless centered
    grad_avg: Vec<T>,
    /// b, empty without momentum
    momentum_buffer: Vec<T>,
}

impl<T: Float> Rmsprop<T> {
    /// An optimizer for a flat buffer of `len` parameters, its state zero.
    ///
    /// # Errors
    /// [`crate::Error::Config`] when the configuration is invalid.
    pub fn new(config: RmspropConfig, len: usize) -> Result<Self> {
        config.validate()?;
        let centered_len = if config.centered == Centered::Enabled {
            len
        } else {
            0
        };
        let momentum_len = if config.momentum > 0.0 { len } else { 0 };
        Ok(Self {
            config,
            step: 0,
            square_avg: vec![T::zero(); len],
            grad_avg: vec![T::zero(); centered_len],
            momentum_buffer: vec![T::zero(); momentum_len],
        })
    }

    /// The state buffers under PyTorch's state names, each laid out as the parameters:
    /// `square_avg` (v), `grad_avg` (ḡ, when centered), `momentum_buffer` (b, with momentum).
    pub fn state_buffers(&self) -> Vec<(&'static str, &[T])> {
        [
            ("square_avg", &self.square_avg[..]),
            ("grad_avg", &self.grad_avg[..]),
            ("momentum_buffer", &self.momentum_buffer[..]),
        ]
        .into_iter()
        .filter(|(name, b)| *name == "square_avg" || !b.is_empty())
        .collect()
    }

    /// The state buffers of [`Rmsprop::state_buffers`], writable.
    pub fn state_buffers_mut(&mut self) -> Vec<(&'static str, &mut [T])> {
        [
            ("square_avg", &mut self.square_avg[..]),
            ("grad_avg", &mut self.grad_avg[..]),
            ("momentum_buffer", &mut self.momentum_buffer[..]),
        ]
        .into_iter()
        .filter(|(name, b)| *name == "square_avg" || !b.is_empty())
        .collect()
    }
}

impl<T: Float> Rmsprop<T> {
    /// One step of the rule above; what [`Optimizer::step`] runs.
    fn update(&mut self, params: &mut [T], grads: &[T]) -> Result<()> {
        let len = self.square_avg.len();
        check_len("params", len, params.len())?;
        check_len("grads", len, grads.len())?;
        self.step += 1;
        let c = &self.config;
        let cast = |v: f64| T::from_f64(v).unwrap_or_else(T::nan);
        let (lr, alpha, w, eps) = (cast(c.lr), cast(c.alpha), cast(1.0 - c.alpha), cast(c.eps));
        let (wd, mu) = (cast(c.weight_decay), cast(c.momentum));
        let centered = c.centered == Centered::Enabled;
        for k in 0..len {
            let p = &mut params[k];
            // (1) g = ∇ + λθ
            let mut g = grads[k];
            if c.weight_decay != 0.0 {
                g += wd * *p;
            }
            // (2) v = αv + (1 − α)g²
            let v = &mut self.square_avg[k];
            *v = *v * alpha + w * g * g;
            // (3)–(4) d = √(v − ḡ²) + ε, or √v + ε
            let d = if centered {
                let ga = &mut self.grad_avg[k];
                *ga = lerp(*ga, g, w);
                (*v + -(*ga) * *ga).sqrt() + eps
            } else {
                v.sqrt() + eps
            };
            // (5) b = μb + g/d, θ = θ − γb; or θ = θ − γ g/d
            if c.momentum > 0.0 {
                let b = &mut self.momentum_buffer[k];
                *b = *b * mu + g / d;
                *p += -lr * *b;
            } else {
                *p += -lr * (g / d);
            }
        }
        Ok(())
    }
}

optimizer_common!(
    Rmsprop,
    RmspropConfig,
    r#"The number of steps taken (PyTorch's `state["step"]`; the update does not use it)."#
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Hand-computed values against f64 arithmetic in a different order.
    const HAND_TOL: f64 = 1e-15;

    /// Step 1 by hand: v = 0.01 g², so θ moves by γ g / (0.1|g| + ε) ≈ 10 γ sign(g);
    /// centered: ḡ = 0.01 g, v − ḡ² = 0.0099 g².
    #[test]
    fn first_step_by_hand() {
        for (centered, k) in [(Centered::Disabled, 0.01f64), (Centered::Enabled, 0.0099)] {
            let mut p = [1.0f64, -2.0];
            let g = [0.5, -4.0];
            let mut opt = Rmsprop::new(
                RmspropConfig {
                    centered,
                    ..Default::default()
                },
                2,
            )
            .unwrap();
            opt.step(&mut p, &g).unwrap();
            for (j, p0) in [1.0, -2.0].into_iter().enumerate() {
                let want = p0 - 0.01 * g[j] / (k.sqrt() * g[j].abs() + 1e-8);
                assert!(
                    (p[j] - want).abs() < HAND_TOL,
                    "{centered:?} {j}: {} vs {want}",
                    p[j]
                );
            }
        }
    }

    #[test]
    fn state_buffers_follow_options() {
        let names = |config: RmspropConfig| -> Vec<&'static str> {
            let opt = Rmsprop::<f32>::new(config, 4).unwrap();
            opt.state_buffers().iter().map(|b| b.0).collect()
        };
        assert_eq!(names(RmspropConfig::default()), ["square_avg"]);
        assert_eq!(
            names(RmspropConfig {
                momentum: 0.9,
                centered: Centered::Enabled,
                ..Default::default()
            }),
            ["square_avg", "grad_avg", "momentum_buffer"]
        );
    }

    #[test]
    fn bad_settings_and_lengths_are_errors() {
        for config in [
            RmspropConfig {
                lr: f64::INFINITY,
                ..Default::default()
            },
            RmspropConfig {
                alpha: -0.1,
                ..Default::default()
            },
            RmspropConfig {
                momentum: -0.9,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                Rmsprop::<f64>::new(config, 1),
                Err(Error::Config { .. })
            ));
        }
        let mut opt = Rmsprop::<f64>::new(RmspropConfig::default(), 2).unwrap();
        assert!(matches!(
            opt.step(&mut [0.0; 1], &[0.0; 2]),
            Err(Error::Length { .. })
        ));
        opt.set_lr(0.1).unwrap();
        assert_eq!(opt.lr(), 0.1);
    }
}
