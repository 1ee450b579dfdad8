//! Sequence models: labelled sequences (one output after reading each whole sequence:
//! classification or regression) and the copy-memory task (an output at every step).
//!
//! ```text
//! labelled:  z[b] = head(h_n(top)[b])           ℓ = cross-entropy(z, class) or (z − y)²,  mean over the batch
//! copy:      z[t, b] = head(y[t, b])            ℓ = cross-entropy(z, symbol), mean over every step
//! ```
//! Labelled sequences are shuffled every epoch with a permutation drawn from (seed, epoch), so a
//! resumed run sees the same batches.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use recur::data::{CopyTask, Labels, SequenceDataset, Split, TargetKind};
use recur::model::{
    CrossEntropyConfig, Input, ModelInput, OutputForm, Reduction, SequenceModel,
    SequenceModelConfig, cross_entropy, cross_entropy_loss, mse_loss, mse_loss_backward,
};
use recur::{Call, Tensor};

use super::args::{Target, TrainArgs};
use super::checkpoint::Checkpoint;
use super::core::{Progress, check_model};
use super::optim::describe;
use super::report::{EvalReport, Figures};
use super::settings::Settings;
use super::trainer::{Batch, Moment, Plan, Task, Trainer};
use super::{check_fits, dropout_seed, initialise};

/// Held-out sequences of the copy task.
pub(crate) const COPY_TEST: usize = 256;

/// Reads a labelled-sequence file: UCR/UEA `.ts` by extension, the simple format otherwise.
pub fn read_sequences(
    path: &Path,
    target: Target,
    classes: Option<&[String]>,
) -> Result<SequenceDataset> {
    let is_ts = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ts"));
    let ds = if is_ts {
        SequenceDataset::read_ts(path, classes)?
    } else {
        let kind = match target {
            Target::Classification => TargetKind::Class,
            Target::Regression => TargetKind::Regression,
        };
        SequenceDataset::read_lines(path, kind, classes)?
    };
    if ds.is_empty() {
        bail!("{}: no sequences", path.display());
    }
    Ok(ds)
}

/// The sequences at `idx`, in that order.
fn subset(ds: &SequenceDataset, idx: &[usize]) -> SequenceDataset {
    SequenceDataset {
        inputs: idx.iter().map(|&i| ds.inputs[i].clone()).collect(),
        lengths: idx.iter().map(|&i| ds.lengths[i]).collect(),
        input_size: ds.input_size,
        labels: match &ds.labels {
            Labels::Class { ids, classes } => Labels::Class {
                ids: idx.iter().map(|&i| ids[i]).collect(),
                classes: classes.clone(),
            },
            Labels::Regression(t) => Labels::Regression(idx.iter().map(|&i| t[i]).collect()),
        },
    }
}

/// Train, valid and test sets: from their files, or a seeded shuffle of the training file cut
/// by the split fractions.
pub(crate) fn load_sets(a: &TrainArgs, s: &Settings) -> Result<[SequenceDataset; 3]> {
    let Some(path) = &a.sequences else {
        bail!("--sequences is missing");
    };
    let train = read_sequences(path, s.target, None)?;
    let classes = train.classes().map(<[String]>::to_vec);
    match (&a.valid_sequences, &a.test_sequences) {
        (Some(v), Some(t)) => Ok([
            train,
            read_sequences(v, s.target, classes.as_deref())?,
            read_sequences(t, s.target, classes.as_deref())?,
        ]),
        (None, None) => {
            let n = train.len();
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(s.seed));
            let [ft, fv, _] = s.split;
            let k1 = (n as f64 * ft).round() as usize;
            let k2 = (n as f64 * (ft + fv)).round() as usize;
            let (k1, k2) = (k1.min(n), k2.min(n).max(k1));
            if k1 == 0 || k2 == k1 || k2 == n {
                bail!(
                    "{}: --split {:?} of its {n} sequences leaves a part empty",
                    path.display(),
                    s.split
                );
            }
            Ok([
                subset(&train, &idx[..k1]),
                subset(&train, &idx[k1..k2]),
                subset(&train, &idx[k2..]),
            ])
        }
        _ => bail!("--valid-sequences and --test-sequences go together"),
    }
}

