//! ONNX backend-test case folders (`model.onnx` beside `test_data_set_N/input_K.pb` and
//! `output_K.pb`, the layout of `onnx/backend/test/data/node/*`), run and compared as ONNX's
//! backend test runner compares them: `|actual − expected| ≤ ATOL + RTOL · |expected|`
//! elementwise, shapes and element types equal.

use std::path::{Path, PathBuf};

use super::graph::OnnxModel;
use super::tensor_file::read_tensor;
use super::value::{Data, Value};
use crate::error::{Error, Result};

/// Relative tolerance of ONNX's backend test runner (`onnx.backend.test.runner`, rtol).
pub const RTOL: f64 = 1e-3;
/// Absolute tolerance of ONNX's backend test runner (atol).
pub const ATOL: f64 = 1e-7;

/// How one output of one data set compares.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputCheck {
    pub name: String,
    /// Elements compared.
    pub count: usize,
    /// Largest |actual − expected|.
    pub max_abs: f64,
    /// Largest |actual − expected| / |expected| over the elements where expected ≠ 0.
    pub max_rel: f64,
    /// Elements outside `ATOL + RTOL · |expected|`.
    pub mismatches: usize,
    /// Why the output could not be compared at all (shape or type differs), if so.
    pub problem: Option<String>,
}

impl OutputCheck {
    /// Whether every element is within tolerance.
    pub fn passed(&self) -> bool {
        self.problem.is_none() && self.mismatches == 0
    }
}

/// The outcome of one case folder.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseReport {
    pub dir: PathBuf,
    /// `(data set folder name, its outputs)`, in folder-name order.
    pub data_sets: Vec<(String, Vec<OutputCheck>)>,
}

impl CaseReport {
    /// Whether every output of every data set passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.data_sets.is_empty()
            && self
                .data_sets
                .iter()
                .all(|(_, outs)| !outs.is_empty() && outs.iter().all(OutputCheck::passed))
    }

    /// The largest absolute and relative differences over every output.
    pub fn max_diffs(&self) -> (f64, f64) {
        self.data_sets
            .iter()
            .flat_map(|(_, o)| o)
            .fold((0.0, 0.0), |(a, r), o| (a.max(o.max_abs), r.max(o.max_rel)))
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        file: path.display().to_string(),
        source,
    }
}

/// Files `prefix_K.pb` of `dir`, in K order.
fn numbered(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let path = e.map_err(|e| io_err(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(k) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(".pb"))
            .and_then(|k| k.parse::<usize>().ok())
        {
            found.push((k, path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Compares `actual` with `expected` elementwise.
pub fn compare(name: &str, actual: &Value, expected: &Value) -> OutputCheck {
    let mut check = OutputCheck {
        name: name.to_string(),
        count: expected.len(),
        max_abs: 0.0,
        max_rel: 0.0,
        mismatches: 0,
        problem: None,
    };
    if actual.shape() != expected.shape() {
        check.problem = Some(format!(
            "shape {:?}, expected {:?}",
            actual.shape(),
            expected.shape()
        ));
        return check;
    }
    let pairs: Vec<(f64, f64)> = match (actual.data(), expected.data()) {
        (Data::F32(a), Data::F32(e)) => a
            .iter()
            .zip(e)
            .map(|(&a, &e)| (a.into(), e.into()))
            .collect(),
        (Data::F64(a), Data::F64(e)) => a.iter().zip(e).map(|(&a, &e)| (a, e)).collect(),
        (Data::I64(a), Data::I64(e)) => a
            .iter()
            .zip(e)
            .map(|(&a, &e)| (a as f64, e as f64))
            .collect(),
        (Data::I32(a), Data::I32(e)) => a
            .iter()
            .zip(e)
            .map(|(&a, &e)| (a.into(), e.into()))
            .collect(),
        _ => {
            check.problem = Some(format!(
                "element type {}, expected {}",
                actual.type_name(),
                expected.type_name()
            ));
            return check;
        }
    };
    for (a, e) in pairs {
        let diff = (a - e).abs();
        // NaN where NaN is expected matches (numpy's equal_nan); any other NaN does not
        let ok = (a.is_nan() && e.is_nan()) || diff <= ATOL + RTOL * e.abs();
        if !ok {
            check.mismatches += 1;
        }
        if diff.is_nan() {
            if !(a.is_nan() && e.is_nan()) {
                check.max_abs = f64::INFINITY;
                check.max_rel = f64::INFINITY;
            }
            continue;
        }
        check.max_abs = check.max_abs.max(diff);
        if e != 0.0 {
            check.max_rel = check.max_rel.max(diff / e.abs());
        }
    }
    check
}

/// Runs every `test_data_set_*` of a case folder through its `model.onnx`.
///
/// Inputs are bound to the graph's inputs by the `TensorProto` names, or by position where a
/// file's name is empty or not an input's; expected outputs likewise.
///
/// # Errors
/// Any error loading the model (an unsupported op is [`Error::Unsupported`]) or a tensor
/// file, or running the graph; [`Error::Empty`] for a folder without data sets.
pub fn run_case(dir: impl AsRef<Path>) -> Result<CaseReport> {
    let dir = dir.as_ref();
    let model = OnnxModel::load(dir.join("model.onnx"))?;
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    if sets.is_empty() {
        return Err(Error::Empty(format!(
            "{}: no test_data_set_* folder",
            dir.display()
        )));
    }
    let mut data_sets = Vec::with_capacity(sets.len());
    for set in sets {
        let mut inputs: Vec<(String, Value)> = Vec::new();
        for (k, path) in numbered(&set, "input_")?.into_iter().enumerate() {
            let (name, v) = read_tensor(&path)?;
            let name = if model.inputs().iter().any(|i| i.name == name) {
                name
            } else {
                model
                    .inputs()
                    .get(k)
                    .map(|i| i.name.clone())
                    .ok_or_else(|| {
                        Error::Unsupported(format!(
                            "{}: the graph has only {} inputs",
                            path.display(),
                            model.inputs().len()
                        ))
                    })?
            };
            inputs.push((name, v));
        }
        let args: Vec<(&str, Value)> = inputs
            .iter()
            .map(|(n, v)| (n.as_str(), v.clone()))
            .collect();
        let outputs = model.run(&args)?;
        let mut checks = Vec::new();
        for (k, path) in numbered(&set, "output_")?.into_iter().enumerate() {
            let (name, expected) = read_tensor(&path)?;
            let actual = outputs
                .iter()
                .find(|(n, _)| *n == name)
                .or_else(|| outputs.get(k))
                .ok_or_else(|| {
                    Error::Unsupported(format!(
                        "{}: the graph has only {} outputs",
                        path.display(),
                        outputs.len()
                    ))
                })?;
            checks.push(compare(&actual.0, &actual.1, &expected));
        }
        let set_name = set
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        data_sets.push((set_name, checks));
    }
    Ok(CaseReport {
        dir: dir.to_path_buf(),
        data_sets,
    })
}
