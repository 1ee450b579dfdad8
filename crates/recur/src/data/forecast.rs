//! Forecasting windows over [`SeriesTable`]s: the chronological split, scaling, the model's
//! inputs and targets, the metrics (MAE, RMSE, MASE) and the naive and seasonal-naive
//! baselines computed on the same windows.
//!
//! ```text
//! one series:  | train ................................ | valid ...... | test ...... |
//!              0                                  train_end      valid_end           n
//! a window:    rows o−W .. o−1 are the inputs, rows o .. o+H−1 the targets (o: its origin)
//! train:       W ≤ o and o+H ≤ train_end          (inputs and targets in the training part)
//! valid:       train_end ≤ o and o+H ≤ valid_end  (targets in the validation part)
//! test:        valid_end ≤ o and o+H ≤ n          (targets in the test part: rolling origins)
//! ```
//! Each series is split on its own, in time order (never shuffled): no target of the
//! training part lies after a validation or test row, and the inputs of a validation or
//! test window are the history known at its origin.
//!
//! **Scaling.** Every column of every series is standardised with the mean and standard
//! deviation of that series' training rows only ([`Scaler`], saved in the [`ForecastSpec`]).
//! On top of that each window's target columns may be taken relative to the window's own
//! level ([`WindowScaling`]; RevIN's mean, Kim et al. 2022, without its division): the
//! inputs and targets are `z − level` and the forecast is `level + output`, so a series
//! whose level drifts out of the training range (a trend) still reaches the model in the
//! range it was trained on. The default is [`WindowScaling::Mean`].
//!
//! **Metrics** are in the data's units, over every window, horizon step and target: MAE,
//! RMSE, and MASE (Hyndman & Koehler 2006): each absolute error divided by the in-sample
//! MAE of the seasonal-naive forecast on that series' training rows (season 1 when there is
//! none), then averaged. **Baselines** on the same windows: naive (the last value before
//! the origin, for every step) and seasonal naive (`y[o + j − m·(⌊j/m⌋ + 1)]`, the value one
//! season before, from the whole known history).

use serde::{Deserialize, Serialize};

use super::series::{CsvColumns, Frequency, Missing, Series, SeriesTable};
use crate::error::{Error, Result, config_err};
use crate::tensor::Tensor;

/// How a window's target columns are levelled before the model sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowScaling {
    /// Only the global per-series standardisation.
    None,
    /// Relative to the mean of the window's target values (RevIN-style; the default).
    #[default]
    Mean,
    /// Relative to the window's last target value (the model then predicts changes).
    Last,
}

/// One column's standardisation: `z = (x − mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    pub mean: f64,
    pub std: f64,
}

impl Scaler {
    /// Of `values` (a constant column gets std 1).
    pub fn fit(values: impl Iterator<Item = f64> + Clone) -> Self {
        let n = values.clone().count().max(1) as f64;
        let mean = values.clone().sum::<f64>() / n;
        let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let std = var.sqrt();
        Scaler {
            mean,
            std: if std > 1e-12 * mean.abs().max(1.0) {
                std
            } else {
                1.0
            },
        }
    }
}

/// One series' scalers, one per column (targets, then features).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesScaling {
    /// the series id (`None` in a file of one series)
    pub id: Option<String>,
    pub columns: Vec<Scaler>,
}

/// Everything a forecaster needs besides its weights to read new history and write its
/// forecast: saved with the model (checkpoint metadata `forecast`, model files, ONNX
/// `metadata_props`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForecastSpec {
    pub targets: Vec<String>,
    pub features: Vec<String>,
    pub time_column: Option<String>,
    pub series_column: Option<String>,
    /// the time column's format and step, when there is a time column
    pub frequency: Option<Frequency>,
    /// W: rows read
    pub window: usize,
    /// H: steps forecast
    pub horizon: usize,
    /// the seasonal period of the baseline and of MASE's scale (None: 1 for MASE, no
    /// seasonal-naive baseline)
    pub season: Option<usize>,
    pub window_scaling: WindowScaling,
    pub missing: Missing,
    /// per series, from its training rows
    pub scaling: Vec<SeriesScaling>,
}

