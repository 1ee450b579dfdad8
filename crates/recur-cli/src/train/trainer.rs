//! The one training loop of `recur train`, and the [`Task`] trait each kind of run implements
//! (see the module docs of [`crate::train`] for how they fit).

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use recur::model::SequenceModel;
use recur::{State, WeightFormat};

use super::INTERRUPTED;
use super::args::{Precision, TrainArgs};
use super::checkpoint::{Checkpoint, best_path};
use super::core::{Core, Progress};
use super::report::{Record, Reporter, StepRecord, truncate_log};
use super::settings::Settings;

/// How a task's run is counted.
#[derive(Clone, Copy, Debug)]
pub enum Plan {
    /// Passes over a fixed training set of `batches` batches each, validated at every epoch's
    /// end; `total_steps` (from `--steps`) may end the run inside an epoch.
    Epochs {
        epochs: usize,
        batches: usize,
        total_steps: usize,
    },
    /// `steps` batches drawn from a generator, validated every `eval_every` steps and after
    /// the last.
    Steps { steps: usize, eval_every: usize },
}

impl Plan {
    /// Epochs of `batches` batches each: `--epochs` of them, or as many as `--steps` needs.
    pub fn epochs(s: &Settings, batches: usize) -> Self {
        let (epochs, total_steps) = match (s.epochs, s.steps) {
            (Some(e), _) => (e, e * batches),
            (None, Some(st)) => (st.div_ceil(batches), st),
            (None, None) => unreachable!("settings give epochs or steps"),
        };
        Plan::Epochs {
            epochs,
            batches,
            total_steps,
        }
    }
}

/// What one training batch gives back.
#[derive(Clone, Copy, Debug, Default)]
pub struct Batch {
    /// the batch's mean loss per target (logged; a non-finite one ends the run)
    pub loss: f64,
    /// what [`Progress::loss_sum`] adds: the loss summed over the batch's targets (epochs), or
    /// its mean (steps)
    pub loss_sum: f64,
    /// what [`Progress::targets`] and [`Progress::correct`] add
    pub targets: usize,
    pub correct: usize,
    /// the log's `ppl` and `acc`
    pub ppl: Option<f64>,
    pub acc: Option<f64>,
    /// time steps × sequences read, for tokens/s
    pub tokens: usize,
    /// where the next batch starts ([`Progress::position`]; 0 in a run of steps)
    pub position: usize,
    /// the batch's inputs held a value that is not finite (what a divergence is blamed on)
    pub nonfinite_inputs: bool,
}

/// A step whose loss is more than this many times the run's first loss has exploded: the
/// run stops with an error, and the last checkpoint, written before it, is kept.
pub const EXPLODED_LOSS_RATIO: f64 = 1e4;

/// A step whose loss (or gradient norm) is more than this many times the run's first one is
/// warned about, once.
pub const WARN_LOSS_RATIO: f64 = 100.0;

/// When a task validates: what its line shows besides its own figures.
#[derive(Clone, Copy, Debug)]
pub struct Moment {
    /// the epoch being finished (0 in a run of steps)
    pub epoch: usize,
    /// `--steps` ended the epoch before its data did
    pub partial: bool,
    /// the last step's learning rate
    pub lr: f64,
    /// the mean gradient norm since the last validation
    pub grad_norm: f64,
    /// tokens per second of training since the epoch started
    pub tokens_per_s: f64,
    /// seconds of training over the whole run
    pub elapsed_s: f64,
}

/// What differs between kinds of run: the data, the loss and its gradient, the evaluation
/// and what a checkpoint records besides the model. Everything else is [`Trainer`]'s.
pub trait Task {
    /// The `kind` its checkpoints record (`text`, `sequences`, `copy`); the progress bar's
    /// label in a run of steps.
    fn kind(&self) -> &'static str;

    /// How the run is counted.
    fn plan(&self) -> Plan;

    /// The model, for checkpoints; `None` (the default) for a task that writes none.
    fn model(&self) -> Option<&SequenceModel<f32>> {
        None
    }

    /// The model, to restore a checkpoint into; `None` (the default) as [`Task::model`].
    fn model_mut(&mut self) -> Option<&mut SequenceModel<f32>> {
        None
    }

    /// The parameters in the parts that have an optimizer each (one flat gradient buffer
    /// holds their gradients in this order).
    fn parts_mut(&mut self) -> [&mut [f32]; 3];

