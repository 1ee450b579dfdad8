//! What every trainer shares: the model with its optimizers, scheduler and gradient buffer,
//! the update step, and checkpoints that continue a run exactly.

use std::path::Path;

use anyhow::{Result, bail};
use recur::model::SequenceModel;
use recur::optim::{LrScheduler, Optimizer, SchedulerState};
use recur::{State, Tensor};
use serde::{Deserialize, Serialize};

use super::args::TrainArgs;
use super::checkpoint::{Checkpoint, Writer};
use super::lm::clip;
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
    /// the optimizers' step counts
    pub opt_steps: [u64; 3],
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

/// A model being trained.
pub struct Core {
    pub model: SequenceModel<f32>,
    pub opts: [Opt; 3],
    pub sched: LrScheduler,
    pub grads: Vec<f32>,
}

impl Core {
    pub fn new(model: SequenceModel<f32>, s: &Settings, epochs: usize) -> Result<Self> {
        let lens = model.parts().map(<[f32]>::len);
        Ok(Self {
            grads: vec![0.0; model.param_len()],
            opts: optimizers(s, lens)?,
            sched: scheduler(s, epochs)?,
            model,
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

    /// Clips `grads` as asked and updates every part; returns the norm before clipping.
    pub fn update(&mut self, s: &Settings) -> Result<f64> {
        let norm = clip(&mut self.grads, s.clip_norm, s.clip_value)?;
        if !norm.is_finite() {
            return Ok(norm);
        }
        // The three parts update independently: on separate cores.
        let [p0, p1, p2] = self.model.parts_mut();
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

    /// Writes a checkpoint of kind `kind` (`text`, `sequences`, `copy`).
    #[allow(clippy::too_many_arguments)]
    pub fn save(
        &self,
        path: &Path,
        kind: &str,
        args: &TrainArgs,
        extra: &[(&str, String)],
        state: Option<&State<f32>>,
        prog: &Progress,
    ) -> Result<()> {
        let mut w = Writer::default();
        write_model(&mut w, &self.model);
        let mut prog = prog.clone();
        for (i, o) in self.opts.iter().enumerate() {
            prog.opt_steps[i] = o.step_count();
            for (name, buf) in o.state_buffers() {
                w.tensor(format!("optim.{i}.{name}"), &[buf.len()], buf);
            }
        }
        if let Some(st) = state {
            w.tensor("state.h", st.h.shape(), st.h.data());
            if let Some(c) = &st.c {
                w.tensor("state.c", c.shape(), c.data());
            }
        }
        w.meta("kind", kind);
        w.meta("args", serde_json::to_string(args)?);
        w.meta("progress", serde_json::to_string(&prog)?);
        w.meta("scheduler", serde_json::to_string(self.sched.state())?);
        for (k, v) in extra {
            w.meta(k, v.clone());
        }
        w.save(path)
    }

    /// Restores a checkpoint written by [`Core::save`]: weights, optimizer state, scheduler
    /// state; returns the progress and the carried recurrent state.
    pub fn restore(
        &mut self,
        ck: &Checkpoint,
        kind: &str,
    ) -> Result<(Progress, Option<State<f32>>)> {
        let got = ck.meta("kind")?;
        if got != kind {
            bail!(
                "{}: a checkpoint of a `{got}` run, this run is `{kind}`",
                ck.file
            );
        }
        read_model(ck, &mut self.model)?;
        let prog: Progress = ck.meta_json("progress")?;
        for (i, o) in self.opts.iter_mut().enumerate() {
            let prefix = format!("optim.{i}.");
            let names = ck.names_with(&prefix);
            let bufs: Vec<(&str, &[f32])> = names
                .iter()
                .filter_map(|n| ck.tensor(n).map(|(_, d)| (&n[prefix.len()..], d)))
                .collect();
            o.restore(prog.opt_steps[i], &bufs)
                .map_err(|e| anyhow::anyhow!("{}: {e}", ck.file))?;
        }
        let sched: SchedulerState = ck.meta_json("scheduler")?;
        self.sched
            .set_state(sched)
            .map_err(|e| anyhow::anyhow!("{}: metadata `scheduler`: {e}", ck.file))?;
        let state = match ck.tensor("state.h") {
            Some((shape, h)) => Some(State {
                h: Tensor::new(h.to_vec(), shape)?,
                c: ck
                    .tensor("state.c")
                    .map(|(s, c)| Tensor::new(c.to_vec(), s))
                    .transpose()?,
            }),
            None => None,
        };
        Ok((prog, state))
    }
}

/// Writes every parameter tensor of `model` as `model.<name>`.
pub fn write_model(w: &mut Writer, model: &SequenceModel<f32>) {
    let flat = model.params();
    for p in model.param_layout() {
        w.tensor(
            format!("model.{}", p.name),
            &p.shape,
            &flat[p.offset..p.offset + p.len],
        );
    }
}

/// Reads every parameter tensor of `model` from `ck`, which must hold exactly those.
pub fn read_model(ck: &Checkpoint, model: &mut SequenceModel<f32>) -> Result<()> {
    let mut flat = model.params();
    for p in model.param_layout() {
        ck.read_into(
            &format!("model.{}", p.name),
            &p.shape,
            &mut flat[p.offset..p.offset + p.len],
        )?;
    }
    let expected: Vec<String> = model
        .param_layout()
        .iter()
        .map(|p| format!("model.{}", p.name))
        .collect();
    if let Some(extra) = ck
        .names_with("model.")
        .into_iter()
        .find(|n| !expected.iter().any(|e| e == n))
    {
        bail!(
            "{}: tensor `{extra}` has no place in this run's model (a checkpoint of another \
             model?)",
            ck.file
        );
    }
    model.set_params(&flat)?;
    Ok(())
}
