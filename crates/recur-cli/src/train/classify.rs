//! `recur train --task temporal-order | temporal-order-3 | timing`: generated sequences with a
//! class each (Hochreiter & Schmidhuber's 1997 temporal order, experiments 6a and 6b; the
//! spike-timing task after Gers et al. 2002), read whole by a recurrent stack whose top layer's
//! last output feeds a linear head with one logit per class:
//! ```text
//! z[b] = head(h_n(top)[b])      ℓ = cross-entropy(z, class), mean over the batch
//! ```
//! Fresh batches from the generator's training stream, a fixed validation set every
//! `--eval-every` steps, and a fresh test set at the end; a sequence is correct when its
//! largest logit is its class.

use std::time::Instant;

use anyhow::{Result, bail};
use recur::Call;
use recur::data::{ClassBatch, Split, TemporalOrder, TimingTask};
use recur::model::{
    CrossEntropyConfig, ModelInput, OutputForm, SequenceModel, cross_entropy, cross_entropy_loss,
};

use super::args::{Source, TrainArgs};
use super::core::Progress;
use super::dropout_seed;
use super::optim::describe;
use super::outcome::Outcome;
use super::report::Figures;
use super::seq::build_model;
use super::settings::Settings;
use super::trainer::{Batch, Moment, Plan, Task, Trainer};

use super::adding::{TEST_SEQUENCES, VALID_SEQUENCES};
/// Sequences per forward pass when evaluating.
const EVAL_BATCH: usize = 256;

/// One of the generators.
enum Generator {
    Order(TemporalOrder),
    Timing(TimingTask),
}

impl Generator {
    fn new(s: &Settings, split: Split) -> Result<Self> {
        Ok(match s.source {
            Source::TemporalOrder => {
                Generator::Order(TemporalOrder::new(2, s.seq_len, s.seed, split)?)
            }
            Source::TemporalOrder3 => {
                Generator::Order(TemporalOrder::new(3, s.seq_len, s.seed, split)?)
            }
            Source::Timing => Generator::Timing(TimingTask::new(s.seq_len, s.seed, split)?),
            other => bail!("{other:?} is not a classification task"),
        })
    }

    fn sample(&mut self, batch: usize) -> Result<ClassBatch<f32>> {
        Ok(match self {
            Generator::Order(g) => g.sample(batch)?,
            Generator::Timing(g) => g.sample(batch)?,
        })
    }

    fn input_size(&self) -> usize {
        match self {
            Generator::Order(_) => TemporalOrder::INPUT_SIZE,
            Generator::Timing(_) => TimingTask::INPUT_SIZE,
        }
    }

    fn classes(&self) -> usize {
        match self {
            Generator::Order(g) => g.classes(),
            Generator::Timing(_) => TimingTask::CLASSES,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Generator::Order(g) if g.classes() == 4 => "temporal-order",
            Generator::Order(_) => "temporal-order-3",
            Generator::Timing(_) => "timing",
        }
    }
}

/// `n` sequences drawn in batches of at most [`EVAL_BATCH`].
fn draw_set(g: &mut Generator, n: usize) -> Result<Vec<ClassBatch<f32>>> {
    (0..n.div_ceil(EVAL_BATCH))
        .map(|k| g.sample(EVAL_BATCH.min(n - k * EVAL_BATCH)))
        .collect()
}

/// Mean cross-entropy and accuracy over a set.
fn evaluate(model: &SequenceModel<f32>, set: &[ClassBatch<f32>]) -> Result<(f64, f64)> {
    let (mut loss, mut correct, mut n) = (0.0, 0, 0);
    for b in set {
        let out = model.forward(
            ModelInput::Features(b.input.view()),
            Call::new().lengths(&b.lengths),
        )?;
        let (l, _, c) = cross_entropy_loss(&out.output, &b.class, &CrossEntropyConfig::default())?;
        loss += f64::from(l) * b.class.len() as f64;
        correct += c;
        n += b.class.len();
    }
    Ok((loss / n as f64, correct as f64 / n as f64))
}

/// A generated classification task.
pub struct Classify {
    model: SequenceModel<f32>,
    train: Generator,
    valid: Vec<ClassBatch<f32>>,
    test: Generator,
    steps: usize,
    eval_every: usize,
    batch: usize,
    seed: u64,
    /// the logs' figures of the last validation or the test
    figures: Figures,
    /// what the run measured (`recur compare`)
    outcome: Outcome,
    start: Instant,
}