    /// Called as epoch `epoch` (from 1) starts or continues.
    fn start_epoch(&mut self, _epoch: usize) {}

    /// Whether the epoch has a batch at `position` (a run of steps: always).
    fn has_batch(&self, _position: usize) -> bool {
        true
    }

    /// Batches of the epoch done at `position` (where the bar starts).
    fn batches_done(&self, position: usize) -> usize {
        position
    }

    /// Step `prog.step` (already counted) on the batch at `prog.position`: forward, loss,
    /// and the gradient added into `grads` (zero on entry).
    fn train_step(&mut self, prog: &Progress, grads: &mut [f32]) -> Result<Batch>;

    /// The running figures the progress bar shows after `batch`.
    fn bar_figure(&self, prog: &Progress, batch: &Batch) -> String;

    /// Validates at an epoch's end (epochs) or every `eval_every` steps (steps): the
    /// validation loss (for the scheduler and the best checkpoint) and the line to print.
    /// `prog` holds the training sums since the last validation.
    fn validate(&mut self, prog: &Progress, at: &Moment) -> Result<(f64, String)>;

    /// After the run (finished or interrupted): the test and the last lines.
    fn finish(&mut self, prog: &Progress, elapsed_s: f64) -> Result<()>;

    /// Extra strings a checkpoint records (vocabulary, classes).
    fn checkpoint_meta(&self) -> &[(&'static str, String)] {
        &[]
    }

    /// The named figures of the last [`Task::validate`] (the training figures since the
    /// previous validation, `loss` and the task's own such as `ppl` or `acc`, then the
    /// validation's, `val_loss`, `val_ppl`, ...) or, after [`Task::finish`], the test's
    /// (`loss`, `ppl`, ...): what the log's `epoch`, `valid` and `test` records carry.
    fn figures(&self) -> &[(&'static str, f64)] {
        &[]
    }

    /// The recurrent state carried between batches, which a checkpoint records.
    fn state(&self) -> Option<&State<f32>> {
        None
    }

    /// Sets the carried state (from a checkpoint, or `None` as an epoch ends).
    fn set_state(&mut self, _state: Option<State<f32>>) {}

    /// `--precision`: the operands of the recurrent layers' training products (see
    /// `Recurrent::set_precision`); the default sets [`Task::model_mut`]'s.
    fn set_precision(&mut self, format: WeightFormat) -> Result<()> {
        let Some(model) = self.model_mut() else {
            bail!("--precision is not offered for this task");
        };
        model.set_precision(format).context("--precision")
    }
}

/// A task being trained: its optimizers, scheduler, gradient buffer and progress.
pub struct Trainer<'a, T: Task> {
    pub task: T,
    core: Core,
    prog: Progress,
    s: &'a Settings,
    args: &'a TrainArgs,
    resumed: bool,
    /// an exploding loss or gradient norm has been warned about
    warned: bool,
    /// `--early-stopping`: the parameters of the best validation so far in this process
    best_params: Option<[Vec<f32>; 3]>,
}

impl<'a, T: Task> Trainer<'a, T> {
    pub fn new(mut task: T, s: &'a Settings, args: &'a TrainArgs) -> Result<Self> {
        let epochs = match task.plan() {
            Plan::Epochs { epochs, .. } => epochs,
            Plan::Steps { .. } => 1,
        };
        if s.precision != Precision::F32 {
            task.set_precision(s.precision.format())?;
        }
        let lens = task.parts_mut().map(|p| p.len());
        Ok(Self {
            core: Core::new(lens, s, epochs)?,
            task,
            prog: Progress::default(),
            s,
            args,
            resumed: false,
            warned: false,
            best_params: None,
        })
    }

    /// Where the run is.
    pub fn progress(&self) -> &Progress {
        &self.prog
    }

    /// Continues from checkpoint `ck`: weights, optimizer and scheduler state, progress and
    /// the carried state.
    pub fn resume(&mut self, ck: &Checkpoint) -> Result<()> {
        let kind = self.task.kind();
        let Some(model) = self.task.model_mut() else {
            bail!("--resume is not offered for this task");
        };
        let (prog, state) = self.core.restore(ck, kind, model)?;
        self.prog = prog;
        self.task.set_state(state);
        self.resumed = true;
        Ok(())
    }

