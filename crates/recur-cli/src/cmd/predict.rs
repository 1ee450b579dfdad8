//! `recur predict`: a trained model on new data, predictions to a file.
//!
//! ```text
//! model      a training checkpoint, a model file, an ONNX file written by `recur convert` or
//!            an echo state network forecaster (`recur train --cell esn --csv`; what
//!            predicting needs besides the weights: `kind`, `classes`, `forecast`, kept in
//!            the checkpoint's extra strings, the model and ESN files' `recur.extra.*`
//!            metadata, the ONNX file's `metadata_props` `recur.*`)
//! classifier --sequences F   →  label [, one probability column per class with --proba]
//! regressor  --sequences F   →  prediction (the data's units: the model is trained on them)
//! forecaster --csv HISTORY   →  [series,] [time,] target…   the H steps after each series'
//!                               last row, in the data's units, the time column continued
//! language model --text      →  refused: `recur sample` generates, `recur eval` scores
//! ```
//! OUT's extension picks the format: `.csv` (a header, one row per prediction), `.json` (an
//! array of objects keyed by the CSV's header), `.npy` (class indices int64 `[N]`, with
//! `--proba` probabilities float32 `[N, classes]`; regressions float64 `[N]`; forecasts
//! float64 `[series, horizon, targets]`).
//!
//! A forecaster also draws (`--plot FILE.png|.svg`): each series' recent history (the last
//! [`PLOT_WINDOWS`] windows), the forecast and, with `--holdout`, the truth: the last H rows
//! of each series are then withheld from the history, forecast, and scored (MAE, RMSE).
//! What the metadata means and how outputs become predictions is the library's
//! ([`recur::io::predict`]); this file reads the files, runs the model and writes the table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use recur::data::forecast::ForecastSpec;
use recur::data::series::SeriesTable;
use recur::data::{SequenceDataset, TargetKind};
use recur::io::predict::{
    Forecast, PredictMeta, Role, best_classes, class_probabilities, forecast, hold_out,
    holdout_metrics,
};
use recur::io::{CHECKPOINT_FORMAT, ESN_FORMAT, MODEL_FORMAT, load_model_extra};
use recur::model::{Esn, ModelInput, SequenceModel};
use recur::{Call, Tensor};

use crate::plot::{Figure, Panel, Series};
use crate::train::checkpoint::{Checkpoint, ONNX_META_PREFIX};

/// Windows of history a forecast plot shows before the forecast (at least 8 horizons).
pub const PLOT_WINDOWS: usize = 2;

/// Series a forecast plot draws when `--plot-series` names none (the first by id).
pub const PLOT_MAX_SERIES: usize = 6;

/// Settings of `recur predict`.
#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// A training checkpoint, a model file or an ONNX file that `recur convert` wrote from
    /// one (they keep the class names and a forecaster's window and scaling)
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Sequences for a classifier or regressor, in the training format (`label<TAB>steps`;
    /// the label may be left out: `steps` alone), or UCR/UEA `.ts`
    #[arg(long, conflicts_with_all = ["csv", "text"])]
    pub sequences: Option<PathBuf>,
    /// History for a forecaster: a CSV file with the training file's columns; the forecast
    /// is the horizon's steps after each series' last row
    #[arg(long, conflicts_with = "text")]
    pub csv: Option<PathBuf>,
    /// A text for a language model (refused, with what to use instead)
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// Where the predictions go: `.csv`, `.json` or `.npy`
    #[arg(long, short)]
    pub output: PathBuf,
    /// Classifiers: one probability column per class, named by its label
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub proba: Option<bool>,
    /// Sequences per batch [default: 64]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Forecasters: draw each series' recent history, the forecast and (with --holdout) the
    /// truth to a `.png` or `.svg` file
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Forecasters: withhold the last H rows of each series from the history, forecast them
    /// and print the forecast's MAE and RMSE against them (drawn as the truth with --plot)
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub holdout: Option<bool>,
    /// With --plot: the series to draw, by id (repeat for several) [default: the first 6
    /// by id]
    #[arg(long = "plot-series", value_name = "ID")]
    pub plot_series: Vec<String>,
}

/// A model to run: recur's own, an echo state network, or an ONNX graph.
enum Runner {
    Model(Box<SequenceModel<f32>>),
    /// read in f64 (the network's precision), its outputs rounded to f32 as the others'
    Esn(Box<Esn>),
    #[cfg(feature = "onnx")]
    Onnx(Box<recur::onnx::OnnxModel>),
}

