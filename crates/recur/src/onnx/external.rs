//! ONNX external data: initializers whose bytes live in a file beside the model (what
//! `torch.onnx.export(..., external_data=True)` and the dynamo exporter write for large
//! models, and `onnx.save_model(..., save_as_external_data=True)`).
//!
//! A tensor with `data_location = EXTERNAL` names its bytes with `external_data` entries:
//! `location` (a path relative to the model's folder), `offset` and `length` in bytes
//! (`checksum` and unknown keys are ignored). The data file is untrusted like the model: the
//! location must be a plain relative path inside the model's folder (no absolute path, no
//! `..`, no link out of the folder), and the range is checked against the tensor's dims and
//! the data file's size before anything is allocated or read.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

use super::proto::{TensorProto, data_type};
use super::value::checked_numel;
use crate::error::{Error, Result};

/// `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;

/// Whether a tensor's data is stored outside the model.
pub(crate) fn is_external(t: &TensorProto) -> bool {
    t.data_location == EXTERNAL || !t.external_data.is_empty()
}

/// Bytes per element of the element types recur reads.
fn width(data_type: i32) -> Option<usize> {
    match data_type {
        data_type::FLOAT | data_type::INT32 => Some(4),
        data_type::DOUBLE | data_type::INT64 => Some(8),
        _ => None,
    }
}

/// Reads tensor `t`'s external data from the folder `dir` of model `file` into its
/// `raw_data`, leaving a tensor stored inline; [`super::Value::from_proto`] then checks it as
/// any other. `dir` is `None` for a model read from bytes, which has no folder.
///
/// # Errors
/// [`Error::OnnxFormat`] for a model read from bytes, a missing or malformed `location`,
/// `offset` or `length`, an absolute location or one with `..` or leading out of the folder,
/// inline data beside the external, an element type recur does not read, dims over
/// [`super::MAX_ELEMENTS`], a `length` that is not the dims' size, or a range past the end of
/// the data file; [`Error::Io`] naming the data file when it cannot be read.
pub(crate) fn load(file: &str, dir: Option<&Path>, t: &mut TensorProto) -> Result<()> {
    let name = if t.name.is_empty() {
        "<unnamed>"
    } else {
        &t.name
    };
    let bad = |reason: String| Error::OnnxFormat {
        file: file.to_string(),
        reason: format!("tensor `{name}`: external data: {reason}"),
    };
    if t.data_location != EXTERNAL {
        return Err(bad(format!(
            "`external_data` entries but data_location {} (EXTERNAL is 1)",
            t.data_location
        )));
    }
    let entry = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let number = |key: &str| -> Result<Option<u64>> {
        entry(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("`{key}` is `{v}`, not a byte count")))
            })
            .transpose()
    };
    let location = entry("location").ok_or_else(|| bad("no `location` entry".into()))?;
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?;
    let Some(dir) = dir else {
        return Err(bad(format!(
            "its data is in `{location}` beside the model; load the model from its file \
             (OnnxModel::load) so that the file can be found"
        )));
    };
    let rel = Path::new(location);
    if location.is_empty()
        || !rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad(format!(
            "location `{location}` is not a relative path inside the model's folder \
             (absolute paths and `..` are refused)"
        )));
    }
    if !t.raw_data.is_empty()
        || !t.float_data.is_empty()
        || !t.int32_data.is_empty()
        || !t.int64_data.is_empty()
        || !t.double_data.is_empty()
    {
        return Err(bad("holds inline data as well".into()));
    }
    let width = width(t.data_type).ok_or_else(|| {
        bad(format!(
            "element type {} is not one recur reads",
            data_type::name(t.data_type)
        ))
    })?;
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dim {d}"))))
        .collect::<Result<_>>()?;
    let bytes = checked_numel(&shape)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| {
            bad(format!(
                "dims {:?} exceed the bound of {} elements",
                t.dims,
                super::MAX_ELEMENTS
            ))
        })?;
    if let Some(len) = length
        && len != bytes as u64
    {
        return Err(bad(format!(
            "length {len} is not the {bytes} bytes of dims {:?}",
            t.dims
        )));
    }
    let path = dir.join(rel);
    let data_name = path.display().to_string();
    let io = |source: std::io::Error| Error::Io {
        file: data_name.clone(),
        source,
    };
    // a link inside the folder must not lead out of it
    let real_dir = dir.canonicalize().map_err(io)?;
    let real = path.canonicalize().map_err(io)?;
    if !real.starts_with(&real_dir) {
        return Err(bad(format!(
            "location `{location}` leads out of the model's folder"
        )));
    }
    let mut f = std::fs::File::open(&real).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    let end = offset.checked_add(bytes as u64);
    if end.is_none_or(|e| e > size) {
        return Err(bad(format!(
            "bytes {offset}..{} run past the end of the {size}-byte `{location}`",
            offset as u128 + bytes as u128
        )));
    }
    // the range lies inside the file: `bytes` is bounded by what the disk holds
    let mut buf = vec![0u8; bytes];
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    f.read_exact(&mut buf).map_err(io)?;
    t.raw_data = buf;
    t.external_data.clear();
    t.data_location = 0;
    Ok(())
}
