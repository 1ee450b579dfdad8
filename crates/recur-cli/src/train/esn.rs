//! `recur train --cell esn`: an echo state network ([`recur::model::Esn`]) on the generated
//! tasks and on labelled sequences (on `--csv` series: [`super::esn_forecast`]). Nothing is trained by gradient: the reservoir is drawn
//! from the seed, and the readout is fitted in closed form by ridge regression on the
//! training data, for each λ of `--ridge`, keeping the λ with the lowest validation error.
//!
//! | data                                   | readout reads            | target                  | figure                       |
//! |----------------------------------------|--------------------------|-------------------------|------------------------------|
//! | adding, multiplication                 | each sequence's last step | the value               | solved (within 0.04)         |
//! | temporal order, timing, labelled classes | each sequence's last step | one-hot class          | accuracy (largest output)    |
//! | labelled numbers                       | each sequence's last step | the value               | mse                          |
//! | reber                                  | every step               | the allowed next symbols | steps and strings correct    |
//! | copy                                   | every step               | one-hot symbol          | symbols and sequences recalled |
//!
//! Generated tasks fit on `--esn-sequences` sequences of the training stream, choose λ on the
//! validation set the gradient-trained tasks use, and score the same fresh test set.
//! `--checkpoint FILE` writes the network ([`recur::io::save_esn`]) with what `recur eval`
//! needs to score it again.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use recur::Tensor;
use recur::data::{
    AddingProblem, CopyTask, EmbeddedReber, Labels, Operation, ReberBatch, SequenceDataset, Split,
    TemporalOrder, TimingTask,
};
use recur::model::{Esn, EsnConfig, EsnData, OutputForm};

use super::adding::{TEST_SEQUENCES, VALID_SEQUENCES};
use super::args::{Source, TrainArgs};
use super::outcome::Outcome;
use super::reber::{TEST_STRINGS, VALID_STRINGS};
use super::seq::{COPY_TEST, load_sets, read_sequences};
use super::settings::Settings;

/// Sequences per reservoir pass: bounds the states held at once.
const CHUNK: usize = 128;

/// What a batch's outputs are scored against.
enum Truth {
    /// a value per sequence (or per step); `solved` the tolerance of the adding problem
    Value { solved: Option<f64> },
    /// a class per sequence
    Class(Vec<usize>),
    /// the embedded Reber grammar's allowed next symbols (the target tensor)
    Next,
    /// the copy task's target symbols `[seq_len, batch]`
    Copy(Vec<usize>),
}

/// One batch: input, lengths, target tensor and how to score it.
struct Part {
    input: Tensor<f64>,
    lengths: Vec<usize>,
    target: Tensor<f64>,
    truth: Truth,
}

/// One-hot rows of `classes` over `k` classes, `[batch, k]`.
fn one_hot(classes: &[usize], k: usize) -> Result<Tensor<f64>> {
    let mut v = vec![0.0; classes.len() * k];
    for (row, &c) in classes.iter().enumerate() {
        v[row * k + c] = 1.0;
    }
    Ok(Tensor::new(v, &[classes.len(), k])?)
}

/// The task an ESN is fitted on: its readout form, sizes and data.
struct Data {
    name: String,
    input_size: usize,
    output_size: usize,
    output: OutputForm,
    train: Vec<Part>,
    valid: Vec<Part>,
    test: Vec<Part>,
    /// class names (labelled classification)
    classes: Option<Vec<String>>,
}

/// `n` sequences of a generator in batches of at most [`CHUNK`].
fn chunks(n: usize, mut draw: impl FnMut(usize) -> Result<Part>) -> Result<Vec<Part>> {
    (0..n.div_ceil(CHUNK))
        .map(|k| draw(CHUNK.min(n - k * CHUNK)))
        .collect()
}

