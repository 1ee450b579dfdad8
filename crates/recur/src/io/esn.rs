//! Echo state network files: an [`Esn`] as one safetensors file.
//!
//! Three F64 tensors, `w_in` `[N, 1 + K]` (column 0 the bias), `w` `[N, N]` and `w_out`
//! `[M, 1 + K + N]`, and in the metadata `recur.format = esn-1`, the configuration as JSON in
//! `recur.esn` (the fields of [`EsnConfig`], every key required) and the readout's λ in
//! `recur.ridge`:
//! ```json
//! {"input_size": 1, "reservoir_size": 500, "output_size": 1, "spectral_radius": 0.8,
//!  "input_scaling": 1.0, "bias_scaling": 0.2, "leak_rate": 1.0, "sparsity": 0.99,
//!  "washout": 1000, "output": "every_step"}
//! ```
//! Loading checks the configuration first, then that the file holds exactly those three
//! tensors with the shapes it implies, before reading a value. A caller may add metadata of
//! its own (keys outside `recur.`, e.g. what the readout was fitted on) and what predicting
//! needs under `recur.extra.<key>` ([`PREDICT_KEYS`](super::predict::PREDICT_KEYS), as
//! model files keep them: an ESN forecaster's `kind` and `forecast`); loading returns both.

use std::collections::BTreeMap;
use std::path::Path;

use super::model::{check_format, check_names, read_tensor, tensor_out};
use super::{IN_MEMORY, SaveDtype, encode, parse, read_file, write_atomic};
use crate::error::{Error, Result};
use crate::model::{Esn, EsnConfig};

/// Value of `recur.format` in ESN files.
pub const ESN_FORMAT: &str = "esn-1";

/// Metadata keys.
const ESN_KEY: &str = "recur.esn";
const RIDGE_KEY: &str = "recur.ridge";
const NAMES: [&str; 3] = ["w_in", "w", "w_out"];

/// The bytes [`save_esn`] writes; the same network and metadata always give the same bytes.
///
/// # Errors
/// [`Error::Config`] when a key of `extra` starts with `recur.` but not `recur.extra.` (the
/// file's own keys).
pub fn esn_bytes(esn: &Esn, extra: &[(&str, &str)]) -> Result<Vec<u8>> {
    if let Some((k, _)) = extra.iter().find(|(k, _)| !is_callers(k)) {
        return Err(crate::error::config_err(
            "esn metadata",
            format!("`{k}`: keys starting with `recur.` are the file's own"),
        ));
    }
    let shapes = Esn::part_shapes(esn.config());
    let parts = [esn.input_weights(), esn.reservoir(), esn.readout()];
    let tensors: Vec<_> = NAMES
        .iter()
        .zip(shapes)
        .zip(parts)
        .map(|((name, shape), values)| {
            tensor_out((*name).to_string(), shape.to_vec(), values, SaveDtype::F64)
        })
        .collect();
    let mut metadata = BTreeMap::from([
        (
            super::model::key::FORMAT.to_string(),
            ESN_FORMAT.to_string(),
        ),
        (
            ESN_KEY.to_string(),
            serde_json::to_string(esn.config()).expect("the configuration serialises"),
        ),
        (RIDGE_KEY.to_string(), format!("{:?}", esn.ridge())),
    ]);
    for (k, v) in extra {
        metadata.insert((*k).to_string(), (*v).to_string());
    }
    Ok(encode(&tensors, &metadata))
}

/// Writes `esn` and the metadata `extra` to `path` (see the [module docs](self)), replaced
/// atomically.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written; as [`esn_bytes`].
pub fn save_esn(esn: &Esn, path: impl AsRef<Path>, extra: &[(&str, &str)]) -> Result<()> {
    write_atomic(path.as_ref(), &esn_bytes(esn, extra)?)
}

/// Whether a metadata key is the caller's: outside `recur.`, or under `recur.extra.`.
fn is_callers(key: &str) -> bool {
    !key.starts_with("recur.") || key.starts_with(super::model::key::EXTRA)
}

/// An ESN file's network and the metadata its writer added (keys outside `recur.` and
/// under `recur.extra.`, by their full names).
pub type EsnFile = (Esn, BTreeMap<String, String>);