/// The model reading `input_size` features with `out` outputs, trained on sequences of up to
/// `seq_len` steps.
pub fn build_model(
    s: &Settings,
    input_size: usize,
    out: usize,
    output: OutputForm,
    seq_len: usize,
) -> Result<SequenceModel<f32>> {
    let config = SequenceModelConfig {
        input: Input::Dense,
        rnn: s.rnn_config(input_size),
        output,
        out_features: out,
        input_dropout: s.embedding_dropout,
        output_dropout: s.output_dropout,
        ..Default::default()
    };
    check_fits(&config, s, seq_len, "--batch-size (or --seq-len)")?;
    let mut model = SequenceModel::new(config, s.seed).context("model")?;
    initialise(&mut model, s)?;
    Ok(model)
}

/// Loss of one batch and its gradient with respect to the outputs.
struct BatchLoss {
    /// summed over the batch
    loss: f64,
    correct: usize,
    grad: Option<Tensor<f32>>,
}

/// Loss (mean-reduced gradient, if asked) of outputs `z` `[batch, out]` against the labels at
/// `idx`.
fn batch_loss(
    z: &Tensor<f32>,
    labels: &Labels,
    idx: &[usize],
    want_grad: bool,
) -> Result<BatchLoss> {
    let n = idx.len();
    match labels {
        Labels::Class { ids, .. } => {
            let t: Vec<usize> = idx.iter().map(|&i| ids[i]).collect();
            let cfg = CrossEntropyConfig::default();
            if want_grad {
                let ce = cross_entropy(z, &t, &cfg, 1.0f32)?;
                Ok(BatchLoss {
                    loss: f64::from(ce.loss) * n as f64,
                    correct: ce.correct,
                    grad: Some(ce.grad),
                })
            } else {
                let (l, _, correct) = cross_entropy_loss(z, &t, &cfg)?;
                Ok(BatchLoss {
                    loss: f64::from(l) * n as f64,
                    correct,
                    grad: None,
                })
            }
        }
        Labels::Regression(y) => {
            let target = Tensor::new(idx.iter().map(|&i| y[i]).collect(), &[n, 1])?;
            let l = mse_loss(z, &target, Reduction::Mean)?;
            let grad = want_grad
                .then(|| mse_loss_backward(z, &target, Reduction::Mean, 1.0f32))
                .transpose()?;
            Ok(BatchLoss {
                loss: f64::from(l) * n as f64,
                correct: 0,
                grad,
            })
        }
    }
}

/// A set's figures: the mean loss, and the accuracy (classification) or the mean absolute
/// error (regression).
#[derive(Clone, Copy, Debug)]
pub struct SetFigures {
    pub loss: f64,
    pub acc: Option<f64>,
    pub mae: Option<f64>,
}

impl SetFigures {
    /// The logs' figures, `val_` ones for a validation.
    pub fn log(&self, valid: bool, out: &mut Figures) {
        let names = if valid {
            ["val_loss", "val_acc", "val_mae"]
        } else {
            ["loss", "acc", "mae"]
        };
        out.push((names[0], self.loss));
        out.extend(self.acc.map(|a| (names[1], a)));
        out.extend(self.mae.map(|m| (names[2], m)));
    }

    /// As printed: loss and accuracy, or mse and mae.
    pub fn describe(&self) -> String {
        match (self.acc, self.mae) {
            (Some(a), _) => format!("loss {:.4} acc {:.2}%", self.loss, 100.0 * a),
            (None, Some(m)) => format!("mse {:.5} mae {m:.5}", self.loss),
            (None, None) => format!("mse {:.5}", self.loss),
        }
    }
}

