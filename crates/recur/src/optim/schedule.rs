//! Learning-rate schedules, PyTorch's `torch.optim.lr_scheduler` formulas.
//!
//! A schedule gives the learning rate of every optimizer step from two counters: `step`, the
//! number of optimizer steps already taken (0 for the first), and `epoch`, the number of
//! epochs already finished (0 during the first). With base rate γ₀:
//! ```text
//! Constant            γ(e) = γ₀
//! Step                γ(e) = γ₀ · gamma^⌊e / step_size⌋                 (StepLR)
//! DecayAfter          γ(e) = γ₀ · gamma^max(0, e + 1 − epochs)          (the first `epochs`
//!                     epochs at γ₀, each later one × gamma: Zaremba et al. 2014 halve the rate
//!                     every epoch after the 4th, epochs = 4, gamma = 0.5; PyTorch:
//!                     MultiStepLR(milestones = [epochs, epochs + 1, …], gamma))
//! Exponential         γ(e) = γ₀ · gammaᵉ                                (ExponentialLR)
//! Cosine              γ(e) = η_min + (γ₀ − η_min)(1 + cos(π e / T_max)) / 2
//!                                                                      (CosineAnnealingLR)
//! Plateau             γ = max(γ · factor, min_lr) after `patience` epochs without improvement
//!                     of the validation loss, as ReduceLROnPlateau (see [`PlateauConfig`])
//! warm-up (optional)  × w(s), w(s) = f₀ + (1 − f₀) · min(s, n) / n     (LinearLR with
//!                     start_factor f₀, end_factor 1, total_iters n, stepped every batch)
//! ```
//! The rate of step s in epoch e is `w(s) · γ(e)`: the product PyTorch gives when a LinearLR
//! stepped after every batch and one of the epoch schedulers stepped after every epoch share
//! one optimizer (both are "chainable": each multiplies the rate by its own ratio).
//!
//! PyTorch updates the rate recursively (each `scheduler.step()` multiplies the current rate);
//! recur evaluates the closed forms above, which agree to rounding (the parity fixtures
//! measure it) and need no history to resume: only ReduceLROnPlateau has state, and
//! [`LrScheduler::state`] / [`LrScheduler::set_state`] save and restore it.
//!
//! ```
//! use recur::optim::{LrScheduler, Schedule, ScheduleConfig, Sgd, SgdConfig, Optimizer, Warmup};
//! let config = ScheduleConfig {
//!     schedule: Schedule::DecayAfter { epochs: 4, gamma: 0.5 },
//!     warmup: Some(Warmup { start_factor: 0.1, steps: 100 }),
//! };
//! let mut sgd = Sgd::<f32>::new(SgdConfig { lr: 1.0, ..Default::default() }, 10)?;
//! let scheduler = LrScheduler::new(config, sgd.lr())?;
//! assert!((scheduler.lr_at(0, 0) - 0.1).abs() < 1e-15);   // warming up
//! assert_eq!(scheduler.lr_at(5000, 3), 1.0);             // epochs 0..4 at the base rate
//! assert_eq!(scheduler.lr_at(6000, 5), 0.25);            // then halved every epoch
//! scheduler.apply(&mut sgd, 6000, 5)?;                    // the optimizer now uses 0.25
//! assert_eq!(sgd.lr(), 0.25);
//! # Ok::<(), recur::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use super::{Optimizer, check_lr, check_non_negative};
use crate::error::{Result, config_err};

/// The epoch schedule: what [`LrScheduler`] gives for each epoch (see the module docs for
/// the formulas and their PyTorch names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// `StepLR(step_size, gamma)`: × gamma every `step_size` epochs.
    Step { step_size: u64, gamma: f64 },
    /// The first `epochs` epochs at the base rate, then × gamma every epoch.
    DecayAfter { epochs: u64, gamma: f64 },
    /// `ExponentialLR(gamma)`: × gamma every epoch.
    Exponential { gamma: f64 },
    /// `CosineAnnealingLR(T_max, eta_min)`: half a cosine from the base rate down to
    /// `eta_min` over `t_max` epochs (and, as in PyTorch, back up after).
    Cosine { t_max: u64, eta_min: f64 },
    /// `ReduceLROnPlateau`: driven by [`LrScheduler::on_epoch_end`].
    Plateau(PlateauConfig),
}

/// Whether a lower or a higher metric is better (`ReduceLROnPlateau` `mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlateauMode {
    /// A loss: lower is better.
    #[default]
    Min,
    /// An accuracy: higher is better.
    Max,
}

