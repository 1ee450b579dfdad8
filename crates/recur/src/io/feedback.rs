//! Output-to-hidden network files: a [`Feedback`] as one safetensors file.
//!
//! Five F64 tensors named and shaped as [`FeedbackConfig::layout`] lists (`weight_xh`
//! `[H, K]`, `weight_yh` `[H, M]`, `bias_h` `[H]`, `weight_hy` `[M, H]`, `bias_y` `[M]`), and
//! in the metadata `recur.format = feedback-1` and the configuration as JSON in
//! `recur.feedback`:
//! ```json
//! {"input_size": 1, "hidden_size": 32, "output_size": 1, "activation": "tanh"}
//! ```
//! Loading checks the configuration first, then that the file holds exactly those five
//! tensors with the shapes it implies, before reading a value. A caller may add metadata of
//! its own (keys outside `recur.`); loading returns it.

use std::collections::BTreeMap;
use std::path::Path;

use super::model::{check_format, check_names, read_tensor, tensor_out};
use super::{IN_MEMORY, SaveDtype, encode, parse, read_file, write_atomic};
use crate::error::{Error, Result};
use crate::kernel::scalar::Float;
use crate::model::{Feedback, FeedbackConfig};

/// Value of `recur.format` in output-to-hidden network files.
pub const FEEDBACK_FORMAT: &str = "feedback-1";

const CONFIG_KEY: &str = "recur.feedback";

/// The bytes [`save_feedback`] writes; the same network and metadata always give the same
/// bytes.
///
/// # Errors
/// [`Error::Config`] when a key of `extra` starts with `recur.` (the file's own keys).
pub fn feedback_bytes<T: Float>(net: &Feedback<T>, extra: &[(&str, &str)]) -> Result<Vec<u8>> {
    if let Some((k, _)) = extra.iter().find(|(k, _)| k.starts_with("recur.")) {
        return Err(crate::error::config_err(
            "feedback metadata",
            format!("`{k}`: keys starting with `recur.` are the file's own"),
        ));
    }
    let mut offset = 0;
    let tensors: Vec<_> = net
        .config()
        .layout()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let values = &net.params()[offset..offset + n];
            offset += n;
            tensor_out(name.to_string(), shape, values, SaveDtype::F64)
        })
        .collect();
    let mut metadata = BTreeMap::from([
        (
            super::model::key::FORMAT.to_string(),
            FEEDBACK_FORMAT.to_string(),
        ),
        (
            CONFIG_KEY.to_string(),
            serde_json::to_string(net.config()).expect("the configuration serialises"),
        ),
    ]);
    for (k, v) in extra {
        metadata.insert((*k).to_string(), (*v).to_string());
    }
    Ok(encode(&tensors, &metadata))
}

/// Writes `net` and the metadata `extra` to `path` (see the [module docs](self)), replaced
/// atomically.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written; as [`feedback_bytes`].
pub fn save_feedback<T: Float>(
    net: &Feedback<T>,
    path: impl AsRef<Path>,
    extra: &[(&str, &str)],
) -> Result<()> {
    write_atomic(path.as_ref(), &feedback_bytes(net, extra)?)
}

/// An output-to-hidden network file's network and the metadata its writer added (keys
/// outside `recur.`).
pub type FeedbackFile<T> = (Feedback<T>, BTreeMap<String, String>);

/// Reads a file written by [`save_feedback`].
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Format`] for a file that is not
/// well-formed safetensors; [`Error::Metadata`] when `recur.format` or `recur.feedback` is
/// missing or malformed or the configuration is out of range; [`Error::MissingTensor`],
/// [`Error::UnexpectedTensor`], [`Error::TensorShape`], [`Error::TensorDtype`] naming the
/// tensor that contradicts the configuration.
pub fn load_feedback<T: Float>(path: impl AsRef<Path>) -> Result<FeedbackFile<T>> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    load_from(&path.display().to_string(), &bytes)
}

/// [`load_feedback`] from bytes in memory (errors name the file `<memory>`).
///
/// # Errors
/// As [`load_feedback`], without [`Error::Io`].
pub fn load_feedback_bytes<T: Float>(bytes: &[u8]) -> Result<FeedbackFile<T>> {
    load_from(IN_MEMORY, bytes)
}

fn load_from<T: Float>(file: &str, bytes: &[u8]) -> Result<FeedbackFile<T>> {
    let parsed = parse(file, bytes)?;
    check_format(file, &parsed.metadata, FEEDBACK_FORMAT)?;
    let bad = |reason: String| Error::Metadata {
        file: file.to_string(),
        key: CONFIG_KEY.into(),
        reason,
    };
    let json = parsed
        .metadata
        .get(CONFIG_KEY)
        .ok_or_else(|| bad("missing".into()))?;
    let config: FeedbackConfig = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    config.validate().map_err(|e| bad(e.to_string()))?;
    let layout = config.layout();
    let names: Vec<&str> = layout.iter().map(|(n, _)| *n).collect();
    check_names(file, &parsed, "", &names, "an output-to-hidden network")?;
    // the configuration bounds every size (validate), so the count does not overflow
    let mut params = vec![T::zero(); config.num_params()];
    let mut offset = 0;
    for (name, shape) in &layout {
        let n: usize = shape.iter().product();
        read_tensor(file, &parsed, name, shape, &mut params[offset..offset + n])?;
        offset += n;
    }
    let extra = parsed
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("recur."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((Feedback::from_params(config, params)?, extra))
}
