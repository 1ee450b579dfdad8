//! The optimizer of a run: the library's [`AnyOptimizer`], one per part of the model (every
//! update rule is elementwise, so this is one optimizer over the whole model, without
//! gathering the parts into one buffer each step), and its learning-rate schedule
//! ([`LrScheduler`]).

use anyhow::Result;
use recur::optim::{
    AnyOptimizer, LrScheduler, Nesterov, OptimizerConfig, PlateauConfig, Schedule, ScheduleConfig,
    Warmup, WeightDecay,
};

use super::args::ScheduleKind;
use super::settings::Settings;

/// An optimizer over one flat buffer.
pub type Opt = AnyOptimizer<f32>;

/// A short description of an optimizer's settings for a run's header line.
pub fn describe(c: &OptimizerConfig) -> String {
    match c {
        OptimizerConfig::Sgd(c) => format!(
            "SGD lr {} momentum {}{} weight decay {}",
            c.lr,
            c.momentum,
            if c.nesterov == Nesterov::Enabled {
                " (Nesterov)"
            } else {
                ""
            },
            c.weight_decay
        ),
        OptimizerConfig::Adam(c) => format!(
            "{} lr {} betas {},{} eps {} weight decay {}",
            if c.weight_decay_kind == WeightDecay::Decoupled {
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
        OptimizerConfig::Rmsprop(c) => format!(
            "RMSprop lr {} alpha {} eps {} momentum {} weight decay {}",
            c.lr, c.alpha, c.eps, c.momentum, c.weight_decay
        ),
        OptimizerConfig::Adagrad(c) => format!(
            "Adagrad lr {} eps {} weight decay {}",
            c.lr, c.eps, c.weight_decay
        ),
    }
}

/// The scheduler of a run of `epochs` epochs.
pub fn scheduler(s: &Settings, epochs: usize) -> Result<LrScheduler> {
    let schedule = match s.schedule {
        ScheduleKind::Const => Schedule::Constant,
        ScheduleKind::Step => Schedule::DecayAfter {
            epochs: s.decay_after as u64,
            gamma: s.decay_factor,
        },
        ScheduleKind::Exp => Schedule::Exponential {
            gamma: s.decay_factor,
        },
        ScheduleKind::Cosine => Schedule::Cosine {
            t_max: epochs.max(1) as u64,
            eta_min: s.min_lr,
        },
        ScheduleKind::Plateau => Schedule::Plateau(PlateauConfig {
            factor: s.decay_factor,
            patience: s.patience as u64,
            min_lr: s.min_lr,
            ..Default::default()
        }),
    };
    let warmup = (s.warmup_steps > 0).then(|| Warmup {
        start_factor: 1.0 / s.warmup_steps as f64,
        steps: s.warmup_steps as u64,
    });
    Ok(LrScheduler::new(
        ScheduleConfig { schedule, warmup },
        s.opt.lr(),
    )?)
}

/// The optimizers over the model's three parts.
pub fn optimizers(s: &Settings, lens: [usize; 3]) -> Result<[Opt; 3]> {
    Ok([
        Opt::new(s.opt.clone(), lens[0])?,
        Opt::new(s.opt.clone(), lens[1])?,
        Opt::new(s.opt.clone(), lens[2])?,
    ])
}
