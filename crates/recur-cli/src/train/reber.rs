//! `recur train --task reber`: next-symbol prediction on the embedded Reber grammar
//! (Hochreiter & Schmidhuber 1997, experiment 1). A recurrent stack reads a string one symbol
//! at a time and a linear head emits seven outputs at every step, regressed on the 0/1 set of
//! symbols the grammar allows next:
//! ```text
//! z[t, b] = head(y[t, b])      ℓ = Σ_{t < len_b, k} (z[t, b, k] − target[t, b, k])² / (7 Σ_b len_b)
//! ```
//! A step is correct when the allowed symbols' outputs are the largest (the paper's
//! criterion), a string when all its steps are; the task is solved when every string of the
//! test set is.

use std::time::Instant;

use anyhow::{Result, bail};
use recur::data::{EmbeddedReber, ReberBatch, Split};
use recur::model::{ModelInput, OutputForm, SequenceModel};
use recur::{Call, Tensor};

use super::args::TrainArgs;
use super::core::Progress;
use super::dropout_seed;
use super::optim::describe;
use super::report::Figures;
use super::seq::build_model;
use super::settings::Settings;
use super::trainer::{Batch, Moment, Plan, Task, Trainer};

/// Strings of the fixed validation set.
pub(crate) const VALID_STRINGS: usize = 256;
/// Strings of the fresh test set scored at the end.
pub(crate) const TEST_STRINGS: usize = 1_024;

/// The masked mean squared error of `z` against the batch's targets over each string's steps,
/// and (if asked) its gradient.
fn masked_mse(z: &Tensor<f32>, b: &ReberBatch<f32>, want_grad: bool) -> (f64, Option<Tensor<f32>>) {
    let k = EmbeddedReber::SYMBOLS;
    let nb = b.lengths.len();
    let count = (k * b.lengths.iter().sum::<usize>()).max(1) as f64;
    let (zd, yd) = (z.data(), b.target.data());
    let mut grad = want_grad.then(|| Tensor::zeros(z.shape()));
    let mut loss = 0.0f64;
    for (s, &len) in b.lengths.iter().enumerate() {
        for t in 0..len {
            let row = (t * nb + s) * k;
            for c in row..row + k {
                let d = f64::from(zd[c] - yd[c]);
                loss += d * d;
                if let Some(g) = grad.as_mut() {
                    g.data_mut()[c] = (2.0 * d / count) as f32;
                }
            }
        }
    }
    (loss / count, grad)
}

/// Loss, correct steps and correct strings over a batch.
fn evaluate(model: &SequenceModel<f32>, b: &ReberBatch<f32>) -> Result<(f64, f64, f64)> {
    let out = model.forward(
        ModelInput::Features(b.input.view()),
        Call::new().lengths(&b.lengths),
    )?;
    let (loss, _) = masked_mse(&out.output, b, false);
    let (steps, strings) = EmbeddedReber::accuracy(&out.output, b)?;
    Ok((loss, steps, strings))
}

/// The embedded Reber task.
struct Reber {
    model: SequenceModel<f32>,
    train: EmbeddedReber,
    valid: ReberBatch<f32>,
    steps: usize,
    eval_every: usize,
    batch: usize,
    seed: u64,
    /// the logs' figures of the last validation or the test
    figures: Figures,
}

impl Task for Reber {
    fn kind(&self) -> &'static str {
        "reber"
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
        let b = self.train.sample::<f32>(self.batch)?;
        let (out, tape) = self.model.forward_train(
            ModelInput::Features(b.input.view()),
            Call::new()
                .lengths(&b.lengths)
                .seed(dropout_seed(self.seed, prog.step)),
        )?;
        let (loss, grad) = masked_mse(&out.output, &b, true);
        let Some(grad) = grad else {
            bail!("a training batch has a gradient");
        };
        self.model.backward(&tape, &grad, grads)?;
        Ok(Batch {
            loss,
            loss_sum: loss,
            tokens: b.lengths.iter().sum(),
            ..Batch::default()
        })
    }

    fn bar_figure(&self, prog: &Progress, _: &Batch) -> String {
        format!("mse {:.5}", prog.loss_sum / prog.steps.max(1) as f64)
    }

    fn validate(&mut self, prog: &Progress, at: &Moment) -> Result<(f64, String)> {
        let (loss, steps, strings) = evaluate(&self.model, &self.valid)?;
        self.figures = vec![
            ("loss", prog.loss_sum / prog.steps.max(1) as f64),
            ("val_loss", loss),
            ("val_acc", steps),
            ("val_string_acc", strings),
        ];
        let line = format!(
            "step {:>6}  train mse {:.5}  |grad| {:.3}  valid mse {loss:.5}  steps correct \
             {:5.1}%  strings correct {:5.1}%  {:.1} s",
            prog.step,
            prog.loss_sum / prog.steps.max(1) as f64,
            at.grad_norm,
            100.0 * steps,
            100.0 * strings,
            at.elapsed_s
        );
        Ok((loss, line))
    }

    fn finish(&mut self, prog: &Progress, elapsed_s: f64) -> Result<()> {
        let test = EmbeddedReber::new(self.seed, Split::Test).sample::<f32>(TEST_STRINGS)?;
        let (loss, steps, strings) = evaluate(&self.model, &test)?;
        println!(
            "done: {} steps ({} strings) in {elapsed_s:.1} s",
            prog.step,
            prog.step * self.batch
        );
        println!(
            "test: {TEST_STRINGS} fresh strings: mse {loss:.5}, steps correct {:.2}%, strings \
             correct {:.2}%",
            100.0 * steps,
            100.0 * strings
        );
        self.figures = vec![("loss", loss), ("acc", steps), ("string_acc", strings)];
        Ok(())
    }

    fn figures(&self) -> &[(&'static str, f64)] {
        &self.figures
    }
}

/// Runs `recur train --task reber`.
pub fn run(args: &TrainArgs, s: &Settings) -> Result<()> {
    if s.bidirectional {
        bail!("--bidirectional: a next-symbol predictor reads left to right only");
    }
    let k = EmbeddedReber::SYMBOLS;
    // embedded Reber strings are short: 100 steps bound them for the memory estimate
    let model = build_model(s, k, k, OutputForm::EveryStep, 100)?;
    let valid = EmbeddedReber::new(s.seed, Split::Valid).sample::<f32>(VALID_STRINGS)?;
    let steps = s.steps.unwrap_or(5_000);
    println!(
        "recur train: embedded Reber grammar, next-symbol prediction; {} {} × {} layer(s), {} \
         parameters",
        s.cell.kind().name(),
        s.hidden_size,
        s.num_layers,
        model.param_len()
    );
    println!(
        "  {steps} steps of {} strings, {}, clip {}, seed {}; {VALID_STRINGS} validation strings",
        s.batch_size,
        describe(&s.opt),
        s.clip_norm,
        s.seed,
    );
    let start = Instant::now();
    let (loss, st, strings) = evaluate(&model, &valid)?;
    println!(
        "step      0  valid mse {loss:.5}  steps correct {:5.1}%  strings correct {:5.1}%  {:.1} s",
        100.0 * st,
        100.0 * strings,
        start.elapsed().as_secs_f64()
    );
    let task = Reber {
        model,
        train: EmbeddedReber::new(s.seed, Split::Train),
        valid,
        steps,
        eval_every: s.eval_every,
        batch: s.batch_size,
        seed: s.seed,
        figures: Figures::new(),
    };
    Trainer::new(task, s, args)?.run()
}