/// How `threshold` measures a significant improvement (`threshold_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMode {
    /// Better than `best · (1 ∓ threshold)`.
    #[default]
    Rel,
    /// Better than `best ∓ threshold`.
    Abs,
}

/// Settings of [`Schedule::Plateau`]; `Default` gives PyTorch's defaults.
///
/// After each epoch the metric m is compared with the best so far: in `Min` / `Rel` mode it
/// improves when m < best · (1 − threshold). After more than `patience` epochs in a row
/// without improvement the rate becomes max(γ · factor, min_lr) (unchanged when that changes
/// it by no more than `eps`), and the next `cooldown` epochs count no bad epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlateauConfig {
    /// default `Min`
    pub mode: PlateauMode,
    /// default 0.1; must be < 1
    pub factor: f64,
    /// default 10
    pub patience: u64,
    /// default 1e-4
    pub threshold: f64,
    /// default `Rel`
    pub threshold_mode: ThresholdMode,
    /// default 0
    pub cooldown: u64,
    /// default 0
    pub min_lr: f64,
    /// default 1e-8
    pub eps: f64,
}

impl Default for PlateauConfig {
    fn default() -> Self {
        Self {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

/// A linear warm-up over the first `steps` optimizer steps, from `start_factor` × the rate
/// to the full rate (PyTorch `LinearLR(start_factor, end_factor=1.0, total_iters=steps)`
/// stepped after every batch).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Warmup {
    /// f₀ in (0, 1]; PyTorch's default is 1/3
    pub start_factor: f64,
    /// n ≥ 1
    pub steps: u64,
}

/// A schedule and an optional warm-up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub schedule: Schedule,
    pub warmup: Option<Warmup>,
}

impl ScheduleConfig {
    /// Checks every setting as PyTorch does.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        let positive = |what: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(config_err(
                    what,
                    format!("must be a finite number > 0, got {v}"),
                ))
            }
        };
        let at_least_one = |what: &str, v: u64| {
            if v == 0 {
                Err(config_err(what, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        match &self.schedule {
            Schedule::Constant => {}
            Schedule::Step { step_size, gamma } => {
                at_least_one("step_size", *step_size)?;
                positive("gamma", *gamma)?;
            }
            Schedule::DecayAfter { gamma, .. } | Schedule::Exponential { gamma } => {
                positive("gamma", *gamma)?;
            }
            Schedule::Cosine { t_max, eta_min } => {
                at_least_one("t_max", *t_max)?;
                check_non_negative("eta_min", *eta_min)?;
            }
            Schedule::Plateau(p) => {
                if !(p.factor.is_finite() && p.factor >= 0.0 && p.factor < 1.0) {
                    return Err(config_err(
                        "factor",
                        format!("must lie in [0, 1), got {}", p.factor),
                    ));
                }
                check_non_negative("threshold", p.threshold)?;
                check_non_negative("min_lr", p.min_lr)?;
                check_non_negative("eps", p.eps)?;
            }
        }
        if let Some(w) = &self.warmup {
            if !(w.start_factor > 0.0 && w.start_factor <= 1.0) {
                return Err(config_err(
                    "warmup.start_factor",
                    format!("must lie in (0, 1], got {}", w.start_factor),
                ));
            }
            at_least_one("warmup.steps", w.steps)?;
        }
        Ok(())
    }
}

/// What a scheduler must carry across a checkpoint: the plateau bookkeeping (the other
/// schedules are functions of the step and epoch counters and keep `lr` equal to the base
/// rate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerState {
    /// The base rate γ₀ the scheduler was built with.
    #[serde(with = "float_text")]
    pub base_lr: f64,
    /// The plateau's current rate γ (starts at γ₀).
    #[serde(with = "float_text")]
    pub lr: f64,
    /// The best metric so far (+∞ in `Min` mode, −∞ in `Max` mode before the first).
    #[serde(with = "float_text")]
    pub best: f64,
    pub num_bad_epochs: u64,
    pub cooldown_counter: u64,
    /// How many metrics [`LrScheduler::on_epoch_end`] has seen.
    pub epochs_seen: u64,
}

/// The learning rate of every step from a [`ScheduleConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct LrScheduler {
    config: ScheduleConfig,
    state: SchedulerState,
}

