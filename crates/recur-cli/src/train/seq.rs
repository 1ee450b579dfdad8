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
use std::sync::atomic::Ordering;
use std::time::Instant;

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
use super::checkpoint::{Checkpoint, best_path};
use super::core::{Core, Progress, check_model};
use super::optim::describe;
use super::report::{Reporter, StepRecord};
use super::settings::Settings;
use super::{INTERRUPTED, dropout_seed, initialise};

/// Held-out sequences of the copy task.
const COPY_TEST: usize = 256;

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
fn load_sets(a: &TrainArgs, s: &Settings) -> Result<[SequenceDataset; 3]> {
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

/// The model reading `input_size` features with `out` outputs.
pub fn build_model(
    s: &Settings,
    input_size: usize,
    out: usize,
    output: OutputForm,
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

/// Mean loss and accuracy (classification) over a whole set.
pub fn evaluate(
    model: &SequenceModel<f32>,
    ds: &SequenceDataset,
    batch: usize,
) -> Result<(f64, Option<f64>)> {
    let (mut loss, mut correct) = (0.0, 0);
    let idx: Vec<usize> = (0..ds.len()).collect();
    for b in idx.chunks(batch.max(1)) {
        let (x, lengths) = ds.padded_batch::<f32>(b)?;
        let out = model.forward(ModelInput::Features(&x), Call::new().lengths(&lengths))?;
        let bl = batch_loss(&out.output, &ds.labels, b, false)?;
        loss += bl.loss;
        correct += bl.correct;
    }
    let n = ds.len() as f64;
    let acc = matches!(ds.labels, Labels::Class { .. }).then(|| correct as f64 / n);
    Ok((loss / n, acc))
}

fn describe_figures(loss: f64, acc: Option<f64>) -> String {
    match acc {
        Some(a) => format!("loss {loss:.4} acc {:.2}%", 100.0 * a),
        None => format!("mse {loss:.5}"),
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
    let model = build_model(s, train.input_size, out, OutputForm::Last)?;
    let n_batches = train.len().div_ceil(s.batch_size);
    let (epochs, total_steps) = match (s.epochs, s.steps) {
        (Some(e), _) => (e, e * n_batches),
        (None, Some(st)) => (st.div_ceil(n_batches), st),
        (None, None) => unreachable!("settings give epochs or steps"),
    };
    let mut core = Core::new(model, s, epochs)?;
    let mut prog = Progress::default();
    if let Some(ck) = &resume {
        prog = core.restore(ck, "sequences")?.0;
    }
    let meta = [(
        "classes",
        serde_json::to_string(&classes).context("classes")?,
    )];
    println!(
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
    println!(
        "  model: {} {} × {} layer(s){} → {} output(s); {} parameters; {} epoch(s) of {} steps \
         (batch {}); {}; clip norm {}; seed {}",
        s.cell.kind().name(),
        s.hidden_size,
        s.num_layers,
        if s.bidirectional {
            ", bidirectional"
        } else {
            ""
        },
        out,
        core.model.param_len(),
        epochs,
        n_batches,
        s.batch_size,
        describe(&s.opt),
        s.clip_norm,
        s.seed
    );
    let mut reporter = Reporter::new(args.log.as_deref(), s.quiet, resume.is_some())?;
    let run_start = Instant::now();
    let elapsed = |p: &Progress| p.elapsed_s + run_start.elapsed().as_secs_f64();
    let mut stopped = false;
    let mut last_lr = s.opt.lr();
    while prog.epoch < epochs && prog.step < total_steps {
        let epoch = prog.epoch + 1;
        let epoch_start = Instant::now();
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            s.seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        ));
        reporter.start(
            format!("epoch {epoch}/{epochs}"),
            n_batches as u64,
            prog.position as u64,
        );
        let seen_before = prog.targets;
        for k in prog.position..n_batches {
            if prog.step >= total_steps {
                break;
            }
            let idx = &order[k * s.batch_size..((k + 1) * s.batch_size).min(order.len())];
            let lr = core.set_lr(&prog)?;
            last_lr = lr;
            prog.step += 1;
            let (x, lengths) = train.padded_batch::<f32>(idx)?;
            let (out, tape) = core.model.forward_train(
                ModelInput::Features(&x),
                Call::new()
                    .lengths(&lengths)
                    .seed(dropout_seed(s.seed, prog.step)),
            )?;
            let bl = batch_loss(&out.output, &train.labels, idx, true)?;
            let grad = bl.grad.context("a training batch has a gradient")?;
            core.zero_grads();
            core.model.backward(&tape, &grad, &mut core.grads)?;
            let norm = core.update(s)?;
            let mean = bl.loss / idx.len() as f64;
            if !mean.is_finite() || !norm.is_finite() {
                bail!(
                    "training diverged at step {} (loss {mean}, gradient norm {norm}); try a \
                     smaller --lr or a --clip-norm",
                    prog.step
                );
            }
            prog.position = k + 1;
            prog.loss_sum += bl.loss;
            prog.targets += idx.len();
            prog.correct += bl.correct;
            prog.norm_sum += norm;
            prog.steps += 1;
            let secs = epoch_start.elapsed().as_secs_f64();
            let steps_seen: usize = lengths.iter().sum();
            let acc = classes
                .is_some()
                .then(|| bl.correct as f64 / idx.len() as f64);
            let rec = StepRecord {
                step: prog.step,
                epoch,
                loss: mean,
                ppl: None,
                acc,
                lr,
                grad_norm: norm,
                tokens_per_s: steps_seen as f64 * (prog.targets - seen_before) as f64
                    / idx.len() as f64
                    / secs.max(1e-9),
                elapsed_s: elapsed(&prog),
            };
            let running = prog.loss_sum / prog.targets as f64;
            let fig = match classes {
                Some(_) => format!(
                    "acc {:.1}%",
                    100.0 * prog.correct as f64 / prog.targets as f64
                ),
                None => format!("mse {running:.5}"),
            };
            reporter.step(&rec, &fig)?;
            let interrupted = INTERRUPTED.load(Ordering::SeqCst);
            if let Some(path) = &args.checkpoint
                && (interrupted || (s.save_every > 0 && prog.step.is_multiple_of(s.save_every)))
            {
                let mut p = prog.clone();
                p.elapsed_s = elapsed(&prog);
                core.save(path, "sequences", args, &meta, None, &p)?;
            }
            if interrupted {
                stopped = true;
                break;
            }
        }
        if stopped {
            reporter.println(&format!("interrupted at epoch {epoch}, step {}", prog.step));
            break;
        }
        let train_loss = prog.loss_sum / prog.targets.max(1) as f64;
        let train_acc = classes
            .is_some()
            .then(|| prog.correct as f64 / prog.targets.max(1) as f64);
        let (valid_loss, valid_acc) = evaluate(&core.model, &valid, s.batch_size)?;
        let partial = prog.position < n_batches;
        reporter.println(&format!(
            "epoch {epoch:>3}{}  lr {last_lr:.6}  train {}  valid {}  |grad| {:.3}  {:.1} s",
            if partial { " (part)" } else { "" },
            describe_figures(train_loss, train_acc),
            describe_figures(valid_loss, valid_acc),
            prog.norm_sum / prog.steps.max(1) as f64,
            elapsed(&prog)
        ));
        if partial {
            // --steps ended the run inside the epoch: a later --resume continues here
            if let Some(path) = &args.checkpoint {
                let mut p = prog.clone();
                p.elapsed_s = elapsed(&prog);
                core.save(path, "sequences", args, &meta, None, &p)?;
            }
            break;
        }
        core.sched.on_epoch_end(valid_loss);
        let improved = prog.best_valid.is_none_or(|b| valid_loss < b);
        if improved {
            prog.best_valid = Some(valid_loss);
        }
        prog.next_epoch();
        reporter.flush()?;
        if let Some(path) = &args.checkpoint {
            let mut p = prog.clone();
            p.elapsed_s = elapsed(&prog);
            core.save(path, "sequences", args, &meta, None, &p)?;
            if improved {
                core.save(&best_path(path), "sequences", args, &meta, None, &p)?;
            }
        }
    }
    reporter.finish()?;
    let (test_loss, test_acc) = evaluate(&core.model, &test, s.batch_size)?;
    println!(
        "test: {} over {} sequences; {} steps in {:.1} s",
        describe_figures(test_loss, test_acc),
        test.len(),
        prog.step,
        elapsed(&prog)
    );
    Ok(())
}

/// The copy task's model, loss and recall on its fixed held-out batch.
fn copy_eval(model: &SequenceModel<f32>, test: &recur::data::CopyBatch) -> Result<(f64, f64, f64)> {
    let x = test.one_hot::<f32>();
    let out = model.forward(ModelInput::Features(&x), Call::new())?;
    let z = &out.output;
    let rows = z.shape()[0] * z.shape()[1];
    let flat = Tensor::new(z.data().to_vec(), &[rows, CopyTask::VOCAB])?;
    let (l, _, _) = cross_entropy_loss(&flat, &test.target, &CrossEntropyConfig::default())?;
    let (symbols, sequences) = CopyTask::recall_accuracy(z, &test.target)?;
    Ok((f64::from(l), symbols, sequences))
}

/// Runs `recur train --task copy`.
pub fn run_copy(args: &TrainArgs, s: &Settings) -> Result<()> {
    let resume = match &args.resume {
        Some(p) => Some(Checkpoint::load(p)?),
        None => None,
    };
    let steps = s.steps.unwrap_or(5_000);
    let model = build_model(s, CopyTask::VOCAB, CopyTask::VOCAB, OutputForm::EveryStep)?;
    let mut core = Core::new(model, s, 1)?;
    let mut prog = Progress::default();
    if let Some(ck) = &resume {
        prog = core.restore(ck, "copy")?.0;
    }
    let mut task = CopyTask::new(s.seq_len, s.seed, Split::Train)?;
    let test = CopyTask::new(s.seq_len, s.seed, Split::Test)?.sample(COPY_TEST)?;
    // a resumed run draws the batches the first run drew, skipping those it trained on
    for _ in 0..prog.step {
        task.sample(s.batch_size)?;
    }
    println!(
        "recur train: copy task, delay T = {} ({} steps a sequence), {} {} × {} layer(s), {} \
         parameters; {} steps of {} sequences, {}, clip norm {}, seed {}; baseline loss {:.5}",
        s.seq_len,
        task.seq_len(),
        s.cell.kind().name(),
        s.hidden_size,
        s.num_layers,
        core.model.param_len(),
        steps,
        s.batch_size,
        describe(&s.opt),
        s.clip_norm,
        s.seed,
        task.baseline_loss()
    );
    let mut reporter = Reporter::new(args.log.as_deref(), s.quiet, resume.is_some())?;
    reporter.start("copy".into(), steps as u64, prog.step as u64);
    let start = Instant::now();
    let elapsed = |p: &Progress| p.elapsed_s + start.elapsed().as_secs_f64();
    let cfg = CrossEntropyConfig::default();
    while prog.step < steps {
        let lr = core.set_lr(&prog)?;
        prog.step += 1;
        let batch = task.sample(s.batch_size)?;
        let x = batch.one_hot::<f32>();
        let (out, tape) = core.model.forward_train(
            ModelInput::Features(&x),
            Call::new().seed(dropout_seed(s.seed, prog.step)),
        )?;
        let shape = out.output.shape().to_vec();
        let rows = shape[0] * shape[1];
        let flat = Tensor::new(out.output.data().to_vec(), &[rows, CopyTask::VOCAB])?;
        let ce = cross_entropy(&flat, &batch.target, &cfg, 1.0f32)?;
        let grad = Tensor::new(ce.grad.data().to_vec(), &shape)?;
        core.zero_grads();
        core.model.backward(&tape, &grad, &mut core.grads)?;
        let norm = core.update(s)?;
        let loss = f64::from(ce.loss);
        if !loss.is_finite() || !norm.is_finite() {
            bail!(
                "training diverged at step {} (loss {loss}, gradient norm {norm}); try a smaller \
                 --lr or a --clip-norm",
                prog.step
            );
        }
        prog.loss_sum += loss;
        prog.norm_sum += norm;
        prog.steps += 1;
        let rec = StepRecord {
            step: prog.step,
            epoch: 0,
            loss,
            ppl: None,
            acc: Some(ce.accuracy()),
            lr,
            grad_norm: norm,
            tokens_per_s: (prog.step * rows) as f64 / elapsed(&prog).max(1e-9),
            elapsed_s: elapsed(&prog),
        };
        reporter.step(
            &rec,
            &format!("loss {loss:.4} acc {:.1}%", 100.0 * ce.accuracy()),
        )?;
        let interrupted = INTERRUPTED.load(Ordering::SeqCst);
        if prog.step.is_multiple_of(s.eval_every) || prog.step == steps || interrupted {
            let (test_loss, symbols, sequences) = copy_eval(&core.model, &test)?;
            reporter.println(&format!(
                "step {:>6}  train loss {:.5}  |grad| {:.3}  test loss {test_loss:.5}  recalled \
                 {:.1}% of symbols, {:.1}% of sequences  {:.1} s",
                prog.step,
                prog.loss_sum / prog.steps.max(1) as f64,
                prog.norm_sum / prog.steps.max(1) as f64,
                100.0 * symbols,
                100.0 * sequences,
                elapsed(&prog)
            ));
            prog.loss_sum = 0.0;
            prog.norm_sum = 0.0;
            prog.steps = 0;
            reporter.flush()?;
            if let Some(path) = &args.checkpoint {
                let mut p = prog.clone();
                p.elapsed_s = elapsed(&prog);
                core.save(path, "copy", args, &[], None, &p)?;
            }
        }
        if interrupted {
            reporter.println(&format!("interrupted at step {}", prog.step));
            break;
        }
    }
    reporter.finish()?;
    let (test_loss, symbols, sequences) = copy_eval(&core.model, &test)?;
    println!(
        "done: {} steps in {:.1} s; test loss {test_loss:.5} (baseline {:.5}); recalled {:.1}% of \
         symbols, {:.1}% of {COPY_TEST} sequences",
        prog.step,
        elapsed(&prog),
        task.baseline_loss(),
        100.0 * symbols,
        100.0 * sequences
    );
    Ok(())
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
            check_model(ck, &build_model(&s, input_size, out, OutputForm::Last)?)?;
            Ok((ck.inner.model.clone(), s, classes))
        }
        other => bail!(
            "{}: `recur eval` reads text and sequence checkpoints, not `{other}`",
            ck.file
        ),
    }
}

/// `recur eval` of a sequence model: on `file`, or on the test part it was trained with.
pub fn eval_command(ck: &Checkpoint, file: Option<&PathBuf>, batch: Option<usize>) -> Result<()> {
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
    let (loss, acc) = evaluate(&model, &ds, batch.unwrap_or(64))?;
    println!(
        "{name}: {} over {} sequences",
        describe_figures(loss, acc),
        ds.len()
    );
    Ok(())
}
