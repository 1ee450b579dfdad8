//! What the trainer keeps besides the task: the optimizers (one per part of the model), the
//! scheduler and the gradient buffer, the update step, and checkpoints that continue a run
//! exactly.

use std::path::Path;

use anyhow::{Result, bail};
use recur::io::{
    CheckpointRef, OptimizerRef, Optimizers, TrainingProgress, config_difference, save_checkpoint,
};
use recur::model::SequenceModel;
use recur::optim::{LrScheduler, Optimizer, clip_grad_norm, clip_grad_value, grad_norm};
use recur::{State, Tensor};
use serde::{Deserialize, Serialize};

use super::args::TrainArgs;
use super::checkpoint::Checkpoint;
use super::optim::{Opt, optimizers, scheduler};
use super::settings::Settings;

/// Where a run is: what a checkpoint needs besides weights to continue exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    /// epochs finished
    pub epoch: usize,
    /// optimizer steps taken over the whole run
    pub step: usize,
    /// where the next batch of this epoch starts (text: the stream step; sequences: the
    /// batch index)
    pub position: usize,
    /// sums over the epoch so far: loss over targets, targets, correct targets, gradient
    /// norms, steps
    pub loss_sum: f64,
    pub targets: usize,
    pub correct: usize,
    pub norm_sum: f64,
    pub steps: usize,
    /// seconds of training before this process
    pub elapsed_s: f64,
    /// the best validation loss so far
    pub best_valid: Option<f64>,
    /// the run's first step's loss and gradient norm (what an exploding loss is measured
    /// against)
    #[serde(default)]
    pub first: Option<(f64, f64)>,
    /// validations since the best one (`--early-stopping`); absent in older checkpoints
    #[serde(default)]
    pub since_best: usize,
}

impl Progress {
    /// Starts the next epoch's sums.
    pub fn next_epoch(&mut self) {
        self.epoch += 1;
        self.position = 0;
        self.loss_sum = 0.0;
        self.targets = 0;
        self.correct = 0;
        self.norm_sum = 0.0;
        self.steps = 0;
    }
}

/// The optimizers, scheduler and gradient buffer of a model's three parts.
pub struct Core {
    pub opts: [Opt; 3],
    pub sched: LrScheduler,
    pub grads: Vec<f32>,
}

impl Core {
    /// For parts of `lens` values, in a run of `epochs` epochs (the cosine schedule's length).
    pub fn new(lens: [usize; 3], s: &Settings, epochs: usize) -> Result<Self> {
        Ok(Self {
            grads: vec![0.0; lens.iter().sum()],
            opts: optimizers(s, lens)?,
            sched: scheduler(s, epochs)?,
        })
    }