impl LrScheduler {
    /// A scheduler starting from the base rate `base_lr` (the optimizer's configured rate).
    ///
    /// # Errors
    /// [`crate::Error::Config`] for an invalid configuration or `base_lr`.
    pub fn new(config: ScheduleConfig, base_lr: f64) -> Result<Self> {
        config.validate()?;
        check_lr(base_lr)?;
        let best = match &config.schedule {
            Schedule::Plateau(p) if p.mode == PlateauMode::Max => f64::NEG_INFINITY,
            _ => f64::INFINITY,
        };
        Ok(Self {
            config,
            state: SchedulerState {
                base_lr,
                lr: base_lr,
                best,
                num_bad_epochs: 0,
                cooldown_counter: 0,
                epochs_seen: 0,
            },
        })
    }

    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    pub fn base_lr(&self) -> f64 {
        self.state.base_lr
    }

    /// The rate of the optimizer step after `step` steps, in the epoch after `epoch` whole
    /// epochs: `w(step) · γ(epoch)` (for `Plateau`, γ is its current rate and `epoch` is not
    /// used).
    pub fn lr_at(&self, step: u64, epoch: u64) -> f64 {
        let base = self.state.base_lr;
        let lr = match &self.config.schedule {
            Schedule::Constant => base,
            Schedule::Step { step_size, gamma } => base * powu(*gamma, epoch / step_size),
            Schedule::DecayAfter { epochs, gamma } => {
                base * powu(*gamma, epoch.saturating_add(1).saturating_sub(*epochs))
            }
            Schedule::Exponential { gamma } => base * powu(*gamma, epoch),
            Schedule::Cosine { t_max, eta_min } => {
                let phase = std::f64::consts::PI * epoch as f64 / *t_max as f64;
                eta_min + (base - eta_min) * (1.0 + phase.cos()) / 2.0
            }
            Schedule::Plateau(_) => self.state.lr,
        };
        match &self.config.warmup {
            Some(w) => {
                let done = step.min(w.steps) as f64 / w.steps as f64;
                lr * (w.start_factor + (1.0 - w.start_factor) * done)
            }
            None => lr,
        }
    }

    /// Sets `optimizer`'s rate to [`LrScheduler::lr_at`]`(step, epoch)` and returns it.
    ///
    /// # Errors
    /// As [`Optimizer::set_lr`] (a rate that is not finite, from an extreme schedule).
    pub fn apply<T>(&self, optimizer: &mut dyn Optimizer<T>, step: u64, epoch: u64) -> Result<f64> {
        let lr = self.lr_at(step, epoch);
        optimizer.set_lr(lr)?;
        Ok(lr)
    }

    /// Reports the epoch's validation metric. For `Plateau` this is PyTorch's
    /// `ReduceLROnPlateau.step(metric)` and returns whether the rate was reduced; the other
    /// schedules ignore it (and return `false`). A NaN metric counts as no improvement.
    pub fn on_epoch_end(&mut self, metric: f64) -> bool {
        let Schedule::Plateau(p) = &self.config.schedule else {
            return false;
        };
        let s = &mut self.state;
        s.epochs_seen += 1;
        let better = match (p.mode, p.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => metric < s.best * (1.0 - p.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => metric < s.best - p.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => metric > s.best * (p.threshold + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => metric > s.best + p.threshold,
        };
        if better {
            s.best = metric;
            s.num_bad_epochs = 0;
        } else {
            s.num_bad_epochs += 1;
        }
        if s.cooldown_counter > 0 {
            s.cooldown_counter -= 1;
            s.num_bad_epochs = 0;
        }
        if s.num_bad_epochs > p.patience {
            let old = s.lr;
            let new = (old * p.factor).max(p.min_lr);
            s.cooldown_counter = p.cooldown;
            s.num_bad_epochs = 0;
            if old - new > p.eps {
                s.lr = new;
                return true;
            }
        }
        false
    }

    /// The state to save in a checkpoint.
    pub fn state(&self) -> &SchedulerState {
        &self.state
    }

    /// Restores a state saved by [`LrScheduler::state`].
    ///
    /// # Errors
    /// [`crate::Error::Config`] when a rate in it is not a finite number ≥ 0.
    pub fn set_state(&mut self, state: SchedulerState) -> Result<()> {
        check_lr(state.base_lr)?;
        check_lr(state.lr)?;
        self.state = state;
        Ok(())
    }
}

/// xⁿ in f64 (n may exceed `i32`, where `powi` stops).
fn powu(x: f64, n: u64) -> f64 {
    match i32::try_from(n) {
        Ok(n) => x.powi(n),
        Err(_) => x.powf(n as f64),
    }
}

/// f64 as its shortest round-trip text, so that ±∞ and NaN (which JSON numbers cannot hold)
/// survive a checkpoint.
pub(crate) mod float_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a number")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(schedule: Schedule) -> LrScheduler {
        LrScheduler::new(
            ScheduleConfig {
                schedule,
                warmup: None,
            },
            1.0,
        )
        .unwrap()
    }