impl Runner {
    /// Outputs `[batch, out]` of inputs `x` `[seq_len, batch, features]` with `lengths`.
    fn run(&self, x: &Tensor<f32>, lengths: &[usize]) -> Result<Vec<f32>> {
        match self {
            Runner::Model(m) => {
                let out =
                    m.forward(ModelInput::Features(x.view()), Call::new().lengths(lengths))?;
                Ok(out.output.data().to_vec())
            }
            Runner::Esn(esn) => {
                let x = Tensor::new(x.data().iter().map(|&v| f64::from(v)).collect(), x.shape())?;
                let out = esn.predict(&x, Some(lengths))?;
                Ok(out.data().iter().map(|&v| v as f32).collect())
            }
            #[cfg(feature = "onnx")]
            Runner::Onnx(g) => {
                use recur::onnx::Value;
                let [t, b, f] = [x.shape()[0], x.shape()[1], x.shape()[2]];
                let mut out = Vec::new();
                // one sequence a run: the exported graph has no lengths input by default
                for (j, &len) in lengths.iter().enumerate().take(b) {
                    let mut one = Vec::with_capacity(len * f);
                    for step in 0..len.min(t) {
                        one.extend_from_slice(
                            &x.data()[(step * b + j) * f..(step * b + j + 1) * f],
                        );
                    }
                    let v = Value::f32(one, &[len, 1, f])?;
                    let res = g.run(&[("input", v)])?;
                    let (_, y) = res
                        .iter()
                        .find(|(n, _)| n == "output")
                        .ok_or_else(|| anyhow!("the ONNX graph has no output `output`"))?;
                    let y = y
                        .as_f32()
                        .ok_or_else(|| anyhow!("the ONNX graph's `output` is not float32"))?;
                    out.extend_from_slice(y);
                }
                Ok(out)
            }
        }
    }
}

/// The `recur.format` of a safetensors file.
fn safetensors_format(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    let size = f.metadata().ok()?.len();
    if n > 100_000_000 || n > size.saturating_sub(8) {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
    json.get("__metadata__")?
        .get("recur.format")?
        .as_str()
        .map(str::to_string)
}

/// Loads a checkpoint, model file or ONNX file and what it predicts.
fn load(path: &Path) -> Result<(Runner, PredictMeta)> {
    let file = path.display().to_string();
    let is_onnx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if is_onnx {
        #[cfg(feature = "onnx")]
        {
            let g = recur::onnx::OnnxModel::load(path)?;
            let meta = PredictMeta::read(&file, |k| {
                g.metadata_value(&format!("{ONNX_META_PREFIX}{k}"))
                    .map(str::to_string)
            })?;
            return Ok((Runner::Onnx(Box::new(g)), meta));
        }
        #[cfg(not(feature = "onnx"))]
        bail!("{file}: ONNX files need recur built with the `onnx` feature (on by default)");
    }
    match safetensors_format(path).as_deref() {
        Some(CHECKPOINT_FORMAT) => {
            let ck = Checkpoint::load(path)?;
            let meta = PredictMeta::read(&file, |k| ck.meta(k).ok().map(str::to_string))?;
            Ok((Runner::Model(Box::new(ck.inner.model)), meta))
        }
        Some(MODEL_FORMAT) => {
            let (m, extra): (SequenceModel<f32>, BTreeMap<String, String>) =
                load_model_extra(path)?;
            let meta = PredictMeta::read(&file, |k| extra.get(k).cloned())?;
            Ok((Runner::Model(Box::new(m)), meta))
        }
        Some(ESN_FORMAT) => {
            let (esn, extra) = recur::io::load_esn(path)?;
            let meta = PredictMeta::read(&file, |k| {
                extra
                    .get(&format!(
                        "{}{k}",
                        recur::io::predict::SAFETENSORS_META_PREFIX
                    ))
                    .cloned()
            })?;
            if meta.kind.is_none() {
                bail!(
                    "{file}: an echo state network fitted on labelled sequences or a generated \
                     task: `recur eval --checkpoint {file}` scores it; `recur predict` runs the \
                     forecasters of `recur train --cell esn --csv`"
                );
            }
            Ok((Runner::Esn(Box::new(esn)), meta))
        }
        _ => {
            // let the checkpoint reader say precisely what is wrong with the file
            Checkpoint::load(path)?;
            bail!("{file}: not a recur checkpoint or model file")
        }
    }
}

/// A cell of the predictions table.
#[derive(Clone, Debug)]
enum Cell {
    Text(String),
    Num(f64),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num(v) => format!("{v}"),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Text(s) => serde_json::Value::String(s.clone()),
            Cell::Num(v) => serde_json::Number::from_f64(*v)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
        }
    }
}

