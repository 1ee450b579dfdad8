//! `recur plot`: training and validation curves from `recur train --log` files, several runs
//! overlaid, to PNG or SVG.
//!
//! A log's validation records (`"kind": "epoch"`, or `"valid"` in a run of steps) carry the
//! training figures since the previous validation (`loss`, `ppl`, `acc`, ...) and the
//! validation's (`val_loss`, `val_ppl`, ...): one panel per figure that has a validation
//! value, training solid and validation dashed, one colour per run. A log without validation
//! records (an interrupted first epoch) is drawn from its step records.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args};
use serde_json::{Map, Value};

use crate::plot::{Figure, Panel, Series};

/// At most this many panels (loss first, then the task's figures in the log's order).
const MAX_PANELS: usize = 3;

/// Settings of `recur plot`.
#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// JSONL logs written by `recur train --log`
    #[arg(required = true, value_name = "LOG.jsonl")]
    pub logs: Vec<PathBuf>,
    /// The picture: .png or .svg
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// A run's name in the legend, once per log in order [default: the log's file stem]
    #[arg(long, value_name = "NAME")]
    pub label: Vec<String>,
    /// Logarithmic y axes
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub log_y: bool,
}

/// One log's records by kind.
#[derive(Debug, Default)]
struct Run {
    label: String,
    /// validation records (`epoch` or `valid`)
    evals: Vec<Map<String, Value>>,
    /// `step` records (and the records of logs written before records had a kind)
    steps: Vec<Map<String, Value>>,
}

