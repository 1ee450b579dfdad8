//! What predicting needs besides the weights, read back and applied in one place: the kind
//! of run, the class names, a forecaster's [`ForecastSpec`]. `recur train` records them in a
//! checkpoint's extra strings (`recur.extra.<key>`); model files keep them the same way and
//! ONNX files as `metadata_props` `recur.<key>` ([`PREDICT_KEYS`], [`ONNX_META_PREFIX`]).
//! `recur predict` and the Python package's `Model.predict` / `predict_proba` / `forecast`
//! both read them with [`PredictMeta::read`] and turn the head's outputs into the user's
//! terms here:
//!
//! ```text
//! kind "sequences", classes   classifier   logits [N, C]   → class ids and probabilities
//! kind "sequences", no classes regressor   outputs [N, 1]  → values (trained in the data's units)
//! kind "forecast"             forecaster   history (CSV)   → H steps per series, data units,
//!                                                             the time column continued
//! kind "text"                 language model (nothing to predict on new rows)
//! ```

use crate::data::forecast::{ErrorSums, ForecastSpec, Metrics};
use crate::data::series::SeriesTable;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The extra strings of a checkpoint that running the model needs besides its weights: the
/// kind of run, the class names, the vocabulary, a forecaster's spec. `recur convert` carries
/// them into model files (`recur.extra.<key>`) and ONNX files (`metadata_props`
/// `recur.<key>`).
pub const PREDICT_KEYS: [&str; 4] = ["kind", "classes", "vocab", "forecast"];

/// The prefix of [`PREDICT_KEYS`] in an ONNX file's `metadata_props`.
pub const ONNX_META_PREFIX: &str = "recur.";

/// The prefix of [`PREDICT_KEYS`] in a checkpoint's or model file's safetensors metadata.
pub const SAFETENSORS_META_PREFIX: &str = "recur.extra.";

/// What a model predicts, from its `kind` and `classes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// labelled sequences with class names: one class per sequence
    Classifier,
    /// labelled sequences with numbers for labels: one value per sequence
    Regressor,
    /// the next H rows of a CSV file's series
    Forecaster,
    /// a language model on a text
    LanguageModel,
    /// another kind of run (a generated task): nothing to predict on new data
    Other,
    /// the file records no kind
    Unknown,
}

impl Role {
    /// `a classifier`, `a regressor`, … for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Role::Classifier => "a classifier",
            Role::Regressor => "a regressor",
            Role::Forecaster => "a forecaster",
            Role::LanguageModel => "a language model",
            Role::Other => "a generated task's model",
            Role::Unknown => "a model of unknown kind",
        }
    }
}

/// The metadata that predicting reads.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictMeta {
    /// `sequences`, `forecast`, `text`, … (`None`: the file records none)
    pub kind: Option<String>,
    /// a classifier's class names, in the order of the head's outputs
    pub classes: Option<Vec<String>>,
    /// a forecaster's columns, window, horizon, frequency and scaling (checked)
    pub forecast: Option<ForecastSpec>,
}

impl PredictMeta {
    /// Reads the metadata through `get` (key of [`PREDICT_KEYS`] → its string, if present);
    /// `file` names the file in errors.
    ///
    /// # Errors
    /// [`Error::Metadata`] for `classes` or `forecast` that are not the JSON recur writes, a
    /// forecast spec that fails [`ForecastSpec::validate`], or a `forecast` kind without its
    /// spec.
    pub fn read(file: &str, get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let bad = |key: &str, reason: String| Error::Metadata {
            file: file.into(),
            key: key.into(),
            reason,
        };
        let kind = get("kind");
        let classes = match get("classes") {
            Some(c) => serde_json::from_str::<Option<Vec<String>>>(&c)
                .map_err(|e| bad("classes", e.to_string()))?,
            None => None,
        };
        if classes.as_ref().is_some_and(Vec::is_empty) {
            return Err(bad("classes", "no class names".into()));
        }
        let forecast = match get("forecast") {
            Some(c) => {
                let spec = serde_json::from_str::<ForecastSpec>(&c)
                    .map_err(|e| bad("forecast", e.to_string()))?;
                spec.validate()
                    .map_err(|e| bad("forecast", e.to_string()))?;
                Some(spec)
            }
            None => None,
        };
        if kind.as_deref() == Some("forecast") && forecast.is_none() {
            return Err(bad(
                "forecast",
                "missing: a forecaster's file keeps its window, horizon and scaling there".into(),
            ));
        }
        Ok(Self {
            kind,
            classes,
            forecast,
        })
    }

