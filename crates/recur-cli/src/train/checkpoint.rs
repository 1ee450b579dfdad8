//! Training checkpoints: one safetensors file holding the model's parameters (`model.<name>`,
//! the names of [`recur::model::SequenceModel::param_layout`]), the optimizer's state
//! (`optim.<part>.<buffer>`), the recurrent state carried between TBPTT chunks (`state.h`,
//! `state.c`), and in its metadata the run's settings (`args`, JSON), the vocabulary
//! (`vocab`) and the run's position (`progress`, JSON). Written atomically: to a temporary
//! file beside the target, then renamed over it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "recur-train-checkpoint 1";

/// A checkpoint being written: tensors by name, metadata.
#[derive(Default)]
pub struct Writer {
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    meta: HashMap<String, String>,
}

impl Writer {
    pub fn tensor(&mut self, name: impl Into<String>, shape: &[usize], data: &[f32]) {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.push((name.into(), shape.to_vec(), bytes));
    }

    pub fn meta(&mut self, key: &str, value: impl Into<String>) {
        self.meta.insert(key.into(), value.into());
    }

    /// Writes the file atomically.
    pub fn save(mut self, path: &Path) -> Result<()> {
        self.meta.insert("format".into(), FORMAT.into());
        let views = self
            .tensors
            .iter()
            .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let bytes = safetensors::serialize(views, Some(self.meta))
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let tmp = temp_path(path);
        std::fs::write(&tmp, bytes).with_context(|| format!("{}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
        Ok(())
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// A checkpoint read back.
pub struct Checkpoint {
    pub file: String,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    meta: HashMap<String, String>,
}

impl Checkpoint {
    /// Reads and checks a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).with_context(|| file.clone())?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{file}: not a valid safetensors file: {e}"))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{file}: not a valid safetensors file: {e}"))?;
        let meta = header.metadata().clone().unwrap_or_default();
        match meta.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) => bail!("{file}: metadata `format` is `{f}`, expected `{FORMAT}`"),
            None => bail!(
                "{file}: not a recur training checkpoint (no metadata `format`; weights \
                 alone are not a checkpoint)"
            ),
        }
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                bail!(
                    "{file}: tensor `{name}`: dtype {:?}, expected F32",
                    view.dtype()
                );
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        Ok(Self {
            file,
            tensors,
            meta,
        })
    }

    pub fn meta(&self, key: &str) -> Result<&str> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("{}: metadata `{key}` missing", self.file))
    }

    /// A metadata entry parsed from JSON.
    pub fn meta_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        serde_json::from_str(self.meta(key)?)
            .map_err(|e| anyhow!("{}: metadata `{key}`: {e}", self.file))
    }

    /// Copies tensor `name` into `dst`, which must have its shape.
    pub fn read_into(&self, name: &str, shape: &[usize], dst: &mut [f32]) -> Result<()> {
        let (got, data) = self
            .tensors
            .get(name)
            .ok_or_else(|| anyhow!("{}: missing tensor `{name}`", self.file))?;
        if got != shape {
            bail!(
                "{}: tensor `{name}` has shape {got:?}, this run's model needs {shape:?} (a \
                 checkpoint of another model?)",
                self.file
            );
        }
        dst.copy_from_slice(data);
        Ok(())
    }

    /// Tensor `name` with its shape.
    pub fn tensor(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.tensors
            .get(name)
            .map(|(s, d)| (s.as_slice(), d.as_slice()))
    }

    /// Names of the tensors that start with `prefix`.
    pub fn names_with(&self, prefix: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .tensors
            .keys()
            .filter(|n| n.starts_with(prefix))
            .map(String::as_str)
            .collect();
        v.sort_unstable();
        v
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
