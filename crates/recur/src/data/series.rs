//! Time series from CSV files: one or many series in long format, a time column whose
//! frequency is detected, and a documented policy for missing values.
//!
//! ```text
//! month,passengers            a header row, then one row per time step
//! 1949-01,112                 (with --series-column: one row per series and time step,
//! 1949-02,118                  the rows of a series in time order, series may interleave)
//! ```
//!
//! **Rows and columns** in errors are counted as a spreadsheet shows them: from 1, the
//! header being row 1 (so the first data row is row 2), columns from the left from 1, with
//! the column's name beside its number.
//!
//! **Missing values** are empty cells and `NA`, `N/A`, `NaN`, `null` (any case). What happens
//! to them is [`Missing`], applied per series before any window is cut: an error naming the
//! cell (the default), the row dropped (with a time column only at a series' start or end,
//! where it leaves no gap in the time steps), the last value carried forward, or a straight
//! line between its neighbours. Nothing is invented before a series' first value (no
//! backfill) or, by interpolation, after its last: such a cell is an error naming it. `inf`
//! and anything that is not a number are always errors naming the cell.
//!
//! **The time column** (optional) is parsed as dates (`2020-01-31`, `2020-01`, `2020/01/31`),
//! date-times (`2020-01-31 13:00[:00]`, `T` or space) or plain numbers (years, step
//! numbers). Its rows must go forward by one fixed step ([`Frequency`]): a gap (a step
//! longer than the series' step), a repeated or a backward time is an error naming the row.
//! The frequency gives the seasonal period used by the seasonal-naive baseline when none is
//! given ([`Frequency::season`]) and lets a forecast continue the time column
//! ([`Frequency::format_after`]).

use std::collections::HashMap;
use std::path::Path;

use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What to do with a missing value (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missing {
    /// An error naming the row and column.
    #[default]
    Error,
    /// The row is left out. With a time column, only where that leaves no gap in the time
    /// steps: before a series' first complete row or after its last; a row between two kept
    /// rows is an error naming it and the gap. Without a time column the rows left are read
    /// as consecutive steps.
    Drop,
    /// The last value of the series' column before it (an error when the series' first value
    /// is missing: there is no backfill).
    Ffill,
    /// A straight line between the observed values before and after it, within the series
    /// (an error before the first observed value or after the last: no backfill, no
    /// extrapolation).
    Interpolate,
}

/// How a time column steps from one row to the next.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Calendar months (1 monthly, 3 quarterly, 12 yearly).
    Months(u32),
    /// A fixed number of seconds (3600 hourly, 86400 daily, 604800 weekly).
    Seconds(i64),
    /// Plain numbers going up by this much.
    Number(f64),
}

/// A time column's format and step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frequency {
    /// the `chrono` format the column was read with (`%Y-%m-%d`, …; `number` for numbers)
    pub format: String,
    pub step: Step,
}

/// The date and date-time formats tried, in order (`%Y-%m` is read as the month's first day).
const FORMATS: [&str; 8] = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y-%m",
    "%Y/%m",
];
const NUMBER: &str = "number";

/// A time value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Time {
    Date(NaiveDateTime),
    Number(f64),
}

fn parse_with(s: &str, format: &str) -> Option<Time> {
    let s = s.trim();
    if format == NUMBER {
        return s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Time::Number);
    }
    if format == "%Y-%m" || format == "%Y/%m" {
        let sep = &format[2..3];
        let d = NaiveDate::parse_from_str(&format!("{s}{sep}01"), &format!("{format}{sep}%d"));
        return d.ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(Time::Date);
    }
    if format.contains("%H") {
        return NaiveDateTime::parse_from_str(s, format)
            .ok()
            .map(Time::Date);
    }
    NaiveDate::parse_from_str(s, format)
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(Time::Date)
}

/// The first format that reads `s`.
fn detect_format(s: &str) -> Option<&'static str> {
    FORMATS
        .iter()
        .copied()
        .chain([NUMBER])
        .find(|f| parse_with(s, f).is_some())
}

/// Whole months from `a` to `b` when both fall on the same day and time of day.
fn month_diff(a: NaiveDateTime, b: NaiveDateTime) -> Option<i64> {
    (a.day() == b.day() && a.time() == b.time()).then(|| {
        (i64::from(b.year()) * 12 + i64::from(b.month0()))
            - (i64::from(a.year()) * 12 + i64::from(a.month0()))
    })
}