/// The generated task's three sets, drawn from the seed's three streams.
fn generated(s: &Settings, train_n: usize) -> Result<Data> {
    let sets = |valid_n: usize, test_n: usize, make: &dyn Fn(Split, usize) -> Result<Vec<Part>>| {
        Ok::<_, anyhow::Error>([
            make(Split::Train, train_n)?,
            make(Split::Valid, valid_n)?,
            make(Split::Test, test_n)?,
        ])
    };
    let (name, input_size, output_size, output, [train, valid, test]) = match s.source {
        Source::Adding | Source::Multiplication => {
            let op = if s.source == Source::Adding {
                Operation::Add
            } else {
                Operation::Multiply
            };
            let make = |split, n| {
                let mut g = AddingProblem::with_operation(s.seq_len, op, s.seed, split)?;
                chunks(n, |b| {
                    let batch = g.sample::<f64>(b)?;
                    Ok(Part {
                        input: batch.input,
                        lengths: batch.lengths,
                        target: batch.target,
                        truth: Truth::Value {
                            solved: Some(AddingProblem::SOLVED_TOLERANCE),
                        },
                    })
                })
            };
            let name = if op == Operation::Add {
                "adding"
            } else {
                "multiplication"
            };
            (
                name,
                AddingProblem::INPUT_SIZE,
                1,
                OutputForm::Last,
                sets(VALID_SEQUENCES, TEST_SEQUENCES, &make)?,
            )
        }
        Source::TemporalOrder | Source::TemporalOrder3 | Source::Timing => {
            let relevant = if s.source == Source::TemporalOrder3 {
                3
            } else {
                2
            };
            let classes = if s.source == Source::Timing {
                TimingTask::CLASSES
            } else {
                1 << relevant
            };
            let make = |split, n| {
                enum Gen {
                    Order(TemporalOrder),
                    Timing(TimingTask),
                }
                let mut g = if s.source == Source::Timing {
                    Gen::Timing(TimingTask::new(s.seq_len, s.seed, split)?)
                } else {
                    Gen::Order(TemporalOrder::new(relevant, s.seq_len, s.seed, split)?)
                };
                chunks(n, |b| {
                    let batch = match &mut g {
                        Gen::Order(o) => o.sample::<f64>(b)?,
                        Gen::Timing(t) => t.sample::<f64>(b)?,
                    };
                    Ok(Part {
                        target: one_hot(&batch.class, classes)?,
                        input: batch.input,
                        lengths: batch.lengths,
                        truth: Truth::Class(batch.class),
                    })
                })
            };
            let (name, input) = match s.source {
                Source::Timing => ("timing", TimingTask::INPUT_SIZE),
                Source::TemporalOrder => ("temporal-order", TemporalOrder::INPUT_SIZE),
                _ => ("temporal-order-3", TemporalOrder::INPUT_SIZE),
            };
            (
                name,
                input,
                classes,
                OutputForm::Last,
                sets(VALID_SEQUENCES, TEST_SEQUENCES, &make)?,
            )
        }
        Source::Reber => {
            let make = |split, n| {
                let mut g = EmbeddedReber::new(s.seed, split);
                chunks(n, |b| {
                    let batch = g.sample::<f64>(b)?;
                    Ok(Part {
                        input: batch.input,
                        lengths: batch.lengths,
                        target: batch.target,
                        truth: Truth::Next,
                    })
                })
            };
            let k = EmbeddedReber::SYMBOLS;
            (
                "reber",
                k,
                k,
                OutputForm::EveryStep,
                sets(VALID_STRINGS, TEST_STRINGS, &make)?,
            )
        }
        Source::Copy => {
            let make = |split, n| {
                let mut g = CopyTask::new(s.seq_len, s.seed, split)?;
                chunks(n, |b| {
                    let batch = g.sample(b)?;
                    let [steps, nb] = batch.shape;
                    let mut y = vec![0.0; steps * nb * CopyTask::VOCAB];
                    for (row, &sym) in batch.target.iter().enumerate() {
                        y[row * CopyTask::VOCAB + sym] = 1.0;
                    }
                    Ok(Part {
                        input: batch.one_hot::<f64>(),
                        lengths: vec![steps; nb],
                        target: Tensor::new(y, &[steps, nb, CopyTask::VOCAB])?,
                        truth: Truth::Copy(batch.target),
                    })
                })
            };
            (
                "copy",
                CopyTask::VOCAB,
                CopyTask::VOCAB,
                OutputForm::EveryStep,
                sets(COPY_TEST, COPY_TEST, &make)?,
            )
        }
        Source::Text | Source::Sequences | Source::Forecast | Source::Sines => {
            bail!("{:?} is not a generated task", s.source)
        }
    };
    Ok(Data {
        name: name.into(),
        input_size,
        output_size,
        output,
        train,
        valid,
        test,
        classes: None,
    })
}

