//! Training: `recur train` (and what `recur eval` and `recur sample` read back).
//!
//! One loop trains every kind of run: [`trainer::Trainer`] owns the optimizers (one per part
//! of the model), the learning-rate schedule, the gradient buffer, the progress, the log and
//! the checkpoints; a [`trainer::Task`] owns the model and the data and says what differs:
//! its batches, its loss and gradient, its evaluation and lines, and what a checkpoint
//! records besides the model. A new task is one file implementing `Task`.
//!
//! One step, in order:
//! ```text
//! lr ← schedule(step, epoch); step += 1
//! grads ← 0;  Task::train_step: forward → loss → backward (adds into grads)
//! n ← ‖grads‖ (clip by norm, by value: recur::optim);  θ ← optimizer(θ, grads) per part
//! loss or n not finite → error ("training diverged")
//! progress sums, log record, progress bar
//! Ctrl-C (or --save-every) → checkpoint; Ctrl-C → "interrupted at …", stop
//! ```
//! and at an epoch's end (every `--eval-every` steps for a generated task): `Task::validate`,
//! its line; then the scheduler's epoch end, the best checkpoint, the checkpoint. After the
//! run, finished or interrupted: `Task::finish` (the test).
//!
//! | module       | what                                                                  |
//! |--------------|-----------------------------------------------------------------------|
//! | `trainer`    | the one training loop and the `Task` trait                             |
//! | `args`       | the flags, which are also the config file's keys                       |
//! | `settings`   | the flags resolved against the data source's defaults, checked         |
//! | `adding`     | task: the built-in adding-problem demonstration (no data flag), and the multiplication problem |
//! | `classify`   | tasks: temporal order and timing (a class after each generated sequence) |
//! | `esn`        | `--cell esn`: the echo state network's closed-form fit on any of the tasks |
//! | `esn_forecast` | `--cell esn --csv`: the echo state network as a forecaster of CSV series |
//! | `feedback`   | next-value prediction of a series (`--task sines`, `--csv --next-value`): `--cell feedback` (form ii), or an RNN with an output every step (form i) |
//! | `reber`      | task: the embedded Reber grammar (next-symbol prediction)              |
//! | `gradflow`   | `recur gradflow`'s record of ‖∂L/∂h_t‖ against t over training          |
//! | `outcome`    | what a run measured and when it succeeds (`recur compare`)             |
//! | `lm`         | task: language models on a text (TBPTT); perplexity, eval              |
//! | `seq`        | tasks: labelled sequences (one output each) and the copy task          |
//! | `forecast`   | task: forecasting the next H rows of CSV series from the last W         |
//! | `core`       | optimizers + scheduler + gradients, the update, checkpoint save/restore |
//! | `optim`      | the optimizer over the model's parts, learning-rate schedules          |
//! | `checkpoint` | the library's checkpoints, read with the run's settings and position   |
//! | `report`     | progress bar and JSONL log                                             |
//!
//! Nothing here imports `crate::cmd`: the subcommands call into `train`, not back.

pub mod adding;
pub mod args;
pub mod checkpoint;
pub mod classify;
pub mod core;
pub mod esn;
pub mod esn_forecast;
pub mod feedback;
pub mod forecast;
pub mod gradflow;
pub mod lm;
pub mod optim;
pub mod outcome;
pub mod reber;
pub mod report;
pub mod seq;
pub mod settings;
pub mod trainer;

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur::model::SequenceModel;

use args::{Cell, Source, TrainArgs};
use settings::Settings;