/// The step from `a` to `b`, as months when it is a whole number of them.
fn step_between(a: Time, b: Time) -> Option<Step> {
    match (a, b) {
        (Time::Date(a), Time::Date(b)) => match month_diff(a, b) {
            Some(m) if m > 0 && (a.day() <= 28) => Some(Step::Months(m as u32)),
            _ => Some(Step::Seconds((b - a).num_seconds())),
        },
        (Time::Number(a), Time::Number(b)) => Some(Step::Number(b - a)),
        _ => None,
    }
}

fn add_step(t: Time, step: Step, k: u32) -> Option<Time> {
    match (t, step) {
        (Time::Date(d), Step::Months(m)) => {
            d.checked_add_months(Months::new(m * k)).map(Time::Date)
        }
        (Time::Date(d), Step::Seconds(s)) => d
            .checked_add_signed(TimeDelta::try_seconds(s.checked_mul(i64::from(k))?)?)
            .map(Time::Date),
        (Time::Number(v), Step::Number(s)) => Some(Time::Number(v + s * f64::from(k))),
        _ => None,
    }
}

fn same_step(a: Step, b: Step) -> bool {
    match (a, b) {
        (Step::Number(x), Step::Number(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

impl Frequency {
    /// Its name: `monthly`, `quarterly`, `yearly`, `every 2 months`, `hourly`, `daily`,
    /// `weekly`, `every 900 s`, `steps of 1`.
    pub fn name(&self) -> String {
        match self.step {
            Step::Months(1) => "monthly".into(),
            Step::Months(3) => "quarterly".into(),
            Step::Months(12) => "yearly".into(),
            Step::Months(m) => format!("every {m} months"),
            Step::Seconds(60) => "every minute".into(),
            Step::Seconds(1800) => "half-hourly".into(),
            Step::Seconds(3600) => "hourly".into(),
            Step::Seconds(86_400) => "daily".into(),
            Step::Seconds(604_800) => "weekly".into(),
            Step::Seconds(s) => format!("every {s} s"),
            Step::Number(s) => format!("steps of {s}"),
        }
    }

    /// The usual seasonal period of the frequency: hourly 24, half-hourly 48, daily 7,
    /// weekly 52, monthly 12, quarterly 4; `None` for the others (yearly, numbers), which
    /// need `--season`.
    pub fn season(&self) -> Option<usize> {
        match self.step {
            Step::Months(1) => Some(12),
            Step::Months(3) => Some(4),
            Step::Seconds(1800) => Some(48),
            Step::Seconds(3600) => Some(24),
            Step::Seconds(86_400) => Some(7),
            Step::Seconds(604_800) => Some(52),
            _ => None,
        }
    }

    /// The `k`-th time after `last` (a value of the column), written in the column's format
    /// (numbers as integers when the column's were). `None` when `last` does not parse.
    pub fn format_after(&self, last: &str, k: u32) -> Option<String> {
        let t = add_step(parse_with(last, &self.format)?, self.step, k)?;
        Some(match t {
            Time::Date(d) => {
                if self.format.contains("%H") {
                    d.format(&self.format).to_string()
                } else {
                    d.date().format(&self.format).to_string()
                }
            }
            Time::Number(v) => {
                let whole = !last.trim().contains(['.', 'e', 'E']);
                if whole && v.fract() == 0.0 {
                    format!("{}", v as i64)
                } else {
                    format!("{v}")
                }
            }
        })
    }
}

/// One series: its rows in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// the value of the series column (`None` for a file of one series)
    pub id: Option<String>,
    /// the time column's cells as written (empty without a time column)
    pub times: Vec<String>,
    /// row-major `[rows, columns]`, the columns of [`SeriesTable::columns`]
    pub values: Vec<f64>,
    /// each row's number in the file (a spreadsheet's: the header is row 1)
    pub file_rows: Vec<usize>,
}

impl Series {
    /// Rows (time steps).
    pub fn len(&self) -> usize {
        self.file_rows.len()
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.file_rows.is_empty()
    }
}

/// The columns to read from a CSV file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CsvColumns {
    /// forecast targets (at least one)
    pub targets: Vec<String>,
    /// extra input columns
    pub features: Vec<String>,
    pub time: Option<String>,
    pub series: Option<String>,
    pub missing: Missing,
}

/// Series read from a CSV file: values of the columns `targets ++ features`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesTable {
    /// the targets, then the features
    pub columns: Vec<String>,
    pub n_targets: usize,
    pub series: Vec<Series>,
    /// the time column's frequency (the same for every series), when there is a time column
    pub frequency: Option<Frequency>,
}

/// Whether a cell is a missing value.
pub fn is_missing(cell: &str) -> bool {
    let c = cell.trim();
    c.is_empty()
        || ["na", "n/a", "nan", "null"]
            .iter()
            .any(|m| c.eq_ignore_ascii_case(m))
}

fn cell_err(file: &str, row: usize, col: usize, name: &str, reason: impl Into<String>) -> Error {
    Error::Cell {
        file: file.into(),
        row,
        column: col,
        name: name.into(),
        reason: reason.into(),
    }
}

impl SeriesTable {
    /// Reads a CSV file (see the [module docs](self)).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; [`Error::EmptyFile`]; [`Error::Parse`] for a
    /// malformed CSV line, a column named twice or not in the header;
    /// [`Error::Cell`] naming the row and column of a value that is not a finite number, a
    /// missing value under [`Missing::Error`], a time that does not parse, goes backward,
    /// repeats or leaves a gap.
    pub fn read_csv(path: impl AsRef<Path>, columns: &CsvColumns) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::io::read_limited(path)?;
        Self::parse_csv(&bytes, &path.display().to_string(), columns)
    }

    /// Parses CSV bytes; `file` names them in errors.
    ///
    /// # Errors
    /// As [`SeriesTable::read_csv`].
    pub fn parse_csv(bytes: &[u8], file: &str, spec: &CsvColumns) -> Result<Self> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::EmptyFile { file: file.into() });
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let parse_err = |e: csv::Error| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            Error::Parse {
                file: file.into(),
                line,
                reason: format!("not a CSV row: {e}"),
            }
        };
        let header: Vec<String> = reader
            .headers()
            .map_err(parse_err)?
            .iter()
            .map(str::to_string)
            .collect();
        let find = |name: &str, what: &str| -> Result<usize> {
            let hits: Vec<usize> = (0..header.len()).filter(|&i| header[i] == name).collect();
            match hits.as_slice() {
                [i] => Ok(*i),
                [] => Err(Error::Parse {
                    file: file.into(),
                    line: 1,
                    reason: format!(
                        "{what} column `{name}` is not in the header (columns: {})",
                        header.join(", ")
                    ),
                }),
                _ => Err(Error::Parse {
                    file: file.into(),
                    line: 1,
                    reason: format!("the header names column `{name}` more than once"),
                }),
            }
        };
        if spec.targets.is_empty() {
            return Err(Error::Config {
                what: "targets".into(),
                reason: "name at least one target column".into(),
            });
        }
        let columns: Vec<String> = spec.targets.iter().chain(&spec.features).cloned().collect();
        let mut value_idx = Vec::with_capacity(columns.len());
        for (k, c) in columns.iter().enumerate() {
            let what = if k < spec.targets.len() {
                "target"
            } else {
                "feature"
            };
            let i = find(c, what)?;
            if value_idx.contains(&i) {
                return Err(Error::Config {
                    what: "columns".into(),
                    reason: format!("column `{c}` is named twice among the targets and features"),
                });
            }
            value_idx.push(i);
        }
        let time_idx = spec.time.as_deref().map(|t| find(t, "time")).transpose()?;
        let series_idx = spec
            .series
            .as_deref()
            .map(|t| find(t, "series"))
            .transpose()?;
        for (other, name) in [(time_idx, "time"), (series_idx, "series")] {
            if let Some(i) = other
                && value_idx.contains(&i)
            {
                return Err(Error::Config {
                    what: "columns".into(),
                    reason: format!(
                        "the {name} column `{}` is also a target or feature",
                        header[i]
                    ),
                });
            }
        }
        let nc = columns.len();
        let mut series: Vec<Series> = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        // per series: the file row of each missing value, by (row index, column)
        let mut missing: Vec<Vec<(usize, usize)>> = Vec::new();
        // per series, under `drop`: the rows left out, with the rows kept before each
        let mut dropped: Vec<Vec<Dropped>> = Vec::new();
        let mut record = csv::StringRecord::new();
        let mut row = 1usize;
        while reader.read_record(&mut record).map_err(parse_err)? {
            row += 1;
            if record.len() != header.len() {
                return Err(Error::Parse {
                    file: file.into(),
                    line: row,
                    reason: format!(
                        "row {row} has {} cells, the header {}",
                        record.len(),
                        header.len()
                    ),
                });
            }
            let id = series_idx.map(|i| record[i].to_string());
            let s = *by_id
                .entry(id.clone().unwrap_or_default())
                .or_insert_with(|| {
                    series.push(Series {
                        id: id.clone(),
                        times: Vec::new(),
                        values: Vec::new(),
                        file_rows: Vec::new(),
                    });
                    missing.push(Vec::new());
                    dropped.push(Vec::new());
                    series.len() - 1
                });
            if let (Some(i), Some(sid)) = (series_idx, &id)
                && sid.is_empty()
            {
                return Err(cell_err(
                    file,
                    row,
                    i + 1,
                    &header[i],
                    "the series id is empty",
                ));
            }
            let mut vals = Vec::with_capacity(nc);
            let mut row_missing = Vec::new();
            for (k, &i) in value_idx.iter().enumerate() {
                let cell = &record[i];
                if is_missing(cell) {
                    if spec.missing == Missing::Error {
                        return Err(cell_err(
                            file,
                            row,
                            i + 1,
                            &header[i],
                            "missing value (choose a --missing policy: drop, ffill or interpolate)",
                        ));
                    }
                    row_missing.push(k);
                    vals.push(f64::NAN);
                    continue;
                }
                match cell.parse::<f64>() {
                    Ok(v) if v.is_finite() => vals.push(v),
                    Ok(_) => {
                        return Err(cell_err(
                            file,
                            row,
                            i + 1,
                            &header[i],
                            format!("`{cell}` is not a finite number"),
                        ));
                    }
                    Err(_) => {
                        return Err(cell_err(
                            file,
                            row,
                            i + 1,
                            &header[i],
                            format!("`{cell}` is not a number"),
                        ));
                    }
                }
            }
            if spec.missing == Missing::Drop && !row_missing.is_empty() {
                dropped[s].push(Dropped {
                    row,
                    column: value_idx[row_missing[0]],
                    kept_before: series[s].len(),
                });
                continue;
            }
            let ser = &mut series[s];
            let r = ser.file_rows.len();
            missing[s].extend(row_missing.iter().map(|&k| (r, k)));
            ser.values.extend(vals);
            ser.file_rows.push(row);
            if let Some(t) = time_idx {
                ser.times.push(record[t].to_string());
            }
        }
        if series.iter().all(Series::is_empty) {
            return Err(Error::EmptyFile { file: file.into() });
        }
        if let Some(t) = time_idx {
            check_drops(&series, &dropped, file, &header, &header[t])?;
        }
        for (ser, miss) in series.iter_mut().zip(&missing) {
            fill_missing(ser, miss, nc, spec.missing, file, &header, &value_idx)?;
        }
        let frequency = match time_idx {
            Some(t) => Some(check_times(&series, file, t + 1, &header[t])?),
            None => None,
        };
        Ok(SeriesTable {
            columns,
            n_targets: spec.targets.len(),
            series,
            frequency,
        })
    }

    /// The series with id `id` (`None`: the only series of a file without a series column).
    pub fn get(&self, id: Option<&str>) -> Option<&Series> {
        self.series.iter().find(|s| s.id.as_deref() == id)
    }
}

