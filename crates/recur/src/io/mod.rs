//! Reading and writing weights: the only place that knows other systems' names and formats.
//!
//! - [`pytorch`]: safetensors files holding an `nn.LSTM` / `nn.GRU` / `nn.RNN` state_dict
//!   ([`save_state_dict`], [`load_state_dict`]).
//! - [`model`]: a whole [`crate::model::SequenceModel`] (embedding, stack, head) with its
//!   configuration, as a file the PyTorch module of `scripts/recur_torch.py` loads
//!   ([`save_model`], [`load_model`]).
//! - [`checkpoint`]: everything a training run needs to resume ([`save_checkpoint`],
//!   [`load_checkpoint`]).
//! - [`predict`]: what predicting needs besides the weights (kind, class names, a
//!   forecaster's spec), read back from any of these files and applied to the outputs.
//!
//! ## One configuration schema
//! Every file recur writes carries the stack's configuration as the same JSON, serde on
//! [`crate::RecurrentConfig`] (documented with an example in [`crate::layer::config`]):
//!
//! | file | `recur.format` | where the configuration is |
//! |---|---|---|
//! | state_dict export | `pytorch-state-dict-2` | `recur.config`: the stack's JSON |
//! | whole model | `sequence-model-1` | `recur.model`: the model's JSON, the stack's under `"rnn"` |
//! | checkpoint | `checkpoint-2` | `recur.model`, as a whole model |
//!
//! Files of earlier versions still load: `pytorch-state-dict-1` exports with flat `recur.*`
//! keys, and model JSON without `clip` or `recurrent_dropout` (tested on committed files of
//! each format in `tests/legacy_formats.rs`).
//!
//! Weight files are untrusted input. Every reader here checks the file before it allocates
//! anything sized by it (the safetensors header must describe exactly the bytes the file
//! holds, and every tensor's shape must match the configuration before its values are
//! copied), and answers a malformed file with a typed [`crate::Error`] naming the file and
//! the tensor, never a panic.

pub mod checkpoint;
pub mod esn;
pub mod feedback;
pub mod model;
pub mod predict;
pub mod pytorch;

pub use checkpoint::{
    CHECKPOINT_FORMAT, Checkpoint, CheckpointRef, OptimizerRef, Optimizers, PART_NAMES,
    TrainingProgress, checkpoint_bytes, load_checkpoint, load_checkpoint_bytes, save_checkpoint,
};
pub use esn::{ESN_FORMAT, EsnFile, esn_bytes, load_esn, load_esn_bytes, save_esn};
pub use feedback::{
    FEEDBACK_FORMAT, FeedbackFile, feedback_bytes, load_feedback, load_feedback_bytes,
    save_feedback,
};
pub use model::{
    MODEL_FORMAT, config_difference, load_model, load_model_bytes, load_model_extra, model_bytes,
    model_bytes_extra, model_config_from_json, model_config_to_json, save_model, save_model_extra,
};
pub use pytorch::{
    LoadOptions, SaveDtype, SaveOptions, load_state_dict, load_state_dict_bytes, save_state_dict,
    state_dict_bytes,
};

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use safetensors::{Dtype, SafeTensorError, SafeTensors, tensor::TensorView};

use crate::error::{Error, Result};
use crate::kernel::scalar::Float;

/// The name a file is reported under when the bytes did not come from a file.
pub(crate) const IN_MEMORY: &str = "<memory>";

/// The element types recur reads from a file, for error messages.
const READABLE: &str = "F64, F32, F16, BF16";

/// A parsed safetensors buffer and its `__metadata__` (empty when absent).
pub(crate) struct Parsed<'a> {
    pub tensors: SafeTensors<'a>,
    pub metadata: HashMap<String, String>,
}

