//! Labelled sequences: one label (a class or a regression target) per variable-length
//! sequence, read from two formats.
//!
//! **recur's line format** ([`SequenceDataset::read_lines`]), one sequence per line:
//! ```text
//! # a comment; blank lines are skipped too
//! <label><TAB><step> <step> ...        the label, one tab, the steps separated by spaces
//! <step> = v1,v2,...,vF                 one value per feature, separated by commas
//! ```
//! e.g. `walk\t0.1,2 0.3,4 0.5,6` is a sequence of 3 steps of 2 features labelled `walk`,
//! and `7.5\t1 2 3 4` one of 4 steps of 1 feature with the regression target 7.5. Every
//! step of the file has as many features as the first one.
//!
//! **The UCR/UEA `.ts` format** ([`SequenceDataset::read_ts`]) that sktime's
//! `load_from_tsfile` reads: header lines (keys case-insensitive)
//! `@problemName`, `@timeStamps`, `@missing`, `@univariate`, `@dimension(s)`, `@equalLength`,
//! `@seriesLength`, `@classLabel true <labels...>` or `@classLabel false`, `@targetLabel`,
//! then `@data` and one case per line: the dimensions separated by `:`, the values of a
//! dimension by `,`, the label last:
//! ```text
//! @problemName Toy
//! @univariate false
//! @classLabel true up down
//! @data
//! 1,2,3:4,5,6:up
//! ```
//! is one case of 3 steps of 2 features. All dimensions of a case must have the same
//! length (their count is the input size); cases may differ in length. Time stamps
//! (`@timeStamps true`) are not supported.
//!
//! Every value and regression target must be a finite number: a missing value (`?`, what
//! sktime writes for one), `NaN`, `inf` or a number too large for an `f32` is refused with
//! the file, line and column where it stands (fill missing values in before training: a
//! network fed NaN learns nothing and says so only as a diverged loss). Lines starting with
//! `#` are comments.

use std::path::Path;

use super::text::read_text;
use crate::error::{Error, Result};
use crate::kernel::scalar::Float;
use crate::tensor::Tensor;

/// What a label is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TargetKind {
    /// A class name, mapped to a class id.
    #[default]
    Class,
    /// A number to regress on.
    Regression,
}

/// The labels of a [`SequenceDataset`], one per sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum Labels {
    /// `ids[n]` is the class of sequence n, an index into `classes`.
    Class {
        ids: Vec<usize>,
        classes: Vec<String>,
    },
    /// `targets[n]` is the target of sequence n.
    Regression(Vec<f32>),
}

/// Variable-length sequences of `input_size` features, each with a label.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceDataset {
    /// `inputs[n]` is `[lengths[n], input_size]`, step-major: `inputs[n][t * input_size + f]`.
    pub inputs: Vec<Vec<f32>>,
    /// The number of steps of each sequence (each ≥ 1).
    pub lengths: Vec<usize>,
    /// Features per step.
    pub input_size: usize,
    pub labels: Labels,
}

/// An error at `line` of `file`.
fn parse_err(file: &str, line: usize, reason: impl Into<String>) -> Error {
    Error::Parse {
        file: file.to_owned(),
        line,
        reason: reason.into(),
    }
}

/// A value, a finite `f32`; otherwise what is wrong with it.
fn value(s: &str) -> std::result::Result<f32, &'static str> {
    let s = s.trim();
    if s == "?" {
        return Err("is a missing value: recur refuses them (fill them in before training)");
    }
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err("is not a finite number"),
        Err(_) => Err("is not a number"),
    }
}

/// The 1-based column (in characters) at which `part`, a slice of `line`, starts (its
/// leading whitespace skipped).
fn column(line: &str, part: &str) -> usize {
    let part = part.trim_start();
    let at = (part.as_ptr() as usize)
        .saturating_sub(line.as_ptr() as usize)
        .min(line.len());
    line.get(..at).map_or(at, |l| l.chars().count()) + 1
}

/// `text` quoted for an error message: control characters escaped, at most 40 characters.
fn quoted(text: &str) -> String {
    crate::error::excerpt(text)
}

/// Non-blank, non-comment lines with their 1-based numbers, without trailing whitespace
/// (leading whitespace may be an empty label's tab).
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end()))
        .filter(|(_, l)| !l.trim_start().is_empty() && !l.trim_start().starts_with('#'))
}

