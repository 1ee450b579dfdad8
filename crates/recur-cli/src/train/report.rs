//! What a run shows while it trains: a progress bar on a terminal, one JSON line per step in
//! the `--log` file.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// One step's figures, as the JSONL log writes them.
#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    pub step: usize,
    pub epoch: usize,
    /// the step's mean loss per target
    pub loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppl: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acc: Option<f64>,
    pub lr: f64,
    /// the global gradient norm before clipping
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
}

/// The progress bar and the log file of a run.
pub struct Reporter {
    bar: ProgressBar,
    log: Option<BufWriter<File>>,
    log_name: String,
}

impl Reporter {
    /// A reporter; the bar is hidden when stderr is not a terminal or `quiet`.
    pub fn new(log: Option<&Path>, quiet: bool, append: bool) -> Result<Self> {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} {msg} ETA {eta}")
                    .context("progress bar template")?
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        };
        let log_name = log.map(|p| p.display().to_string()).unwrap_or_default();
        let log = match log {
            Some(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(p)
                    .with_context(|| format!("{}", p.display()))?;
                Some(BufWriter::new(f))
            }
            None => None,
        };
        Ok(Self { bar, log, log_name })
    }

    /// Starts a bar of `len` steps (an epoch, or the whole run).
    pub fn start(&self, prefix: String, len: u64, pos: u64) {
        self.bar.set_prefix(prefix);
        self.bar.set_length(len);
        self.bar.set_position(pos);
        self.bar.reset_eta();
    }

    /// Logs a step; `figure` gives what the bar shows (the epoch's running loss and its
    /// perplexity or accuracy), asked only when the bar is shown.
    pub fn step(&mut self, rec: &StepRecord, figure: impl FnOnce() -> String) -> Result<()> {
        self.bar.set_position(self.bar.position() + 1);
        if !self.bar.is_hidden() {
            self.bar.set_message(format!(
                "{} lr {:.4} {:.0} tok/s",
                figure(),
                rec.lr,
                rec.tokens_per_s
            ));
        }
        if let Some(log) = &mut self.log {
            serde_json::to_writer(&mut *log, rec)?;
            writeln!(log).with_context(|| self.log_name.clone())?;
        }
        Ok(())
    }

    /// Prints a line above the bar (or plainly without one).
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.suspend(|| println!("{line}"));
        }
    }

    pub fn finish(&mut self) -> Result<()> {
        self.bar.finish_and_clear();
        if let Some(log) = &mut self.log {
            log.flush().with_context(|| self.log_name.clone())?;
        }
        Ok(())
    }

    /// Writes out what the log holds so far and has the system put it on disk: called before
    /// every checkpoint, so that a checkpoint's steps are always in the log.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(log) = &mut self.log {
            log.flush().with_context(|| self.log_name.clone())?;
            log.get_ref()
                .sync_data()
                .with_context(|| self.log_name.clone())?;
        }
        Ok(())
    }
}

/// Cuts the log of a run being resumed back to the checkpoint's `step`: the records of steps
/// after it (written after the checkpoint, before the run was stopped) and anything from the
/// first line that is not a whole JSON record on (a line cut by a kill) are removed, so that
/// the resumed run's records follow the checkpoint's last one and the log ends up as an
/// uninterrupted run's. A log that does not exist yet is left alone.
pub fn truncate_log(path: &Path, step: usize) -> Result<()> {
    let name = || path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(name),
    };
    // A record without a `step` of its own (one written at an epoch's end) belongs to the
    // step before it.
    let (mut keep, mut at) = (0, 0);
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let Some(record) = line
            .strip_suffix(b"\n")
            .and_then(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .filter(serde_json::Value::is_object)
        else {
            break;
        };
        if let Some(s) = record.get("step").and_then(serde_json::Value::as_u64) {
            at = s;
        }
        if at > step as u64 {
            break;
        }
        keep += line.len();
    }
    if keep < bytes.len() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(name)?;
        f.set_len(keep as u64).with_context(name)?;
        f.sync_data().with_context(name)?;
    }
    Ok(())
}