/// Mean loss, and accuracy (classification) or mean absolute error (regression), over a
/// whole set.
pub fn evaluate(
    model: &SequenceModel<f32>,
    ds: &SequenceDataset,
    batch: usize,
) -> Result<SetFigures> {
    let (mut loss, mut correct, mut abs_err) = (0.0, 0, 0.0f64);
    let idx: Vec<usize> = (0..ds.len()).collect();
    for b in idx.chunks(batch.max(1)) {
        let (x, lengths) = ds.padded_batch::<f32>(b)?;
        let out = model.forward(
            ModelInput::Features(x.view()),
            Call::new().lengths(&lengths),
        )?;
        let bl = batch_loss(&out.output, &ds.labels, b, false)?;
        loss += bl.loss;
        correct += bl.correct;
        if let Labels::Regression(y) = &ds.labels {
            // one output per sequence
            for (z, &i) in out.output.data().iter().zip(b) {
                abs_err += (f64::from(*z) - f64::from(y[i])).abs();
            }
        }
    }
    let n = ds.len() as f64;
    let classified = matches!(ds.labels, Labels::Class { .. });
    Ok(SetFigures {
        loss: loss / n,
        acc: classified.then(|| correct as f64 / n),
        mae: (!classified).then(|| abs_err / n),
    })
}

