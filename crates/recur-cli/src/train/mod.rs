//! Training: `recur train` (and what `recur eval` and `recur sample` read back).
//!
//! | module       | what                                                                  |
//! |--------------|-----------------------------------------------------------------------|
//! | `args`       | the flags, which are also the config file's keys                       |
//! | `settings`   | the flags resolved against the data source's defaults, checked         |
//! | `adding`     | the built-in adding-problem demonstration (no data flag)               |
//! | `lm`         | language models on a text: TBPTT, perplexity, checkpoints, resume      |
//! | `optim`      | the optimizer over the model's parts, learning-rate schedules          |
//! | `xent`       | softmax cross-entropy in place, in parallel                            |
//! | `checkpoint` | safetensors checkpoints with the run's settings and position           |
//! | `report`     | progress bar and JSONL log                                             |

pub mod adding;
pub mod args;
pub mod checkpoint;
pub mod lm;
pub mod optim;
pub mod report;
pub mod settings;
pub mod xent;

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
        let saved: TrainArgs = ck.meta_json("args")?;
        args = args.over(&saved)?;
    }
    let s = Settings::resolve(&args)?;
    if s.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(s.threads)
            .build_global()
            .context("--threads")?;
    }
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    match s.source {
        Source::Adding => {
            if args.checkpoint.is_some() || args.resume.is_some() || args.log.is_some() {
                bail!("--checkpoint, --resume and --log are not offered for the adding problem");
            }
            adding::run(&s)
        }
        Source::Text => lm::run(&args, &s),
        Source::Copy => bail!("--task copy is not available in this build yet"),
        Source::Sequences => bail!("--sequences is not available in this build yet"),
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