    /// Writes `--checkpoint` (and, if `best`, its `.best` copy), with the run's time so far,
    /// after the log: every step a checkpoint holds is in the log on disk.
    fn save(&self, reporter: &mut Reporter, elapsed_s: f64, best: bool) -> Result<()> {
        let (Some(path), Some(model)) = (&self.args.checkpoint, self.task.model()) else {
            return Ok(());
        };
        reporter.flush()?;
        let mut p = self.prog.clone();
        p.elapsed_s = elapsed_s;
        let (kind, meta, state) = (
            self.task.kind(),
            self.task.checkpoint_meta(),
            self.task.state(),
        );
        self.core
            .save(model, path, kind, self.args, meta, state, &p)?;
        if best {
            self.core
                .save(model, &best_path(path), kind, self.args, meta, state, &p)?;
        }
        Ok(())
    }

    /// One step: learning rate, forward, loss, backward, clip, update, divergence check, sums.
    fn step(&mut self) -> Result<(Batch, f64, f64)> {
        let lr = self.core.set_lr(&self.prog)?;
        self.prog.step += 1;
        self.core.zero_grads();
        let b = self.task.train_step(&self.prog, &mut self.core.grads)?;
        let norm = self.core.update(self.task.parts_mut(), self.s)?;
        let step = self.prog.step;
        if !b.loss.is_finite() || !norm.is_finite() {
            if b.nonfinite_inputs {
                bail!(
                    "training diverged at step {step} (loss {}, gradient norm {norm}): the \
                     batch's inputs held values that are not finite; the data is at fault, not \
                     the settings",
                    b.loss
                );
            }
            bail!(
                "training diverged at step {step}: finite inputs gave a loss of {} and a \
                 gradient norm of {norm}; try a smaller --lr or a --clip-norm",
                b.loss
            );
        }
        let (first_loss, first_norm) = *self.prog.first.get_or_insert((b.loss, norm));
        if first_loss > 0.0 && b.loss > EXPLODED_LOSS_RATIO * first_loss {
            bail!(
                "training stopped at step {step}: the loss {:.4e} is more than {EXPLODED_LOSS_RATIO:e} \
                 times the first step's ({first_loss:.4e}), it is exploding; the last checkpoint \
                 is kept; try a smaller --lr or a --clip-norm",
                b.loss
            );
        }
        let loss_up = first_loss > 0.0 && b.loss > WARN_LOSS_RATIO * first_loss;
        let norm_up = first_norm > 0.0 && norm > EXPLODED_LOSS_RATIO * first_norm;
        if (loss_up || norm_up) && !self.warned {
            self.warned = true;
            let (what, now, first, ratio) = if loss_up {
                ("loss", b.loss, first_loss, WARN_LOSS_RATIO)
            } else {
                ("gradient norm", norm, first_norm, EXPLODED_LOSS_RATIO)
            };
            eprintln!(
                "warning: step {step}'s {what} {now:.4e} is more than {ratio:e} times the first \
                 step's ({first:.4e}); the run stops if the loss passes {EXPLODED_LOSS_RATIO:e} \
                 times the first"
            );
        }
        let p = &mut self.prog;
        p.loss_sum += b.loss_sum;
        p.targets += b.targets;
        p.correct += b.correct;
        p.position = b.position;
        p.norm_sum += norm;
        p.steps += 1;
        Ok((b, lr, norm))
    }

    /// Runs to the end, to `--steps` or to Ctrl-C, then the task's test.
    pub fn run(self) -> Result<()> {
        self.run_keep().map(drop)
    }