/// Parses a safetensors buffer. The safetensors crate checks that the header length fits the
/// buffer and its 100 MB bound, that the data offsets are contiguous, agree with each shape
/// and dtype without overflow, and end exactly at the end of the buffer; nothing is
/// allocated from a declared size before those checks pass.
pub(crate) fn parse<'a>(file: &str, bytes: &'a [u8]) -> Result<Parsed<'a>> {
    let format = |reason: String| Error::Format {
        file: file.to_string(),
        reason,
    };
    let declared = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let explain = |e: SafeTensorError| -> Error {
        let len = bytes.len();
        format(match e {
            SafeTensorError::HeaderTooSmall => {
                format!("{len} bytes is shorter than the 8-byte header length")
            }
            SafeTensorError::HeaderTooLarge => format!(
                "declared header length {} exceeds safetensors' 100 MB bound",
                declared.unwrap_or(0)
            ),
            SafeTensorError::InvalidHeaderLength => format!(
                "declared header length {} runs past the end of the {len}-byte file",
                declared.unwrap_or(0)
            ),
            SafeTensorError::InvalidHeader(e) => format!("header is not UTF-8: {e}"),
            SafeTensorError::InvalidHeaderDeserialization(e) => {
                let end = usize::try_from(declared.unwrap_or(0))
                    .map_or(bytes.len(), |n| n.saturating_add(8).min(bytes.len()));
                let header = bytes
                    .get(8..end)
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                format!(
                    "the header is not the JSON safetensors describes tensors with: {}",
                    crate::error::json_reason(&e, &header)
                )
            }
            SafeTensorError::InvalidOffset(name) => {
                format!("tensor `{name}`: data offsets do not follow on from the previous tensor's")
            }
            SafeTensorError::TensorInvalidInfo => {
                "a tensor's data offsets do not span its shape times its dtype size".into()
            }
            SafeTensorError::ValidationOverflow => {
                "a tensor's declared shape overflows when multiplied out".into()
            }
            SafeTensorError::MetadataIncompleteBuffer => format!(
                "the tensors' data does not end at the end of the {len}-byte file \
                 (truncated, or declared sizes the file does not hold)"
            ),
            other => other.to_string(),
        })
    };
    // a PyTorch pickle read as safetensors gives a meaningless header length: say what it is
    let explain = |e: SafeTensorError| match pytorch_pickle(bytes) {
        Some(kind) => format(format!(
            "{kind}, not safetensors; recur reads state_dicts saved as safetensors: in Python, \
             `safetensors.torch.save_file(model.state_dict(), \"model.safetensors\")`"
        )),
        None => explain(e),
    };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(explain)?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let tensors = SafeTensors::deserialize(bytes).map_err(explain)?;
    Ok(Parsed { tensors, metadata })
}

/// What a file that is not safetensors is when it is one of PyTorch's own: `torch.save`'s zip
/// archive (its default since PyTorch 1.6) or a raw pickle (the legacy format, and pickles
/// written by hand), told by their first bytes. Asked only once safetensors parsing failed.
fn pytorch_pickle(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [b'P', b'K', 3, 4, ..] => Some("a PyTorch file (torch.save's zip archive, .pt/.pth)"),
        // PROTO opcode and protocol 2 to 5
        [0x80, 2..=5, ..] => Some("a Python pickle (torch.save's legacy format, .pt/.pth/.pkl)"),
        _ => None,
    }
}

/// Whether recur can read tensors of this dtype.
pub(crate) fn check_dtype(file: &str, name: &str, dtype: Dtype) -> Result<()> {
    match dtype {
        Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16 => Ok(()),
        other => Err(Error::TensorDtype {
            file: file.to_string(),
            name: name.to_string(),
            dtype: format!("{other:?}"),
            expected: READABLE.into(),
        }),
    }
}

/// Converts a tensor's little-endian values into `out` (exactly its element count long),
/// rounding to `T` where `T` is narrower. Non-finite values are kept as they are.
pub(crate) fn decode<T: Float>(
    file: &str,
    name: &str,
    view: &TensorView<'_>,
    out: &mut [T],
) -> Result<()> {
    check_dtype(file, name, view.dtype())?;
    let data = view.data();
    let width = view.dtype().bitsize() / 8;
    debug_assert_eq!(data.len(), out.len() * width);
    let cast = |v: f64| T::from_f64(v).unwrap_or_else(T::nan);
    for (o, b) in out.iter_mut().zip(data.chunks_exact(width)) {
        *o = match view.dtype() {
            Dtype::F64 => cast(f64::from_le_bytes(b.try_into().expect("8 bytes"))),
            Dtype::F32 => cast(f64::from(f32::from_le_bytes(
                b.try_into().expect("4 bytes"),
            ))),
            Dtype::F16 => cast(f64::from(f16_to_f32(u16::from_le_bytes([b[0], b[1]])))),
            Dtype::BF16 => cast(f64::from(bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))),
            _ => unreachable!("check_dtype admits only float types"),
        };
    }
    Ok(())
}

/// IEEE 754 binary16 → binary32 (exact: every half is a float).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let magnitude = match (exp, mant) {
        (0, 0) => 0,
        // subnormal: mant · 2^−24, exact in f32
        (0, m) => (m as f32 * 2f32.powi(-24)).to_bits(),
        (0x1f, 0) => 0x7f80_0000,
        (0x1f, m) => 0x7fc0_0000 | (m << 13),
        // rebias 15 → 127
        (e, m) => ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// bfloat16 → binary32: bfloat16 is the top half of an f32.
pub(crate) fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// One tensor to write: its name, safetensors dtype name (`F64`, `F32`), shape and bytes.
pub(crate) struct TensorOut {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// Encodes a safetensors file: 8-byte little-endian header length, the JSON header (keys
/// sorted, so the same tensors and metadata always give the same bytes; padded with spaces
/// to a multiple of 8 as the reference writer does), then the tensors' data in the given
/// order.
pub(crate) fn encode(tensors: &[TensorOut], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut entries: BTreeMap<&str, String> = BTreeMap::new();
    let mut offset = 0;
    for t in tensors {
        let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
        let end = offset + t.data.len();
        entries.insert(
            &t.name,
            format!(
                "{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
                t.dtype,
                shape.join(",")
            ),
        );
        offset = end;
    }
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header.push_str("\"__metadata__\":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            if i > 0 {
                header.push(',');
            }
            json_string(&mut header, k);
            header.push(':');
            json_string(&mut header, v);
        }
        header.push('}');
    }
    for (i, (name, info)) in entries.iter().enumerate() {
        if i > 0 || !metadata.is_empty() {
            header.push(',');
        }
        json_string(&mut header, name);
        header.push(':');
        header.push_str(info);
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for t in tensors {
        out.extend_from_slice(&t.data);
    }
    out
}

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The default of [`max_file_bytes`]: 4 GiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 30;