/// Reads a file written by [`save_esn`].
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Format`] for a file that is not
/// well-formed safetensors; [`Error::Metadata`] when `recur.format`, `recur.esn` or
/// `recur.ridge` is missing or malformed or the configuration is out of range;
/// [`Error::MissingTensor`], [`Error::UnexpectedTensor`], [`Error::TensorShape`],
/// [`Error::TensorDtype`] naming the tensor that contradicts the configuration.
pub fn load_esn(path: impl AsRef<Path>) -> Result<EsnFile> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    load_esn_from(&path.display().to_string(), &bytes)
}

/// [`load_esn`] from bytes in memory (errors name the file `<memory>`).
///
/// # Errors
/// As [`load_esn`], without [`Error::Io`].
pub fn load_esn_bytes(bytes: &[u8]) -> Result<EsnFile> {
    load_esn_from(IN_MEMORY, bytes)
}

fn load_esn_from(file: &str, bytes: &[u8]) -> Result<EsnFile> {
    let parsed = parse(file, bytes)?;
    check_format(file, &parsed.metadata, ESN_FORMAT)?;
    let meta = |key: &str| -> Result<&String> {
        parsed.metadata.get(key).ok_or_else(|| Error::Metadata {
            file: file.to_string(),
            key: key.into(),
            reason: "missing".into(),
        })
    };
    let bad = |key: &str, reason: String| Error::Metadata {
        file: file.to_string(),
        key: key.into(),
        reason,
    };
    let config: EsnConfig =
        serde_json::from_str(meta(ESN_KEY)?).map_err(|e| bad(ESN_KEY, e.to_string()))?;
    config.validate().map_err(|e| bad(ESN_KEY, e.to_string()))?;
    let ridge: f64 = meta(RIDGE_KEY)?
        .parse()
        .map_err(|_| bad(RIDGE_KEY, "not a number".into()))?;
    if !(ridge.is_finite() && ridge >= 0.0) {
        return Err(bad(RIDGE_KEY, format!("λ = {ridge} is not finite and ≥ 0")));
    }
    check_names(file, &parsed, "", &NAMES, "an echo state network")?;
    let shapes = Esn::part_shapes(&config);
    let mut parts: Vec<Vec<f64>> = Vec::with_capacity(3);
    for (name, shape) in NAMES.iter().zip(shapes) {
        // the configuration bounds every size (validate), so the products do not overflow
        let mut v = vec![0.0; shape[0] * shape[1]];
        read_tensor(file, &parsed, name, &shape, &mut v)?;
        parts.push(v);
    }
    let w_out = parts.pop().expect("three parts");
    let w = parts.pop().expect("three parts");
    let w_in = parts.pop().expect("three parts");
    let extra = parsed
        .metadata
        .iter()
        .filter(|(k, _)| is_callers(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((Esn::from_parts(config, w_in, w, w_out, ridge)?, extra))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;
    use crate::model::OutputForm;

    fn fitted() -> Esn {
        let config = EsnConfig {
            input_size: 1,
            reservoir_size: 12,
            output_size: 2,
            washout: 3,
            bias_scaling: 0.1,
            leak_rate: 0.5,
            sparsity: 0.3,
            ..Default::default()
        };
        let mut esn = Esn::new(config, 5).unwrap();
        let u: Vec<f64> = (0..60).map(|t| (t as f64 * 0.2).sin()).collect();
        let y: Vec<f64> = u.iter().flat_map(|v| [v * v, -v]).collect();
        let x = Tensor::new(u, &[60, 1, 1]).unwrap();
        let y = Tensor::new(y, &[60, 1, 2]).unwrap();
        esn.fit(&[(&x, None, &y)], &[(&x, None, &y)], &[1e-6, 1e-3])
            .unwrap();
        esn
    }

    #[test]
    fn round_trip_is_exact_and_bytes_are_stable() {
        let esn = fitted();
        let extra = [
            ("kind", "adding"),
            ("classes", "[\"a\",\"b\"]"),
            ("recur.extra.kind", "forecast"),
        ];
        let bytes = esn_bytes(&esn, &extra).unwrap();
        let (back, meta) = load_esn_bytes(&bytes).unwrap();
        assert_eq!(back, esn);
        assert_eq!(meta.len(), 3);
        assert_eq!(meta["kind"], "adding");
        assert_eq!(meta["classes"], "[\"a\",\"b\"]");
        assert_eq!(meta["recur.extra.kind"], "forecast");
        assert_eq!(esn_bytes(&back, &extra).unwrap(), bytes);
        assert!(esn_bytes(&esn, &[("recur.esn", "x")]).is_err());
        assert!(esn_bytes(&esn, &[("recur.format", "x")]).is_err());
        let dir = std::env::temp_dir().join(format!("recur-esn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("esn.safetensors");
        save_esn(&esn, &path, &[]).unwrap();
        assert_eq!(load_esn(&path).unwrap().0, esn);
        std::fs::remove_dir_all(&dir).unwrap();
        let last = Esn::new(
            EsnConfig {
                output: OutputForm::Last,
                ..esn.config().clone()
            },
            1,
        )
        .unwrap();
        assert_eq!(
            load_esn_bytes(&esn_bytes(&last, &[]).unwrap()).unwrap().0,
            last
        );
    }

    #[test]
    fn malformed_files_are_typed_errors() {
        let esn = fitted();
        let bytes = esn_bytes(&esn, &[]).unwrap();
        // the same bytes with one same-length piece of the header replaced
        let patch = |from: &str, to: &str| -> Vec<u8> {
            assert_eq!(from.len(), to.len());
            let at = bytes
                .windows(from.len())
                .position(|w| w == from.as_bytes())
                .unwrap_or_else(|| panic!("{from} not in the header"));
            let mut b = bytes.clone();
            b[at..at + to.len()].copy_from_slice(to.as_bytes());
            b
        };
        // another format
        assert!(matches!(
            load_esn_bytes(&patch("esn-1", "esn-9")),
            Err(Error::Metadata { .. })
        ));
        // a configuration whose sizes contradict the tensors
        assert!(matches!(
            load_esn_bytes(&patch(
                "\\\"reservoir_size\\\":12",
                "\\\"reservoir_size\\\":13"
            )),
            Err(Error::TensorShape { .. })
        ));
        // a configuration out of range
        assert!(matches!(
            load_esn_bytes(&patch("\\\"leak_rate\\\":0.5", "\\\"leak_rate\\\":1.5")),
            Err(Error::Metadata { .. })
        ));
        // a λ that is not a number
        let ridge = format!("{:?}", esn.ridge());
        let bad = "x".repeat(ridge.len());
        assert!(matches!(
            load_esn_bytes(&patch(&format!("\"{ridge}\""), &format!("\"{bad}\""))),
            Err(Error::Metadata { .. })
        ));
        assert!(load_esn_bytes(&bytes[..bytes.len() - 8]).is_err());
        assert!(load_esn("/nonexistent/esn.safetensors").is_err());
    }
}
