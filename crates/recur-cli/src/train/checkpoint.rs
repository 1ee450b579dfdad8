//! Training checkpoints in the library's one format ([`recur::io::checkpoint`]): the model,
//! one optimizer per part of the model (`optimizer.<part>.<buffer>`), the scheduler, the
//! run's settings as its run configuration (the flags, JSON), the recurrent state carried
//! between TBPTT chunks as extra tensors (`extra.state.h`, `extra.state.c`), and as extra
//! strings the kind of run (`kind`), the run's position (`progress`, JSON) and the
//! vocabulary (`vocab`) or classes (`classes`). `recur convert` reads the same file.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};

use super::args::TrainArgs;

/// The extra strings that running the model needs besides its weights, and their prefix in
/// ONNX `metadata_props`: the library's ([`recur::io::predict`]), which reads them back.
pub use recur::io::predict::{ONNX_META_PREFIX, PREDICT_KEYS};

/// A checkpoint read back.
pub struct Checkpoint {
    /// The file, for error messages.
    pub file: String,
    pub inner: recur::io::Checkpoint<f32>,
}

impl Checkpoint {
    /// Reads and checks a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        let inner = recur::io::load_checkpoint::<f32>(path, None)?;
        Ok(Self {
            file: path.display().to_string(),
            inner,
        })
    }

    /// Extra string `key` of the run.
    pub fn meta(&self, key: &str) -> Result<&str> {
        Ok(self.inner.extra_metadata(key)?)
    }

    /// Extra string `key` parsed from JSON.
    pub fn meta_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        serde_json::from_str(self.meta(key)?)
            .map_err(|e| anyhow!("{}: metadata `recur.extra.{key}`: {e}", self.file))
    }

    /// The settings of the run that wrote it.
    pub fn args(&self) -> Result<TrainArgs> {
        serde_json::from_str(&self.inner.run_config)
            .map_err(|e| anyhow!("{}: metadata `recur.run_config`: {e}", self.file))
    }
}

/// `dir/name.best.ext` for `dir/name.ext`.
pub fn best_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    match path.extension() {
        Some(ext) => path.with_file_name(format!("{stem}.best.{}", ext.to_string_lossy())),
        None => path.with_file_name(format!("{stem}.best")),
    }
}