/// Set by Ctrl-C, SIGTERM or SIGHUP: the run stops after the current batch.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Runs `recur train`.
pub fn run(cli: &TrainArgs) -> Result<()> {
    let mut args = cli.with_config_file()?;
    if let Some(path) = &cli.resume {
        // The checkpoint's settings under the command line's: `--resume FILE` alone continues.
        let ck = checkpoint::Checkpoint::load(path)?;
        let saved = ck.args()?;
        check_resumed_flags(&args, &saved, &ck)?;
        args = args.over(&saved)?;
    }
    let s = Settings::resolve(&args)?;
    check_log_path(&args)?;
    crate::limits::check_threads("--threads", s.threads)?;
    if s.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(s.threads)
            .build_global()
            .context("--threads")?;
    }
    // The first Ctrl-C (or SIGTERM, or SIGHUP) stops after the current batch (checkpoint,
    // test, exit 0); a second one quits at once.
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("error: interrupted twice; quitting without saving");
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
    if s.next_value {
        return feedback::run(&args, &s);
    }
    if s.cell == Cell::Esn {
        return esn::run(&args, &s);
    }
    // every task logs (--log, --csv-log); only the copy task's model is saved
    let no_files = s.source.is_generated() && s.source != Source::Copy;
    if no_files && (args.checkpoint.is_some() || args.resume.is_some()) {
        bail!("--checkpoint and --resume are not offered for this generated task");
    }
    match s.source {
        Source::Adding | Source::Multiplication => adding::run(&args, &s),
        Source::TemporalOrder | Source::TemporalOrder3 | Source::Timing => classify::run(&args, &s),
        Source::Reber => reber::run(&args, &s),
        Source::Text => lm::run(&args, &s),
        Source::Copy => seq::run_copy(&args, &s),
        Source::Sequences => seq::run(&args, &s),
        Source::Forecast => forecast::run(&args, &s),
        Source::Sines => feedback::run(&args, &s),
    }
}

/// Refuses, on `--resume`, a data flag of another kind of run than the checkpoint's (`--text`
/// on a sequences checkpoint) and a model flag that contradicts the checkpoint's model
/// (`--cell gru` on an LSTM's), naming both, before anything else is said about them.
fn check_resumed_flags(
    cli: &TrainArgs,
    saved: &TrainArgs,
    ck: &checkpoint::Checkpoint,
) -> Result<()> {
    let file = &ck.file;
    let names_source = cli.task.is_some()
        || cli.text.is_some()
        || cli.train.is_some()
        || cli.sequences.is_some()
        || cli.csv.is_some();
    if names_source {
        let (given, kind) = (cli.source()?, checkpoint_source(ck)?);
        if given != kind {
            let what = |s: Source| match s {
                Source::Text => "a language model on a text (--text or --train)",
                Source::Sequences => "labelled sequences (--sequences)",
                Source::Copy => "the copy task (--task copy)",
                Source::Adding => "the adding problem",
                Source::Forecast => "forecasting a CSV file's series (--csv)",
                _ => "another generated task (--task)",
            };
            bail!(
                "{file}: the checkpoint is a run on {}, the command line asks for {}; resume \
                 it without a data flag, or start a new run without --resume",
                what(kind),
                what(given)
            );
        }
    }
    // what the checkpoint's run had, defaults resolved, against what the flags given ask
    let (before, after) = (
        Settings::resolve(saved)?,
        Settings::resolve(&cli.over(saved)?)?,
    );
    let given = serde_json::to_value(cli)?;
    fn name(v: impl clap::ValueEnum) -> String {
        v.to_possible_value()
            .map_or_else(String::new, |p| p.get_name().to_owned())
    }
    type Show = fn(&Settings) -> String;
    let model_flags: [(&str, Show); 11] = [
        ("cell", |s| name(s.cell)),
        ("hidden-size", |s| s.hidden_size.to_string()),
        ("num-layers", |s| s.num_layers.to_string()),
        ("bidirectional", |s| s.bidirectional.to_string()),
        ("proj-size", |s| s.proj_size.to_string()),
        ("peepholes", |s| s.peepholes.to_string()),
        ("layer-norm", |s| s.layer_norm.to_string()),
        ("embedding-size", |s| s.embedding_size.to_string()),
        ("tied", |s| s.tied.to_string()),
        ("level", |s| name(s.level)),
        ("target", |s| name(s.target)),
    ];
    for (key, show) in model_flags {
        let (had, asked) = (show(&before), show(&after));
        if !given[key].is_null() && had != asked {
            bail!(
                "{file}: the checkpoint's run has --{key} {had}, the command line gives --{key} \
                 {asked}; a resumed run keeps its model: drop --{key}, or start a new run \
                 without --resume"
            );
        }
    }
    Ok(())
}