/// Runs `recur plot`.
pub fn run(args: &PlotArgs) -> Result<()> {
    if !args.label.is_empty() && args.label.len() != args.logs.len() {
        bail!(
            "--label: {} label(s) for {} log(s); give one per log, in order",
            args.label.len(),
            args.logs.len()
        );
    }
    let runs = args
        .logs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let label = args.label.get(i).cloned().unwrap_or_else(|| stem(p));
            read_run(p, label)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut figure = figure(&runs);
    for p in &mut figure.panels {
        p.log_y = args.log_y;
    }
    figure.save(&args.output)?;
    println!(
        "wrote {} ({} run(s); {})",
        args.output.display(),
        runs.len(),
        figure
            .panels
            .iter()
            .map(|p| p.title.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn stem(p: &Path) -> String {
    p.file_stem().map_or_else(
        || p.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Reads a log. A last line cut short (a run killed mid-write) is left out; any other line
/// that is not a JSON object is an error naming its line.
fn read_run(path: &Path, label: String) -> Result<Run> {
    let name = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("{name}"))?;
    let mut run = Run {
        label,
        ..Run::default()
    };
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => m,
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            _ => bail!(
                "{name}:{}: not a JSON object; `recur plot` reads the logs of `recur train --log`",
                i + 1
            ),
        };
        match rec.get("kind").and_then(Value::as_str) {
            Some("epoch" | "valid") => run.evals.push(rec),
            Some("step") | None => run.steps.push(rec),
            Some(_) => {}
        }
    }
    if run.evals.is_empty() && run.steps.is_empty() {
        bail!("{name}: no training records");
    }
    Ok(run)
}

/// The figure a title names, for panel titles.
fn title(key: &str) -> String {
    match key {
        "loss" => "loss".into(),
        "ppl" => "perplexity".into(),
        "bpc" => "bits per character".into(),
        "acc" => "accuracy".into(),
        "mae" => "mean absolute error".into(),
        "mse" => "mean squared error".into(),
        other => other.replace('_', " "),
    }
}

fn number(rec: &Map<String, Value>, key: &str) -> Option<f64> {
    // serde_json writes a non-finite figure as null: a gap in the curve
    rec.get(key).map(|v| v.as_f64().unwrap_or(f64::NAN))
}

/// The panels: from validation records when every run has some, else from step records.
fn figure(runs: &[Run]) -> Figure {
    let from_evals = runs.iter().all(|r| !r.evals.is_empty());
    // epochs on the x axis when every run counts epochs, else steps
    let by_epoch = from_evals
        && runs
            .iter()
            .flat_map(|r| &r.evals)
            .all(|e| e.get("kind").and_then(Value::as_str) == Some("epoch"));
    let x_key = if by_epoch { "epoch" } else { "step" };
    let keys = figure_keys(runs, from_evals);
    let panels = keys
        .iter()
        .take(MAX_PANELS)
        .map(|key| {
            let mut panel = Panel::new(title(key), x_key, key.as_str());
            for (i, run) in runs.iter().enumerate() {
                let recs = if from_evals { &run.evals } else { &run.steps };
                let points = |k: &str| -> Vec<(f64, f64)> {
                    recs.iter()
                        .filter_map(|r| Some((number(r, x_key)?, number(r, k)?)))
                        .collect()
                };
                let train = points(key);
                if !train.is_empty() {
                    panel
                        .series
                        .push(Series::new(format!("{} train", run.label), i, train));
                }
                let valid = points(&format!("val_{key}"));
                if !valid.is_empty() {
                    let s = Series::new(format!("{} valid", run.label), i, valid).dashed();
                    // a few validations: mark them so each one shows
                    let s = if recs.len() <= 30 {
                        s.with_markers()
                    } else {
                        s
                    };
                    panel.series.push(s);
                }
            }
            panel
        })
        .collect();
    Figure::new(panels)
}

/// The figures to draw: `loss`, then the others in the order the logs give them (those with
/// a validation value when reading validation records).
fn figure_keys(runs: &[Run], from_evals: bool) -> Vec<String> {
    let skip: BTreeSet<&str> = [
        "kind",
        "step",
        "epoch",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "elapsed_s",
    ]
    .into();
    let mut keys = vec!["loss".to_string()];
    for run in runs {
        let recs = if from_evals { &run.evals } else { &run.steps };
        for rec in recs {
            for k in rec.keys() {
                let base = k.strip_prefix("val_").unwrap_or(k);
                let wanted = !skip.contains(base)
                    && (!from_evals || rec.contains_key(&format!("val_{base}")))
                    && rec.get(k).is_some_and(|v| v.is_number() || v.is_null());
                if wanted && !keys.iter().any(|x| x == base) {
                    keys.push(base.to_string());
                }
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn panels_follow_the_validation_figures() {
        let run = Run {
            label: "a".into(),
            evals: vec![
                rec(
                    json!({"kind": "epoch", "step": 10, "epoch": 1, "loss": 2.0, "acc": 0.5,
                    "val_loss": 2.1, "val_acc": 0.4, "lr": 0.1}),
                ),
                rec(
                    json!({"kind": "epoch", "step": 20, "epoch": 2, "loss": 1.0, "acc": 0.7,
                    "val_loss": null, "val_acc": 0.6, "lr": 0.1}),
                ),
            ],
            steps: vec![],
        };
        let f = figure(&[run]);
        assert_eq!(f.panels.len(), 2);
        assert_eq!(f.panels[0].title, "loss");
        assert_eq!(f.panels[0].x_label, "epoch");
        assert_eq!(f.panels[1].title, "accuracy");
        let valid = &f.panels[0].series[1];
        assert_eq!(valid.name, "a valid");
        assert_eq!(valid.points[0], (1.0, 2.1));
        assert!(valid.points[1].1.is_nan());
    }

    #[test]
    fn runs_of_steps_use_steps() {
        let run = Run {
            label: "b".into(),
            evals: vec![rec(
                json!({"kind": "valid", "step": 1000, "epoch": 0, "loss": 0.3,
                "val_loss": 0.2}),
            )],
            steps: vec![],
        };
        let f = figure(&[run]);
        assert_eq!(f.panels.len(), 1);
        assert_eq!(f.panels[0].x_label, "step");
        assert_eq!(f.panels[0].series[1].points, vec![(1000.0, 0.2)]);
    }
}
