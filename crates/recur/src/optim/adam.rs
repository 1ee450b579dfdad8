//! Adam and AdamW, PyTorch's `torch.optim.Adam` and `torch.optim.AdamW`
//! ([Kingma & Ba 2015](https://arxiv.org/abs/1412.6980),
//! [Loshchilov & Hutter 2019](https://arxiv.org/abs/1711.05101)).
//!
//! With learning rate γ, betas (β₁, β₂), ε, weight decay λ, at step t = 1, 2, …:
//! ```text
//! (1) g = ∇ + λ θ                          (WeightDecay::L2, Adam; λ ≠ 0)
//!     θ = θ (1 − γ λ)                      (WeightDecay::Decoupled, AdamW; λ ≠ 0)
//! (2) m = m + (1 − β₁)(g − m)              (m = β₁ m + (1 − β₁) g, as torch's lerp_)
//! (3) v = β₂ v + (1 − β₂) g²
//! (4) v̂ = max(v̂, v)                        (AmsGrad::Enabled; v̂ starts at 0)
//! (5) d = √v / √(1 − β₂ᵗ) + ε              (√v̂ with AMSGrad)
//! (6) θ = θ − (γ / (1 − β₁ᵗ)) · (m / d)
//! ```
//! in PyTorch's operation order (its single-tensor CPU path), so f64 results agree to the
//! last bits; m, v, v̂ start at zero.

use super::{Optimizer, check_len, check_lr, check_non_negative, lerp};
use serde::{Deserialize, Serialize};

use crate::error::{Result, config_err};
use crate::kernel::scalar::Float;

/// Whether the second moment is AMSGrad's running maximum (PyTorch `amsgrad`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmsGrad {
    #[default]
    Disabled,
    Enabled,
}

/// How the weight decay λ acts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightDecay {
    /// An L2 penalty added to the gradient, (1) `g = ∇ + λθ` (`torch.optim.Adam`).
    #[default]
    L2,
    /// Decoupled from the gradient, (1) `θ = θ(1 − γλ)` (`torch.optim.AdamW`).
    Decoupled,
}

/// Settings of [`Adam`]. `Default` gives `torch.optim.Adam`'s defaults, [`AdamConfig::adamw`]
/// `torch.optim.AdamW`'s.
///
/// ```
/// use recur::optim::{AdamConfig, AmsGrad};
/// let adam = AdamConfig { lr: 3e-4, amsgrad: AmsGrad::Enabled, ..Default::default() };
/// let adamw = AdamConfig { lr: 3e-4, ..AdamConfig::adamw() };
/// assert!(adam.validate().is_ok() && adamw.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    /// γ, default 1e-3
    pub lr: f64,
    /// (β₁, β₂), default (0.9, 0.999)
    pub betas: (f64, f64),
    /// ε, default 1e-8
    pub eps: f64,
    /// λ, default 0 (Adam) or 1e-2 (AdamW)
    pub weight_decay: f64,
    /// default L2 (Adam) or Decoupled (AdamW)
    pub weight_decay_kind: WeightDecay,
    pub amsgrad: AmsGrad,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            weight_decay_kind: WeightDecay::L2,
            amsgrad: AmsGrad::Disabled,
        }
    }
}

impl AdamConfig {
    /// `torch.optim.AdamW`'s defaults: Adam's, with decoupled weight decay λ = 1e-2.
    pub fn adamw() -> Self {
        Self {
            weight_decay: 1e-2,
            weight_decay_kind: WeightDecay::Decoupled,
            ..Self::default()
        }
    }

    /// Checks every setting as PyTorch does.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the first setting that is out of range.
    pub fn validate(&self) -> Result<()> {
        check_lr(self.lr)?;
        check_non_negative("eps", self.eps)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        for (what, b) in [("betas.0", self.betas.0), ("betas.1", self.betas.1)] {
            if !(0.0..1.0).contains(&b) {
                return Err(config_err(what, format!("must be in [0, 1), got {b}")));
            }
        }
        Ok(())
    }
}

/// Adam (or AdamW) over one flat buffer of `len` parameters; its moments have the same
/// layout.
#[derive(Clone, Debug)]
pub struct Adam<T> {
    config: AdamConfig,
    step: u64,
    /// m
    exp_avg: Vec<T>,
    /// v
    exp_avg_sq: Vec<T>,
    /// v̂, empty without AMSGrad
    max_exp_avg_sq: Vec<T>,
}

