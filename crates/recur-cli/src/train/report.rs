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

    pub fn flush(&mut self) -> Result<()> {
        if let Some(log) = &mut self.log {
            log.flush().with_context(|| self.log_name.clone())?;
        }
        Ok(())
    }
}