    /// Zeroes the gradient buffer (the backward pass accumulates into it), on every core.
    pub fn zero_grads(&mut self) {
        use rayon::prelude::*;
        self.grads.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0));
    }

    /// The learning rate of the next step, set on the optimizers.
    pub fn set_lr(&mut self, prog: &Progress) -> Result<f64> {
        let lr = self.sched.lr_at(prog.step as u64, prog.epoch as u64);
        for o in &mut self.opts {
            o.set_lr(lr)?;
        }
        Ok(lr)
    }

    /// Clips `grads` as asked (`--clip-norm`, `--clip-value`; 0 is off) and updates every
    /// part; returns the global norm before clipping (nothing is updated when it is not
    /// finite).
    pub fn update(&mut self, parts: [&mut [f32]; 3], s: &Settings) -> Result<f64> {
        let norm = if s.clip_norm > 0.0 {
            clip_grad_norm(&mut self.grads, s.clip_norm)?
        } else {
            grad_norm(&self.grads)
        };
        if s.clip_value > 0.0 {
            clip_grad_value(&mut self.grads, s.clip_value)?;
        }
        if !norm.is_finite() {
            return Ok(norm);
        }
        // The three parts update independently: on separate cores.
        let [p0, p1, p2] = parts;
        let (g0, rest) = self.grads.split_at(p0.len());
        let (g1, g2) = rest.split_at(p1.len());
        let [o0, o1, o2] = &mut self.opts;
        let (r0, (r1, r2)) = rayon::join(
            || o0.step(p0, g0),
            || rayon::join(|| o1.step(p1, g1), || o2.step(p2, g2)),
        );
        r0?;
        r1?;
        r2?;
        Ok(norm)
    }

    /// Writes a checkpoint of `model` of kind `kind` (`text`, `sequences`, `copy`) with the
    /// extra strings `extra`.
    #[allow(clippy::too_many_arguments)]
    pub fn save(
        &self,
        model: &SequenceModel<f32>,
        path: &Path,
        kind: &str,
        args: &TrainArgs,
        extra: &[(&'static str, String)],
        state: Option<&State<f32>>,
        prog: &Progress,
    ) -> Result<()> {
        let run_config = serde_json::to_string(args)?;
        let progress_json = serde_json::to_string(prog)?;
        let mut metadata: Vec<(&str, &str)> = vec![("kind", kind), ("progress", &progress_json)];
        metadata.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let mut tensors: Vec<(&str, &Tensor<f32>)> = Vec::new();
        if let Some(st) = state {
            tensors.push(("state.h", &st.h));
            if let Some(c) = &st.c {
                tensors.push(("state.c", c));
            }
        }
        let [o0, o1, o2] = &self.opts;
        save_checkpoint(
            path,
            CheckpointRef {
                model,
                optimizer: OptimizerRef::Parts([o0, o1, o2]),
                scheduler: Some(&self.sched),
                progress: &TrainingProgress {
                    step: prog.step as u64,
                    epoch: prog.epoch as u64,
                    rng: Vec::new(),
                    data_position: vec![prog.position as u64],
                },
                run_config: &run_config,
                extra_tensors: &tensors,
                extra_metadata: &metadata,
            },
        )?;
        Ok(())
    }

    /// Restores a checkpoint written by [`Core::save`]: weights (into `model`), optimizer
    /// state, scheduler state; returns the progress and the carried recurrent state.
    pub fn restore(
        &mut self,
        ck: &Checkpoint,
        kind: &str,
        model: &mut SequenceModel<f32>,
    ) -> Result<(Progress, Option<State<f32>>)> {
        let got = ck.meta("kind")?;
        if got != kind {
            bail!(
                "{}: a checkpoint of a `{}` run, this run is `{kind}`",
                ck.file,
                recur::excerpt(got)
            );
        }
        check_model(ck, model)?;
        let inner = &ck.inner;
        model.set_params(&inner.model.params())?;
        let prog: Progress = ck.meta_json("progress")?;
        let Optimizers::Parts(saved) = &inner.optimizer else {
            bail!(
                "{}: one optimizer over the whole model; `recur train` keeps one per part",
                ck.file
            );
        };
        for (o, s) in self.opts.iter_mut().zip(saved.iter()) {
            o.restore(s.step_count(), &s.state_buffers()).map_err(|e| {
                anyhow::anyhow!("{}: metadata `recur.optimizer_parts`: {e}", ck.file)
            })?;
        }
        let Some(sched) = &inner.scheduler else {
            bail!("{}: metadata `recur.scheduler` missing", ck.file);
        };
        self.sched
            .set_state(sched.state().clone())
            .map_err(|e| anyhow::anyhow!("{}: metadata `recur.scheduler`: {e}", ck.file))?;
        let state = inner.extra_tensors.get("state.h").map(|h| State {
            h: h.clone(),
            c: inner.extra_tensors.get("state.c").cloned(),
        });
        Ok((prog, state))
    }
}

/// The checkpoint's model must have `model`'s configuration.
pub fn check_model(ck: &Checkpoint, model: &SequenceModel<f32>) -> Result<()> {
    match config_difference(ck.inner.model.config(), model.config()) {
        Some(diff) => bail!(
            "{}: a checkpoint of another shape than this run's model: {diff}",
            ck.file
        ),
        None => Ok(()),
    }
}