/// A labelled-sequence set in batches.
fn labelled_parts(ds: &SequenceDataset) -> Result<Vec<Part>> {
    let idx: Vec<usize> = (0..ds.len()).collect();
    idx.chunks(CHUNK)
        .map(|b| {
            let (input, lengths) = ds.padded_batch::<f64>(b)?;
            Ok(match &ds.labels {
                Labels::Class { ids, classes } => {
                    let c: Vec<usize> = b.iter().map(|&i| ids[i]).collect();
                    Part {
                        target: one_hot(&c, classes.len())?,
                        input,
                        lengths,
                        truth: Truth::Class(c),
                    }
                }
                Labels::Regression(y) => Part {
                    target: Tensor::new(
                        b.iter().map(|&i| f64::from(y[i])).collect(),
                        &[b.len(), 1],
                    )?,
                    input,
                    lengths,
                    truth: Truth::Value { solved: None },
                },
            })
        })
        .collect()
}

fn labelled(args: &TrainArgs, s: &Settings) -> Result<Data> {
    let [train, valid, test] = load_sets(args, s)?;
    let classes = train.classes().map(<[String]>::to_vec);
    Ok(Data {
        name: args
            .sequences
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        input_size: train.input_size,
        output_size: classes.as_ref().map_or(1, Vec::len),
        output: OutputForm::Last,
        train: labelled_parts(&train)?,
        valid: labelled_parts(&valid)?,
        test: labelled_parts(&test)?,
        classes,
    })
}

/// Figures over a set: the mean squared error per target value and the task's own figure.
struct Figures {
    mse: f64,
    figure: String,
    /// the fraction of sequences solved (adding, multiplication) or correct (classes)
    solved: Option<f64>,
}

fn score(esn: &Esn, parts: &[Part]) -> Result<Figures> {
    let m = esn.config().output_size;
    let (mut sq, mut count) = (0.0, 0usize);
    let (mut hits, mut total, mut seq_hits, mut seqs) = (0usize, 0usize, 0usize, 0usize);
    let mut kind = "";
    for p in parts {
        let out = esn.predict(&p.input, Some(&p.lengths))?;
        let (z, y) = (out.data(), p.target.data());
        let nb = p.lengths.len();
        match esn.config().output {
            OutputForm::Last => {
                for (a, b) in z.iter().zip(y) {
                    sq += (a - b) * (a - b);
                }
                count += z.len();
            }
            OutputForm::EveryStep => {
                for (b, &len) in p.lengths.iter().enumerate() {
                    for t in 0..len {
                        let row = (t * nb + b) * m;
                        for j in row..row + m {
                            sq += (z[j] - y[j]) * (z[j] - y[j]);
                        }
                        count += m;
                    }
                }
            }
        }
        match &p.truth {
            Truth::Value { solved: Some(tol) } => {
                kind = "solved";
                hits += z
                    .iter()
                    .zip(y)
                    .filter(|(a, b)| (*a - *b).abs() < *tol)
                    .count();
                total += nb;
            }
            Truth::Value { solved: None } => {}
            Truth::Class(c) => {
                kind = "correct";
                for (b, &class) in c.iter().enumerate() {
                    let row = &z[b * m..(b + 1) * m];
                    let best = (1..m).fold(0, |i, k| if row[k] > row[i] { k } else { i });
                    hits += usize::from(best == class);
                }
                total += nb;
            }
            Truth::Next => {
                kind = "reber";
                let batch = ReberBatch {
                    input: p.input.clone(),
                    target: p.target.clone(),
                    lengths: p.lengths.clone(),
                };
                let (steps, strings) = EmbeddedReber::accuracy(&out, &batch)?;
                let n_steps: usize = p.lengths.iter().sum();
                hits += (steps * n_steps as f64).round() as usize;
                total += n_steps;
                seq_hits += (strings * nb as f64).round() as usize;
                seqs += nb;
            }
            Truth::Copy(target) => {
                kind = "copy";
                let (symbols, sequences) = CopyTask::recall_accuracy(&out, target)?;
                hits += (symbols * (nb * CopyTask::COPY_LEN) as f64).round() as usize;
                total += nb * CopyTask::COPY_LEN;
                seq_hits += (sequences * nb as f64).round() as usize;
                seqs += nb;
            }
        }
    }
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    let solved = matches!(kind, "solved" | "correct").then(|| hits as f64 / total.max(1) as f64);
    let figure = match kind {
        "solved" => format!("solved {:.2}%", pct(hits, total)),
        "correct" => format!("correct {:.2}%", pct(hits, total)),
        "reber" => format!(
            "steps correct {:.2}%, strings correct {:.2}%",
            pct(hits, total),
            pct(seq_hits, seqs)
        ),
        "copy" => format!(
            "recalled {:.2}% of symbols, {:.2}% of sequences",
            pct(hits, total),
            pct(seq_hits, seqs)
        ),
        _ => String::new(),
    };
    Ok(Figures {
        mse: sq / count.max(1) as f64,
        figure,
        solved,
    })
}