static MAX_FILE_BYTES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_MAX_FILE_BYTES);

/// Sets the most bytes any of recur's readers takes from one file (weights, checkpoints,
/// ONNX models and tensors, texts, labelled sequences), for the whole process.
pub fn set_max_file_bytes(limit: u64) {
    MAX_FILE_BYTES.store(limit, std::sync::atomic::Ordering::Relaxed);
}

/// The most bytes a reader takes from one file ([`DEFAULT_MAX_FILE_BYTES`] unless
/// [`set_max_file_bytes`] said otherwise).
pub fn max_file_bytes() -> u64 {
    MAX_FILE_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Reads a whole file, no more than [`max_file_bytes`] of it: a regular file larger than
/// that is refused before anything is read; anything else (a pipe, a device such as
/// `/dev/zero`) is read up to the limit and refused when it goes on past it. Every reader of
/// recur reads its files through this; a file's size then bounds everything later allocated
/// from it.
///
/// # Errors
/// [`Error::Io`] when the file cannot be opened or read, [`Error::FileTooLarge`].
pub fn read_limited(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let file = path.display().to_string();
    let io = |source| Error::Io {
        file: file.clone(),
        source,
    };
    let limit = max_file_bytes();
    let f = std::fs::File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if meta.is_file() && meta.len() > limit {
        return Err(Error::FileTooLarge {
            file,
            size: format!("{} bytes", meta.len()),
            limit,
        });
    }
    let mut bytes = Vec::new();
    if meta.is_file() {
        bytes.reserve_exact(meta.len() as usize);
    }
    f.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(Error::FileTooLarge {
            file,
            size: format!("not a regular file, and longer than {limit} bytes"),
            limit,
        });
    }
    Ok(bytes)
}

/// Reads a whole file through [`read_limited`]. Its size bounds everything later allocated
/// from it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    read_limited(path)
}

/// Writes `bytes` to `path` atomically: into a new temporary file in the same directory,
/// flushed to disk, then renamed over `path` (and, on Unix, the directory synced), so a
/// reader sees the old file or the new one, never a partial one. The temporary file is
/// removed if anything fails.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        file: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let stem = path
        .file_name()
        .map_or_else(|| "recur".into(), |n| n.to_string_lossy().into_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{stem}.{}-{nanos}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    // Make the rename itself durable. Directories cannot be opened for syncing everywhere,
    // and the file is already in place, so a failure here is not reported.
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the temporary files that [`save_checkpoint`], [`save_model`] and
/// [`save_state_dict`] leave beside `path` when their process is killed in the middle of a
/// write (`.NAME.<pid>-<nanos>.tmp`, where `NAME` is `path`'s file name), and returns how many
/// it removed. A temporary is removed only when its writer is known to be gone: its process id
/// is not this process's and, where `/proc` lists the running processes (Linux), not a running
/// one; elsewhere nothing is removed. A missing folder removes nothing.
pub fn remove_stale_temporaries(path: &Path) -> Result<usize> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(0);
    };
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return Ok(0);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let prefix = format!(".{name}.");
    let mut removed = 0;
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|rest| rest.split_once('-'))
            .filter(|(_, nanos)| !nanos.is_empty() && nanos.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || proc_root.join(pid.to_string()).exists() {
            continue;
        }
        let stale = entry.path();
        std::fs::remove_file(&stale).map_err(|source| Error::Io {
            file: stale.display().to_string(),
            source,
        })?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversions_are_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc0a0), -5.0);
    }

    #[test]
    fn encoded_files_parse_with_the_reference_reader() {
        let t = TensorOut {
            name: "a\"\\\u{1}b".into(),
            dtype: "F64",
            shape: vec![2],
            data: [1.5f64, -2.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        };
        let meta = BTreeMap::from([("k\n".to_string(), "v\"".to_string())]);
        let bytes = encode(&[t], &meta);
        let p = parse("t", &bytes).unwrap();
        assert_eq!(p.metadata["k\n"], "v\"");
        let v = p.tensors.tensor("a\"\\\u{1}b").unwrap();
        let mut out = [0.0f64; 2];
        decode("t", "a", &v, &mut out).unwrap();
        assert_eq!(out, [1.5, -2.0]);
        assert_eq!((bytes.len() - 8) % 8, 0, "data starts 8-aligned");
    }
}
