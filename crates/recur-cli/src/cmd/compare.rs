//! `recur compare`: trains each cell of a list on one generated task under one budget (the
//! same steps, batch, hidden size and learning rate, each seed), one run after another on the
//! one trainer, and prints a table: the share of seeds that succeeded by the task's criterion
//! ([`crate::train::outcome`]), the test loss, the steps to solve and the wall time. Writes
//! `DIR/compare.csv` (the table), `DIR/compare.json` (the table and every run) and
//! `DIR/compare.png` (the training loss against the step, mean over the seeds, per cell).
//!
//! The echo state network is fitted in closed form (no steps) on 2,000 training sequences:
//! its reservoir has `--reservoir-size` units (not `--hidden-size`), and its row has no
//! training curve.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::plot::{Figure, Panel, Series};
use crate::train::args::{Cell, Task, TrainArgs};
use crate::train::outcome::{Outcome, SOLVED_FRACTION};
use crate::train::settings::Settings;

/// Points of a cell's loss curve at most (the steps are averaged in windows).
const CURVE_POINTS: usize = 200;

/// The cells of the family, as `compare` and `gradflow` name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FamilyCell {
    /// Elman RNN with tanh
    Rnn,
    Lstm,
    Gru,
    /// LSTM with peepholes (i and f see c_prev, o sees c)
    Peephole,
    /// Echo state network (closed-form readout)
    Esn,
}

impl FamilyCell {
    pub fn name(self) -> &'static str {
        match self {
            FamilyCell::Rnn => "rnn",
            FamilyCell::Lstm => "lstm",
            FamilyCell::Gru => "gru",
            FamilyCell::Peephole => "peephole",
            FamilyCell::Esn => "esn",
        }
    }
}