/// A row that `drop` left out.
struct Dropped {
    /// its number in the file
    row: usize,
    /// the header index of its first missing value
    column: usize,
    /// how many rows of its series were kept before it
    kept_before: usize,
}

/// Under `drop` with a time column: refuses the first row (in file order) left out between
/// two kept rows of its series, where the time column would show a gap. Rows before a
/// series' first complete row or after its last leave no gap.
fn check_drops(
    series: &[Series],
    dropped: &[Vec<Dropped>],
    file: &str,
    header: &[String],
    time_name: &str,
) -> Result<()> {
    let inner = series
        .iter()
        .zip(dropped)
        .filter_map(|(s, d)| {
            d.iter()
                .find(|d| d.kept_before > 0 && d.kept_before < s.len())
                .map(|d| (s, d))
        })
        .min_by_key(|(_, d)| d.row);
    let Some((s, d)) = inner else {
        return Ok(());
    };
    let (a, b) = (d.kept_before - 1, d.kept_before);
    Err(cell_err(
        file,
        d.row,
        d.column + 1,
        &header[d.column],
        format!(
            "missing value; --missing drop would leave a gap in the time column `{time_name}` \
             between `{}` (row {}) and `{}` (row {}){}; it drops rows only at a series' start \
             or end: use --missing ffill or interpolate, or fill the value",
            s.times[a],
            s.file_rows[a],
            s.times[b],
            s.file_rows[b],
            s.id.as_ref()
                .map(|id| format!(" of series `{id}`"))
                .unwrap_or_default()
        ),
    ))
}