/// The classes of `labels` when no list is given: in numeric order when every label is a
/// number, in byte order otherwise.
fn sorted_classes(labels: &[(usize, String)]) -> Vec<String> {
    let mut classes: Vec<String> = labels.iter().map(|(_, l)| l.clone()).collect();
    classes.sort();
    classes.dedup();
    let numbers: Option<Vec<f64>> = classes.iter().map(|c| c.parse().ok()).collect();
    if let Some(numbers) = numbers {
        let mut pairs: Vec<(f64, String)> = numbers.into_iter().zip(classes).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        classes = pairs.into_iter().map(|(_, c)| c).collect();
    }
    classes
}

/// Class ids of `labels` (each with its line) in `classes`.
fn class_ids(
    file: &str,
    labels: &[(usize, String)],
    classes: &[String],
    whose: &str,
) -> Result<Vec<usize>> {
    labels
        .iter()
        .map(|(line, label)| {
            classes.iter().position(|c| c == label).ok_or_else(|| {
                parse_err(
                    file,
                    *line,
                    format!(
                        "unknown class label `{}` (not among {whose} {})",
                        quoted(label),
                        quoted(&classes.join(" "))
                    ),
                )
            })
        })
        .collect()
}

/// Regression targets of `labels`; `columns` gives where each label stands on its line.
fn targets(file: &str, labels: &[(usize, String)], columns: &[usize]) -> Result<Vec<f32>> {
    labels
        .iter()
        .zip(columns)
        .map(|((line, label), col)| {
            value(label).map_err(|why| {
                parse_err(
                    file,
                    *line,
                    format!("column {col}: regression target `{}` {why}", quoted(label)),
                )
            })
        })
        .collect()
}

impl SequenceDataset {
    /// The number of sequences.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether there are no sequences (never so for a dataset read from a file).
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The class list, `None` for regression.
    pub fn classes(&self) -> Option<&[String]> {
        match &self.labels {
            Labels::Class { classes, .. } => Some(classes),
            Labels::Regression(_) => None,
        }
    }