/// The budget every run gets.
#[derive(Args, Debug, Clone)]
pub struct Budget {
    /// Length T of the task [default: the task's: 100, timing 50]
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Training steps of each run
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Sequences per batch [default: 32]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Hidden units of the trained cells [default: 64]
    #[arg(long)]
    pub hidden_size: Option<usize>,
    /// Reservoir units of the echo state network [default: 500]
    #[arg(long)]
    pub reservoir_size: Option<usize>,
    /// Adam's learning rate [default: 1e-3]
    #[arg(long)]
    pub lr: Option<f64>,
    /// Validate every N steps (on 512 sequences)
    #[arg(long, default_value_t = 250)]
    pub eval_every: usize,
    /// The first seed: a run of N seeds uses seed, seed + 1, …
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl Budget {
    /// `recur train`'s flags for `cell` on `task` with the budget's `k`-th seed.
    pub fn train_args(&self, cell: FamilyCell, task: Task, k: u64) -> TrainArgs {
        let (kind, peepholes) = match cell {
            FamilyCell::Rnn => (Cell::Rnn, false),
            FamilyCell::Lstm => (Cell::Lstm, false),
            FamilyCell::Gru => (Cell::Gru, false),
            FamilyCell::Peephole => (Cell::Lstm, true),
            FamilyCell::Esn => (Cell::Esn, false),
        };
        let esn = cell == FamilyCell::Esn;
        TrainArgs {
            task: Some(task),
            seq_len: self.seq_len,
            cell: Some(kind),
            peepholes: peepholes.then_some(true),
            hidden_size: if esn {
                self.reservoir_size
            } else {
                self.hidden_size
            },
            steps: Some(self.steps),
            batch_size: self.batch_size,
            lr: self.lr,
            eval_every: Some(self.eval_every),
            seed: Some(self.seed.wrapping_add(k)),
            quiet: Some(true),
            ..TrainArgs::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The cells, comma-separated
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rnn,lstm,gru,peephole,esn"
    )]
    pub cells: Vec<FamilyCell>,
    /// The task: adding, multiplication, temporal-order, temporal-order-3 or timing
    #[arg(long, value_enum, default_value = "adding")]
    pub task: Task,
    /// Seeds per cell
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// Folder for compare.csv, compare.json and compare.png (created if missing)
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub budget: Budget,
}

/// One run.
struct Run {
    cell: FamilyCell,
    seed: u64,
    outcome: Outcome,
}

/// Trains (or fits) one cell.
fn measure(cell: FamilyCell, task: Task, args: &TrainArgs, s: &Settings) -> Result<Outcome> {
    use crate::train::{adding, classify, esn};
    match (cell, task) {
        (FamilyCell::Esn, _) => esn::measure(args, s),
        (_, Task::Adding | Task::Multiplication) => adding::measure(args, s),
        _ => classify::measure(args, s),
    }
}

/// Runs `recur compare`.
pub fn run(a: &CompareArgs) -> Result<()> {
    if !matches!(
        a.task,
        Task::Adding
            | Task::Multiplication
            | Task::TemporalOrder
            | Task::TemporalOrder3
            | Task::Timing
    ) {
        bail!(
            "--task: compare scores a solved share of sequences: adding, multiplication, \
             temporal-order, temporal-order-3 or timing"
        );
    }
    if a.seeds == 0 || a.cells.is_empty() || a.budget.steps == 0 || a.budget.eval_every == 0 {
        bail!("--seeds, --cells, --steps and --eval-every each need at least one");
    }
    let mut cells: Vec<FamilyCell> = Vec::new();
    for &c in &a.cells {
        if !cells.contains(&c) {
            cells.push(c);
        }
    }
    // each cell's settings checked before the first run trains (the seeds differ in the seed
    // only)
    for &cell in &cells {
        Settings::resolve(&a.budget.train_args(cell, a.task, 0)).with_context(|| cell.name())?;
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}", a.out.display()))?;
    let mut runs = Vec::new();
    for &cell in &cells {
        for k in 0..a.seeds as u64 {
            let args = a.budget.train_args(cell, a.task, k);
            let s = Settings::resolve(&args)?;
            println!("== {} seed {} ==", cell.name(), s.seed);
            let outcome = measure(cell, a.task, &args, &s)?;
            runs.push(Run {
                cell,
                seed: s.seed,
                outcome,
            });
        }
    }
    let s0 = Settings::resolve(&a.budget.train_args(cells[0], a.task, 0))?;
    let rows: Vec<Row> = cells.iter().map(|&c| Row::of(c, &runs)).collect();
    let task = a
        .task
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    println!(
        "\ncompare: {task}, T = {}, {} steps of {} sequences, {} seed(s) from {}; success: \
         ≥ {}% of {} fresh test sequences solved",
        s0.seq_len,
        a.budget.steps,
        s0.batch_size,
        a.seeds,
        a.budget.seed,
        100.0 * SOLVED_FRACTION,
        crate::train::adding::TEST_SEQUENCES
    );
    print!("{}", table(&rows));
    let out = &a.out;
    write_csv(&rows, &out.join("compare.csv"))?;
    let json = json!({
        "task": task,
        "seq_len": s0.seq_len,
        "steps": a.budget.steps,
        "batch_size": s0.batch_size,
        "seeds": a.seeds,
        "first_seed": a.budget.seed,
        "solved_fraction": SOLVED_FRACTION,
        "cells": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "runs": runs.iter().map(|r| json!({
            "cell": r.cell.name(),
            "seed": r.seed,
            "succeeded": r.outcome.succeeded(),
            "test_loss": r.outcome.test_loss,
            "test_solved": r.outcome.test_solved,
            "steps_to_solve": r.outcome.steps_to_solve(),
            "wall_s": r.outcome.elapsed_s,
        })).collect::<Vec<_>>(),
    });
    let json_path = out.join("compare.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("{}", json_path.display()))?;
    let png = out.join("compare.png");
    let title = format!("{task}, T = {}", s0.seq_len);
    Figure::new(vec![curves(&cells, &runs, &title, a.task)]).save(&png)?;
    println!(
        "wrote {}, {} and {}",
        out.join("compare.csv").display(),
        json_path.display(),
        png.display()
    );
    Ok(())
}

/// One cell's line of the table.
struct Row {
    cell: FamilyCell,
    seeds: usize,
    succeeded: usize,
    test_loss: f64,
    test_solved: f64,
    steps_to_solve: Vec<Option<usize>>,
    wall_s: f64,
}

impl Row {
    fn of(cell: FamilyCell, runs: &[Run]) -> Self {
        let mine: Vec<&Outcome> = runs
            .iter()
            .filter(|r| r.cell == cell)
            .map(|r| &r.outcome)
            .collect();
        let n = mine.len().max(1) as f64;
        let mean = |f: fn(&Outcome) -> f64| mine.iter().map(|&o| f(o)).sum::<f64>() / n;
        Row {
            cell,
            seeds: mine.len(),
            succeeded: mine.iter().filter(|o| o.succeeded()).count(),
            test_loss: mean(|o| o.test_loss),
            test_solved: mean(|o| o.test_solved),
            steps_to_solve: mine.iter().map(|o| o.steps_to_solve()).collect(),
            wall_s: mean(|o| o.elapsed_s),
        }
    }

    /// Each seed's steps to solve, `-` where it did not (`fit` for the closed form).
    fn steps_text(&self) -> String {
        (self.steps_to_solve.iter())
            .map(|s| match (s, self.cell) {
                (_, FamilyCell::Esn) => "fit".to_string(),
                (Some(s), _) => s.to_string(),
                (None, _) => "-".to_string(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "cell": self.cell.name(),
            "seeds": self.seeds,
            "succeeded": self.succeeded,
            "mean_test_loss": self.test_loss,
            "mean_test_solved": self.test_solved,
            "steps_to_solve": self.steps_to_solve,
            "mean_wall_s": self.wall_s,
        })
    }
}

/// The table as printed.
fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<10}{:>9}{:>14}{:>14}{:>24}{:>10}\n",
        "cell", "success", "test loss", "test solved", "steps to solve", "wall s"
    );
    for r in rows {
        out += &format!(
            "{:<10}{:>9}{:>14.5}{:>13.1}%{:>24}{:>10.1}\n",
            r.cell.name(),
            format!("{}/{}", r.succeeded, r.seeds),
            r.test_loss,
            100.0 * r.test_solved,
            r.steps_text(),
            r.wall_s
        );
    }
    out
}