impl<T: Float> Adam<T> {
    /// An optimizer for a flat buffer of `len` parameters, its moments zero.
    ///
    /// # Errors
    /// [`crate::Error::Config`] when the configuration is invalid.
    pub fn new(config: AdamConfig, len: usize) -> Result<Self> {
        config.validate()?;
        let amsgrad_len = match config.amsgrad {
            AmsGrad::Enabled => len,
            AmsGrad::Disabled => 0,
        };
        Ok(Self {
            config,
            step: 0,
            exp_avg: vec![T::zero(); len],
            exp_avg_sq: vec![T::zero(); len],
            max_exp_avg_sq: vec![T::zero(); amsgrad_len],
        })
    }

    /// The state buffers under PyTorch's state names, each laid out as the parameters:
    /// `exp_avg` (m), `exp_avg_sq` (v) and, with AMSGrad, `max_exp_avg_sq` (v̂).
    pub fn state_buffers(&self) -> Vec<(&'static str, &[T])> {
        let mut v = vec![
            ("exp_avg", &self.exp_avg[..]),
            ("exp_avg_sq", &self.exp_avg_sq[..]),
        ];
        if self.config.amsgrad == AmsGrad::Enabled {
            v.push(("max_exp_avg_sq", &self.max_exp_avg_sq[..]));
        }
        v
    }

    /// The state buffers of [`Adam::state_buffers`], writable.
    pub fn state_buffers_mut(&mut self) -> Vec<(&'static str, &mut [T])> {
        let mut v = vec![
            ("exp_avg", &mut self.exp_avg[..]),
            ("exp_avg_sq", &mut self.exp_avg_sq[..]),
        ];
        if self.config.amsgrad == AmsGrad::Enabled {
            v.push(("max_exp_avg_sq", &mut self.max_exp_avg_sq[..]));
        }
        v
    }
}

impl<T: Float> Adam<T> {
    /// One step of the rule above; what [`Optimizer::step`] runs.
    fn update(&mut self, params: &mut [T], grads: &[T]) -> Result<()> {
        let len = self.exp_avg.len();
        check_len("params", len, params.len())?;
        check_len("grads", len, grads.len())?;
        self.step += 1;
        let c = &self.config;
        let (beta1, beta2) = c.betas;
        let t = self.step as f64;
        // The scalars in f64, as PyTorch computes them in Python floats.
        let bias_correction1 = 1.0 - beta1.powf(t);
        let bias_correction2_sqrt = (1.0 - beta2.powf(t)).sqrt();
        let cast = |v: f64| T::from_f64(v).unwrap_or_else(T::nan);
        let step_size = cast(c.lr / bias_correction1);
        let bc2_sqrt = cast(bias_correction2_sqrt);
        let (w1, beta2_t, w2) = (cast(1.0 - beta1), cast(beta2), cast(1.0 - beta2));
        let (eps, wd) = (cast(c.eps), cast(c.weight_decay));
        let decay = cast(1.0 - c.lr * c.weight_decay);
        let amsgrad = c.amsgrad == AmsGrad::Enabled;
        for k in 0..len {
            let p = &mut params[k];
            // (1) g = ∇ + λθ (L2), θ = θ(1 − γλ) (decoupled)
            let mut g = grads[k];
            if c.weight_decay != 0.0 {
                match c.weight_decay_kind {
                    WeightDecay::L2 => g += wd * *p,
                    WeightDecay::Decoupled => *p *= decay,
                }
            }
            // (2) m = lerp(m, g, 1 − β₁)
            let m = &mut self.exp_avg[k];
            *m = lerp(*m, g, w1);
            // (3) v = β₂ v + (1 − β₂) g²
            let v = &mut self.exp_avg_sq[k];
            *v = *v * beta2_t + w2 * g * g;
            // (4) v̂ = max(v̂, v); (5) d = √v / √(1 − β₂ᵗ) + ε
            let second = if amsgrad {
                let vmax = &mut self.max_exp_avg_sq[k];
                *vmax = vmax.max(*v);
                *vmax
            } else {
                *v
            };
            let d = second.sqrt() / bc2_sqrt + eps;
            // (6) θ = θ − γ/(1 − β₁ᵗ) · m/d
            *p += -step_size * (*m / d);
        }
        Ok(())
    }
}

