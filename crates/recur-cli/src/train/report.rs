//! What a run shows while it trains: a progress bar on a terminal; in the `--log` file one
//! JSON line per step (`"kind": "step"`), per validation (`"epoch"`, or `"valid"` in a run of
//! steps) and for the test (`"test"`); in the `--csv-log` file one row per validation, as
//! Keras's CSVLogger writes them.

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
    /// always `"step"`
    pub kind: &'static str,
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

/// Named figures (`loss`, `ppl`, `val_loss`, ...), in the order the logs write them.
pub type Figures = Vec<(&'static str, f64)>;

/// A validation's or the test's record: what kind, where in the run, the task's figures.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// `epoch`, `valid` (a run of steps) or `test`
    pub kind: &'static str,
    pub step: usize,
    pub epoch: usize,
    pub figures: &'a [(&'static str, f64)],
    /// the last step's learning rate (not in a test record)
    pub lr: Option<f64>,
    pub elapsed_s: f64,
}

impl Record<'_> {
    /// One JSON object, the fields in a fixed order (a non-finite figure is `null`).
    fn json(&self) -> Result<String> {
        use std::fmt::Write as _;
        let mut out = format!(
            "{{\"kind\":\"{}\",\"step\":{},\"epoch\":{}",
            self.kind, self.step, self.epoch
        );
        let lr = self.lr.map(|lr| ("lr", lr));
        for (k, v) in self.figures.iter().copied().chain(lr) {
            write!(
                out,
                ",{}:{}",
                serde_json::to_string(k)?,
                serde_json::to_string(&v)?
            )?;
        }
        write!(
            out,
            ",\"elapsed_s\":{}}}",
            serde_json::to_string(&self.elapsed_s)?
        )?;
        Ok(out)
    }
}

/// What `recur eval` found: the line it prints, or the object `--json` prints.
#[derive(Clone, Debug)]
pub struct EvalReport {
    /// the file evaluated on (or "the test part")
    pub data: String,
    /// what was counted (`tokens`, `sequences`) and how many
    pub counted: (&'static str, usize),
    /// `loss`, `ppl` or `bpc`, `acc` or `mae`
    pub figures: Figures,
    pub line: String,
}

impl EvalReport {
    /// One JSON object: `data`, the figures, the count (a non-finite figure is `null`).
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("data".into(), self.data.clone().into());
        for (k, v) in &self.figures {
            m.insert((*k).into(), serde_json::Value::from(*v));
        }
        m.insert(self.counted.0.into(), self.counted.1.into());
        m.into()
    }
}

/// The `--csv-log` file: a header from the first record (or the header already in the file
/// a resumed run appends to), then one row per validation.
struct CsvLog {
    writer: csv::Writer<File>,
    name: String,
    /// the columns after the first (`epoch`, or `step` in a run of steps)
    columns: Option<Vec<String>>,
}

/// The progress bar and the log files of a run.
pub struct Reporter {
    bar: ProgressBar,
    log: Option<BufWriter<File>>,
    log_name: String,
    csv: Option<CsvLog>,
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
        Ok(Self {
            bar,
            log,
            log_name,
            csv: None,
        })
    }

    /// Adds the `--csv-log` file: appended to on a resumed run (its header kept), else
    /// written anew.
    pub fn with_csv_log(mut self, path: Option<&Path>, append: bool) -> Result<Self> {
        let Some(p) = path else {
            return Ok(self);
        };
        let name = p.display().to_string();
        // a resumed run appends to the header already there
        let columns = if append {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| t.lines().next().map(str::to_string))
                .filter(|h| !h.is_empty())
                .map(|h| h.split(',').skip(1).map(str::to_string).collect())
        } else {
            None
        };
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(p)
            .with_context(|| name.clone())?;
        self.csv = Some(CsvLog {
            writer: csv::Writer::from_writer(f),
            name,
            columns,
        });
        Ok(self)
    }

    /// Logs a validation's or the test's figures: a JSON line in `--log`, and (validations)
    /// a row of `--csv-log`.
    pub fn record(&mut self, rec: &Record) -> Result<()> {
        if let Some(log) = &mut self.log {
            writeln!(log, "{}", rec.json()?).with_context(|| self.log_name.clone())?;
        }
        if rec.kind == "test" {
            return Ok(());
        }
        if let Some(csv) = &mut self.csv {
            let lr = rec.lr.map(|lr| ("lr", lr));
            let figures: Vec<(&'static str, f64)> = rec.figures.iter().copied().chain(lr).collect();
            if csv.columns.is_none() {
                let first = if rec.kind == "epoch" { "epoch" } else { "step" };
                let header: Vec<&str> = std::iter::once(first)
                    .chain(figures.iter().map(|f| f.0))
                    .collect();
                csv.writer
                    .write_record(&header)
                    .with_context(|| csv.name.clone())?;
                csv.columns = Some(header[1..].iter().map(|c| (*c).to_string()).collect());
            }
            let at = if rec.kind == "epoch" {
                rec.epoch
            } else {
                rec.step
            };
            let mut row = vec![at.to_string()];
            // a column without a figure is left empty
            for col in csv.columns.iter().flatten() {
                let v = figures.iter().find(|f| f.0 == col).map(|f| f.1);
                row.push(v.map(|v| v.to_string()).unwrap_or_default());
            }
            csv.writer
                .write_record(&row)
                .with_context(|| csv.name.clone())?;
            csv.writer.flush().with_context(|| csv.name.clone())?;
        }
        Ok(())
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
    // step before it. The run being resumed did not end, so a `test` record (the end of an
    // earlier run that stopped at the checkpoint) is dropped with all after it.
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
        // a test record closes a run that ended: the resumed run goes on past it
        if at > step as u64
            || record.get("kind").and_then(serde_json::Value::as_str) == Some("test")
        {
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