    /// [`Trainer::run`], giving the task back with what it recorded.
    pub fn run_keep(mut self) -> Result<T> {
        let s = self.s;
        let plan = self.task.plan();
        let (epochs, total) = match plan {
            Plan::Epochs {
                epochs,
                total_steps,
                ..
            } => (epochs, total_steps),
            Plan::Steps { steps, .. } => (1, steps),
        };
        if let (Some(log), true) = (&self.args.log, self.resumed) {
            truncate_log(log, self.prog.step)?;
        }
        if let Some(path) = &self.args.checkpoint {
            // what a kill in the middle of an earlier run's save left behind
            recur::io::remove_stale_temporaries(path)?;
            recur::io::remove_stale_temporaries(&best_path(path))?;
        }
        if let Some(model) = self.task.model() {
            let rows = crate::summary::model_rows(model, &Default::default());
            print!("{}", crate::summary::table(&rows));
        }
        let mut reporter = Reporter::new(self.args.log.as_deref(), s.quiet, self.resumed)?
            .with_csv_log(self.args.csv_log.as_deref(), self.resumed)?;
        let run_start = Instant::now();
        let elapsed = |p: &Progress| p.elapsed_s + run_start.elapsed().as_secs_f64();
        let mut lr = s.opt.lr();
        // Ctrl-C or --steps stopped the run where a --resume continues it
        let mut resumable = false;
        'run: while self.prog.epoch < epochs && self.prog.step < total {
            let epoch = self.prog.epoch + 1;
            self.task.start_epoch(epoch);
            let (label, len, done, logged_epoch) = match plan {
                Plan::Epochs { batches, .. } => (
                    format!("epoch {epoch}/{epochs}"),
                    batches,
                    self.task.batches_done(self.prog.position),
                    epoch,
                ),
                Plan::Steps { steps, .. } => (self.task.kind().into(), steps, self.prog.step, 0),
            };
            reporter.start(label, len as u64, done as u64);
            let epoch_start = Instant::now();
            let mut tokens = 0usize;
            let tokens_per_s =
                |tokens: usize| tokens as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
            while self.prog.step < total && self.task.has_batch(self.prog.position) {
                let (b, norm);
                (b, lr, norm) = self.step()?;
                tokens += b.tokens;
                let rec = StepRecord {
                    kind: "step",
                    step: self.prog.step,
                    epoch: logged_epoch,
                    loss: b.loss,
                    ppl: b.ppl,
                    acc: b.acc,
                    lr,
                    grad_norm: norm,
                    tokens_per_s: tokens_per_s(tokens),
                    elapsed_s: elapsed(&self.prog),
                };
                reporter.step(&rec, || self.task.bar_figure(&self.prog, &b))?;
                // a closed standard output (`recur train | head`) stops the run as Ctrl-C does
                let interrupted = INTERRUPTED.load(Ordering::SeqCst) || crate::out::stdout_closed();
                let step = self.prog.step;
                match plan {
                    Plan::Epochs { .. } => {
                        if interrupted || (s.save_every > 0 && step.is_multiple_of(s.save_every)) {
                            self.save(&mut reporter, elapsed(&self.prog), false)?;
                        }
                    }
                    Plan::Steps { eval_every, .. } => {
                        if interrupted || step.is_multiple_of(eval_every) || step == total {
                            let at = self.moment(0, false, lr, tokens_per_s(tokens), &elapsed);
                            let valid_loss = self.validate(&mut reporter, &at)?;
                            let improved = self.track_best(valid_loss);
                            self.prog.loss_sum = 0.0;
                            self.prog.norm_sum = 0.0;
                            self.prog.steps = 0;
                            reporter.flush()?;
                            self.save(
                                &mut reporter,
                                elapsed(&self.prog),
                                improved && s.early_stopping > 0,
                            )?;
                            if self.patience_ran_out(&reporter) {
                                break 'run;
                            }
                        }
                    }
                }
                if interrupted {
                    reporter.println(&self.interrupted_line(plan, epoch));
                    resumable = true;
                    break 'run;
                }
            }
            if let Plan::Steps { .. } = plan {
                break;
            }
            // The epoch is done, or --steps ended the run inside it: validate, report, save.
            let partial = self.task.has_batch(self.prog.position);
            let at = self.moment(epoch, partial, lr, tokens_per_s(tokens), &elapsed);
            let valid_loss = self.validate(&mut reporter, &at)?;
            if partial {
                // a later `--resume` with more steps or epochs continues inside this epoch
                self.save(&mut reporter, elapsed(&self.prog), false)?;
                resumable = true;
                break;
            }
            self.core.sched.on_epoch_end(valid_loss);
            let improved = self.track_best(valid_loss);
            self.prog.next_epoch();
            self.task.set_state(None);
            reporter.flush()?;
            self.save(&mut reporter, elapsed(&self.prog), improved)?;
            if self.patience_ran_out(&reporter) {
                break;
            }
        }
        if s.early_stopping > 0 && !resumable {
            self.restore_best(&reporter)?;
        }
        self.task.finish(&self.prog, elapsed(&self.prog))?;
        let test = Record {
            kind: "test",
            step: self.prog.step,
            epoch: self.prog.epoch,
            figures: self.task.figures(),
            lr: None,
            elapsed_s: elapsed(&self.prog),
        };
        if !test.figures.is_empty() {
            reporter.record(&test)?;
        }
        reporter.finish()?;
        Ok(self.task)
    }

