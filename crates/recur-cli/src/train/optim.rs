//! The optimizer of a run (one of the library's, over the model's parts) and its
//! learning-rate schedule.

use anyhow::{Result, bail};
use recur::optim::{
    Adagrad, AdagradConfig, Adam, AdamConfig, Optimizer, Rmsprop, RmspropConfig, Sgd, SgdConfig,
};

use super::args::ScheduleKind;

/// An optimizer's settings.
#[derive(Clone, Debug)]
pub enum OptSettings {
    Sgd(SgdConfig),
    Adam(AdamConfig),
    Rmsprop(RmspropConfig),
    Adagrad(AdagradConfig),
}

impl OptSettings {
    pub fn validate(&self) -> Result<()> {
        match self {
            OptSettings::Sgd(c) => c.validate()?,
            OptSettings::Adam(c) => c.validate()?,
            OptSettings::Rmsprop(c) => c.validate()?,
            OptSettings::Adagrad(c) => c.validate()?,
        }
        Ok(())
    }

    pub fn lr(&self) -> f64 {
        match self {
            OptSettings::Sgd(c) => c.lr,
            OptSettings::Adam(c) => c.lr,
            OptSettings::Rmsprop(c) => c.lr,
            OptSettings::Adagrad(c) => c.lr,
        }
    }

    /// A short description for the run's header line.
    pub fn describe(&self) -> String {
        match self {
            OptSettings::Sgd(c) => format!(
                "SGD lr {} momentum {}{} weight decay {}",
                c.lr,
                c.momentum,
                if c.nesterov == recur::optim::Nesterov::Enabled {
                    " (Nesterov)"
                } else {
                    ""
                },
                c.weight_decay
            ),
            OptSettings::Adam(c) => format!(
                "{} lr {} betas {},{} eps {} weight decay {}",
                if c.weight_decay_kind == recur::optim::WeightDecay::Decoupled {
                    "AdamW"
                } else {
                    "Adam"
                },
                c.lr,
                c.betas.0,
                c.betas.1,
                c.eps,
                c.weight_decay
            ),
            OptSettings::Rmsprop(c) => format!(
                "RMSprop lr {} alpha {} eps {} momentum {} weight decay {}",
                c.lr, c.alpha, c.eps, c.momentum, c.weight_decay
            ),
            OptSettings::Adagrad(c) => format!(
                "Adagrad lr {} eps {} weight decay {}",
                c.lr, c.eps, c.weight_decay
            ),
        }
    }
}

/// One optimizer over one flat buffer.
pub enum Opt {
    Sgd(Sgd<f32>),
    Adam(Adam<f32>),
    Rmsprop(Rmsprop<f32>),
    Adagrad(Adagrad<f32>),
}

impl Opt {
    pub fn new(settings: &OptSettings, len: usize) -> Result<Self> {
        Ok(match settings {
            OptSettings::Sgd(c) => Opt::Sgd(Sgd::new(c.clone(), len)?),
            OptSettings::Adam(c) => Opt::Adam(Adam::new(c.clone(), len)?),
            OptSettings::Rmsprop(c) => Opt::Rmsprop(Rmsprop::new(c.clone(), len)?),
            OptSettings::Adagrad(c) => Opt::Adagrad(Adagrad::new(c.clone(), len)?),
        })
    }

    fn inner(&mut self) -> &mut dyn Optimizer<f32> {
        match self {
            Opt::Sgd(o) => o,
            Opt::Adam(o) => o,
            Opt::Rmsprop(o) => o,
            Opt::Adagrad(o) => o,
        }
    }

    pub fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        Ok(self.inner().step(params, grads)?)
    }

    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        Ok(self.inner().set_lr(lr)?)
    }

    /// The optimizer's state, named, for a checkpoint (the step count goes as a 1-element
    /// buffer `step`, exact up to 2²⁴ steps in f32 — it is stored as f64 bits instead).
    pub fn state(&self) -> (Vec<(&'static str, &[f32])>, u64) {
        match self {
            Opt::Sgd(o) => (
                o.momentum_buffer()
                    .map(|b| vec![("momentum_buffer", b)])
                    .unwrap_or_default(),
                0,
            ),
            Opt::Adam(o) => (o.state_buffers(), o.step_count()),
            Opt::Rmsprop(o) => (o.state_buffers(), o.step_count()),
            Opt::Adagrad(o) => (o.state_buffers(), o.step_count()),
        }
    }

    /// Restores [`Opt::state`]: `get(name)` gives a saved buffer.
    pub fn restore(
        &mut self,
        step_count: u64,
        mut get: impl FnMut(&str, &mut [f32]) -> Result<()>,
    ) -> Result<()> {
        let bufs = match self {
            Opt::Sgd(o) => {
                if o.config().momentum != 0.0 {
                    bail!(
                        "resuming SGD with momentum is not supported (the library does not let \
                         its momentum buffer be set)"
                    );
                }
                return Ok(());
            }
            Opt::Adam(o) => {
                o.set_step_count(step_count);
                o.state_buffers_mut()
            }
            Opt::Rmsprop(o) => {
                o.set_step_count(step_count);
                o.state_buffers_mut()
            }
            Opt::Adagrad(o) => {
                o.set_step_count(step_count);
                o.state_buffers_mut()
            }
        };
        for (name, buf) in bufs {
            get(name, buf)?;
        }
        Ok(())
    }
}

/// The learning rate of an epoch and step.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base: f64,
    pub decay_after: usize,
    pub factor: f64,
    pub warmup_steps: usize,
    pub patience: usize,
    pub min_lr: f64,
    /// total steps of the run (cosine)
    pub total_steps: usize,
    /// plateau: the decays so far, the best validation loss and the epochs since it
    pub plateau_decays: u32,
    pub best: f64,
    pub bad_epochs: usize,
}

impl Schedule {
    /// The learning rate for `step` (1-based, counted over the whole run) in `epoch`
    /// (1-based).
    pub fn lr(&self, epoch: usize, step: usize) -> f64 {
        let f = self.factor;
        let lr = match self.kind {
            ScheduleKind::Const => self.base,
            // Zaremba et al.: epochs 1..=k at the base rate, then × f per epoch
            ScheduleKind::Step => self.base * f.powi(epoch.saturating_sub(self.decay_after) as i32),
            ScheduleKind::Exp => self.base * f.powi(epoch.saturating_sub(1) as i32),
            ScheduleKind::Cosine => {
                let t = (step.saturating_sub(1) as f64 / self.total_steps.max(1) as f64).min(1.0);
                self.min_lr
                    + 0.5 * (self.base - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            ScheduleKind::Plateau => self.base * f.powi(self.plateau_decays as i32),
        };
        let lr = if self.warmup_steps > 0 && step <= self.warmup_steps {
            lr * step as f64 / self.warmup_steps as f64
        } else {
            lr
        };
        lr.max(self.min_lr.min(self.base))
    }

    /// Tells a plateau schedule an epoch's validation loss.
    pub fn observe(&mut self, valid_loss: f64) {
        if self.kind != ScheduleKind::Plateau || !valid_loss.is_finite() {
            return;
        }
        if valid_loss < self.best {
            self.best = valid_loss;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
            if self.bad_epochs > self.patience {
                self.plateau_decays += 1;
                self.bad_epochs = 0;
            }
        }
    }
}