fn write_csv(rows: &[Row], path: &std::path::Path) -> Result<()> {
    let name = path.display();
    let mut w = csv::Writer::from_path(path).with_context(|| format!("{name}"))?;
    w.write_record([
        "cell",
        "seeds",
        "succeeded",
        "mean_test_loss",
        "mean_test_solved",
        "steps_to_solve",
        "mean_wall_s",
    ])
    .with_context(|| format!("{name}"))?;
    for r in rows {
        w.write_record([
            r.cell.name().to_string(),
            r.seeds.to_string(),
            r.succeeded.to_string(),
            format!("{:e}", r.test_loss),
            format!("{}", r.test_solved),
            r.steps_text(),
            format!("{:.2}", r.wall_s),
        ])
        .with_context(|| format!("{name}"))?;
    }
    w.flush().with_context(|| format!("{name}"))?;
    Ok(())
}

/// The training loss against the step, mean over each cell's seeds, averaged in windows; the
/// ESN's test loss dashed across where it is the same loss (mean squared error: adding and
/// multiplication).
fn curves(cells: &[FamilyCell], runs: &[Run], title: &str, task: Task) -> Panel {
    let mse = matches!(task, Task::Adding | Task::Multiplication);
    let y = if mse {
        "training mse (log)"
    } else {
        "training cross-entropy (log)"
    };
    let mut panel = Panel::new(title, "step", y);
    panel.log_y = true;
    let steps = runs
        .iter()
        .map(|r| r.outcome.losses.len())
        .max()
        .unwrap_or(0);
    for (colour, &cell) in cells.iter().enumerate() {
        let mine: Vec<&Outcome> = (runs.iter().filter(|r| r.cell == cell))
            .map(|r| &r.outcome)
            .collect();
        if cell == FamilyCell::Esn {
            if mse && steps > 0 {
                let l = mine.iter().map(|o| o.test_loss).sum::<f64>() / mine.len().max(1) as f64;
                let pts = vec![(1.0, l), (steps as f64, l)];
                panel
                    .series
                    .push(Series::new("esn (test mse)", colour, pts).dashed());
            }
            continue;
        }
        let len = mine.iter().map(|o| o.losses.len()).min().unwrap_or(0);
        let window = len.div_ceil(CURVE_POINTS).max(1);
        let points = (0..len.div_ceil(window))
            .map(|k| {
                let (a, b) = (k * window, ((k + 1) * window).min(len));
                let sum: f64 = mine
                    .iter()
                    .map(|o| o.losses[a..b].iter().sum::<f64>())
                    .sum();
                let mid = (a + b + 1) as f64 / 2.0;
                (mid, sum / ((b - a) * mine.len()) as f64)
            })
            .collect();
        panel.series.push(Series::new(cell.name(), colour, points));
    }
    panel
}