/// Fills the missing values of one series by `policy` (ffill or interpolate), in time
/// linear in the series' length: each run of missing values in a column reads the observed
/// values on either side of it. An error names the first cell (in file order) that cannot
/// be filled.
fn fill_missing(
    ser: &mut Series,
    missing: &[(usize, usize)],
    nc: usize,
    policy: Missing,
    file: &str,
    header: &[String],
    value_idx: &[usize],
) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    let rows = ser.len();
    // the missing rows of each column, in order (`missing` is in row order)
    let mut by_col: Vec<Vec<usize>> = vec![Vec::new(); nc];
    for &(r, k) in missing {
        by_col[k].push(r);
    }
    // the first cell that cannot be filled, as (row index, column index)
    let mut unfilled: Option<(usize, usize)> = None;
    for (k, rs) in by_col.iter().enumerate() {
        let mut i = 0;
        while i < rs.len() {
            // a run of consecutive missing rows, rs[i..=j]
            let mut j = i;
            while j + 1 < rs.len() && rs[j + 1] == rs[j] + 1 {
                j += 1;
            }
            let (first, last) = (rs[i], rs[j]);
            let before = first.checked_sub(1);
            let after = (last + 1 < rows).then_some(last + 1);
            // the observed rows a run reads: ffill the one before it (twice), interpolation
            // the ones on either side
            let ends = match (policy, before, after) {
                (Missing::Ffill, Some(a), _) => Some((a, a)),
                (Missing::Interpolate, Some(a), Some(b)) => Some((a, b)),
                (Missing::Ffill | Missing::Interpolate, ..) => None,
                (Missing::Error | Missing::Drop, ..) => {
                    unreachable!("rows with missing values kept")
                }
            };
            if let Some((a, b)) = ends {
                let (va, vb) = (ser.values[a * nc + k], ser.values[b * nc + k]);
                for &r in &rs[i..=j] {
                    ser.values[r * nc + k] = if a == b {
                        va
                    } else {
                        va + (r - a) as f64 / (b - a) as f64 * (vb - va)
                    };
                }
            } else {
                let cell = (first, k);
                if unfilled.is_none_or(|u| cell < u) {
                    unfilled = Some(cell);
                }
            }
            i = j + 1;
        }
    }
    if let Some((r, k)) = unfilled {
        let col = value_idx[k];
        let reason = match policy {
            Missing::Ffill => {
                "missing value with no value before it in its series to carry forward \
                 (ffill does not fill backward)"
            }
            _ => {
                "missing value at the series' start or end, which interpolation cannot fill \
                 (it needs an observed value on either side)"
            }
        };
        return Err(cell_err(
            file,
            ser.file_rows[r],
            col + 1,
            &header[col],
            reason,
        ));
    }
    Ok(())
}