/// The predictions: a table (CSV, JSON) and a tensor (`.npy`).
struct Predictions {
    header: Vec<String>,
    rows: Vec<Vec<Cell>>,
    #[cfg_attr(not(feature = "onnx"), allow(dead_code))]
    tensor: NpyTensor,
}

#[cfg_attr(not(feature = "onnx"), allow(dead_code))]
enum NpyTensor {
    I64(Vec<i64>, Vec<usize>),
    F32(Vec<f32>, Vec<usize>),
    F64(Vec<f64>, Vec<usize>),
}

/// Output formats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
    Npy,
}

fn output_format(path: &Path) -> Result<Format> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok(Format::Csv),
        Some("json") => Ok(Format::Json),
        Some("npy") => Ok(Format::Npy),
        _ => bail!(
            "{}: the output's extension picks its format: .csv, .json or .npy",
            path.display()
        ),
    }
}

fn write(path: &Path, p: &Predictions, format: Format) -> Result<()> {
    let name = path.display();
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_path(path).with_context(|| format!("{name}"))?;
            w.write_record(&p.header)?;
            for r in &p.rows {
                w.write_record(r.iter().map(Cell::text))?;
            }
            w.flush().with_context(|| format!("{name}"))?;
        }
        Format::Json => {
            let rows: Vec<serde_json::Value> = p
                .rows
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        p.header
                            .iter()
                            .cloned()
                            .zip(r.iter().map(Cell::json))
                            .collect(),
                    )
                })
                .collect();
            let text = serde_json::to_string_pretty(&rows)? + "\n";
            std::fs::write(path, text).with_context(|| format!("{name}"))?;
        }
        Format::Npy => {
            #[cfg(feature = "onnx")]
            {
                use recur::onnx::{Data, Value, write_tensor};
                let v = match &p.tensor {
                    NpyTensor::I64(d, s) => Value::new(Data::I64(d.clone()), s)?,
                    NpyTensor::F32(d, s) => Value::new(Data::F32(d.clone()), s)?,
                    NpyTensor::F64(d, s) => Value::new(Data::F64(d.clone()), s)?,
                };
                write_tensor(path, "", &v)?;
            }
            #[cfg(not(feature = "onnx"))]
            bail!("{name}: .npy output needs recur built with the `onnx` feature (on by default)");
        }
    }
    Ok(())
}

/// Sequences to predict: the training format with or without labels, or `.ts`.
fn read_unlabelled(path: &Path, classes: Option<&[String]>) -> Result<SequenceDataset> {
    let is_ts = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ts"));
    if is_ts {
        let target = if classes.is_some() {
            crate::train::args::Target::Classification
        } else {
            crate::train::args::Target::Regression
        };
        return crate::train::seq::read_sequences(path, target, classes);
    }
    let text = crate::train::read_text(path)?;
    // the labels are not needed: every line gets the dummy regression label 0
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') {
                l.to_string()
            } else {
                match l.split_once('\t') {
                    Some((_, steps)) => format!("0\t{steps}"),
                    None => format!("0\t{t}"),
                }
            }
        })
        .collect();
    let ds = SequenceDataset::parse_lines(
        &lines.join("\n"),
        &path.display().to_string(),
        TargetKind::Regression,
        None,
    )?;
    if ds.is_empty() {
        bail!("{}: no sequences", path.display());
    }
    Ok(ds)
}