/// Refuses a `--log` that is one of the run's other files (the checkpoint, its `.best` copy,
/// the checkpoint resumed, a data or config file): writing the log there would lose it, or
/// what the file held.
fn check_log_path(a: &TrainArgs) -> Result<()> {
    let Some(log) = &a.log else {
        return Ok(());
    };
    let best = a.checkpoint.as_deref().map(checkpoint::best_path);
    let others = [
        ("--checkpoint", a.checkpoint.as_deref()),
        ("--checkpoint's .best copy", best.as_deref()),
        ("--resume", a.resume.as_deref()),
        ("--config", a.config.as_deref()),
        ("--text", a.text.as_deref()),
        ("--train", a.train.as_deref()),
        ("--valid", a.valid.as_deref()),
        ("--test", a.test.as_deref()),
        ("--sequences", a.sequences.as_deref()),
        ("--valid-sequences", a.valid_sequences.as_deref()),
        ("--test-sequences", a.test_sequences.as_deref()),
        ("--csv", a.csv.as_deref()),
    ];
    for (flag, other) in others {
        if other.is_some_and(|o| same_file(log, o)) {
            bail!(
                "--log {} is also {flag}: the log would overwrite it; give the log its own file",
                log.display()
            );
        }
    }
    Ok(())
}

/// Whether two paths name the same file: the same file on disk when both exist, else the same
/// absolute path.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

/// What a checkpoint was trained on.
pub fn checkpoint_source(ck: &checkpoint::Checkpoint) -> Result<Source> {
    match ck.meta("kind")? {
        "text" => Ok(Source::Text),
        "sequences" => Ok(Source::Sequences),
        "copy" => Ok(Source::Copy),
        "forecast" => Ok(Source::Forecast),
        other => bail!(
            "{}: metadata `kind` is `{}`, not one recur writes",
            ck.file,
            recur::excerpt(other)
        ),
    }
}

/// A UTF-8 text file: a one-line error naming the file for a missing, unreadable or empty
/// one, and the line and byte offset of the first byte that is not UTF-8.
pub fn read_text(path: &std::path::Path) -> Result<String> {
    let name = path.display();
    let bytes = recur::io::read_limited(path)?;
    if bytes.is_empty() {
        bail!("{name}: empty file");
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        anyhow::anyhow!("{name}:{line}: not valid UTF-8 (first bad byte at byte offset {offset})")
    })
}

/// Refuses to build a model of `config` that would not fit in the memory available when
/// trained on batches of `seq_len` steps (`--batch-size`, or `--eval-batch-size` where
/// larger), with the library's estimate ([`recur::estimate_memory`]); `lower` names the
/// flags that shrink a batch.
pub fn check_fits(
    config: &recur::model::SequenceModelConfig,
    s: &Settings,
    seq_len: usize,
    lower: &str,
) -> Result<()> {
    let buffers = match s.opt {
        recur::optim::OptimizerConfig::Sgd(_) | recur::optim::OptimizerConfig::Adagrad(_) => 1,
        recur::optim::OptimizerConfig::Adam(_) => 2,
        recur::optim::OptimizerConfig::Rmsprop(_) => 3,
    };
    let batch = s.batch_size.max(s.eval_batch_size);
    let est = recur::estimate_memory(config, batch, seq_len, buffers, size_of::<f32>());
    if s.dry_run {
        print_dry_run(config, &est, batch, seq_len);
        return Err(DryRun.into());
    }
    crate::limits::check_memory("training", &est, lower)
}

/// What `--dry-run` ends a run with once it has printed the summary: not a failure (`main`
/// exits 0 on it).
#[derive(Debug)]
pub struct DryRun;

impl std::fmt::Display for DryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("--dry-run: stopped before training")
    }
}

impl std::error::Error for DryRun {}

/// `--dry-run`'s summary: the model by part, its parameters, and the memory estimate against
/// the memory available (computed from the configuration alone: nothing of the model's size
/// is allocated).
fn print_dry_run(
    config: &recur::model::SequenceModelConfig,
    est: &recur::MemoryEstimate,
    batch: usize,
    seq_len: usize,
) {
    use crate::limits::human;
    use recur::model::{Input, TieWeights};
    let r = &config.rnn;
    let embedding = match &config.input {
        Input::Embedding(e) => (e.num_embeddings as u128) * (e.embedding_dim as u128),
        Input::Dense => 0,
    };
    let rnn = recur::layer::params::ParamLayout::param_count(r);
    let head = u128::from(est.parameters).saturating_sub(embedding + rnn);
    println!(
        "model: {} × {} layer(s) of {} units{}, input {}, output {}{}",
        r.cell.name(),
        r.num_layers,
        r.hidden_size,
        if r.direction.count() == 2 {
            ", bidirectional"
        } else {
            ""
        },
        r.input_size,
        config.out_features,
        if config.tie_weights == TieWeights::Tied {
            ", tied"
        } else {
            ""
        },
    );
    println!("{:<28}{:>16}", "part", "parameters");
    for (part, n) in [("embedding", embedding), ("rnn", rnn), ("head", head)] {
        if n > 0 {
            println!("{part:<28}{n:>16}");
        }
    }
    println!("{:<28}{:>16}", "total", est.parameters);
    println!("memory estimate (batch {batch} × {seq_len} steps, f32):");
    for (what, bytes) in [
        ("weights", est.weights),
        ("gradients", est.gradients),
        ("optimizer state", est.optimizer),
        ("checkpoint copy", est.checkpoint),
        ("BPTT tape", est.tape),
        ("inputs and logits", est.activations),
        ("total", est.total()),
    ] {
        println!("  {what:<26}{:>16}", human(bytes));
    }
    match crate::limits::available_memory() {
        Some(a) => println!("  {:<26}{:>16}", "available", human(a)),
        None => println!("  available: unknown on this system"),
    }
}