    /// Reads the metadata from a checkpoint's or model file's safetensors metadata
    /// (`recur.extra.<key>`), given as `(key, value)` pairs.
    ///
    /// # Errors
    /// As [`PredictMeta::read`].
    pub fn from_safetensors<'a>(
        file: &str,
        metadata: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Result<Self> {
        Self::read(file, |k| {
            let key = format!("{SAFETENSORS_META_PREFIX}{k}");
            metadata
                .clone()
                .into_iter()
                .find(|(name, _)| *name == key)
                .map(|(_, v)| v.to_string())
        })
    }

    /// What the model predicts.
    pub fn role(&self) -> Role {
        match self.kind.as_deref() {
            None => Role::Unknown,
            Some("sequences") if self.classes.is_some() => Role::Classifier,
            Some("sequences") => Role::Regressor,
            Some("forecast") => Role::Forecaster,
            Some("text") => Role::LanguageModel,
            Some(_) => Role::Other,
        }
    }
}

/// The class probabilities of each row of `logits` (`[n, classes]`, row-major): a softmax
/// computed in f64.
///
/// # Errors
/// [`Error::Config`] when `logits` is not a whole number of rows of `classes` values.
pub fn class_probabilities(logits: &[f64], classes: usize) -> Result<Vec<f64>> {
    if classes == 0 || !logits.len().is_multiple_of(classes) {
        return Err(crate::error::config_err(
            "outputs",
            format!(
                "{} values are not rows of {classes} class scores",
                logits.len()
            ),
        ));
    }
    let mut p = Vec::with_capacity(logits.len());
    for row in logits.chunks(classes) {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let start = p.len();
        p.extend(row.iter().map(|v| (v - m).exp()));
        let s: f64 = p[start..].iter().sum();
        for v in &mut p[start..] {
            *v /= s;
        }
    }
    Ok(p)
}

/// The most probable class of each row of `proba` (`[n, classes]`); of equal ones, the
/// first.
pub fn best_classes(proba: &[f64], classes: usize) -> Vec<usize> {
    proba
        .chunks(classes.max(1))
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0)
        })
        .collect()
}

/// One series' forecast.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesForecast {
    /// the series id (`None` in a file of one series)
    pub id: Option<String>,
    /// the H times after the history's last row, in the time column's format (empty without
    /// a time column whose step is known; a time that cannot be continued is an empty
    /// string)
    pub times: Vec<String>,
    /// `[horizon, targets]`, row-major, in the data's units
    pub values: Vec<f64>,
}

/// The forecasts of every series of a history.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    pub series: Vec<SeriesForecast>,
}

impl Forecast {
    /// The columns of the forecast as a table: the series column (long format), the time
    /// column (when it is continued), then each target.
    pub fn header(spec: &ForecastSpec) -> Vec<String> {
        let mut header = Vec::new();
        header.extend(spec.series_column.iter().cloned());
        if Self::has_times(spec) {
            header.extend(spec.time_column.iter().cloned());
        }
        header.extend(spec.targets.iter().cloned());
        header
    }

    /// Whether the forecast continues the time column.
    pub fn has_times(spec: &ForecastSpec) -> bool {
        spec.time_column.is_some() && spec.frequency.is_some()
    }

    /// All the values, `[series, horizon, targets]` row-major.
    pub fn values(&self) -> Vec<f64> {
        self.series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .collect()
    }
}