impl Task for Classify {
    fn kind(&self) -> &'static str {
        self.train.name()
    }

    fn plan(&self) -> Plan {
        Plan::Steps {
            steps: self.steps,
            eval_every: self.eval_every,
        }
    }

    fn parts_mut(&mut self) -> [&mut [f32]; 3] {
        self.model.parts_mut()
    }

    fn train_step(&mut self, prog: &Progress, grads: &mut [f32]) -> Result<Batch> {
        let b = self.train.sample(self.batch)?;
        let (out, tape) = self.model.forward_train(
            ModelInput::Features(b.input.view()),
            Call::new()
                .lengths(&b.lengths)
                .seed(dropout_seed(self.seed, prog.step)),
        )?;
        let ce = cross_entropy(
            &out.output,
            &b.class,
            &CrossEntropyConfig::default(),
            1.0f32,
        )?;
        self.model.backward(&tape, &ce.grad, grads)?;
        self.outcome.losses.push(f64::from(ce.loss));
        let n = b.class.len();
        Ok(Batch {
            loss: f64::from(ce.loss),
            loss_sum: f64::from(ce.loss),
            targets: n,
            correct: ce.correct,
            acc: Some(ce.accuracy()),
            tokens: b.lengths.iter().sum(),
            ..Batch::default()
        })
    }

    fn bar_figure(&self, prog: &Progress, _: &Batch) -> String {
        format!(
            "loss {:.4} acc {:.1}%",
            prog.loss_sum / prog.steps.max(1) as f64,
            100.0 * prog.correct as f64 / prog.targets.max(1) as f64
        )
    }

    fn validate(&mut self, prog: &Progress, at: &Moment) -> Result<(f64, String)> {
        let (loss, acc) = evaluate(&self.model, &self.valid)?;
        self.figures = vec![
            ("loss", prog.loss_sum / prog.steps.max(1) as f64),
            ("val_loss", loss),
            ("val_acc", acc),
        ];
        self.outcome.valid.push((prog.step, acc));
        let line = format!(
            "step {:>6}  train loss {:.5}  |grad| {:.3}  valid loss {loss:.5}  correct {:5.1}%  \
             {:.1} s",
            prog.step,
            prog.loss_sum / prog.steps.max(1) as f64,
            at.grad_norm,
            100.0 * acc,
            at.elapsed_s
        );
        Ok((loss, line))
    }

    fn finish(&mut self, prog: &Progress, elapsed_s: f64) -> Result<()> {
        let test = draw_set(&mut self.test, TEST_SEQUENCES)?;
        let (loss, acc) = evaluate(&self.model, &test)?;
        self.outcome.test_loss = loss;
        self.outcome.test_solved = acc;
        self.outcome.elapsed_s = self.start.elapsed().as_secs_f64();
        println!(
            "done: {} steps ({} sequences) in {elapsed_s:.1} s",
            prog.step,
            prog.step * self.batch
        );
        println!(
            "test: {TEST_SEQUENCES} fresh sequences: loss {loss:.5}, correct {:.2}%",
            100.0 * acc
        );
        self.figures = vec![("loss", loss), ("acc", acc)];
        Ok(())
    }

    fn figures(&self) -> &[(&'static str, f64)] {
        &self.figures
    }
}

/// Runs a generated classification task.
pub fn run(args: &TrainArgs, s: &Settings) -> Result<()> {
    Trainer::new(build(s)?, s, args)?.run()
}

/// Trains on a generated classification task and returns what it measured.
pub fn measure(args: &TrainArgs, s: &Settings) -> Result<Outcome> {
    let task = Trainer::new(build(s)?, s, args)?.run_keep()?;
    Ok(task.outcome)
}

/// The task of a run, its header printed.
fn build(s: &Settings) -> Result<Classify> {
    if s.bidirectional {
        bail!("--bidirectional: these tasks' heads read the last step of the forward state");
    }
    let train = Generator::new(s, Split::Train)?;
    let valid = draw_set(&mut Generator::new(s, Split::Valid)?, VALID_SEQUENCES)?;
    let test = Generator::new(s, Split::Test)?;
    let (input, classes) = (train.input_size(), train.classes());
    // sequences of up to twice T steps, a bound for the memory estimate
    let model = build_model(
        s,
        input,
        classes,
        OutputForm::Last,
        s.seq_len.saturating_mul(2),
    )?;
    let steps = s.steps.unwrap_or(5_000);
    println!(
        "recur train: {} task, T = {}, {} classes; {} {} × {} layer(s), {} parameters",
        train.name(),
        s.seq_len,
        classes,
        s.cell.kind().name(),
        s.hidden_size,
        s.num_layers,
        model.param_len()
    );
    println!(
        "  {steps} steps of {} sequences, {}, clip {}, seed {}; {VALID_SEQUENCES} validation \
         sequences (chance {:.1}%)",
        s.batch_size,
        describe(&s.opt),
        s.clip_norm,
        s.seed,
        100.0 / classes as f64
    );
    let start = Instant::now();
    let (loss, acc) = evaluate(&model, &valid)?;
    println!(
        "step      0  valid loss {loss:.5}  correct {:5.1}%  {:.1} s",
        100.0 * acc,
        start.elapsed().as_secs_f64()
    );
    let task = Classify {
        model,
        train,
        valid,
        test,
        steps,
        eval_every: s.eval_every,
        batch: s.batch_size,
        seed: s.seed,
        figures: Figures::new(),
        outcome: Outcome::default(),
        start,
    };
    Ok(task)
}