impl ForecastSpec {
    /// Checks a spec read from a file: a window and horizon of at least 1, at least one
    /// target, one finite scaler with a positive deviation per column of every series, a
    /// season of at least 2.
    ///
    /// # Errors
    /// [`Error::Config`] naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.window == 0 || self.horizon == 0 || self.targets.is_empty() {
            return Err(config_err(
                "forecast",
                "a window and horizon of at least 1 and at least one target are needed",
            ));
        }
        if self.horizon.checked_mul(self.targets.len()).is_none() {
            return Err(config_err("forecast", "horizon × targets overflows"));
        }
        if self.season.is_some_and(|m| m < 2) {
            return Err(config_err("forecast", "a season is at least 2 steps"));
        }
        for s in &self.scaling {
            let ok = s.columns.len() == self.input_size()
                && s.columns
                    .iter()
                    .all(|c| c.mean.is_finite() && c.std.is_finite() && c.std > 0.0);
            if !ok {
                return Err(config_err(
                    "forecast",
                    format!(
                        "the scaling of {} needs one finite scaler with a positive deviation \
                         per column ({} columns)",
                        s.id.as_deref()
                            .map_or("the series".into(), |i| format!("series `{i}`")),
                        self.input_size()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The columns to read from a CSV file of history.
    pub fn csv_columns(&self) -> CsvColumns {
        CsvColumns {
            targets: self.targets.clone(),
            features: self.features.clone(),
            time: self.time_column.clone(),
            series: self.series_column.clone(),
            missing: self.missing,
        }
    }

    /// Values per input row: targets and features.
    pub fn input_size(&self) -> usize {
        self.targets.len() + self.features.len()
    }

    /// The model's outputs: `horizon × targets`, step-major (`[h][target]`).
    pub fn out_features(&self) -> usize {
        self.horizon * self.targets.len()
    }

    /// The scalers of series `id`.
    ///
    /// # Errors
    /// [`Error::Config`] when the series was not in the training data.
    pub fn scaling_of(&self, id: Option<&str>) -> Result<&SeriesScaling> {
        self.scaling
            .iter()
            .find(|s| s.id.as_deref() == id)
            .ok_or_else(|| match id {
                Some(id) => config_err(
                    "series",
                    format!(
                        "series `{id}` was not in the training data, so its scaling is unknown"
                    ),
                ),
                None => config_err(
                    "series",
                    "the model was trained on several series: name one",
                ),
            })
    }

    /// Writes the model's input for one window, `rows` (`[window, input_size]` in data
    /// units, row-major), into `out` (the same size, scaled) and returns the targets' levels.
    pub fn encode(&self, scaling: &SeriesScaling, rows: &[f64], out: &mut [f32]) -> Vec<f64> {
        let nc = self.input_size();
        let nt = self.targets.len();
        let w = rows.len() / nc;
        let z = |r: usize, k: usize| {
            let s = scaling.columns[k];
            (rows[r * nc + k] - s.mean) / s.std
        };
        let levels: Vec<f64> = (0..nt)
            .map(|k| match self.window_scaling {
                WindowScaling::None => 0.0,
                WindowScaling::Mean => (0..w).map(|r| z(r, k)).sum::<f64>() / w as f64,
                WindowScaling::Last => z(w - 1, k),
            })
            .collect();
        for r in 0..w {
            for k in 0..nc {
                let level = if k < nt { levels[k] } else { 0.0 };
                out[r * nc + k] = (z(r, k) - level) as f32;
            }
        }
        levels
    }

    /// The model's targets for future rows `rows` (`[horizon, input_size]`, data units) of a
    /// window with `levels`, into `out` (`[horizon × targets]`).
    pub fn encode_targets(
        &self,
        scaling: &SeriesScaling,
        levels: &[f64],
        rows: &[f64],
        out: &mut [f32],
    ) {
        let (nc, nt) = (self.input_size(), self.targets.len());
        for h in 0..self.horizon {
            for k in 0..nt {
                let s = scaling.columns[k];
                out[h * nt + k] = ((rows[h * nc + k] - s.mean) / s.std - levels[k]) as f32;
            }
        }
    }

    /// The model's output `z` (`[horizon × targets]`) in data units.
    pub fn decode(&self, scaling: &SeriesScaling, levels: &[f64], z: &[f32]) -> Vec<f64> {
        let nt = self.targets.len();
        z.iter()
            .enumerate()
            .map(|(i, &v)| {
                let k = i % nt;
                let s = scaling.columns[k];
                (f64::from(v) + levels[k]) * s.std + s.mean
            })
            .collect()
    }

    /// The model's input `[window, 1, input_size]` and the levels for the last `window`
    /// rows of `series` (a history to forecast from).
    ///
    /// # Errors
    /// [`Error::Config`] for a series with fewer rows than the window, or one the model was
    /// not trained on.
    pub fn history_input(&self, series: &Series) -> Result<(Tensor<f32>, Vec<f64>)> {
        let w = self.window;
        let nc = self.input_size();
        let name = series
            .id
            .as_ref()
            .map(|i| format!("series `{i}`"))
            .unwrap_or_else(|| "the history".into());
        if series.len() < w {
            return Err(config_err(
                "history",
                format!(
                    "{name} has {} rows; the model reads the last {w} (its window)",
                    series.len()
                ),
            ));
        }
        let scaling = self.scaling_of(series.id.as_deref())?;
        let rows = &series.values[(series.len() - w) * nc..];
        let mut x = vec![0.0f32; w * nc];
        let levels = self.encode(scaling, rows, &mut x);
        Ok((Tensor::new(x, &[w, 1, nc])?, levels))
    }
}

/// The settings of a forecasting data set.
#[derive(Clone, Debug, PartialEq)]
pub struct ForecastConfig {
    pub window: usize,
    pub horizon: usize,
    /// the seasonal period; `None`: the time column's ([`Frequency::season`]), if any
    pub season: Option<usize>,
    pub window_scaling: WindowScaling,
    /// train, valid, test fractions of each series (the test part is the last rows)
    pub split: [f64; 3],
}

/// Which part of each series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Train,
    Valid,
    Test,
}

/// One window: series `series`, first target row `origin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub series: usize,
    pub origin: usize,
}

/// A batch of windows, scaled.
#[derive(Clone, Debug)]
pub struct WindowBatch {
    /// `[window, batch, input_size]`
    pub input: Tensor<f32>,
    /// `[batch, horizon × targets]`
    pub target: Tensor<f32>,
    /// each window's target levels ([`WindowScaling`])
    pub levels: Vec<Vec<f64>>,
}

/// A table of series cut into parts, with the spec (scalers included) learned from its
/// training rows.
#[derive(Clone, Debug)]
pub struct ForecastData {
    pub spec: ForecastSpec,
    pub table: SeriesTable,
    /// per series: `[train_end, valid_end, len]`
    pub bounds: Vec<[usize; 3]>,
}

fn series_name(s: &Series) -> String {
    s.id.as_ref()
        .map(|i| format!("series `{i}`"))
        .unwrap_or_else(|| "the series".into())
}

impl ForecastData {
    /// Splits every series of `table` in time order and learns its scaling from its
    /// training rows. `time_column` and `series_column` are the names the table was read
    /// with (saved in the spec).
    ///
    /// # Errors
    /// [`Error::Config`] for a window or horizon of 0, fractions that do not add up to 1, a
    /// season below 2 or not shorter than a training part, a series whose training part has
    /// fewer than `window + horizon` rows or whose validation or test part has fewer than
    /// `horizon` rows.
    pub fn new(
        table: SeriesTable,
        config: &ForecastConfig,
        time_column: Option<String>,
        series_column: Option<String>,
        missing: Missing,
    ) -> Result<Self> {
        let ForecastConfig {
            window,
            horizon,
            season,
            window_scaling,
            split,
        } = config.clone();
        if window == 0 || horizon == 0 {
            return Err(config_err("window, horizon", "both must be at least 1"));
        }
        let [ft, fv, fe] = split;
        if !(split.iter().all(|f| f.is_finite() && *f >= 0.0) && ft > 0.0 && fv > 0.0 && fe > 0.0)
            || ((ft + fv + fe) - 1.0).abs() > 1e-6
        {
            return Err(config_err(
                "split",
                format!("fractions {split:?} must be positive and add up to 1"),
            ));
        }
        let season = season.or_else(|| table.frequency.as_ref().and_then(Frequency::season));
        if let Some(m) = season
            && m < 2
        {
            return Err(config_err(
                "season",
                format!("{m}: a season is at least 2 steps"),
            ));
        }
        let nc = table.columns.len();
        let mut bounds = Vec::with_capacity(table.series.len());
        let mut scaling = Vec::with_capacity(table.series.len());
        for s in &table.series {
            let n = s.len();
            let n_valid = (n as f64 * fv).round() as usize;
            let n_test = (n as f64 * fe).round() as usize;
            let train_end = n.saturating_sub(n_valid + n_test);
            let name = series_name(s);
            if train_end < window.saturating_add(horizon) {
                return Err(config_err(
                    "window",
                    format!(
                        "{name} has {train_end} training rows (of {n}); a window of {window} \
                         and a horizon of {horizon} need at least {}",
                        window.saturating_add(horizon)
                    ),
                ));
            }
            if n_valid < horizon || n_test < horizon {
                return Err(config_err(
                    "horizon",
                    format!(
                        "{name}: its validation and test parts have {n_valid} and {n_test} \
                         rows (of {n}); each needs at least the horizon, {horizon} (raise \
                         --split's fractions or shorten --horizon)"
                    ),
                ));
            }
            if let Some(m) = season
                && m >= train_end
            {
                return Err(config_err(
                    "season",
                    format!("{m} is not shorter than {name}'s {train_end} training rows"),
                ));
            }
            bounds.push([train_end, train_end + n_valid, n]);
            scaling.push(SeriesScaling {
                id: s.id.clone(),
                columns: (0..nc)
                    .map(|k| Scaler::fit((0..train_end).map(|r| s.values[r * nc + k])))
                    .collect(),
            });
        }
        let nt = table.n_targets;
        let spec = ForecastSpec {
            targets: table.columns[..nt].to_vec(),
            features: table.columns[nt..].to_vec(),
            time_column,
            series_column,
            frequency: table.frequency.clone(),
            window,
            horizon,
            season,
            window_scaling,
            missing,
            scaling,
        };
        Ok(ForecastData {
            spec,
            table,
            bounds,
        })
    }

    /// The windows of `part`, series by series, origins in time order.
    pub fn windows(&self, part: Part) -> Vec<Window> {
        let (w, h) = (self.spec.window, self.spec.horizon);
        let mut out = Vec::new();
        for (si, &[train_end, valid_end, n]) in self.bounds.iter().enumerate() {
            let (lo, hi) = match part {
                Part::Train => (w, train_end),
                Part::Valid => (train_end, valid_end),
                Part::Test => (valid_end, n),
            };
            out.extend((lo..=hi.saturating_sub(h)).map(|origin| Window { series: si, origin }));
        }
        out
    }

    fn rows(&self, s: usize, from: usize, to: usize) -> &[f64] {
        let nc = self.spec.input_size();
        &self.table.series[s].values[from * nc..to * nc]
    }

    /// The model's inputs and targets for `windows`.
    ///
    /// # Errors
    /// [`Error::Empty`] for no windows.
    pub fn batch(&self, windows: &[Window]) -> Result<WindowBatch> {
        if windows.is_empty() {
            return Err(Error::Empty("a batch of no windows".into()));
        }
        let (w, h, nc, no) = (
            self.spec.window,
            self.spec.horizon,
            self.spec.input_size(),
            self.spec.out_features(),
        );
        let b = windows.len();
        let mut x = vec![0.0f32; w * b * nc];
        let mut y = vec![0.0f32; b * no];
        let mut one = vec![0.0f32; w * nc];
        let mut levels = Vec::with_capacity(b);
        for (j, win) in windows.iter().enumerate() {
            let sc = &self.spec.scaling[win.series];
            let lv = self.spec.encode(
                sc,
                self.rows(win.series, win.origin - w, win.origin),
                &mut one,
            );
            for r in 0..w {
                x[(r * b + j) * nc..(r * b + j + 1) * nc]
                    .copy_from_slice(&one[r * nc..(r + 1) * nc]);
            }
            self.spec.encode_targets(
                sc,
                &lv,
                self.rows(win.series, win.origin, win.origin + h),
                &mut y[j * no..(j + 1) * no],
            );
            levels.push(lv);
        }
        Ok(WindowBatch {
            input: Tensor::new(x, &[w, b, nc])?,
            target: Tensor::new(y, &[b, no])?,
            levels,
        })
    }

    /// The true future of a window (`[horizon × targets]`, data units).
    pub fn truth(&self, win: &Window) -> Vec<f64> {
        let (nc, nt) = (self.spec.input_size(), self.spec.targets.len());
        let rows = self.rows(win.series, win.origin, win.origin + self.spec.horizon);
        (0..self.spec.horizon)
            .flat_map(|h| (0..nt).map(move |k| rows[h * nc + k]))
            .collect()
    }

    /// The naive forecast: the last value before the origin, at every step.
    pub fn naive(&self, win: &Window) -> Vec<f64> {
        let nt = self.spec.targets.len();
        let last = self.rows(win.series, win.origin - 1, win.origin);
        (0..self.spec.horizon)
            .flat_map(|_| last[..nt].iter().copied())
            .collect()
    }

    /// The seasonal-naive forecast with period `m`: the value one season before each step,
    /// from the whole history before the origin (`None` when the origin is less than `m`).
    pub fn seasonal_naive(&self, win: &Window, m: usize) -> Option<Vec<f64>> {
        if win.origin < m {
            return None;
        }
        let (nc, nt) = (self.spec.input_size(), self.spec.targets.len());
        let vals = &self.table.series[win.series].values;
        Some(
            (0..self.spec.horizon)
                .flat_map(|j| {
                    let r = win.origin + j - m * (j / m + 1);
                    (0..nt).map(move |k| vals[r * nc + k])
                })
                .collect(),
        )
    }

    /// MASE's scale of series `s`, target `k`: the mean absolute seasonal difference (period
    /// the season, or 1) over its training rows; `None` when it is 0 (a flat series).
    pub fn mase_scale(&self, s: usize, k: usize) -> Option<f64> {
        let m = self.spec.season.unwrap_or(1);
        let nc = self.spec.input_size();
        let v = &self.table.series[s].values;
        let end = self.bounds[s][0];
        let d: f64 = (m..end)
            .map(|t| (v[t * nc + k] - v[(t - m) * nc + k]).abs())
            .sum();
        let scale = d / (end - m) as f64;
        (scale > 0.0).then_some(scale)
    }
}

/// Sums of errors over windows, for [`Metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorSums {
    abs: f64,
    sq: f64,
    scaled: f64,
    n: usize,
    n_scaled: usize,
}

impl ErrorSums {
    /// Adds a window's forecast against its truth (`[horizon × targets]`, data units), the
    /// target of each value being `i % targets`, with MASE scales per target.
    pub fn add(&mut self, forecast: &[f64], truth: &[f64], scales: &[Option<f64>]) {
        let nt = scales.len();
        for (i, (f, t)) in forecast.iter().zip(truth).enumerate() {
            let e = (f - t).abs();
            self.abs += e;
            self.sq += e * e;
            self.n += 1;
            if let Some(s) = scales[i % nt] {
                self.scaled += e / s;
                self.n_scaled += 1;
            }
        }
    }

    /// MAE, RMSE and MASE (`None` without values, MASE `None` for flat series only).
    pub fn metrics(&self) -> Option<Metrics> {
        (self.n > 0).then(|| Metrics {
            mae: self.abs / self.n as f64,
            rmse: (self.sq / self.n as f64).sqrt(),
            mase: (self.n_scaled > 0).then(|| self.scaled / self.n_scaled as f64),
        })
    }
}

/// Forecast errors in the data's units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    pub mae: f64,
    pub rmse: f64,
    pub mase: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::super::series::CsvColumns;
    use super::*;

    fn table(n: usize, series: usize) -> SeriesTable {
        let mut csv = String::from("id,t,y,x\n");
        for t in 0..n {
            for s in 0..series {
                let y = (s * 100) as f64 + t as f64 + (t % 4) as f64 * 3.0;
                csv.push_str(&format!("s{s},{t},{y},{}\n", t * 2));
            }
        }
        let cols = CsvColumns {
            targets: vec!["y".into()],
            features: vec!["x".into()],
            time: Some("t".into()),
            series: Some("id".into()),
            missing: Missing::Error,
        };
        SeriesTable::parse_csv(csv.as_bytes(), "t.csv", &cols).unwrap()
    }

    fn data(n: usize, series: usize, ws: WindowScaling) -> ForecastData {
        let cfg = ForecastConfig {
            window: 6,
            horizon: 3,
            season: Some(4),
            window_scaling: ws,
            split: [0.8, 0.1, 0.1],
        };
        ForecastData::new(
            table(n, series),
            &cfg,
            Some("t".into()),
            Some("id".into()),
            Missing::Error,
        )
        .unwrap()
    }

    #[test]
    fn chronological_split_never_leaks() {
        let d = data(60, 3, WindowScaling::Mean);
        for (s, &[train_end, valid_end, n]) in d.bounds.iter().enumerate() {
            assert_eq!((train_end, valid_end, n), (48, 54, 60));
            for w in d.windows(Part::Train).iter().filter(|w| w.series == s) {
                assert!(w.origin >= 6 && w.origin + 3 <= train_end, "{w:?}");
            }
            for w in d.windows(Part::Valid).iter().filter(|w| w.series == s) {
                assert!(w.origin >= train_end && w.origin + 3 <= valid_end, "{w:?}");
            }
            for w in d.windows(Part::Test).iter().filter(|w| w.series == s) {
                assert!(w.origin >= valid_end && w.origin + 3 <= n, "{w:?}");
            }
        }
        assert_eq!(d.windows(Part::Train).len(), 3 * (48 - 3 - 6 + 1));
        assert_eq!(d.windows(Part::Test).len(), 3 * 4);
        // scaling comes from the training rows only: changing a test value changes nothing
        let mut t = table(60, 1);
        t.series[0].values[2 * 59] = 1e9;
        let cfg = ForecastConfig {
            window: 6,
            horizon: 3,
            season: Some(4),
            window_scaling: WindowScaling::Mean,
            split: [0.8, 0.1, 0.1],
        };
        let d2 = ForecastData::new(t, &cfg, None, None, Missing::Error).unwrap();
        assert_eq!(
            d2.spec.scaling[0],
            data(60, 1, WindowScaling::Mean).spec.scaling[0]
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        for ws in [
            WindowScaling::None,
            WindowScaling::Mean,
            WindowScaling::Last,
        ] {
            let d = data(40, 2, ws);
            let wins = d.windows(Part::Test);
            let WindowBatch {
                input: x,
                target: y,
                levels,
            } = d.batch(&wins).unwrap();
            assert_eq!(x.shape(), &[6, wins.len(), 2]);
            assert_eq!(y.shape(), &[wins.len(), 3]);
            for (j, w) in wins.iter().enumerate() {
                let back = d.spec.decode(
                    &d.spec.scaling[w.series],
                    &levels[j],
                    &y.data()[j * 3..(j + 1) * 3],
                );
                for (a, b) in back.iter().zip(d.truth(w)) {
                    assert!(
                        (a - b).abs() < 1e-4 * b.abs().max(1.0),
                        "{ws:?}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn baselines_and_metrics() {
        let d = data(40, 1, WindowScaling::Mean);
        let w = Window {
            series: 0,
            origin: 36,
        };
        let v = |t: usize| d.table.series[0].values[t * 2];
        assert_eq!(d.naive(&w), vec![v(35); 3]);
        assert_eq!(d.seasonal_naive(&w, 4).unwrap(), vec![v(32), v(33), v(34)]);
        assert_eq!(d.seasonal_naive(&w, 2).unwrap(), vec![v(34), v(35), v(34)]);
        let mut sums = ErrorSums::default();
        sums.add(&[1.0, 2.0], &[2.0, 4.0], &[Some(2.0)]);
        let m = sums.metrics().unwrap();
        assert_eq!(m.mae, 1.5);
        assert!((m.rmse - (2.5f64).sqrt()).abs() < 1e-12);
        assert_eq!(m.mase, Some(0.75));
        // MASE's scale: y = t + 3 (t mod 4) has seasonal differences of 4 at period 4
        assert!((d.mase_scale(0, 0).unwrap() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn short_series_and_bad_settings_are_refused() {
        let cfg = ForecastConfig {
            window: 30,
            horizon: 3,
            season: None,
            window_scaling: WindowScaling::Mean,
            split: [0.8, 0.1, 0.1],
        };
        let e = ForecastData::new(table(30, 1), &cfg, None, None, Missing::Error).unwrap_err();
        assert!(e.to_string().contains("24 training rows"), "{e}");
        let cfg = ForecastConfig {
            window: 4,
            horizon: 5,
            ..cfg
        };
        let e = ForecastData::new(table(30, 1), &cfg, None, None, Missing::Error).unwrap_err();
        assert!(
            e.to_string().contains("each needs at least the horizon"),
            "{e}"
        );
    }
}