    /// Reads recur's line format (see the [module docs](self)). Class ids index `classes`
    /// when it is given (pass the training file's to a test file); without it the classes
    /// are the labels of the file, sorted (numerically when all are numbers).
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::NotUtf8`], [`Error::EmptyFile`] (also for a file of comments
    /// only) naming the file; [`Error::Parse`] naming the file and line of a line without a
    /// tab, with an empty label or no steps, a step with another number of values than the
    /// first step, a value that is not a finite number (with its column), a class label not
    /// in `classes`, or a regression target that is not a finite number.
    pub fn read_lines(
        path: impl AsRef<Path>,
        target: TargetKind,
        classes: Option<&[String]>,
    ) -> Result<Self> {
        let path = path.as_ref();
        Self::parse_lines(
            &read_text(path)?,
            &path.display().to_string(),
            target,
            classes,
        )
    }

    /// [`SequenceDataset::read_lines`] of a text; `file` names it in errors.
    ///
    /// # Errors
    /// Those of [`SequenceDataset::read_lines`] but [`Error::Io`] and [`Error::NotUtf8`].
    pub fn parse_lines(
        text: &str,
        file: &str,
        target: TargetKind,
        classes: Option<&[String]>,
    ) -> Result<Self> {
        let mut inputs = Vec::new();
        let mut lengths = Vec::new();
        let mut labels = Vec::new();
        let mut columns = Vec::new();
        let mut input_size = None;
        for (line, content) in content_lines(text) {
            let err = |reason: String| parse_err(file, line, reason);
            let Some((label, steps)) = content.split_once('\t') else {
                return Err(err(if content.split_whitespace().count() == 1 {
                    "no values after the label".into()
                } else {
                    "no tab between the label and the values (expected `label<TAB>v1 v2 ...`)"
                        .into()
                }));
            };
            let label_column = column(content, label);
            let label = label.trim();
            if label.is_empty() {
                return Err(err("empty label".into()));
            }
            let mut values = Vec::new();
            let mut len = 0;
            for (t, step) in steps.split_whitespace().enumerate() {
                let before = values.len();
                for (f, v) in step.split(',').enumerate() {
                    values.push(value(v).map_err(|why| {
                        err(format!(
                            "column {}: `{}` (step {}, value {}) {why}",
                            column(content, v),
                            quoted(v),
                            t + 1,
                            f + 1
                        ))
                    })?);
                }
                let features = values.len() - before;
                match input_size {
                    None => input_size = Some(features),
                    Some(want) if want != features => {
                        return Err(err(format!(
                            "step {} has {features} values, expected {want} (the features of the file's first step)",
                            t + 1
                        )));
                    }
                    Some(_) => {}
                }
                len += 1;
            }
            if len == 0 {
                return Err(err("no values after the label".into()));
            }
            inputs.push(values);
            lengths.push(len);
            labels.push((line, label.to_owned()));
            columns.push(label_column);
        }
        let Some(input_size) = input_size else {
            return Err(Error::EmptyFile {
                file: file.to_owned(),
            });
        };
        let labels = match target {
            TargetKind::Regression => Labels::Regression(targets(file, &labels, &columns)?),
            TargetKind::Class => {
                let (classes, whose) = match classes {
                    Some(c) => (c.to_vec(), "the given classes"),
                    None => (sorted_classes(&labels), "the classes"),
                };
                Labels::Class {
                    ids: class_ids(file, &labels, &classes, whose)?,
                    classes,
                }
            }
        };
        Ok(Self {
            inputs,
            lengths,
            input_size,
            labels,
        })
    }

    /// Reads a UCR/UEA `.ts` file (see the [module docs](self)). The header decides
    /// classification (`@classLabel true ...`: class ids in the header's order) or
    /// regression (`@targetLabel true`). With `classes` given (the training file's, for a
    /// test file), class ids index it instead, and each label must be in both lists.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::NotUtf8`], [`Error::EmptyFile`] (no case after `@data`)
    /// naming the file; [`Error::Parse`] naming the file and line of an unknown header, a
    /// header value that is not what the key takes, `@timeStamps true`, a header that gives
    /// no label (or both kinds), data before `@data`, a header after it, no `@data`, a case
    /// with another number of dimensions than the header's (or the first case's), a value
    /// that is not a finite number (with its column), dimensions of unequal length, a length
    /// other than `@seriesLength` in an `@equalLength true` file, an unknown class label, or
    /// a regression target that is not a finite number.
    pub fn read_ts(path: impl AsRef<Path>, classes: Option<&[String]>) -> Result<Self> {
        let path = path.as_ref();
        Self::parse_ts(&read_text(path)?, &path.display().to_string(), classes)
    }

    /// [`SequenceDataset::read_ts`] of a text; `file` names it in errors.
    ///
    /// # Errors
    /// Those of [`SequenceDataset::read_ts`] but [`Error::Io`] and [`Error::NotUtf8`].
    pub fn parse_ts(text: &str, file: &str, classes: Option<&[String]>) -> Result<Self> {
        let mut header = TsHeader::default();
        let mut lines = content_lines(text);
        let mut data_line = None;
        for (line, content) in lines.by_ref() {
            let content = content.trim_start();
            if !content.starts_with('@') {
                return Err(parse_err(
                    file,
                    line,
                    "data before @data (a case line must follow the header's `@data`)",
                ));
            }
            if header.read(content).map_err(|r| parse_err(file, line, r))? {
                data_line = Some(line);
                break;
            }
        }
        let Some(data_line) = data_line else {
            return Err(parse_err(
                file,
                text.lines().count().max(1),
                "no @data line",
            ));
        };
        let kind = match (&header.class_labels, header.target_label) {
            (Some(_), false) => TargetKind::Class,
            (None, true) => TargetKind::Regression,
            (Some(_), true) => {
                return Err(parse_err(
                    file,
                    data_line,
                    "the header has both @classLabel true and @targetLabel true",
                ));
            }
            (None, false) => {
                return Err(parse_err(
                    file,
                    data_line,
                    "the header has neither @classLabel true nor @targetLabel true: recur needs a label for each case",
                ));
            }
        };
        let mut dims = match (header.univariate, header.dimensions) {
            (Some(true), Some(d)) if d != 1 => {
                return Err(parse_err(
                    file,
                    data_line,
                    format!("@univariate true contradicts @dimensions {d}"),
                ));
            }
            (Some(true), _) => Some(1),
            (_, d) => d,
        };
        let series_length = match header.equal_length {
            Some(true) => header.series_length,
            _ => None,
        };

        let mut inputs = Vec::new();
        let mut lengths = Vec::new();
        let mut labels = Vec::new();
        let mut columns = Vec::new();
        for (line, whole) in lines {
            let content = whole.trim_start();
            let err = |reason: String| parse_err(file, line, reason);
            if content.starts_with('@') {
                return Err(err(format!(
                    "header line `{}` after @data (line {data_line})",
                    quoted(content)
                )));
            }
            let mut fields: Vec<&str> = content.split(':').collect();
            let label = fields.pop().unwrap_or_default();
            let label_column = column(whole, label);
            let label = label.trim();
            if fields.is_empty() {
                return Err(err(format!(
                    "`{}` has no `:` before its label (expected `v1,v2,...:label`)",
                    quoted(content)
                )));
            }
            let want = *dims.get_or_insert(fields.len());
            if fields.len() != want {
                return Err(err(format!("{} dimensions, expected {want}", fields.len())));
            }
            let mut series: Vec<Vec<f32>> = Vec::with_capacity(want);
            for (d, field) in fields.iter().enumerate() {
                let values = field
                    .split(',')
                    .enumerate()
                    .map(|(t, v)| {
                        value(v).map_err(|why| {
                            err(format!(
                                "column {}: `{}` (dimension {}, value {}) {why}",
                                column(whole, v),
                                quoted(v.trim()),
                                d + 1,
                                t + 1
                            ))
                        })
                    })
                    .collect::<Result<Vec<f32>>>()?;
                if d > 0 && values.len() != series[0].len() {
                    return Err(err(format!(
                        "dimension {} has {} values, dimension 1 has {}",
                        d + 1,
                        values.len(),
                        series[0].len()
                    )));
                }
                series.push(values);
            }
            let len = series[0].len();
            if let Some(want) = series_length.filter(|&n| n != len) {
                return Err(err(format!(
                    "{len} values per dimension, expected {want} (@equalLength true, @seriesLength {want})"
                )));
            }
            let mut values = vec![0.0; len * want];
            for (d, s) in series.iter().enumerate() {
                for (t, &v) in s.iter().enumerate() {
                    values[t * want + d] = v;
                }
            }
            inputs.push(values);
            lengths.push(len);
            labels.push((line, label.to_owned()));
            columns.push(label_column);
        }
        let Some(input_size) = dims.filter(|_| !lengths.is_empty()) else {
            return Err(Error::EmptyFile {
                file: file.to_owned(),
            });
        };
        let labels = match (kind, header.class_labels) {
            (TargetKind::Class, Some(declared)) => {
                let ids = class_ids(file, &labels, &declared, "@classLabel")?;
                match classes {
                    None => Labels::Class {
                        ids,
                        classes: declared,
                    },
                    Some(given) => Labels::Class {
                        ids: class_ids(file, &labels, given, "the given classes")?,
                        classes: given.to_vec(),
                    },
                }
            }
            _ => Labels::Regression(targets(file, &labels, &columns)?),
        };
        Ok(Self {
            inputs,
            lengths,
            input_size,
            labels,
        })
    }

    /// The sequences `indices` as one zero-padded batch: `[seq_len, batch, input_size]` with
    /// `seq_len` the longest of them, and their lengths (what
    /// [`crate::Recurrent::forward`] takes).
    ///
    /// # Errors
    /// [`Error::Empty`] for no indices, [`Error::Index`] naming one ≥ [`SequenceDataset::len`].
    pub fn padded_batch<T: Float>(&self, indices: &[usize]) -> Result<(Tensor<T>, Vec<usize>)> {
        if indices.is_empty() {
            return Err(Error::Empty("a batch of 0 sequences".into()));
        }
        if let Some((position, &value)) =
            indices.iter().enumerate().find(|(_, i)| **i >= self.len())
        {
            return Err(Error::Index {
                what: "indices".into(),
                position,
                value,
                bound_name: "the number of sequences".into(),
                bound: self.len(),
            });
        }
        let (batch, features) = (indices.len(), self.input_size);
        let lengths: Vec<usize> = indices.iter().map(|&i| self.lengths[i]).collect();
        let seq_len = lengths.iter().copied().max().unwrap_or(0);
        let mut data = vec![T::zero(); seq_len * batch * features];
        for (b, &i) in indices.iter().enumerate() {
            for (t, step) in self.inputs[i].chunks_exact(features).enumerate() {
                let at = (t * batch + b) * features;
                for (dst, &v) in data[at..at + features].iter_mut().zip(step) {
                    *dst = T::from_f32(v).unwrap_or_else(T::nan);
                }
            }
        }
        Ok((Tensor::new(data, &[seq_len, batch, features])?, lengths))
    }
}