fn predict_sequences(
    runner: &Runner,
    meta: &PredictMeta,
    path: &Path,
    proba: bool,
    batch: usize,
) -> Result<Predictions> {
    let classes = meta.classes.as_deref();
    let ds = read_unlabelled(path, classes)?;
    let out = classes.map_or(1, <[String]>::len);
    let mut z = Vec::with_capacity(ds.len() * out);
    let idx: Vec<usize> = (0..ds.len()).collect();
    for b in idx.chunks(batch) {
        let (x, lengths) = ds.padded_batch::<f32>(b)?;
        let y = runner.run(&x, &lengths).map_err(|e| {
            anyhow!(
                "{}: {e:#} (the model reads steps of its training data's width)",
                path.display()
            )
        })?;
        if y.len() != b.len() * out {
            bail!(
                "the model gives {} values for {} sequences, not {out} each",
                y.len(),
                b.len()
            );
        }
        z.extend_from_slice(&y);
    }
    Ok(match classes {
        Some(classes) => {
            let mut header = vec!["label".to_string()];
            if proba {
                header.extend(classes.iter().cloned());
            }
            let logits: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
            let probs = class_probabilities(&logits, out)?;
            let best = best_classes(&probs, out);
            let mut rows = Vec::with_capacity(best.len());
            for (&b, p) in best.iter().zip(probs.chunks(out)) {
                let mut row = vec![Cell::Text(classes[b].clone())];
                if proba {
                    row.extend(p.iter().map(|&v| Cell::Num(v)));
                }
                rows.push(row);
            }
            let ids: Vec<i64> = best.iter().map(|&b| b as i64).collect();
            let probs: Vec<f32> = probs.iter().map(|&v| v as f32).collect();
            let n = ids.len();
            Predictions {
                header,
                rows,
                tensor: if proba {
                    NpyTensor::F32(probs, vec![n, out])
                } else {
                    NpyTensor::I64(ids, vec![n])
                },
            }
        }
        None => {
            let v: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
            Predictions {
                header: vec!["prediction".into()],
                rows: v.iter().map(|&v| vec![Cell::Num(v)]).collect(),
                tensor: NpyTensor::F64(v.clone(), vec![v.len()]),
            }
        }
    })
}

/// Options of a forecast beside the history file.
struct ForecastOptions<'a> {
    plot: Option<&'a Path>,
    holdout: bool,
    plot_series: &'a [String],
}

/// The forecast of `run` (the model's scaled outputs of one window) after each series of the
/// history file `path`.
fn predict_forecast(
    run: &dyn Fn(&Tensor<f32>) -> Result<Vec<f32>>,
    spec: &ForecastSpec,
    path: &Path,
    opts: &ForecastOptions,
) -> Result<Predictions> {
    let name = path.display().to_string();
    let table = SeriesTable::read_csv(path, &spec.csv_columns())?;
    let (history, truth) = if opts.holdout {
        let (kept, truth) = hold_out(spec, &table).with_context(|| name.clone())?;
        (kept, Some(truth))
    } else {
        (table, None)
    };
    let f = forecast::<anyhow::Error>(spec, &history, run).with_context(|| name.clone())?;
    if let Some(truth) = &truth {
        let m = holdout_metrics(&f, truth).ok_or_else(|| anyhow!("{name}: no values held out"))?;
        println!(
            "holdout: the last {} row(s) of each of {} series withheld and forecast: MAE {:.4}, \
             RMSE {:.4} ({} values, in the data's units)",
            spec.horizon,
            f.series.len(),
            m.mae,
            m.rmse,
            f.series.len() * spec.out_features()
        );
    }
    if let Some(plot) = opts.plot {
        let (figure, note) =
            forecast_figure(spec, &history, &f, truth.as_deref(), opts.plot_series)?;
        figure.save(plot)?;
        println!("plot → {}{note}", plot.display());
    }
    let (h, nt) = (spec.horizon, spec.targets.len());
    let mut rows = Vec::new();
    for s in &f.series {
        for step in 0..h {
            let mut row = Vec::new();
            if spec.series_column.is_some() {
                row.push(Cell::Text(s.id.clone().unwrap_or_default()));
            }
            if let Some(t) = s.times.get(step) {
                row.push(Cell::Text(t.clone()));
            }
            row.extend(
                s.values[step * nt..(step + 1) * nt]
                    .iter()
                    .map(|&v| Cell::Num(v)),
            );
            rows.push(row);
        }
    }
    let n = f.series.len();
    Ok(Predictions {
        header: Forecast::header(spec),
        rows,
        tensor: NpyTensor::F64(f.values(), vec![n, h, nt]),
    })
}