    /// Records validation loss `loss` against the best so far; with `--early-stopping`, keeps
    /// the parameters of a new best. Whether it is one.
    fn track_best(&mut self, loss: f64) -> bool {
        let improved = self.prog.best_valid.is_none_or(|b| loss < b);
        if improved {
            self.prog.best_valid = Some(loss);
            self.prog.since_best = 0;
            if self.s.early_stopping > 0 {
                self.best_params = Some(self.task.parts_mut().map(|p| p.to_vec()));
            }
        } else {
            self.prog.since_best += 1;
        }
        improved
    }

    /// Whether `--early-stopping N` ends the run: N validations without a new best.
    fn patience_ran_out(&self, reporter: &Reporter) -> bool {
        let n = self.s.early_stopping;
        let out = n > 0 && self.prog.since_best >= n;
        if out {
            reporter.println(&format!(
                "early stopping: no lower validation loss in {n} validation(s); best {:.5}",
                self.prog.best_valid.unwrap_or(f64::NAN)
            ));
        }
        out
    }

    /// With `--early-stopping`: puts the best validation's weights back for the test and, with
    /// `--checkpoint`, makes its `.best` copy (weights, optimizer and position of that
    /// validation) the checkpoint kept.
    fn restore_best(&mut self, reporter: &Reporter) -> Result<()> {
        if self.prog.since_best == 0 {
            return Ok(()); // the last validation was the best
        }
        let best_file = match (&self.args.checkpoint, self.task.model()) {
            (Some(path), Some(_)) => Some((path.clone(), best_path(path))),
            _ => None,
        };
        if let Some(best) = self.best_params.take() {
            for (part, saved) in self.task.parts_mut().into_iter().zip(best) {
                part.copy_from_slice(&saved);
            }
        } else if let Some((_, best)) = &best_file {
            // a resumed run that found no better validation: the best is in the file
            let ck = Checkpoint::load(best)?;
            if let Some(model) = self.task.model_mut() {
                model.set_params(&ck.inner.model.params())?;
            }
        } else {
            return Ok(());
        }
        let mut line = format!(
            "restored the best weights (validation loss {:.5}) for the test",
            self.prog.best_valid.unwrap_or(f64::NAN)
        );
        if let Some((path, best)) = &best_file {
            std::fs::copy(best, path)
                .with_context(|| format!("copying {} to {}", best.display(), path.display()))?;
            line += &format!("; {} holds them", path.display());
        }
        reporter.println(&line);
        Ok(())
    }

    /// The moment of a validation, with the mean gradient norm since the last one.
    fn moment(
        &self,
        epoch: usize,
        partial: bool,
        lr: f64,
        tokens_per_s: f64,
        elapsed: &impl Fn(&Progress) -> f64,
    ) -> Moment {
        Moment {
            epoch,
            partial,
            lr,
            grad_norm: self.prog.norm_sum / self.prog.steps.max(1) as f64,
            tokens_per_s,
            elapsed_s: elapsed(&self.prog),
        }
    }

    /// The task's validation: prints its line, logs its figures, returns the validation loss.
    fn validate(&mut self, reporter: &mut Reporter, at: &Moment) -> Result<f64> {
        let (loss, line) = self.task.validate(&self.prog, at)?;
        reporter.println(&line);
        let figures = self.task.figures();
        // a part of an epoch (--steps) is logged when a resumed run finishes the epoch
        if !figures.is_empty() && !at.partial {
            reporter.record(&Record {
                // a run of steps has epoch 0
                kind: if at.epoch == 0 { "valid" } else { "epoch" },
                step: self.prog.step,
                epoch: at.epoch,
                figures,
                lr: Some(at.lr),
                elapsed_s: at.elapsed_s,
            })?;
        }
        Ok(loss)
    }

    /// Where Ctrl-C stopped the run, and where its checkpoint went.
    fn interrupted_line(&self, plan: Plan, epoch: usize) -> String {
        let step = self.prog.step;
        let at = match plan {
            Plan::Epochs { .. } => format!("epoch {epoch}, step {step}"),
            Plan::Steps { .. } => format!("step {step}"),
        };
        let saved = match (&self.args.checkpoint, self.task.model()) {
            (Some(p), Some(_)) => format!("; checkpoint saved to {}", p.display()),
            _ => String::new(),
        };
        format!("interrupted at {at}{saved}")
    }
}