/// What the header of a `.ts` file says.
#[derive(Default)]
struct TsHeader {
    univariate: Option<bool>,
    dimensions: Option<usize>,
    equal_length: Option<bool>,
    series_length: Option<usize>,
    /// `Some` for `@classLabel true ...`
    class_labels: Option<Vec<String>>,
    target_label: bool,
}

impl TsHeader {
    /// Takes in one header line; true for `@data`.
    fn read(&mut self, line: &str) -> std::result::Result<bool, String> {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        let lower = key.to_ascii_lowercase();
        // what the messages quote of the file, escaped and cut short
        let (key, line) = (&quoted(key), &quoted(line));
        let one = || match args[..] {
            [arg] => Ok(arg),
            _ => Err(format!("`{key}` takes one value, got `{line}`")),
        };
        let boolean = |arg: &str| match arg.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!(
                "`{key}` takes true or false, got `{}`",
                quoted(arg)
            )),
        };
        let count = |arg: &str| match arg.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "`{key}` takes a positive whole number, got `{}`",
                quoted(arg)
            )),
        };
        match lower.as_str() {
            "@problemname" => {
                if args.is_empty() {
                    return Err(format!("`{key}` takes a name"));
                }
            }
            "@timestamps" => {
                if boolean(one()?)? {
                    return Err("time-stamped series (@timeStamps true) are not supported".into());
                }
            }
            "@missing" => {
                boolean(one()?)?;
            }
            "@univariate" => self.univariate = Some(boolean(one()?)?),
            "@dimension" | "@dimensions" => self.dimensions = Some(count(one()?)?),
            "@equallength" => self.equal_length = Some(boolean(one()?)?),
            "@serieslength" => self.series_length = Some(count(one()?)?),
            "@targetlabel" => self.target_label = boolean(one()?)?,
            "@classlabel" => {
                let Some((&flag, labels)) = args.split_first() else {
                    return Err(format!("`{key}` takes true and the labels, or false"));
                };
                self.class_labels = if boolean(flag)? {
                    if labels.is_empty() {
                        return Err("`@classLabel true` lists no labels".into());
                    }
                    Some(labels.iter().map(|l| l.to_string()).collect())
                } else if labels.is_empty() {
                    None
                } else {
                    return Err("`@classLabel false` lists labels".into());
                };
            }
            "@data" => {
                if !args.is_empty() {
                    return Err(format!("`@data` takes no value, got `{line}`"));
                }
                return Ok(true);
            }
            _ => return Err(format!("unknown header `{key}`")),
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_classes_sort_as_numbers() {
        let labels: Vec<(usize, String)> = ["10", "2", "1", "2"]
            .iter()
            .enumerate()
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect();
        assert_eq!(sorted_classes(&labels), ["1", "2", "10"]);
        let words = vec![(1, "b".to_string()), (2, "a".to_string())];
        assert_eq!(sorted_classes(&words), ["a", "b"]);
    }

    #[test]
    fn line_format_reads_steps_and_features() {
        let text = "# toy\nwalk\t0.5,1 2,7 3,4\n\nrun\t-1,0\n";
        let d = SequenceDataset::parse_lines(text, "t.txt", TargetKind::Class, None).unwrap();
        assert_eq!(d.input_size, 2);
        assert_eq!(d.lengths, [3, 1]);
        assert_eq!(d.inputs[0][..4], [0.5, 1.0, 2.0, 7.0]);
        assert_eq!(d.inputs[1], [-1.0, 0.0]);
        assert_eq!(
            d.labels,
            Labels::Class {
                ids: vec![1, 0],
                classes: vec!["run".into(), "walk".into()]
            }
        );
        let (x, lengths) = d.padded_batch::<f64>(&[1, 0]).unwrap();
        assert_eq!(x.shape(), &[3, 2, 2]);
        assert_eq!(lengths, [1, 3]);
        assert_eq!(x.data()[..4], [-1.0, 0.0, 0.5, 1.0]);
        assert_eq!(x.data()[4..6], [0.0, 0.0], "zero past the end");
    }
}