/// The dropout seed of a training step.
pub fn dropout_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64)
}

/// Every value uniform in ±range (Zaremba et al.'s initialisation), from `seed`.
pub fn init_uniform(params: &mut [f32], range: f64, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let r = range as f32;
    for p in params {
        *p = rng.random_range(-r..=r);
    }
}

/// The run's initialisation of a fresh model: `--init-range` (uniform ±x over every
/// weight; layer-norm gains and biases keep their ones and zeros), then `--chrono-init`, then
/// `--forget-bias`.
pub fn initialise(model: &mut SequenceModel<f32>, s: &Settings) -> Result<()> {
    if s.init_range > 0.0 {
        let mut p = model.params();
        let kept = p.clone();
        init_uniform(&mut p, s.init_range, s.seed);
        // the norms' parameters, as the recurrent stack initialised them
        let start = rnn_offset(model)?;
        for e in model.rnn().layout().entries() {
            if e.kind.row().init != recur::layer::params::Init::Uniform {
                let r = start + e.offset..start + e.offset + e.len;
                p[r.clone()].copy_from_slice(&kept[r]);
            }
        }
        model.set_params(&p)?;
    }
    apply_chrono_init(model, s)?;
    if s.forget_bias != 0.0 {
        raise_forget_bias(model, s)?;
    }
    Ok(())
}

/// Where the recurrent stack's parameters start in the model's flat buffer.
fn rnn_offset(model: &SequenceModel<f32>) -> Result<usize> {
    model
        .param_layout()
        .iter()
        .filter(|p| p.name.starts_with("rnn."))
        .map(|p| p.offset)
        .min()
        .context("the model has no recurrent parameters")
}

/// Chrono initialisation of the model's recurrent stack ([`recur::Recurrent::chrono_init`]),
/// seeded from the run's seed; a no-op when `--chrono-init` is off.
pub fn apply_chrono_init(model: &mut SequenceModel<f32>, s: &Settings) -> Result<()> {
    if s.chrono_init == 0.0 {
        return Ok(());
    }
    let mut flat = model.params();
    let start = rnn_offset(model)?;
    let len = model.rnn().params().len();
    let mut rnn = recur::Recurrent::from_params(
        model.rnn().config().clone(),
        flat[start..start + len].to_vec(),
    )?;
    rnn.chrono_init(s.chrono_init, chrono_seed(s.seed))?;
    flat[start..start + len].copy_from_slice(rnn.params());
    model.set_params(&flat)?;
    Ok(())
}

/// The chrono initialisation's own stream, apart from the weights' and dropout's.
pub fn chrono_seed(seed: u64) -> u64 {
    seed ^ 0xC4_0A0C_4A0C
}

/// Adds the forget-bias offset to every layer's LSTM forget gate (GRU: update gate) rows
/// `H..2H` of `rnn.bias_ih_l*`.
pub fn raise_forget_bias(model: &mut SequenceModel<f32>, s: &Settings) -> Result<()> {
    if matches!(s.cell, Cell::Rnn | Cell::RnnRelu) {
        return Ok(());
    }
    let h = s.hidden_size;
    let mut flat = model.params();
    for p in model.param_layout() {
        if p.name.starts_with("rnn.bias_ih_l") {
            for v in &mut flat[p.offset + h..p.offset + 2 * h] {
                *v += s.forget_bias as f32;
            }
        }
    }
    model.set_params(&flat)?;
    Ok(())
}