optimizer_common!(
    Adam,
    AdamConfig,
    r#"t: the number of steps taken (PyTorch's `state["step"]`)."#
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Hand-computed values against f64 arithmetic in a different order.
    const HAND_TOL: f64 = 1e-15;

    /// Step 1 by hand: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g², so θ moves by
    /// γ·g/(|g| + ε) ≈ γ·sign(g), whatever |g| is: Adam's first step is sign descent.
    #[test]
    fn first_step_is_sign_descent() {
        let mut p = [1.0f64, -2.0, 0.5];
        let g = [0.1, -30.0, 2e-3];
        let mut opt = Adam::new(AdamConfig::default(), 3).unwrap();
        opt.step(&mut p, &g).unwrap();
        for (k, (&pk, &gk)) in p.iter().zip(&g).enumerate() {
            let p0 = [1.0, -2.0, 0.5][k];
            let want = p0 - 1e-3 * gk / (gk.abs() + 1e-8);
            assert!((pk - want).abs() < HAND_TOL, "{k}: {pk} vs {want}");
        }
        assert_eq!(opt.step_count(), 1);
        let names: Vec<_> = opt.state_buffers().iter().map(|b| b.0).collect();
        assert_eq!(names, ["exp_avg", "exp_avg_sq"]);
    }

    /// AdamW with a zero gradient only decays: θ ← θ(1 − γλ) each step, m and v stay 0.
    #[test]
    fn adamw_with_zero_gradient_only_decays() {
        let mut p = [1.0f64, -2.0];
        let mut opt = Adam::new(
            AdamConfig {
                lr: 0.1,
                ..AdamConfig::adamw()
            },
            2,
        )
        .unwrap();
        for _ in 0..3 {
            opt.step(&mut p, &[0.0, 0.0]).unwrap();
        }
        let k = (1.0f64 - 0.1 * 0.01).powi(3);
        assert!((p[0] - k).abs() < HAND_TOL && (p[1] + 2.0 * k).abs() < HAND_TOL);
    }

    #[test]
    fn state_round_trips_through_buffers() {
        let config = AdamConfig {
            amsgrad: AmsGrad::Enabled,
            ..Default::default()
        };
        let grads = [[0.3f64, -0.1], [-0.2, 0.4], [0.05, 0.0]];
        let mut p = [0.5, 0.25];
        let mut opt = Adam::new(config.clone(), 2).unwrap();
        opt.step(&mut p, &grads[0]).unwrap();
        // Copy the state out (a checkpoint) into a fresh optimizer and continue both.
        let mut resumed = Adam::new(config, 2).unwrap();
        resumed.set_step_count(opt.step_count());
        for ((name, dst), (src_name, src)) in resumed
            .state_buffers_mut()
            .into_iter()
            .zip(opt.state_buffers())
        {
            assert_eq!(name, src_name);
            dst.copy_from_slice(src);
        }
        let mut q = p;
        for g in &grads[1..] {
            opt.step(&mut p, g).unwrap();
            resumed.step(&mut q, g).unwrap();
        }
        assert_eq!(p, q);
    }

    #[test]
    fn bad_settings_and_lengths_are_errors() {
        for config in [
            AdamConfig {
                lr: -1.0,
                ..Default::default()
            },
            AdamConfig {
                betas: (1.0, 0.999),
                ..Default::default()
            },
            AdamConfig {
                betas: (0.9, -0.1),
                ..Default::default()
            },
            AdamConfig {
                eps: f64::NAN,
                ..Default::default()
            },
            AdamConfig {
                weight_decay: -0.01,
                ..AdamConfig::adamw()
            },
        ] {
            assert!(
                matches!(
                    Adam::<f32>::new(config.clone(), 1),
                    Err(Error::Config { .. })
                ),
                "{config:?}"
            );
        }
        let mut opt = Adam::<f32>::new(AdamConfig::default(), 3).unwrap();
        let e = opt.step(&mut [0.0; 3], &[0.0; 2]).unwrap_err();
        assert_eq!(e.to_string(), "grads: 2 values do not fill shape [3]");
        assert_eq!(opt.step_count(), 0, "a failed step must not count");
        assert!(opt.set_lr(-0.5).is_err());
        opt.set_lr(0.5).unwrap();
        assert_eq!(opt.lr(), 0.5);
    }
}