/// The data of a run: generated or labelled.
fn data_of(args: &TrainArgs, s: &Settings, train_n: usize) -> Result<Data> {
    match s.source {
        Source::Text => {
            bail!("--cell esn: language models are not offered; use --sequences, --task or --csv")
        }
        Source::Forecast => bail!("--cell esn --csv is fitted by esn_forecast"),
        Source::Sequences => labelled(args, s),
        _ => generated(s, train_n),
    }
}

fn line(what: &str, f: &Figures) -> String {
    if f.figure.is_empty() {
        format!("{what}: mse {:.5}", f.mse)
    } else {
        format!("{what}: mse {:.5}, {}", f.mse, f.figure)
    }
}

/// Runs `recur train --cell esn`.
pub fn run(args: &TrainArgs, s: &Settings) -> Result<()> {
    if args.resume.is_some() || args.log.is_some() {
        bail!(
            "--cell esn: --resume and --log are not offered (the readout is fitted in one solve)"
        );
    }
    if s.source == Source::Forecast {
        return super::esn_forecast::run(args, s);
    }
    refuse_gradient_flags(
        args,
        "--cell esn",
        &[],
        "the readout is fitted in closed form on the training sequences; its options are \
         --hidden-size, --spectral-radius, --input-scaling, --bias-scaling, --leak-rate, \
         --sparsity, --ridge, --esn-sequences, --esn-noise and --seed",
    )?;
    let (esn, data, _) = fit(args, s)?;
    if let Some(path) = &args.checkpoint {
        let classes = serde_json::to_string(&data.classes)?;
        save(&esn, path, args, Some(&classes), &[])?;
        println!("saved to {}", path.display());
    }
    Ok(())
}