/// The forecast picture: a panel per series and target (the series `only` names, or the
/// first [`PLOT_MAX_SERIES`] by id), each with the last [`PLOT_WINDOWS`] windows of history,
/// the forecast and the truth when it is known; and a note of what was left out.
fn forecast_figure(
    spec: &ForecastSpec,
    history: &SeriesTable,
    f: &Forecast,
    truth: Option<&[Vec<f64>]>,
    only: &[String],
) -> Result<(Figure, String)> {
    let mut order: Vec<usize> = (0..history.series.len()).collect();
    let mut note = String::new();
    if only.is_empty() {
        order.sort_by(|&a, &b| history.series[a].id.cmp(&history.series[b].id));
        if order.len() > PLOT_MAX_SERIES {
            note = format!(
                " (the first {PLOT_MAX_SERIES} of {} series by id; --plot-series ID draws others)",
                order.len()
            );
            order.truncate(PLOT_MAX_SERIES);
        }
    } else {
        if spec.series_column.is_none() {
            bail!("--plot-series: the history holds one series (the model has no series column)");
        }
        order = only
            .iter()
            .map(|id| {
                history
                    .series
                    .iter()
                    .position(|s| s.id.as_deref() == Some(id.as_str()))
                    .ok_or_else(|| anyhow!("--plot-series {id}: no such series in the history"))
            })
            .collect::<Result<_>>()?;
    }
    let (nc, nt) = (history.columns.len(), spec.targets.len());
    let x_label = match (&spec.time_column, Forecast::has_times(spec)) {
        (Some(t), true) => t.clone(),
        _ => "row of the series".to_string(),
    };
    let mut panels = Vec::new();
    for &i in &order {
        let (s, fs) = (&history.series[i], &f.series[i]);
        let n = s.len();
        let tail = (PLOT_WINDOWS * spec.window).max(8 * spec.horizon).min(n);
        // x is the row's index in the series; the time column names it where it is continued
        let x_names: Vec<String> = if fs.times.is_empty() {
            Vec::new()
        } else {
            s.times.iter().chain(&fs.times).cloned().collect()
        };
        for (k, target) in spec.targets.iter().enumerate() {
            let value = |row: &[f64], j: usize| row[j * nt + k];
            let past: Vec<(f64, f64)> = (n - tail..n)
                .map(|r| (r as f64, s.values[r * nc + k]))
                .collect();
            let last = *past.last().expect("a history has at least one window");
            let ahead = |vals: &[f64]| -> Vec<(f64, f64)> {
                std::iter::once(last)
                    .chain((0..spec.horizon).map(|j| ((n + j) as f64, value(vals, j))))
                    .collect()
            };
            let mut title = match &s.id {
                Some(id) if nt > 1 => format!("{id}: {target}"),
                Some(id) => id.clone(),
                None => target.clone(),
            };
            let mut panel = Panel::new("", x_label.clone(), target.clone());
            panel.series.push(Series::new("history", 0, past));
            if let Some(t) = truth {
                let mae = (0..spec.horizon)
                    .map(|j| (value(&fs.values, j) - value(&t[i], j)).abs())
                    .sum::<f64>()
                    / spec.horizon as f64;
                title = format!("{title} (holdout MAE {})", crate::plot::tick(mae));
                panel.series.push(Series::new("truth", 2, ahead(&t[i])));
            }
            panel
                .series
                .push(Series::new("forecast", 1, ahead(&fs.values)).dashed());
            panel.title = title;
            panel.x_names = x_names.clone();
            // the forecast is at the right: the legend goes left
            panel.legend_left = true;
            panels.push(panel);
        }
    }
    let columns = panels.len().min(3);
    Ok((Figure::new(panels).in_columns(columns), note))
}