/// Forecasts the `spec.horizon` steps after each series' last row of `table` (read with
/// `spec.csv_columns()`), running the model with `run`: its input `[window, 1, input_size]`
/// scaled as in training, its output `horizon × targets` values (step-major), which are put
/// back into the data's units.
///
/// # Errors
/// [`Error::Config`] for a series shorter than the window or one the model was not trained
/// on, or a model that gives another number of values; what `run` returns.
pub fn forecast<E: From<Error>>(
    spec: &ForecastSpec,
    table: &SeriesTable,
    mut run: impl FnMut(&Tensor<f32>) -> std::result::Result<Vec<f32>, E>,
) -> std::result::Result<Forecast, E> {
    let with_time = Forecast::has_times(spec);
    let mut series = Vec::with_capacity(table.series.len());
    for s in &table.series {
        let (x, levels) = spec.history_input(s)?;
        let z = run(&x)?;
        if z.len() != spec.out_features() {
            return Err(crate::error::config_err(
                "model",
                format!(
                    "the model gives {} values, the forecaster's spec horizon × targets = {}",
                    z.len(),
                    spec.out_features()
                ),
            )
            .into());
        }
        let scaling = spec.scaling_of(s.id.as_deref())?;
        let values = spec.decode(scaling, &levels, &z);
        let times = match (&spec.frequency, with_time) {
            (Some(freq), true) => {
                let last = s.times.last().map(String::as_str).unwrap_or_default();
                (1..=spec.horizon as u32)
                    .map(|k| freq.format_after(last, k).unwrap_or_default())
                    .collect()
            }
            _ => Vec::new(),
        };
        series.push(SeriesForecast {
            id: s.id.clone(),
            times,
            values,
        });
    }
    Ok(Forecast { series })
}

/// A history with its last `spec.horizon` rows of each series withheld, and those rows'
/// target values (`[horizon, targets]` per series, data units): the truth to score a
/// forecast of the shortened history against.
///
/// # Errors
/// [`Error::Config`] naming a series with fewer than window + horizon rows.
pub fn hold_out(spec: &ForecastSpec, table: &SeriesTable) -> Result<(SeriesTable, Vec<Vec<f64>>)> {
    let (h, w, nc, nt) = (
        spec.horizon,
        spec.window,
        table.columns.len(),
        spec.targets.len(),
    );
    let mut kept = table.clone();
    let mut truth = Vec::with_capacity(table.series.len());
    for s in &mut kept.series {
        let n = s.len();
        if n < w + h {
            let name =
                s.id.as_ref()
                    .map_or_else(|| "the history".to_string(), |i| format!("series `{i}`"));
            return Err(crate::error::config_err(
                "holdout",
                format!(
                    "{name} has {n} rows; withholding the last {h} (the horizon) leaves fewer \
                     than the {w} the model reads"
                ),
            ));
        }
        let cut = n - h;
        let rest = s.values.split_off(cut * nc);
        truth.push(
            rest.chunks(nc)
                .flat_map(|row| row[..nt].iter().copied())
                .collect(),
        );
        s.file_rows.truncate(cut);
        if !s.times.is_empty() {
            s.times.truncate(cut);
        }
    }
    Ok((kept, truth))
}

