//! `recur eval`: a trained model's loss on a file.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{ArgAction, Args};

use crate::train::args::Source;
use crate::train::checkpoint::Checkpoint;
use crate::train::{forecast, lm, seq};

/// Settings of `recur eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Checkpoint written by `recur train --checkpoint`
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// A text to evaluate a language model on (read with the checkpoint's vocabulary; unknown
    /// tokens count as <unk>)
    #[arg(long, conflicts_with_all = ["test", "sequences"])]
    pub text: Option<PathBuf>,
    /// Same as --text (the name PyTorch's example gives its test file)
    #[arg(long, conflicts_with = "sequences")]
    pub test: Option<PathBuf>,
    /// Labelled sequences to evaluate a sequence model on (same format as training)
    #[arg(long)]
    pub sequences: Option<PathBuf>,
    /// Streams (text) or sequences per batch [default: 10 for text, 64 for sequences]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Print one JSON object (data, loss, ppl or bpc, acc or mae, count) instead of a line
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub json: bool,
}

/// Runs `recur eval`. Without a file, evaluates on the test part the checkpoint was trained
/// with.
pub fn run(args: &EvalArgs) -> Result<()> {
    if args.batch_size == Some(0) {
        bail!("--batch-size must be at least 1, got 0");
    }
    if crate::train::esn::is_esn_file(&args.checkpoint) {
        if args.text.is_some() || args.test.is_some() {
            bail!(
                "{}: an echo state network; give --sequences or nothing",
                args.checkpoint.display()
            );
        }
        return crate::train::esn::eval_command(&args.checkpoint, args.sequences.as_deref());
    }
    if crate::train::feedback::is_feedback_file(&args.checkpoint) {
        if args.text.is_some() || args.test.is_some() || args.sequences.is_some() {
            bail!(
                "{}: an output-to-hidden network: `recur eval` scores it on its run's test set \
                 (no file); `recur predict --csv` continues new history",
                args.checkpoint.display()
            );
        }
        return crate::train::feedback::eval_command(&args.checkpoint);
    }
    let ck = Checkpoint::load(&args.checkpoint)?;
    let report = match crate::train::checkpoint_source(&ck)? {
        Source::Text => {
            if args.sequences.is_some() {
                bail!("{}: a language model's checkpoint; give --text", ck.file);
            }
            lm::eval_command(
                &ck,
                args.text.as_ref().or(args.test.as_ref()),
                args.batch_size,
            )
        }
        Source::Sequences | Source::Copy => {
            if args.text.is_some() || args.test.is_some() {
                bail!(
                    "{}: a sequence model's checkpoint; give --sequences",
                    ck.file
                );
            }
            seq::eval_command(&ck, args.sequences.as_ref(), args.batch_size)
        }
        Source::Forecast => {
            if args.text.is_some() || args.test.is_some() || args.sequences.is_some() {
                bail!(
                    "{}: a forecaster's checkpoint: `recur eval` prints its test table on the \
                     data it was trained with (no file); `recur predict --csv` forecasts new history",
                    ck.file
                );
            }
            forecast::eval_command(&ck, args.batch_size)
        }
        Source::Adding
        | Source::Multiplication
        | Source::TemporalOrder
        | Source::TemporalOrder3
        | Source::Reber
        | Source::Timing
        | Source::Sines => bail!("{}: this generated task writes no checkpoints", ck.file),
    }?;
    if args.json {
        let mut obj = report.json();
        if let Some(m) = obj.as_object_mut() {
            m.insert(
                "checkpoint".into(),
                args.checkpoint.display().to_string().into(),
            );
        }
        println!("{obj}");
    } else {
        println!("{}", report.line);
    }
    Ok(())
}
