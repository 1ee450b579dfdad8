//! Tensor files: ONNX `TensorProto` (`.pb`, as in the ONNX backend test data) and NumPy
//! `.npy` (format versions 1.0 to 3.0; little-endian `f4`, `f8`, `i8`, `i4`, C order; written
//! as version 1.0). The format is chosen by the file's extension.

use std::path::Path;

use prost::Message;

use super::proto::TensorProto;
use super::value::{Data, MAX_RANK, Value, checked_numel};
use crate::error::{Error, Result};

/// The two tensor file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorFormat {
    /// ONNX `TensorProto`, serialized (`.pb`).
    Proto,
    /// NumPy `.npy`.
    Npy,
}

impl TensorFormat {
    /// The format a path's extension names (`.pb` or `.npy`), if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "pb" => Some(TensorFormat::Proto),
            "npy" => Some(TensorFormat::Npy),
            _ => None,
        }
    }
}

fn format_of(path: &Path) -> Result<TensorFormat> {
    TensorFormat::from_path(path).ok_or_else(|| {
        Error::Unsupported(format!(
            "{}: a tensor file must end in .pb (ONNX TensorProto) or .npy (NumPy)",
            path.display()
        ))
    })
}

/// Reads a tensor file; returns the tensor's name (a `TensorProto`'s `name`, empty when it
/// has none or for `.npy`) and its value.
///
/// # Errors
/// [`Error::Unsupported`] for an unknown extension, [`Error::Io`] when the file cannot be
/// read, otherwise as [`tensor_from_bytes`].
pub fn read_tensor(path: impl AsRef<Path>) -> Result<(String, Value)> {
    let path = path.as_ref();
    let format = format_of(path)?;
    let file = path.display().to_string();
    let bytes = crate::io::read_limited(path)?;
    tensor_from_bytes(&file, &bytes, format)
}

/// Parses a tensor file's bytes; `file` names it in errors.
///
/// # Errors
/// [`Error::OnnxFormat`] ([`Error::NpyFormat`] for `.npy`) for a truncated or corrupt file,
/// data whose length disagrees with
/// the shape, oversized dims, a big-endian or Fortran-order `.npy`; [`Error::TensorDtype`]
/// for an element type other than float32, float64, int64, int32.
pub fn tensor_from_bytes(
    file: &str,
    bytes: &[u8],
    format: TensorFormat,
) -> Result<(String, Value)> {
    match format {
        TensorFormat::Proto => {
            let t = TensorProto::decode(bytes).map_err(|e| Error::OnnxFormat {
                file: file.to_string(),
                reason: format!("not a TensorProto: {e}"),
            })?;
            Ok((t.name.clone(), Value::from_proto(file, &t)?))
        }
        TensorFormat::Npy => Ok((String::new(), read_npy(file, bytes)?)),
    }
}

/// Writes `value` to `path` in the format its extension names; `name` is the
/// `TensorProto`'s name (`.npy` has none).
///
/// # Errors
/// [`Error::Unsupported`] for an unknown extension, [`Error::Io`] when the file cannot be
/// written.
pub fn write_tensor(path: impl AsRef<Path>, name: &str, value: &Value) -> Result<()> {
    let path = path.as_ref();
    let bytes = tensor_to_bytes(name, value, format_of(path)?);
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        file: path.display().to_string(),
        source,
    })
}

/// A tensor file's bytes.
pub fn tensor_to_bytes(name: &str, value: &Value, format: TensorFormat) -> Vec<u8> {
    match format {
        TensorFormat::Proto => value.to_proto(name).encode_to_vec(),
        TensorFormat::Npy => write_npy(value),
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

fn read_npy(file: &str, bytes: &[u8]) -> Result<Value> {
    let bad = |reason: String| Error::NpyFormat {
        file: file.to_string(),
        reason,
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("it does not start with the NumPy magic string".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
            10usize,
        ),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header length".into()));
            }
            (
                u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize,
                12,
            )
        }
        v => return Err(bad(format!("format version {v} is not 1, 2 or 3"))),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            bad(format!(
                "the header of {header_len} bytes runs past the end of the file"
            ))
        })?;
    let header = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| bad("the header is not text".into()))?;
    let field = |key: &str| -> Result<&str> {
        let k = format!("'{key}':");
        let at = header
            .find(&k)
            .ok_or_else(|| bad(format!("the header has no '{key}'")))?;
        Ok(header[at + k.len()..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or_else(|| bad("'descr' is not a string".into()))?;
    if field("fortran_order")?.starts_with("True") {
        return Err(bad(
            "Fortran-order arrays are not supported (save with C order)".into(),
        ));
    }
    let shape_text = field("shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("'shape' is not a tuple".into()))?;
    let mut shape = Vec::new();
    for d in shape_text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        shape.push(
            d.parse::<usize>()
                .map_err(|_| bad(format!("shape entry `{d}` is not a size")))?,
        );
    }
    if shape.len() > MAX_RANK {
        return Err(bad(format!(
            "rank {} exceeds the bound of {MAX_RANK}",
            shape.len()
        )));
    }
    let n = checked_numel(&shape).ok_or_else(|| {
        bad(format!(
            "shape {shape:?} exceeds the bound of {} elements",
            super::MAX_ELEMENTS
        ))
    })?;
    let width = match descr {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        other => {
            return Err(Error::TensorDtype {
                file: file.to_string(),
                name: "array".into(),
                dtype: other.to_string(),
                expected: "<f4, <f8, <i8, <i4 (little-endian float32, float64, int64, int32)"
                    .into(),
            });
        }
    };
    let body = &bytes[end..];
    if body.len() != n * width {
        return Err(bad(format!(
            "shape {shape:?} of {descr} needs {} data bytes, the file holds {}",
            n * width,
            body.len()
        )));
    }
    let data = match descr {
        "<f4" => Data::F32(
            body.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
        ),
        "<i4" => Data::I32(
            body.chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
        ),
        "<f8" => Data::F64(
            body.chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
        _ => Data::I64(
            body.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
    };
    Ok(Value::from_parts(data, shape))
}

fn write_npy(value: &Value) -> Vec<u8> {
    let (descr, body): (&str, Vec<u8>) = match value.data() {
        Data::F32(v) => ("<f4", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Data::F64(v) => ("<f8", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Data::I64(v) => ("<i8", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Data::I32(v) => ("<i4", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    let shape = match value.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        s => format!(
            "({})",
            s.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&body);
    out
}