/// Labelled sequences: one output per sequence, batches of a shuffled training set.
struct Sequences {
    model: SequenceModel<f32>,
    train: SequenceDataset,
    valid: SequenceDataset,
    test: SequenceDataset,
    /// this epoch's order of the training sequences
    order: Vec<usize>,
    classified: bool,
    meta: [(&'static str, String); 1],
    /// the last validation's or the test's, for the log
    figures: Figures,
    plan: Plan,
    batch: usize,
    seed: u64,
}

impl Sequences {
    /// The training sequences of batch `k` of the epoch.
    fn batch_at(&self, k: usize) -> &[usize] {
        &self.order[k * self.batch..((k + 1) * self.batch).min(self.order.len())]
    }
}

impl Task for Sequences {
    fn kind(&self) -> &'static str {
        "sequences"
    }

    fn plan(&self) -> Plan {
        self.plan
    }

    fn model(&self) -> Option<&SequenceModel<f32>> {
        Some(&self.model)
    }

    fn model_mut(&mut self) -> Option<&mut SequenceModel<f32>> {
        Some(&mut self.model)
    }

    fn parts_mut(&mut self) -> [&mut [f32]; 3] {
        self.model.parts_mut()
    }

    /// A permutation drawn from (seed, epoch): a resumed run sees the same batches.
    fn start_epoch(&mut self, epoch: usize) {
        self.order.clear();
        self.order.extend(0..self.train.len());
        self.order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            self.seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        ));
    }

    fn has_batch(&self, position: usize) -> bool {
        position < self.train.len().div_ceil(self.batch)
    }

    fn train_step(&mut self, prog: &Progress, grads: &mut [f32]) -> Result<Batch> {
        let idx = self.batch_at(prog.position);
        let (x, lengths) = self.train.padded_batch::<f32>(idx)?;
        let (out, tape) = self.model.forward_train(
            ModelInput::Features(x.view()),
            Call::new()
                .lengths(&lengths)
                .seed(dropout_seed(self.seed, prog.step)),
        )?;
        let bl = batch_loss(&out.output, &self.train.labels, idx, true)?;
        let grad = bl.grad.context("a training batch has a gradient")?;
        self.model.backward(&tape, &grad, grads)?;
        let n = idx.len();
        Ok(Batch {
            loss: bl.loss / n as f64,
            loss_sum: bl.loss,
            targets: n,
            correct: bl.correct,
            acc: self.classified.then(|| bl.correct as f64 / n as f64),
            tokens: lengths.iter().sum(),
            position: prog.position + 1,
            nonfinite_inputs: x.data().iter().any(|v| !v.is_finite()),
            ..Batch::default()
        })
    }

    fn bar_figure(&self, prog: &Progress, _: &Batch) -> String {
        if self.classified {
            format!(
                "acc {:.1}%",
                100.0 * prog.correct as f64 / prog.targets as f64
            )
        } else {
            format!("mse {:.5}", prog.loss_sum / prog.targets as f64)
        }
    }

    fn validate(&mut self, prog: &Progress, at: &Moment) -> Result<(f64, String)> {
        let train = SetFigures {
            loss: prog.loss_sum / prog.targets.max(1) as f64,
            acc: self
                .classified
                .then(|| prog.correct as f64 / prog.targets.max(1) as f64),
            mae: None,
        };
        let valid = evaluate(&self.model, &self.valid, self.batch)?;
        let line = format!(
            "epoch {:>3}{}  lr {:.6}  train {}  valid {}  |grad| {:.3}  {:.1} s",
            at.epoch,
            if at.partial { " (part)" } else { "" },
            at.lr,
            train.describe(),
            valid.describe(),
            at.grad_norm,
            at.elapsed_s
        );
        self.figures.clear();
        train.log(false, &mut self.figures);
        valid.log(true, &mut self.figures);
        Ok((valid.loss, line))
    }

    fn finish(&mut self, prog: &Progress, elapsed_s: f64) -> Result<()> {
        let test = evaluate(&self.model, &self.test, self.batch)?;
        println!(
            "test: {} over {} sequences; {} steps in {elapsed_s:.1} s",
            test.describe(),
            self.test.len(),
            prog.step,
        );
        self.figures.clear();
        test.log(false, &mut self.figures);
        Ok(())
    }

    fn figures(&self) -> &[(&'static str, f64)] {
        &self.figures
    }

    fn checkpoint_meta(&self) -> &[(&'static str, String)] {
        &self.meta
    }
}

/// Runs `recur train --sequences`.
pub fn run(args: &TrainArgs, s: &Settings) -> Result<()> {
    let resume = match &args.resume {
        Some(p) => Some(Checkpoint::load(p)?),
        None => None,
    };
    let [train, valid, test] = load_sets(args, s)?;
    let classes = train.classes().map(<[String]>::to_vec);
    let out = classes.as_ref().map_or(1, Vec::len);
    let longest = [&train, &valid, &test]
        .iter()
        .flat_map(|set| set.lengths.iter().copied())
        .max()
        .unwrap_or(1);
    let model = build_model(s, train.input_size, out, OutputForm::Last, longest)?;
    let n_batches = train.len().div_ceil(s.batch_size);
    let plan = Plan::epochs(s, n_batches);
    let Plan::Epochs { epochs, .. } = plan else {
        unreachable!("a plan of epochs")
    };
    let header = format!(
        "recur train: sequences of {} ({} feature(s) a step, {}); train {} / valid {} / test {}",
        match &classes {
            Some(c) => format!("{} classes", c.len()),
            None => "a regression target".into(),
        },
        train.input_size,
        args.sequences
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        train.len(),
        valid.len(),
        test.len()
    );
    let n_params = model.param_len();
    let task = Sequences {
        model,
        order: Vec::with_capacity(train.len()),
        train,
        valid,
        test,
        classified: classes.is_some(),
        meta: [(
            "classes",
            serde_json::to_string(&classes).context("classes")?,
        )],
        figures: Figures::new(),
        plan,
        batch: s.batch_size,
        seed: s.seed,
    };
    let mut trainer = Trainer::new(task, s, args)?;
    if let Some(ck) = &resume {
        trainer.resume(ck)?;
    }
    println!("{header}");
    println!(
        "  model: {} {} × {} layer(s){} → {} output(s); {} parameters; {} epoch(s) of {} steps \
         (batch {}); {}; schedule {:?}; clip norm {}; seed {}",
        s.cell.kind().name(),
        s.hidden_size,
        s.num_layers,
        if s.bidirectional {
            ", bidirectional"
        } else {
            ""
        },
        out,
        n_params,
        epochs,
        n_batches,
        s.batch_size,
        describe(&s.opt),
        s.schedule,
        s.clip_norm,
        s.seed
    );
    trainer.run()
}

/// The copy task's model, loss and recall on its fixed held-out batch.
fn copy_eval(model: &SequenceModel<f32>, test: &recur::data::CopyBatch) -> Result<(f64, f64, f64)> {
    let x = test.one_hot::<f32>();
    let out = model.forward(ModelInput::Features(x.view()), Call::new())?;
    let z = &out.output;
    let rows = z.shape()[0] * z.shape()[1];
    let flat = Tensor::new(z.data().to_vec(), &[rows, CopyTask::VOCAB])?;
    let (l, _, _) = cross_entropy_loss(&flat, &test.target, &CrossEntropyConfig::default())?;
    let (symbols, sequences) = CopyTask::recall_accuracy(z, &test.target)?;
    Ok((f64::from(l), symbols, sequences))
}

/// The copy-memory task: fresh batches from its generator, a fixed held-out batch.
struct Copy {
    model: SequenceModel<f32>,
    task: CopyTask,
    test: recur::data::CopyBatch,
    steps: usize,
    eval_every: usize,
    batch: usize,
    seed: u64,
    /// the last validation's or the test's, for the log
    figures: Figures,
}

impl Task for Copy {
    fn kind(&self) -> &'static str {
        "copy"
    }

    fn plan(&self) -> Plan {
        Plan::Steps {
            steps: self.steps,
            eval_every: self.eval_every,
        }
    }

    fn model(&self) -> Option<&SequenceModel<f32>> {
        Some(&self.model)
    }

    fn model_mut(&mut self) -> Option<&mut SequenceModel<f32>> {
        Some(&mut self.model)
    }

    fn parts_mut(&mut self) -> [&mut [f32]; 3] {
        self.model.parts_mut()
    }

    fn train_step(&mut self, prog: &Progress, grads: &mut [f32]) -> Result<Batch> {
        let batch = self.task.sample(self.batch)?;
        let x = batch.one_hot::<f32>();
        let (out, tape) = self.model.forward_train(
            ModelInput::Features(x.view()),
            Call::new().seed(dropout_seed(self.seed, prog.step)),
        )?;
        let shape = out.output.shape().to_vec();
        let rows = shape[0] * shape[1];
        let flat = Tensor::new(out.output.data().to_vec(), &[rows, CopyTask::VOCAB])?;
        let ce = cross_entropy(&flat, &batch.target, &CrossEntropyConfig::default(), 1.0f32)?;
        let grad = Tensor::new(ce.grad.data().to_vec(), &shape)?;
        self.model.backward(&tape, &grad, grads)?;
        let loss = f64::from(ce.loss);
        Ok(Batch {
            loss,
            loss_sum: loss,
            acc: Some(ce.accuracy()),
            tokens: rows,
            ..Batch::default()
        })
    }

    fn bar_figure(&self, _: &Progress, b: &Batch) -> String {
        format!(
            "loss {:.4} acc {:.1}%",
            b.loss,
            100.0 * b.acc.unwrap_or(0.0)
        )
    }

    fn validate(&mut self, prog: &Progress, at: &Moment) -> Result<(f64, String)> {
        let (test_loss, symbols, sequences) = copy_eval(&self.model, &self.test)?;
        let line = format!(
            "step {:>6}  train loss {:.5}  |grad| {:.3}  test loss {test_loss:.5}  recalled \
             {:.1}% of symbols, {:.1}% of sequences  {:.1} s",
            prog.step,
            prog.loss_sum / prog.steps.max(1) as f64,
            at.grad_norm,
            100.0 * symbols,
            100.0 * sequences,
            at.elapsed_s
        );
        self.figures = vec![
            ("loss", prog.loss_sum / prog.steps.max(1) as f64),
            ("val_loss", test_loss),
            ("val_recall", symbols),
            ("val_seq_recall", sequences),
        ];
        Ok((test_loss, line))
    }

    fn finish(&mut self, prog: &Progress, elapsed_s: f64) -> Result<()> {
        let (test_loss, symbols, sequences) = copy_eval(&self.model, &self.test)?;
        println!(
            "done: {} steps in {elapsed_s:.1} s; test loss {test_loss:.5} (baseline {:.5}); \
             recalled {:.1}% of symbols, {:.1}% of {COPY_TEST} sequences",
            prog.step,
            self.task.baseline_loss(),
            100.0 * symbols,
            100.0 * sequences
        );
        self.figures = vec![
            ("loss", test_loss),
            ("recall", symbols),
            ("seq_recall", sequences),
        ];
        Ok(())
    }

    fn figures(&self) -> &[(&'static str, f64)] {
        &self.figures
    }
}

/// Runs `recur train --task copy`.
pub fn run_copy(args: &TrainArgs, s: &Settings) -> Result<()> {
    let resume = match &args.resume {
        Some(p) => Some(Checkpoint::load(p)?),
        None => None,
    };
    let steps = s.steps.unwrap_or(5_000);
    let model = build_model(
        s,
        CopyTask::VOCAB,
        CopyTask::VOCAB,
        OutputForm::EveryStep,
        s.seq_len.saturating_add(2 * CopyTask::COPY_LEN),
    )?;
    let task = Copy {
        model,
        task: CopyTask::new(s.seq_len, s.seed, Split::Train)?,
        test: CopyTask::new(s.seq_len, s.seed, Split::Test)?.sample(COPY_TEST)?,
        steps,
        eval_every: s.eval_every,
        batch: s.batch_size,
        seed: s.seed,
        figures: Figures::new(),
    };
    let mut trainer = Trainer::new(task, s, args)?;
    if let Some(ck) = &resume {
        trainer.resume(ck)?;
    }
    // a resumed run draws the batches the first run drew, skipping those it trained on
    for _ in 0..trainer.progress().step {
        trainer.task.task.sample(s.batch_size)?;
    }
    let t = &trainer.task;
    println!(
        "recur train: copy task, delay T = {} ({} steps a sequence), {} {} × {} layer(s), {} \
         parameters; {} steps of {} sequences, {}, clip norm {}, seed {}; baseline loss {:.5}",
        s.seq_len,
        t.task.seq_len(),
        s.cell.kind().name(),
        s.hidden_size,
        s.num_layers,
        t.model.param_len(),
        steps,
        s.batch_size,
        describe(&s.opt),
        s.clip_norm,
        s.seed,
        t.task.baseline_loss()
    );
    trainer.run()
}

/// The model and settings of a sequence model's checkpoint.
fn load_checkpoint(ck: &Checkpoint) -> Result<(SequenceModel<f32>, Settings, Option<Vec<String>>)> {
    let args = ck.args()?;
    let s = Settings::resolve(&args)
        .with_context(|| format!("{}: metadata `recur.run_config`", ck.file))?;
    match ck.meta("kind")? {
        "sequences" => {
            let classes: Option<Vec<String>> = ck.meta_json("classes")?;
            let out = classes.as_ref().map_or(1, Vec::len);
            let input_size = ck.inner.model.config().rnn.input_size;
            check_model(ck, &build_model(&s, input_size, out, OutputForm::Last, 1)?)?;
            Ok((ck.inner.model.clone(), s, classes))
        }
        other => bail!(
            "{}: `recur eval` reads text and sequence checkpoints, not `{}`",
            ck.file,
            recur::excerpt(other)
        ),
    }
}

/// `recur eval` of a sequence model: on `file`, or on the test part it was trained with.
pub fn eval_command(
    ck: &Checkpoint,
    file: Option<&PathBuf>,
    batch: Option<usize>,
) -> Result<EvalReport> {
    let (model, s, classes) = load_checkpoint(ck)?;
    let (name, ds) = match file {
        Some(p) => (
            p.display().to_string(),
            read_sequences(p, s.target, classes.as_deref())?,
        ),
        None => {
            let args = ck.args()?;
            let [_, _, test] = load_sets(&args, &s)?;
            ("the test part".to_string(), test)
        }
    };
    if ds.input_size != model.config().rnn.input_size {
        bail!(
            "{name}: {} feature(s) a step, the model reads {}",
            ds.input_size,
            model.config().rnn.input_size
        );
    }
    let got = evaluate(&model, &ds, batch.unwrap_or(64))?;
    let mut figures = Figures::new();
    got.log(false, &mut figures);
    Ok(EvalReport {
        line: format!("{name}: {} over {} sequences", got.describe(), ds.len()),
        data: name,
        counted: ("sequences", ds.len()),
        figures,
    })
}
