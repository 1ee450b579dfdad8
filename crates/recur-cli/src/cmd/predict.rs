//! `recur predict`: a trained model on new data, predictions to a file.
//!
//! ```text
//! model      a training checkpoint, a model file or an ONNX file written by `recur convert`
//!            (what predicting needs besides the weights: `kind`, `classes`, `forecast`,
//!            kept in the checkpoint's extra strings, the model file's `recur.extra.*`
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use recur::data::forecast::ForecastSpec;
use recur::data::series::SeriesTable;
use recur::data::{SequenceDataset, TargetKind};
use recur::io::{CHECKPOINT_FORMAT, MODEL_FORMAT, load_model_extra};
use recur::model::{ModelInput, SequenceModel};
use recur::{Call, Tensor};

use crate::train::checkpoint::{Checkpoint, ONNX_META_PREFIX};

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
}

/// What the model file says it is.
struct Meta {
    kind: String,
    classes: Option<Vec<String>>,
    forecast: Option<ForecastSpec>,
}

/// A model to run: recur's own, or an ONNX graph.
enum Runner {
    Model(Box<SequenceModel<f32>>),
    #[cfg(feature = "onnx")]
    Onnx(Box<recur::onnx::OnnxModel>),
}

impl Runner {
    /// Outputs `[batch, out]` of inputs `x` `[seq_len, batch, features]` with `lengths`.
    fn run(&self, x: &Tensor<f32>, lengths: &[usize]) -> Result<Vec<f32>> {
        match self {
            Runner::Model(m) => {
                let out = m.forward(ModelInput::Features(x), Call::new().lengths(lengths))?;
                Ok(out.output.data().to_vec())
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

fn meta_from(file: &str, get: &dyn Fn(&str) -> Option<String>) -> Result<Meta> {
    let kind = get("kind").ok_or_else(|| {
        anyhow!(
            "{file}: carries no `kind` metadata, so what it predicts is unknown; write it with \
             `recur convert CHECKPOINT {file}` from the training checkpoint"
        )
    })?;
    let classes = match get("classes") {
        Some(c) => serde_json::from_str::<Option<Vec<String>>>(&c)
            .map_err(|e| anyhow!("{file}: metadata `classes`: {e}"))?,
        None => None,
    };
    let forecast = match get("forecast") {
        Some(c) => {
            let spec = serde_json::from_str::<ForecastSpec>(&c)
                .map_err(|e| anyhow!("{file}: metadata `forecast`: {e}"))?;
            spec.validate()
                .map_err(|e| anyhow!("{file}: metadata `forecast`: {e}"))?;
            Some(spec)
        }
        None => None,
    };
    Ok(Meta {
        kind,
        classes,
        forecast,
    })
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
fn load(path: &Path) -> Result<(Runner, Meta)> {
    let file = path.display().to_string();
    let is_onnx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if is_onnx {
        #[cfg(feature = "onnx")]
        {
            let g = recur::onnx::OnnxModel::load(path)?;
            let meta = meta_from(&file, &|k| {
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
            let meta = meta_from(&file, &|k| ck.meta(k).ok().map(str::to_string))?;
            Ok((Runner::Model(Box::new(ck.inner.model)), meta))
        }
        Some(MODEL_FORMAT) => {
            let (m, extra): (SequenceModel<f32>, BTreeMap<String, String>) =
                load_model_extra(path)?;
            let meta = meta_from(&file, &|k| extra.get(k).cloned())?;
            Ok((Runner::Model(Box::new(m)), meta))
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

fn softmax(z: &[f32]) -> Vec<f32> {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn predict_sequences(
    runner: &Runner,
    meta: &Meta,
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
            let (mut rows, mut ids, mut probs) = (Vec::new(), Vec::new(), Vec::new());
            for zi in z.chunks(out) {
                let p = softmax(zi);
                let best = (0..out)
                    .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)))
                    .expect("at least one class");
                let mut row = vec![Cell::Text(classes[best].clone())];
                if proba {
                    row.extend(p.iter().map(|&v| Cell::Num(f64::from(v))));
                }
                rows.push(row);
                ids.push(best as i64);
                probs.extend_from_slice(&p);
            }
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

fn predict_forecast(runner: &Runner, spec: &ForecastSpec, path: &Path) -> Result<Predictions> {
    let table = SeriesTable::read_csv(path, &spec.csv_columns())?;
    let (h, nt) = (spec.horizon, spec.targets.len());
    let mut header = Vec::new();
    if let Some(s) = &spec.series_column {
        header.push(s.clone());
    }
    let with_time = spec.time_column.is_some() && spec.frequency.is_some();
    if let (true, Some(t)) = (with_time, &spec.time_column) {
        header.push(t.clone());
    }
    header.extend(spec.targets.iter().cloned());
    let (mut rows, mut all) = (Vec::new(), Vec::new());
    for s in &table.series {
        let (x, levels) = spec
            .history_input(s)
            .with_context(|| format!("{}", path.display()))?;
        let z = runner.run(&x, &[spec.window])?;
        if z.len() != spec.out_features() {
            bail!(
                "the model gives {} values, the forecaster's spec {}",
                z.len(),
                spec.out_features()
            );
        }
        let scaling = spec.scaling_of(s.id.as_deref())?;
        let f = spec.decode(scaling, &levels, &z);
        for step in 0..h {
            let mut row = Vec::new();
            if spec.series_column.is_some() {
                row.push(Cell::Text(s.id.clone().unwrap_or_default()));
            }
            if let (true, Some(freq)) = (with_time, &spec.frequency) {
                let last = s.times.last().map(String::as_str).unwrap_or_default();
                row.push(Cell::Text(
                    freq.format_after(last, step as u32 + 1).unwrap_or_default(),
                ));
            }
            row.extend(f[step * nt..(step + 1) * nt].iter().map(|&v| Cell::Num(v)));
            rows.push(row);
        }
        all.extend_from_slice(&f);
    }
    let n = table.series.len();
    Ok(Predictions {
        header,
        rows,
        tensor: NpyTensor::F64(all, vec![n, h, nt]),
    })
}

/// Runs `recur predict`.
pub fn run(args: &PredictArgs) -> Result<()> {
    let format = output_format(&args.output)?;
    let batch = args.batch_size.unwrap_or(64);
    if batch == 0 {
        bail!("--batch-size must be at least 1, got 0");
    }
    let (runner, meta) = load(&args.checkpoint)?;
    let file = args.checkpoint.display();
    let proba = args.proba.unwrap_or(false);
    let given = [
        ("--sequences", args.sequences.is_some(), "sequences"),
        ("--csv", args.csv.is_some(), "forecast"),
        ("--text", args.text.is_some(), "text"),
    ];
    for (flag, set, kind) in given {
        if set && meta.kind != kind && meta.kind != "text" {
            bail!(
                "{flag}: {file} is a {} model; give {}",
                meta.kind,
                match meta.kind.as_str() {
                    "forecast" => "--csv HISTORY.csv",
                    _ => "--sequences FILE",
                }
            );
        }
    }
    let predictions = match meta.kind.as_str() {
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
            predict_forecast(&runner, spec, path)?
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
