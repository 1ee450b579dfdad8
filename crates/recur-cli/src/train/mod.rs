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
//! | `reber`      | task: the embedded Reber grammar (next-symbol prediction)              |
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
pub mod forecast;
pub mod lm;
pub mod optim;
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

/// Set by Ctrl-C: the run stops after the current batch.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Runs `recur train`.
pub fn run(cli: &TrainArgs) -> Result<()> {
    let mut args = cli.with_config_file()?;
    if let Some(path) = &cli.resume {
        // The checkpoint's settings under the command line's: `--resume FILE` alone continues.
        let ck = checkpoint::Checkpoint::load(path)?;
        let saved = ck.args()?;
        args = args.over(&saved)?;
    }
    let s = Settings::resolve(&args)?;
    if s.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(s.threads)
            .build_global()
            .context("--threads")?;
    }
    // The first Ctrl-C stops after the current batch (checkpoint, test, exit 0); a second
    // one quits at once.
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("error: interrupted twice; quitting without saving");
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
    if s.cell == Cell::Esn {
        return esn::run(&args, &s);
    }
    let no_files = s.source.is_generated() && s.source != Source::Copy;
    if no_files
        && (args.checkpoint.is_some()
            || args.resume.is_some()
            || args.log.is_some()
            || args.csv_log.is_some())
    {
        bail!("--checkpoint, --resume, --log and --csv-log are not offered for this generated task");
    }
    match s.source {
        Source::Adding | Source::Multiplication => adding::run(&args, &s),
        Source::TemporalOrder | Source::TemporalOrder3 | Source::Timing => classify::run(&args, &s),
        Source::Reber => reber::run(&args, &s),
        Source::Text => lm::run(&args, &s),
        Source::Copy => seq::run_copy(&args, &s),
        Source::Sequences => seq::run(&args, &s),
        Source::Forecast => forecast::run(&args, &s),
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
            "{}: metadata `kind` is `{other}`, not one recur writes",
            ck.file
        ),
    }
}

/// A UTF-8 text file: a one-line error naming the file for a missing, unreadable or empty
/// one, and the line and byte offset of the first byte that is not UTF-8.
pub fn read_text(path: &std::path::Path) -> Result<String> {
    let name = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("{name}"))?;
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
/// parameter), then `--chrono-init`, then `--forget-bias`.
pub fn initialise(model: &mut SequenceModel<f32>, s: &Settings) -> Result<()> {
    if s.init_range > 0.0 {
        let mut p = model.params();
        init_uniform(&mut p, s.init_range, s.seed);
        model.set_params(&p)?;
    }
    apply_chrono_init(model, s)?;
    if s.forget_bias != 0.0 {
        raise_forget_bias(model, s)?;
    }
    Ok(())
}

/// Chrono initialisation of the model's recurrent stack ([`recur::Recurrent::chrono_init`]),
/// seeded from the run's seed; a no-op when `--chrono-init` is off.
pub fn apply_chrono_init(model: &mut SequenceModel<f32>, s: &Settings) -> Result<()> {
    if s.chrono_init == 0.0 {
        return Ok(());
    }
    let mut flat = model.params();
    let start = model
        .param_layout()
        .iter()
        .filter(|p| p.name.starts_with("rnn."))
        .map(|p| p.offset)
        .min()
        .context("the model has no recurrent parameters")?;
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