/// MAE and RMSE of a forecast against the truth [`hold_out`] withheld, over every series,
/// step and target (MASE is left out: it needs the training rows' scale); `None` without
/// values.
pub fn holdout_metrics(forecast: &Forecast, truth: &[Vec<f64>]) -> Option<Metrics> {
    let mut sums = ErrorSums::default();
    for (f, t) in forecast.series.iter().zip(truth) {
        sums.add(&f.values, t, &[None]);
    }
    sums.metrics().map(|m| Metrics { mase: None, ..m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_a_softmax_and_ties_go_to_the_first_class() {
        let p = class_probabilities(&[0.0, 0.0, 1.0, 3.0, 1.0, 1.0], 3).unwrap();
        let e = [1.0f64, 1.0, 1.0f64.exp()];
        let s: f64 = e.iter().sum();
        for k in 0..3 {
            assert!((p[k] - e[k] / s).abs() < 1e-15);
        }
        assert!((p[3..].iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert_eq!(best_classes(&p, 3), [2, 0]);
        assert_eq!(best_classes(&[0.5, 0.5], 2), [0]);
        assert!(class_probabilities(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(class_probabilities(&[1.0], 0).is_err());
    }

    #[test]
    fn roles_follow_kind_and_classes() {
        let meta = |kind: Option<&str>, classes: Option<&str>| {
            PredictMeta::read("f", |k| match k {
                "kind" => kind.map(str::to_string),
                "classes" => classes.map(str::to_string),
                _ => None,
            })
        };
        let role = |kind, classes| meta(kind, classes).unwrap().role();
        assert_eq!(
            role(Some("sequences"), Some(r#"["a","b"]"#)),
            Role::Classifier
        );
        assert_eq!(role(Some("sequences"), Some("null")), Role::Regressor);
        assert_eq!(role(Some("sequences"), None), Role::Regressor);
        assert_eq!(role(Some("text"), None), Role::LanguageModel);
        assert_eq!(role(Some("adding"), None), Role::Other);
        assert_eq!(role(None, None), Role::Unknown);
        let e = meta(Some("forecast"), None).unwrap_err().to_string();
        assert!(e.contains("f: metadata `forecast`: missing"), "{e}");
        let e = meta(Some("sequences"), Some("[1")).unwrap_err().to_string();
        assert!(e.contains("f: metadata `classes`"), "{e}");
        let e = meta(Some("sequences"), Some("[]")).unwrap_err().to_string();
        assert!(e.contains("no class names"), "{e}");
        let st = PredictMeta::from_safetensors(
            "f",
            [("recur.extra.kind", "sequences"), ("recur.format", "x")],
        )
        .unwrap();
        assert_eq!(st.role(), Role::Regressor);
    }

    #[test]
    fn hold_out_withholds_the_last_horizon_rows_of_each_series() {
        use crate::data::forecast::{Scaler, SeriesScaling, WindowScaling};
        use crate::data::series::{CsvColumns, Missing};
        let mut csv = String::from("id,t,y,x\n");
        for t in 0..6 {
            for s in ["a", "b"] {
                csv.push_str(&format!(
                    "{s},{t},{}{t},{}\n",
                    if s == "a" { 1 } else { 2 },
                    t * 2
                ));
            }
        }
        let spec = ForecastSpec {
            targets: vec!["y".into()],
            features: vec!["x".into()],
            time_column: Some("t".into()),
            series_column: Some("id".into()),
            frequency: None,
            window: 3,
            horizon: 2,
            season: None,
            window_scaling: WindowScaling::None,
            missing: Missing::Error,
            scaling: ["a", "b"]
                .map(|id| SeriesScaling {
                    id: Some(id.into()),
                    columns: vec![
                        Scaler {
                            mean: 0.0,
                            std: 1.0
                        };
                        2
                    ],
                })
                .to_vec(),
        };
        let cols: CsvColumns = spec.csv_columns();
        let table = SeriesTable::parse_csv(csv.as_bytes(), "f.csv", &cols).unwrap();
        let (kept, truth) = hold_out(&spec, &table).unwrap();
        assert_eq!(truth, [vec![14.0, 15.0], vec![24.0, 25.0]]);
        for s in &kept.series {
            assert_eq!(s.len(), 4);
            assert_eq!(s.times.len(), 4);
            assert_eq!(s.values.len(), 8);
        }
        // a perfect forecast scores 0; one off by 1 and 3 scores MAE 2, RMSE sqrt(5)
        let f = |v: [f64; 4]| Forecast {
            series: vec![
                SeriesForecast {
                    id: None,
                    times: vec![],
                    values: v[..2].to_vec(),
                },
                SeriesForecast {
                    id: None,
                    times: vec![],
                    values: v[2..].to_vec(),
                },
            ],
        };
        assert_eq!(
            holdout_metrics(&f([14.0, 15.0, 24.0, 25.0]), &truth)
                .unwrap()
                .mae,
            0.0
        );
        let m = holdout_metrics(&f([15.0, 12.0, 25.0, 22.0]), &truth).unwrap();
        assert!((m.mae - 2.0).abs() < 1e-12 && (m.rmse - 5f64.sqrt()).abs() < 1e-12);
        let short = SeriesTable {
            series: table.series[..1].to_vec(),
            ..table.clone()
        };
        let mut one = short.clone();
        one.series[0].values.truncate(8);
        one.series[0].file_rows.truncate(4);
        one.series[0].times.truncate(4);
        let e = hold_out(&spec, &one).unwrap_err().to_string();
        assert!(e.contains("series `a` has 4 rows"), "{e}");
    }
}