/// The flags of gradient training (optimizer, schedule, steps, batches, clipping, dropout,
/// the trained cells' options, the training log), and `extra`: an echo state network trains
/// nothing by gradient, so each is refused, naming the flag, rather than ignored. `what`
/// names the run, `options` says what it does take. (`recur compare` hands every cell the
/// one budget and calls [`measure`], which does not check.)
pub(super) fn refuse_gradient_flags(
    a: &TrainArgs,
    what: &str,
    extra: &[(&str, bool)],
    options: &str,
) -> Result<()> {
    let given = [
        ("--epochs", a.epochs.is_some()),
        ("--steps", a.steps.is_some()),
        ("--optimizer", a.optimizer.is_some()),
        ("--lr", a.lr.is_some()),
        ("--momentum", a.momentum.is_some()),
        ("--nesterov", a.nesterov.is_some()),
        ("--weight-decay", a.weight_decay.is_some()),
        ("--betas", a.betas.is_some()),
        ("--eps", a.eps.is_some()),
        ("--alpha", a.alpha.is_some()),
        ("--batch-size", a.batch_size.is_some()),
        ("--eval-batch-size", a.eval_batch_size.is_some()),
        ("--bptt", a.bptt.is_some()),
        ("--clip-norm", a.clip_norm.is_some()),
        ("--clip-value", a.clip_value.is_some()),
        ("--schedule", a.schedule.is_some()),
        ("--decay-after", a.decay_after.is_some()),
        ("--decay-factor", a.decay_factor.is_some()),
        ("--warmup-steps", a.warmup_steps.is_some()),
        ("--patience", a.patience.is_some()),
        ("--min-lr", a.min_lr.is_some()),
        ("--loss-reduction", a.loss_reduction.is_some()),
        ("--eval-every", a.eval_every.is_some()),
        ("--early-stopping", a.early_stopping.is_some()),
        ("--dropout", a.dropout.is_some()),
        ("--embedding-dropout", a.embedding_dropout.is_some()),
        ("--output-dropout", a.output_dropout.is_some()),
        ("--recurrent-dropout", a.recurrent_dropout.is_some()),
        ("--zoneout-h", a.zoneout_h.is_some()),
        ("--zoneout-c", a.zoneout_c.is_some()),
        ("--proj-size", a.proj_size.is_some()),
        ("--peepholes", a.peepholes.is_some()),
        ("--layer-norm", a.layer_norm.is_some()),
        ("--embedding-size", a.embedding_size.is_some()),
        ("--tied", a.tied.is_some()),
        ("--init-range", a.init_range.is_some()),
        ("--forget-bias", a.forget_bias.is_some()),
        ("--chrono-init", a.chrono_init.is_some()),
        ("--save-every", a.save_every.is_some()),
        ("--csv-log", a.csv_log.is_some()),
    ];
    if let Some((flag, _)) = given.iter().chain(extra).find(|(_, set)| *set) {
        bail!("{what}: {flag} is not an option of an echo state network ({options})");
    }
    Ok(())
}

/// Fits an ESN on a generated task and returns what it measured (`recur compare`): no
/// training curve, the test set's mean squared error and the fraction of it solved.
pub fn measure(args: &TrainArgs, s: &Settings) -> Result<Outcome> {
    let start = Instant::now();
    let (_, _, test) = fit(args, s)?;
    Ok(Outcome {
        test_loss: test.mse,
        test_solved: test.solved.unwrap_or(f64::NAN),
        elapsed_s: start.elapsed().as_secs_f64(),
        ..Outcome::default()
    })
}

/// Draws the reservoir, fits the readout and scores it, printing each figure.
fn fit(args: &TrainArgs, s: &Settings) -> Result<(Esn, Data, Figures)> {
    let start = Instant::now();
    let data = data_of(args, s, s.esn.sequences)?;
    let config = esn_config(s, data.input_size, data.output_size, data.output);
    let e = &s.esn;
    let mut esn = Esn::new(config, s.seed).context("echo state network")?;
    let n_train: usize = data.train.iter().map(|p| p.lengths.len()).sum();
    println!(
        "recur train: echo state network on {}: {}; readout fitted on {n_train} sequences",
        data.name,
        describe(s)
    );
    let fit = esn.fit(&view(&data.train), &view(&data.valid), &e.ridge)?;
    for (lambda, mse) in &fit.grid {
        println!("  λ = {lambda:e}: valid mse {mse:.6}");
    }
    let valid = score(&esn, &data.valid)?;
    println!(
        "kept λ = {:e}: train mse {:.5}; {}",
        fit.ridge,
        fit.train_mse,
        line("valid", &valid)
    );
    let test = score(&esn, &data.test)?;
    let n_test: usize = data.test.iter().map(|p| p.lengths.len()).sum();
    println!(
        "{}  {:.1} s",
        line(&format!("test: {n_test} sequences"), &test),
        start.elapsed().as_secs_f64()
    );
    Ok((esn, data, test))
}

/// The batches as the library's fit reads them.
fn view(parts: &[Part]) -> Vec<EsnData<'_>> {
    parts
        .iter()
        .map(|p| (&p.input, Some(p.lengths.as_slice()), &p.target))
        .collect()
}

/// Metadata keys of a saved ESN run.
pub const RUN_KEY: &str = "recur-cli.run_config";
const CLASSES_KEY: &str = "recur-cli.classes";