    #[test]
    fn closed_forms_by_hand() {
        let s = sched(Schedule::Step {
            step_size: 3,
            gamma: 0.1,
        });
        assert_eq!(
            (0..7).map(|e| s.lr_at(0, e)).collect::<Vec<_>>(),
            [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1 * 0.1]
        );
        // Zaremba et al.: 4 epochs at 1, then halved every epoch.
        let s = sched(Schedule::DecayAfter {
            epochs: 4,
            gamma: 0.5,
        });
        assert_eq!(
            (0..7).map(|e| s.lr_at(0, e)).collect::<Vec<_>>(),
            [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]
        );
        let s = sched(Schedule::Cosine {
            t_max: 4,
            eta_min: 0.1,
        });
        assert_eq!(s.lr_at(0, 0), 1.0);
        assert!((s.lr_at(0, 2) - 0.55).abs() < 1e-15);
        assert!((s.lr_at(0, 4) - 0.1).abs() < 1e-15);
        assert!((s.lr_at(0, 8) - 1.0).abs() < 1e-15);
        let w = LrScheduler::new(
            ScheduleConfig {
                schedule: Schedule::Exponential { gamma: 0.5 },
                warmup: Some(Warmup {
                    start_factor: 0.25,
                    steps: 4,
                }),
            },
            2.0,
        )
        .unwrap();
        assert_eq!(w.lr_at(0, 0), 0.5);
        assert_eq!(w.lr_at(2, 0), 1.25);
        assert_eq!(w.lr_at(4, 0), 2.0);
        assert_eq!(w.lr_at(100, 1), 1.0);
        // counters at their limits give a number, not an overflow
        let s = sched(Schedule::DecayAfter {
            epochs: 4,
            gamma: 0.5,
        });
        assert_eq!(s.lr_at(u64::MAX, u64::MAX), 0.0);
        assert_eq!(w.lr_at(u64::MAX, u64::MAX), 0.0);
    }

    #[test]
    fn plateau_reduces_after_patience_then_cools_down() {
        let mut s = sched(Schedule::Plateau(PlateauConfig {
            patience: 1,
            cooldown: 1,
            factor: 0.5,
            ..Default::default()
        }));
        // improve, bad, bad (> patience: reduce), bad (cooldown), bad, bad (reduce)
        let reduced: Vec<bool> = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
            .into_iter()
            .map(|m| s.on_epoch_end(m))
            .collect();
        assert_eq!(reduced, [false, false, true, false, false, true]);
        assert_eq!(s.lr_at(0, 0), 0.25);
        // the state survives JSON, infinities included
        let fresh = sched(Schedule::Plateau(PlateauConfig::default()));
        let json = serde_json::to_string(fresh.state()).unwrap();
        let back: SchedulerState = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, fresh.state());
        assert_eq!(back.best, f64::INFINITY);
    }

    #[test]
    fn bad_settings_are_errors() {
        for schedule in [
            Schedule::Step {
                step_size: 0,
                gamma: 0.5,
            },
            Schedule::Exponential { gamma: f64::NAN },
            Schedule::Exponential { gamma: 0.0 },
            Schedule::Cosine {
                t_max: 0,
                eta_min: 0.0,
            },
            Schedule::Cosine {
                t_max: 3,
                eta_min: -1.0,
            },
            Schedule::Plateau(PlateauConfig {
                factor: 1.0,
                ..Default::default()
            }),
        ] {
            let c = ScheduleConfig {
                schedule,
                warmup: None,
            };
            assert!(LrScheduler::new(c.clone(), 0.1).is_err(), "{c:?}");
        }
        for w in [
            Warmup {
                start_factor: 0.0,
                steps: 3,
            },
            Warmup {
                start_factor: 1.5,
                steps: 3,
            },
            Warmup {
                start_factor: 0.5,
                steps: 0,
            },
        ] {
            let c = ScheduleConfig {
                schedule: Schedule::Constant,
                warmup: Some(w),
            };
            assert!(LrScheduler::new(c, 0.1).is_err(), "{w:?}");
        }
        assert!(LrScheduler::new(ScheduleConfig::default(), -0.1).is_err());
        assert!(
            serde_json::from_str::<ScheduleConfig>(r#"{"schedule":{"kind":"nope"},"warmup":null}"#)
                .is_err()
        );
    }
}
