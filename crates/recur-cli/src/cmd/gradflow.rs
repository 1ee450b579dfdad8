//! `recur gradflow`: trains a cell on the adding (or multiplication) problem with the one
//! trainer and records, every `--every` updates, ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖) against t from
//! that step's own backward ([`crate::train::gradflow`]); writes `DIR/gradflow.csv` and
//! `DIR/gradflow.png` (a heat map over training step × t, log colours, and the curves at a few
//! steps, log y).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::compare::{Budget, FamilyCell};
use crate::plot::{HeatMap, Panel, Series};
use crate::train::args::Task;
use crate::train::gradflow::FlowRecord;
use crate::train::settings::Settings;

/// How many recorded steps the curves panel draws (the first, the last and evenly between).
const CURVES: usize = 4;

#[derive(Args, Debug)]
pub struct GradflowArgs {
    /// The cell: rnn (tanh), lstm, gru or peephole (an LSTM with peepholes); esn is refused
    /// (its readout is fitted in closed form: no gradient flows back through its reservoir)
    #[arg(long, value_enum, default_value = "lstm")]
    pub cell: FamilyCell,
    /// The task: adding or multiplication
    #[arg(long, value_enum, default_value = "adding")]
    pub task: Task,
    /// Record every N updates, from the first batch (train step 0, the initial weights)
    #[arg(long, default_value_t = 100)]
    pub every: usize,
    /// Folder for gradflow.csv and gradflow.png (created if missing)
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub budget: Budget,
}

/// Runs `recur gradflow`.
pub fn run(a: &GradflowArgs) -> Result<()> {
    if a.cell == FamilyCell::Esn {
        bail!(
            "--cell esn: an echo state network's readout is fitted in closed form and its \
             reservoir is fixed, so no gradient flows back through time to record; choose \
             rnn, lstm, gru or peephole"
        );
    }
    if !matches!(a.task, Task::Adding | Task::Multiplication) {
        bail!("--task: gradflow records the adding or the multiplication problem");
    }
    if a.every == 0 {
        bail!("--every must be at least 1");
    }
    let args = a.budget.train_args(a.cell, a.task, 0);
    let s = Settings::resolve(&args)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}", a.out.display()))?;
    let record = crate::train::adding::gradflow(&args, &s, a.every)?;
    let csv = a.out.join("gradflow.csv");
    record.write_csv(&csv)?;
    let png = a.out.join("gradflow.png");
    let task = a.task.to_possible_value().map(|v| v.get_name().to_owned());
    let title = format!(
        "{} on {}, T = {}",
        a.cell.name(),
        task.unwrap_or_default(),
        s.seq_len
    );
    picture(&record, &title).save_beside(&curves(&record), &png)?;
    println!(
        "gradflow: {} recorded steps × {} time steps: {} and {}",
        record.rows.len(),
        longest(&record),
        csv.display(),
        png.display()
    );
    Ok(())
}

/// The steps of the longest recorded batch (each batch's record runs to its longest
/// sequence's end).
fn longest(record: &FlowRecord) -> usize {
    record.rows.iter().map(|r| r.h.len()).max().unwrap_or(0)
}

/// The heat map of ‖∂L/∂h_t‖: training step up, t across (blank past a batch's longest
/// sequence).
fn picture(record: &FlowRecord, title: &str) -> HeatMap {
    let nt = longest(record);
    HeatMap {
        title: format!("‖∂L/∂h_t‖: {title}"),
        x_label: "t (step of the sequence)".into(),
        y_label: "training step".into(),
        xs: (0..nt).map(|t| t as f64).collect(),
        ys: record.rows.iter().map(|r| r.train_step as f64).collect(),
        values: (record.rows.iter())
            .flat_map(|r| (0..nt).map(|t| r.h.get(t).copied().unwrap_or(f64::NAN)))
            .collect(),
    }
}

/// The curves at [`CURVES`] recorded steps (‖∂L/∂c_t‖ dashed).
fn curves(record: &FlowRecord) -> Vec<Panel> {
    let mut panel = Panel::new("‖∂L/∂h_t‖ (‖∂L/∂c_t‖ dashed)", "t", "norm (log)");
    panel.log_y = true;
    let (n, m) = (record.rows.len(), CURVES.min(record.rows.len()));
    let mut picks: Vec<usize> = (0..m).map(|k| k * (n - 1) / (m - 1).max(1)).collect();
    picks.dedup();
    for (colour, &i) in picks.iter().enumerate() {
        let row = &record.rows[i];
        let points = |v: &[f64]| -> Vec<(f64, f64)> {
            v.iter().enumerate().map(|(t, &x)| (t as f64, x)).collect()
        };
        let name = format!("step {}", row.train_step);
        panel.series.push(Series::new(name, colour, points(&row.h)));
        if !row.c.is_empty() {
            let name = format!("step {} (c)", row.train_step);
            panel
                .series
                .push(Series::new(name, colour, points(&row.c)).dashed());
        }
    }
    vec![panel]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::gradflow::FlowRow;

    /// Each batch's record runs to its own longest sequence: the picture pads the shorter
    /// rows with blanks.
    #[test]
    fn rows_of_different_lengths_make_one_grid() {
        let row = |train_step, n| FlowRow {
            train_step,
            h: vec![1.0; n],
            c: Vec::new(),
        };
        let record = FlowRecord {
            every: 10,
            rows: vec![row(0, 3), row(10, 2)],
        };
        let heat = picture(&record, "t");
        assert_eq!((heat.xs.len(), heat.ys.len()), (3, 2));
        assert_eq!(heat.values.len(), 6);
        assert!(heat.values[5].is_nan() && heat.values[..5].iter().all(|&v| v == 1.0));
        assert_eq!(curves(&record)[0].series.len(), 2);
    }
}