/// Parses every series' time column, checks that each goes forward by one common step and
/// returns that step.
fn check_times(series: &[Series], file: &str, col: usize, name: &str) -> Result<Frequency> {
    let first = series
        .iter()
        .flat_map(|s| s.times.first().map(|t| (t, s.file_rows[0])))
        .next()
        .expect("a series with a row");
    let format = detect_format(first.0).ok_or_else(|| {
        cell_err(
            file,
            first.1,
            col,
            name,
            format!(
                "time `{}` is neither a number nor a date or date-time recur reads \
                 (e.g. 2020-01-31, 2020-01, 2020-01-31 13:00:00)",
                first.0
            ),
        )
    })?;
    let mut step: Option<Step> = None;
    let mut parsed: Vec<Vec<Time>> = Vec::with_capacity(series.len());
    for s in series {
        let mut ts = Vec::with_capacity(s.len());
        for (t, &row) in s.times.iter().zip(&s.file_rows) {
            ts.push(parse_with(t, format).ok_or_else(|| {
                cell_err(
                    file,
                    row,
                    col,
                    name,
                    format!("time `{t}` is not in the column's format ({format})"),
                )
            })?);
        }
        // the series' step: the smallest positive step between rows
        for w in ts.windows(2) {
            if let Some(st) = step_between(w[0], w[1]) {
                let smaller = match (step, st) {
                    (None, _) => true,
                    (Some(Step::Seconds(a)), Step::Seconds(b)) => b > 0 && b < a,
                    (Some(Step::Number(a)), Step::Number(b)) => b > 0.0 && b < a,
                    (Some(Step::Months(a)), Step::Months(b)) => b < a,
                    _ => false,
                };
                let positive = match st {
                    Step::Seconds(b) => b > 0,
                    Step::Number(b) => b > 0.0,
                    Step::Months(_) => true,
                };
                if smaller && positive {
                    step = Some(st);
                }
            }
        }
        parsed.push(ts);
    }
    let Some(step) = step else {
        return Ok(Frequency {
            format: format.into(),
            step: match parsed[0][0] {
                Time::Number(_) => Step::Number(1.0),
                Time::Date(_) => Step::Seconds(86_400),
            },
        });
    };
    let freq = Frequency {
        format: format.into(),
        step,
    };
    for (s, ts) in series.iter().zip(&parsed) {
        for (i, w) in ts.windows(2).enumerate() {
            let ok = step_between(w[0], w[1]).is_some_and(|st| same_step(st, step));
            if !ok {
                let (prev, this) = (&s.times[i], &s.times[i + 1]);
                let what = match (w[0], w[1]) {
                    (Time::Date(a), Time::Date(b)) if b <= a => "goes backward or repeats",
                    (Time::Number(a), Time::Number(b)) if b <= a => "goes backward or repeats",
                    _ => "leaves a gap",
                };
                return Err(cell_err(
                    file,
                    s.file_rows[i + 1],
                    col,
                    name,
                    format!(
                        "time `{this}` after `{prev}` {what}: the series steps {}{}",
                        freq.name(),
                        s.id.as_ref()
                            .map(|id| format!(" (series `{id}`)"))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
    }
    Ok(freq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(targets: &[&str], time: Option<&str>, missing: Missing) -> CsvColumns {
        CsvColumns {
            targets: targets.iter().map(|s| s.to_string()).collect(),
            features: Vec::new(),
            time: time.map(str::to_string),
            series: None,
            missing,
        }
    }

    #[test]
    fn monthly_series_detected_and_continued() {
        let csv = "month,y\n1949-01,1\n1949-02,2\n1949-03,3\n";
        let t = SeriesTable::parse_csv(
            csv.as_bytes(),
            "f",
            &cols(&["y"], Some("month"), Missing::Error),
        )
        .unwrap();
        let f = t.frequency.clone().unwrap();
        assert_eq!(f.step, Step::Months(1));
        assert_eq!(f.season(), Some(12));
        assert_eq!(f.format_after("1949-12", 1).unwrap(), "1950-01");
        assert_eq!(t.series[0].values, vec![1.0, 2.0, 3.0]);
        assert_eq!(t.series[0].file_rows, vec![2, 3, 4]);
    }

    #[test]
    fn daily_hourly_and_numbers() {
        let d = SeriesTable::parse_csv(
            b"d,y\n2020-02-28,1\n2020-02-29,2\n2020-03-01,3\n",
            "f",
            &cols(&["y"], Some("d"), Missing::Error),
        )
        .unwrap();
        let f = d.frequency.unwrap();
        assert_eq!((f.name().as_str(), f.season()), ("daily", Some(7)));
        assert_eq!(f.format_after("2020-03-01", 2).unwrap(), "2020-03-03");
        let h = SeriesTable::parse_csv(
            b"t,y\n2020-01-01 23:00:00,1\n2020-01-02 00:00:00,2\n",
            "f",
            &cols(&["y"], Some("t"), Missing::Error),
        )
        .unwrap();
        assert_eq!(h.frequency.unwrap().season(), Some(24));
        let n = SeriesTable::parse_csv(
            b"year,y\n1700,1\n1701,2\n",
            "f",
            &cols(&["y"], Some("year"), Missing::Error),
        )
        .unwrap();
        let f = n.frequency.unwrap();
        assert_eq!(f.season(), None);
        assert_eq!(f.format_after("1701", 1).unwrap(), "1702");
    }

    #[test]
    fn errors_name_row_and_column() {
        let c = cols(&["y"], Some("d"), Missing::Error);
        let e = SeriesTable::parse_csv(b"d,y\n2020-01-01,1\n2020-01-02,abc\n", "f.csv", &c)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.csv: row 3, column 2 (`y`): `abc` is not a number"
        );
        let e =
            SeriesTable::parse_csv(b"d,y\n2020-01-01,1\n2020-01-02,\n", "f.csv", &c).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("f.csv: row 3, column 2 (`y`): missing value"),
            "{e}"
        );
        let e = SeriesTable::parse_csv(b"d,y\n2020-01-01,1\n2020-01-02,inf\n", "f.csv", &c)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("row 3, column 2 (`y`): `inf` is not a finite number"),
            "{e}"
        );
        let e = SeriesTable::parse_csv(
            b"d,y\n2020-01-01,1\n2020-01-02,2\n2020-01-04,3\n",
            "f.csv",
            &c,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "f.csv: row 4, column 1 (`d`): time `2020-01-04` after `2020-01-02` leaves a gap"
            ),
            "{e}"
        );
        let e = SeriesTable::parse_csv(
            b"d,y\n2020-01-02,1\n2020-01-01,2\n2020-01-02,3\n",
            "f.csv",
            &c,
        )
        .unwrap_err();
        assert!(e.to_string().contains("goes backward"), "{e}");
        let e = SeriesTable::parse_csv(b"d,x\n2020-01-02,1\n", "f.csv", &c).unwrap_err();
        assert!(
            e.to_string()
                .contains("target column `y` is not in the header"),
            "{e}"
        );
    }

    /// Each policy on a hand-computed series: two columns, runs of missing values of each
    /// kind of spelling, the fills exact in binary.
    #[test]
    fn missing_policies_against_hand_computed_series() {
        let csv = b"t,y,x\n1,0,10\n2,NA,NA\n3,,16\n4,null,n/a\n5,8,22\n";
        let read = |time: Option<&str>, missing: Missing| {
            let c = CsvColumns {
                features: vec!["x".into()],
                ..cols(&["y"], time, missing)
            };
            SeriesTable::parse_csv(csv, "f.csv", &c)
        };
        // rows [y, x]
        let f = read(Some("t"), Missing::Ffill).unwrap();
        assert_eq!(
            f.series[0].values,
            [0., 10., 0., 10., 0., 16., 0., 16., 8., 22.]
        );
        let i = read(Some("t"), Missing::Interpolate).unwrap();
        assert_eq!(
            i.series[0].values,
            [0., 10., 2., 13., 4., 16., 6., 19., 8., 22.]
        );
        assert_eq!(i.series[0].file_rows, [2, 3, 4, 5, 6]);
        // without a time column the rows left are read as consecutive steps
        let d = read(None, Missing::Drop).unwrap();
        assert_eq!(d.series[0].values, [0., 10., 8., 22.]);
        assert_eq!(d.series[0].file_rows, [2, 6]);
        // with one, a row dropped between two kept rows would be a gap: refused, named
        let e = read(Some("t"), Missing::Drop).unwrap_err().to_string();
        assert_eq!(
            e,
            "f.csv: row 3, column 2 (`y`): missing value; --missing drop would leave a gap in \
             the time column `t` between `1` (row 2) and `5` (row 6); it drops rows only at a \
             series' start or end: use --missing ffill or interpolate, or fill the value"
        );
        let e = read(Some("t"), Missing::Error).unwrap_err().to_string();
        assert!(
            e.starts_with("f.csv: row 3, column 2 (`y`): missing value (choose a --missing"),
            "{e}"
        );
    }

    /// Where a policy cannot fill: before a series' first value (no backfill), after its last
    /// (interpolation); drop at a series' start and end with a time column, which leaves no
    /// gap.
    #[test]
    fn missing_values_at_a_series_ends() {
        let c = |missing| cols(&["y"], Some("t"), missing);
        let lead = b"t,y\n1,NA\n2,1\n3,2\n";
        let trail = b"t,y\n1,1\n2,2\n3,NA\n";
        let e = SeriesTable::parse_csv(lead, "f", &c(Missing::Ffill)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("f: row 2, column 2 (`y`): missing value with no value before it"),
            "{e}"
        );
        let e = SeriesTable::parse_csv(lead, "f", &c(Missing::Interpolate)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("f: row 2, column 2 (`y`): missing value at the series' start"),
            "{e}"
        );
        let e = SeriesTable::parse_csv(trail, "f", &c(Missing::Interpolate)).unwrap_err();
        assert!(e.to_string().starts_with("f: row 4, column 2 (`y`)"), "{e}");
        let f = SeriesTable::parse_csv(trail, "f", &c(Missing::Ffill)).unwrap();
        assert_eq!(f.series[0].values, [1., 2., 2.]);
        let both = b"t,y\n1,NA\n2,1\n3,2\n4,\n5,NaN\n";
        let d = SeriesTable::parse_csv(both, "f", &c(Missing::Drop)).unwrap();
        assert_eq!(d.series[0].values, [1., 2.]);
        assert_eq!(d.series[0].times, ["2", "3"]);
        assert_eq!(d.series[0].file_rows, [3, 4]);
        assert_eq!(d.frequency.unwrap().step, Step::Number(1.0));
    }

    /// Policies apply within each series of a long file, never across the rows of another
    /// series that sit between.
    #[test]
    fn missing_values_are_filled_within_their_series() {
        let csv = b"id,t,y\na,1,1\nb,1,10\na,2,NA\nb,2,NA\na,3,3\nb,3,30\n";
        let c = |missing| CsvColumns {
            series: Some("id".into()),
            ..cols(&["y"], Some("t"), missing)
        };
        let i = SeriesTable::parse_csv(csv, "f", &c(Missing::Interpolate)).unwrap();
        assert_eq!(i.get(Some("a")).unwrap().values, [1., 2., 3.]);
        assert_eq!(i.get(Some("b")).unwrap().values, [10., 20., 30.]);
        let f = SeriesTable::parse_csv(csv, "f", &c(Missing::Ffill)).unwrap();
        assert_eq!(f.get(Some("a")).unwrap().values, [1., 1., 3.]);
        assert_eq!(f.get(Some("b")).unwrap().values, [10., 10., 30.]);
        let e = SeriesTable::parse_csv(csv, "f", &c(Missing::Drop)).unwrap_err();
        assert!(
            e.to_string().starts_with("f: row 4, column 3 (`y`)")
                && e.to_string()
                    .contains("between `1` (row 2) and `3` (row 6) of series `a`"),
            "{e}"
        );
        // b's first value is missing: a's value before it is not b's
        let csv = b"id,t,y\na,1,1\nb,1,NA\na,2,2\nb,2,20\n";
        let e = SeriesTable::parse_csv(csv, "f", &c(Missing::Ffill)).unwrap_err();
        assert!(e.to_string().starts_with("f: row 3, column 3 (`y`)"), "{e}");
    }

    /// A long run of missing values, filled as one run (each cell reading the two observed
    /// values around the run, not searching for them).
    #[test]
    fn a_long_run_of_missing_values_is_filled() {
        let n = 200_000;
        let mut csv = String::from("y\n1\n");
        csv.push_str(&"NA\n".repeat(n));
        csv.push_str("3\n");
        let t = SeriesTable::parse_csv(csv.as_bytes(), "f", &cols(&["y"], None, Missing::Ffill))
            .unwrap();
        assert!(t.series[0].values[..=n].iter().all(|&v| v == 1.0));
        let t = SeriesTable::parse_csv(
            csv.as_bytes(),
            "f",
            &cols(&["y"], None, Missing::Interpolate),
        )
        .unwrap();
        let v = &t.series[0].values;
        assert_eq!((v[0], v[n + 1]), (1.0, 3.0));
        assert!(v.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn long_format_many_series() {
        let csv = b"id,t,y\na,1,1\nb,1,10\na,2,2\nb,2,20\na,3,3\n";
        let c = CsvColumns {
            series: Some("id".into()),
            ..cols(&["y"], Some("t"), Missing::Error)
        };
        let t = SeriesTable::parse_csv(csv, "f", &c).unwrap();
        assert_eq!(t.series.len(), 2);
        assert_eq!(t.get(Some("a")).unwrap().values, vec![1.0, 2.0, 3.0]);
        assert_eq!(t.get(Some("b")).unwrap().file_rows, vec![3, 5]);
    }
}