/// Writes the network with the run's settings, its class names (JSON) and `extra` metadata.
pub(super) fn save(
    esn: &Esn,
    path: &Path,
    args: &TrainArgs,
    classes: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<()> {
    let mut run = args.clone();
    run.checkpoint = None;
    let run = serde_json::to_string(&run)?;
    let mut meta = vec![(RUN_KEY, run.as_str())];
    if let Some(c) = classes {
        meta.push((CLASSES_KEY, c));
    }
    meta.extend_from_slice(extra);
    recur::io::save_esn(esn, path, &meta).with_context(|| format!("writing {}", path.display()))
}

/// Whether `path` is an ESN file: a safetensors file whose `recur.format` is the ESN's
/// (a missing, unreadable or other file is left to the checkpoint reader's errors).
pub fn is_esn_file(path: &Path) -> bool {
    match recur::io::load_esn(path) {
        Ok(_) => true,
        Err(recur::Error::Io { .. } | recur::Error::Format { .. }) => false,
        Err(recur::Error::Metadata { key, .. }) => key != "recur.format",
        Err(_) => true,
    }
}

/// `recur eval` of an ESN: on `sequences`, or on the test set its run scored.
pub fn eval_command(path: &Path, sequences: Option<&Path>) -> Result<()> {
    let (esn, meta) = recur::io::load_esn(path)?;
    let run = meta
        .get(RUN_KEY)
        .with_context(|| format!("{}: metadata `{RUN_KEY}` is missing", path.display()))?;
    let args: TrainArgs = serde_json::from_str(run)
        .with_context(|| format!("{}: metadata `{RUN_KEY}`", path.display()))?;
    let s = Settings::resolve(&args)?;
    if s.source == Source::Forecast {
        if sequences.is_some() {
            bail!(
                "{}: a forecaster: `recur eval` prints its test table on the data it was fitted \
                 on (no file); `recur predict --csv` forecasts new history",
                path.display()
            );
        }
        let spec_key = format!("{}forecast", recur::io::predict::SAFETENSORS_META_PREFIX);
        return super::esn_forecast::eval(&esn, meta.get(&spec_key), &args, path);
    }
    let (name, parts) = match (s.source, sequences) {
        (Source::Sequences, Some(file)) => {
            let classes: Option<Vec<String>> = meta
                .get(CLASSES_KEY)
                .map(|c| serde_json::from_str(c))
                .transpose()?
                .flatten();
            let ds = read_sequences(file, s.target, classes.as_deref())?;
            if ds.input_size != esn.config().input_size {
                bail!(
                    "{}: {} feature(s) a step, the network reads {}",
                    file.display(),
                    ds.input_size,
                    esn.config().input_size
                );
            }
            (file.display().to_string(), labelled_parts(&ds)?)
        }
        (_, Some(_)) => bail!("--sequences: the network was fitted on a generated task"),
        (_, None) => ("the test set".to_string(), data_of(&args, &s, 1)?.test),
    };
    let f = score(&esn, &parts)?;
    let n: usize = parts.iter().map(|p| p.lengths.len()).sum();
    println!("{}", line(&format!("{name}: {n} sequences"), &f));
    Ok(())
}

/// The echo state network the settings describe (`--hidden-size` reservoir units and the
/// `--spectral-radius` … `--sparsity` flags), reading `input_size` values a step and writing
/// `output_size`; no washout.
/// The reservoir's settings and seed as the runs print them.
pub(super) fn describe(s: &Settings) -> String {
    let e = &s.esn;
    format!(
        "reservoir {} (spectral radius {}, input scaling {}, bias scaling {}, leak rate {}, \
         sparsity {}, state noise {}), seed {}",
        s.hidden_size,
        e.spectral_radius,
        e.input_scaling,
        e.bias_scaling,
        e.leak_rate,
        e.sparsity,
        e.noise,
        s.seed
    )
}

pub(super) fn esn_config(
    s: &Settings,
    input_size: usize,
    output_size: usize,
    output: OutputForm,
) -> EsnConfig {
    let e = &s.esn;
    EsnConfig {
        input_size,
        reservoir_size: s.hidden_size,
        output_size,
        spectral_radius: e.spectral_radius,
        input_scaling: e.input_scaling,
        bias_scaling: e.bias_scaling,
        leak_rate: e.leak_rate,
        sparsity: e.sparsity,
        washout: 0,
        output,
        state_noise: e.noise,
        noise_seed: s.seed,
    }
}