/// Runs `recur predict`.
pub fn run(args: &PredictArgs) -> Result<()> {
    let format = output_format(&args.output)?;
    let batch = args.batch_size.unwrap_or(64);
    if batch == 0 {
        bail!("--batch-size must be at least 1, got 0");
    }
    if let Some(plot) = &args.plot {
        crate::plot::check_extension(plot)?;
    }
    if safetensors_format(&args.checkpoint).as_deref() == Some(recur::io::FEEDBACK_FORMAT) {
        return predict_feedback(args, format);
    }
    let (runner, meta) = load(&args.checkpoint)?;
    let file = args.checkpoint.display();
    let proba = args.proba.unwrap_or(false);
    let holdout = args.holdout.unwrap_or(false);
    let role = meta.role();
    let Some(kind) = meta.kind.as_deref() else {
        bail!(
            "{file}: carries no `kind` metadata, so what it predicts is unknown; write it with \
             `recur convert CHECKPOINT {file}` from the training checkpoint"
        );
    };
    let given = [
        ("--sequences", args.sequences.is_some(), "sequences"),
        ("--csv", args.csv.is_some(), "forecast"),
        ("--text", args.text.is_some(), "text"),
    ];
    for (flag, set, k) in given {
        if set && kind != k && kind != "text" {
            bail!(
                "{flag}: {file} is {}; give {}",
                role.describe(),
                match kind {
                    "forecast" => "--csv HISTORY.csv",
                    _ => "--sequences FILE",
                }
            );
        }
    }
    if role != Role::Forecaster {
        for (flag, set) in [
            ("--plot", args.plot.is_some()),
            ("--holdout", holdout),
            ("--plot-series", !args.plot_series.is_empty()),
        ] {
            if set {
                bail!(
                    "{flag} is for forecasters (history, forecast and truth); {file} is {}",
                    role.describe()
                );
            }
        }
    }
    if !args.plot_series.is_empty() && args.plot.is_none() {
        bail!("--plot-series chooses the series of --plot FILE; give --plot too");
    }
    let predictions = match kind {
        "sequences" => {
            let Some(path) = &args.sequences else {
                bail!("{file}: a sequence model's; give --sequences FILE");
            };
            if proba && meta.classes.is_none() {
                bail!("--proba: {file} is a regressor; it has no class probabilities");
            }
            predict_sequences(&runner, &meta, path, proba, batch)?
        }
        "forecast" => {
            let Some(path) = &args.csv else {
                bail!("{file}: a forecaster's; give --csv HISTORY.csv");
            };
            if proba {
                bail!("--proba is for classifiers; {file} is a forecaster");
            }
            let spec = meta
                .forecast
                .as_ref()
                .ok_or_else(|| anyhow!("{file}: a forecaster without its `forecast` metadata"))?;
            let opts = ForecastOptions {
                plot: args.plot.as_deref(),
                holdout,
                plot_series: &args.plot_series,
            };
            predict_forecast(
                &|x: &Tensor<f32>| runner.run(x, &[spec.window]),
                spec,
                path,
                &opts,
            )?
        }
        "text" => bail!(
            "{file}: a language model's; `recur predict` does not run language models: \
             `recur sample --checkpoint {file}` generates text and `recur eval --checkpoint \
             {file} --text FILE` gives a text's perplexity"
        ),
        "copy" => bail!("{file}: the copy task's model; it has nothing to predict on new data"),
        other => bail!("{file}: metadata `kind` is `{other}`, not one recur writes"),
    };
    write(&args.output, &predictions, format)?;
    println!(
        "{} prediction row(s) → {}",
        predictions.rows.len(),
        args.output.display()
    );
    Ok(())
}

/// `recur predict` of an output-to-hidden network (`recur train --cell feedback --csv`): the
/// horizon's steps after each series of `--csv`, run free from its last `window` rows.
fn predict_feedback(args: &PredictArgs, format: Format) -> Result<()> {
    let file = args.checkpoint.display();
    let saved = crate::train::feedback::load(&args.checkpoint)?;
    let Some(spec) = saved.spec else {
        bail!(
            "{file}: an output-to-hidden network trained on the generated task (--task sines); \
             `recur eval --checkpoint {file}` scores it; `recur predict` continues series of a \
             network trained with --csv"
        );
    };
    for (flag, set) in [
        ("--sequences", args.sequences.is_some()),
        ("--text", args.text.is_some()),
        ("--proba", args.proba.unwrap_or(false)),
    ] {
        if set {
            bail!("{flag}: {file} is an output-to-hidden forecaster; give --csv HISTORY.csv");
        }
    }
    let Some(path) = &args.csv else {
        bail!("{file}: an output-to-hidden forecaster's; give --csv HISTORY.csv");
    };
    if !args.plot_series.is_empty() && args.plot.is_none() {
        bail!("--plot-series chooses the series of --plot FILE; give --plot too");
    }
    let opts = ForecastOptions {
        plot: args.plot.as_deref(),
        holdout: args.holdout.unwrap_or(false),
        plot_series: &args.plot_series,
    };
    let net = &saved.net;
    let run = |x: &Tensor<f32>| crate::train::feedback::generate(net, x, spec.horizon);
    let predictions = predict_forecast(&run, &spec, path, &opts)?;
    write(&args.output, &predictions, format)?;
    println!(
        "{} prediction row(s) → {}",
        predictions.rows.len(),
        args.output.display()
    );
    Ok(())
}
