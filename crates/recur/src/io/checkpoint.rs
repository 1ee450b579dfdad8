//! Training checkpoints: everything a run needs to resume exactly, in one safetensors file.
//!
//! | what | where |
//! |---|---|
//! | model parameters | tensors `model.<name>` for every name of [`SequenceModel::param_layout`] |
//! | optimizer state, one optimizer over the flat buffer | tensors `optimizer.<buffer>` (`exp_avg`, `momentum_buffer`, …), each `[param_len]` |
//! | optimizer state, one optimizer per part | tensors `optimizer.<part>.<buffer>`, each `[part_len]`; `<part>` is `embedding`, `rnn` or `head` ([`PART_NAMES`]) |
//! | extra tensors of the caller | tensors `extra.<name>` (e.g. `extra.state.h`, the carried recurrent state) |
//! | `recur.format` | `checkpoint-2` |
//! | `recur.model` | the model configuration, JSON as in [`super::model`] |
//! | `recur.optimizer` | flat: the optimizer kind and settings, JSON of [`OptimizerConfig`] (the rate in use) |
//! | `recur.optimizer_step` | flat: the optimizer's step count |
//! | `recur.optimizer_parts` | per part: JSON list of `{"part", "len", "optimizer", "step"}`, one per part in [`PART_NAMES`] order |
//! | `recur.scheduler` | `{"config": ScheduleConfig, "state": SchedulerState}` JSON, when there is one |
//! | `recur.progress` | [`TrainingProgress`] JSON: step, epoch, the trainer's RNG state and data position |
//! | `recur.run_config` | the run's whole configuration, JSON as the caller gave it |
//! | `recur.extra.<key>` | extra strings of the caller (e.g. a vocabulary, the kind of run) |
//!
//! A file holds either the flat keys (`recur.optimizer`, `recur.optimizer_step`) or
//! `recur.optimizer_parts`, never both. One optimizer per part is what a trainer that updates
//! the model's parts in place ([`SequenceModel::parts_mut`]) keeps: saving it copies nothing
//! into a flat buffer between steps. On load every part's length must be the model's part's,
//! and every state buffer that part's length. Extra tensors and strings are given back as
//! they were saved; [`Checkpoint::extra_tensor`] and [`Checkpoint::extra_metadata`] answer a
//! missing one with an error naming the file and the tensor or key.
//!
//! Tensors are written in `T`'s own width (F32 for `f32`, F64 for `f64`), so a resumed run
//! continues bit for bit. The optimizer runs over the model's flat buffer
//! ([`SequenceModel::params`]); its state buffers have that layout. The file is written
//! atomically (temporary file in the same directory, fsync, rename), so a crash while saving
//! leaves the previous checkpoint whole.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::model::{
    check_format, check_names, config_difference, config_from_metadata, key as model_key,
    layout_of, model_config_to_json, model_tensors, read_params, read_tensor, tensor_out,
};
use super::{IN_MEMORY, Parsed, SaveDtype, TensorOut, encode, parse, read_file, write_atomic};
use crate::error::{Error, Result, Shape, config_err, json_reason};
use crate::kernel::scalar::Float;
use crate::model::{SequenceModel, SequenceModelConfig};
use crate::optim::{AnyOptimizer, LrScheduler, OptimizerConfig, ScheduleConfig, SchedulerState};
use crate::tensor::Tensor;

/// Value of `recur.format` in checkpoints.
pub const CHECKPOINT_FORMAT: &str = "checkpoint-2";

/// The names of the model's parts ([`SequenceModel::parts`]), in order, as optimizer state
/// per part is stored.
pub const PART_NAMES: [&str; 3] = ["embedding", "rnn", "head"];

mod key {
    pub const OPTIMIZER: &str = "recur.optimizer";
    pub const OPTIMIZER_STEP: &str = "recur.optimizer_step";
    pub const OPTIMIZER_PARTS: &str = "recur.optimizer_parts";
    pub const EXTRA: &str = "recur.extra.";
    pub const SCHEDULER: &str = "recur.scheduler";
    pub const PROGRESS: &str = "recur.progress";
    pub const RUN_CONFIG: &str = "recur.run_config";
}

/// Where a training run stands. recur stores these and gives them back; it reads none of
/// them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingProgress {
    /// Optimizer steps taken.
    pub step: u64,
    /// Epochs finished.
    pub epoch: u64,
    /// The trainer's random generator state, opaque.
    pub rng: Vec<u64>,
    /// The trainer's position in its data (e.g. batch index, shuffle seed), opaque.
    pub data_position: Vec<u64>,
}

/// The optimizer state a checkpoint holds, borrowed.
#[derive(Debug)]
pub enum OptimizerRef<'a, T> {
    /// One optimizer over the model's flat buffer ([`SequenceModel::params`]).
    Flat(&'a AnyOptimizer<T>),
    /// One optimizer per part of the model ([`SequenceModel::parts`], named [`PART_NAMES`]),
    /// each as long as its part.
    Parts([&'a AnyOptimizer<T>; 3]),
}

impl<T> Clone for OptimizerRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for OptimizerRef<'_, T> {}

/// The optimizer state [`load_checkpoint`] gives back, as it was saved.
#[derive(Clone, Debug)]
pub enum Optimizers<T> {
    /// One optimizer over the model's flat buffer.
    Flat(AnyOptimizer<T>),
    /// One optimizer per part ([`PART_NAMES`]).
    Parts(Box<[AnyOptimizer<T>; 3]>),
}

impl<T> Optimizers<T> {
    /// Borrowed, to save again.
    pub fn as_ref(&self) -> OptimizerRef<'_, T> {
        match self {
            Optimizers::Flat(o) => OptimizerRef::Flat(o),
            Optimizers::Parts(parts) => {
                let [a, b, c] = &**parts;
                OptimizerRef::Parts([a, b, c])
            }
        }
    }
}

/// What [`save_checkpoint`] writes, borrowed from the running trainer.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointRef<'a, T> {
    pub model: &'a SequenceModel<T>,
    pub optimizer: OptimizerRef<'a, T>,
    pub scheduler: Option<&'a LrScheduler>,
    pub progress: &'a TrainingProgress,
    /// The run's whole configuration as a JSON text (it must parse as JSON).
    pub run_config: &'a str,
    /// Tensors of the caller's own, stored as `extra.<name>` (e.g. the recurrent state a
    /// truncated-BPTT trainer carries from one chunk to the next).
    pub extra_tensors: &'a [(&'a str, &'a Tensor<T>)],
    /// Strings of the caller's own, stored as `recur.extra.<key>`.
    pub extra_metadata: &'a [(&'a str, &'a str)],
}

/// What [`load_checkpoint`] gives back.
#[derive(Clone, Debug)]
pub struct Checkpoint<T> {
    /// The file it was read from (`<memory>` for bytes), for error messages.
    pub file: String,
    pub model: SequenceModel<T>,
    pub optimizer: Optimizers<T>,
    pub scheduler: Option<LrScheduler>,
    pub progress: TrainingProgress,
    pub run_config: String,
    /// The extra tensors, by name without the `extra.` prefix.
    pub extra_tensors: BTreeMap<String, Tensor<T>>,
    /// The extra strings, by key without the `recur.extra.` prefix.
    pub extra_metadata: BTreeMap<String, String>,
}

impl<T> Checkpoint<T> {
    /// Extra tensor `name` (saved as `extra.<name>`), if the file holds it.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] naming the file and `extra.<name>` when it does not.
    pub fn extra_tensor(&self, name: &str) -> Result<&Tensor<T>> {
        self.extra_tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor {
                file: self.file.clone(),
                name: format!("extra.{name}"),
                reason: "the caller needs it".into(),
            })
    }

    /// The bytes [`checkpoint_bytes`] writes for this checkpoint: saving a loaded checkpoint
    /// gives the file back byte for byte.
    ///
    /// # Errors
    /// As [`checkpoint_bytes`].
    pub fn to_bytes(&self) -> Result<Vec<u8>>
    where
        T: Float,
    {
        let tensors: Vec<(&str, &Tensor<T>)> = self
            .extra_tensors
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let metadata: Vec<(&str, &str)> = self
            .extra_metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        checkpoint_bytes(CheckpointRef {
            model: &self.model,
            optimizer: self.optimizer.as_ref(),
            scheduler: self.scheduler.as_ref(),
            progress: &self.progress,
            run_config: &self.run_config,
            extra_tensors: &tensors,
            extra_metadata: &metadata,
        })
    }

    /// Extra string `key` (saved as `recur.extra.<key>`).
    ///
    /// # Errors
    /// [`Error::Metadata`] naming the file and `recur.extra.<key>` when it is missing.
    pub fn extra_metadata(&self, key: &str) -> Result<&str> {
        self.extra_metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::Metadata {
                file: self.file.clone(),
                key: format!("{}{key}", key::EXTRA),
                reason: "missing".into(),
            })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedulerJson {
    config: ScheduleConfig,
    state: SchedulerState,
}

/// Writes a checkpoint to `path` atomically.
///
/// # Errors
/// As [`checkpoint_bytes`], and [`Error::Io`] when the file cannot be written.
pub fn save_checkpoint<T: Float>(
    path: impl AsRef<Path>,
    checkpoint: CheckpointRef<'_, T>,
) -> Result<()> {
    write_atomic(path.as_ref(), &checkpoint_bytes(checkpoint)?)
}

/// The bytes [`save_checkpoint`] writes; the same state always gives the same bytes.
///
/// # Errors
/// [`Error::Config`] when `run_config` is not JSON or an extra tensor or string is named
/// twice; [`Error::Length`] when an optimizer state buffer is not as long as the model's flat
/// buffer, or (per part) as the model's part (an optimizer made for another model).
pub fn checkpoint_bytes<T: Float>(checkpoint: CheckpointRef<'_, T>) -> Result<Vec<u8>> {
    let CheckpointRef {
        model,
        optimizer,
        scheduler,
        progress,
        run_config,
        extra_tensors,
        extra_metadata,
    } = checkpoint;
    serde_json::from_str::<serde_json::Value>(run_config)
        .map_err(|e| config_err("run_config", format!("not JSON: {e}")))?;
    let dtype = own_dtype::<T>();
    let mut tensors = model_tensors(model, "model.", dtype);
    let mut metadata = BTreeMap::from([
        (model_key::FORMAT.to_string(), CHECKPOINT_FORMAT.to_string()),
        (
            model_key::MODEL.to_string(),
            model_config_to_json(model.config()),
        ),
        (key::PROGRESS.to_string(), to_json(progress)),
        (key::RUN_CONFIG.to_string(), run_config.to_string()),
    ]);
    match optimizer {
        OptimizerRef::Flat(o) => {
            push_state(&mut tensors, o, "optimizer.", model.param_len(), dtype)?;
            metadata.insert(key::OPTIMIZER.to_string(), to_json(&o.config()));
            metadata.insert(key::OPTIMIZER_STEP.to_string(), o.step_count().to_string());
        }
        OptimizerRef::Parts(opts) => {
            let mut parts = Vec::with_capacity(3);
            for ((name, part), o) in PART_NAMES.iter().zip(model.parts()).zip(opts) {
                push_state(
                    &mut tensors,
                    o,
                    &format!("optimizer.{name}."),
                    part.len(),
                    dtype,
                )?;
                parts.push(PartJson {
                    part: (*name).to_string(),
                    len: part.len(),
                    optimizer: o.config(),
                    step: o.step_count(),
                });
            }
            metadata.insert(key::OPTIMIZER_PARTS.to_string(), to_json(&parts));
        }
    }
    for (name, t) in extra_tensors {
        let full = format!("extra.{name}");
        if tensors.iter().any(|o| o.name == full) {
            return Err(config_err(
                "extra_tensors",
                format!("`{name}` is given twice"),
            ));
        }
        tensors.push(tensor_out(full, t.shape().to_vec(), t.data(), dtype));
    }
    for (k, v) in extra_metadata {
        let full = format!("{}{k}", key::EXTRA);
        if metadata.insert(full, (*v).to_string()).is_some() {
            return Err(config_err(
                "extra_metadata",
                format!("`{k}` is given twice"),
            ));
        }
    }
    if let Some(s) = scheduler {
        metadata.insert(
            key::SCHEDULER.to_string(),
            to_json(&SchedulerJson {
                config: s.config().clone(),
                state: s.state().clone(),
            }),
        );
    }
    Ok(encode(&tensors, &metadata))
}

/// One optimizer part in `recur.optimizer_parts`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartJson {
    part: String,
    len: usize,
    optimizer: OptimizerConfig,
    step: u64,
}

/// The state buffers of `o` as tensors `{prefix}<buffer>`, each `[n]`.
fn push_state<T: Float>(
    tensors: &mut Vec<TensorOut>,
    o: &AnyOptimizer<T>,
    prefix: &str,
    n: usize,
    dtype: SaveDtype,
) -> Result<()> {
    for (name, buffer) in o.state_buffers() {
        if buffer.len() != n {
            return Err(Error::Length {
                what: format!("optimizer state `{prefix}{name}`"),
                shape: Shape(vec![n]),
                len: buffer.len(),
            });
        }
        tensors.push(tensor_out(
            format!("{prefix}{name}"),
            vec![n],
            buffer,
            dtype,
        ));
    }
    Ok(())
}

/// A metadata value as JSON. The metadata types hold no maps with non-string keys, so this
/// cannot fail; a non-finite float becomes `null`, which loading then refuses.
fn to_json<S: Serialize>(value: &S) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// F32 for `f32`, F64 for `f64`: a checkpoint keeps every bit.
fn own_dtype<T: Float>() -> SaveDtype {
    if std::mem::size_of::<T>() <= 4 {
        SaveDtype::F32
    } else {
        SaveDtype::F64
    }
}

/// Reads a checkpoint. With `expected`, the model configuration in the file must be that
/// one (the configuration of the run being resumed).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Format`] for a file that is not
/// well-formed safetensors; [`Error::Metadata`] naming the key that is missing or malformed
/// (also `recur.model` for a checkpoint of another shape than `expected`, naming the first
/// setting that differs, and `recur.optimizer_parts` for parts that are not the model's, in
/// name, order or length); [`Error::MissingTensor`], [`Error::UnexpectedTensor`],
/// [`Error::TensorShape`], [`Error::TensorDtype`] naming the tensor that contradicts the
/// configuration or the optimizer (a tensor outside `model.*`, `optimizer.*`, `extra.*` is
/// unexpected). Extra tensors and strings are not checked here: the caller asks for them
/// with [`Checkpoint::extra_tensor`] and [`Checkpoint::extra_metadata`].
pub fn load_checkpoint<T: Float>(
    path: impl AsRef<Path>,
    expected: Option<&SequenceModelConfig>,
) -> Result<Checkpoint<T>> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    load_from(&path.display().to_string(), &bytes, expected)
}

/// [`load_checkpoint`] from bytes in memory (errors name the file `<memory>`).
///
/// # Errors
/// As [`load_checkpoint`], without [`Error::Io`].
pub fn load_checkpoint_bytes<T: Float>(
    bytes: &[u8],
    expected: Option<&SequenceModelConfig>,
) -> Result<Checkpoint<T>> {
    load_from(IN_MEMORY, bytes, expected)
}

fn load_from<T: Float>(
    file: &str,
    bytes: &[u8],
    expected: Option<&SequenceModelConfig>,
) -> Result<Checkpoint<T>> {
    let parsed = parse(file, bytes)?;
    let meta = &parsed.metadata;
    check_format(file, meta, CHECKPOINT_FORMAT)?;
    let bad = |k: &str, reason: String| Error::Metadata {
        file: file.to_string(),
        key: k.to_string(),
        reason,
    };
    let get = |k: &str| meta.get(k).ok_or_else(|| bad(k, "missing".into()));
    let config = config_from_metadata(file, meta)?;
    if let Some(want) = expected
        && let Some(diff) = config_difference(&config, want)
    {
        return Err(bad(
            model_key::MODEL,
            format!("checkpoint of another shape: {diff}"),
        ));
    }
    let layout = layout_of(file, &config, parsed.tensors.len())?;
    let n = layout.last().map_or(0, |p| p.offset + p.len);

    // The model's tensors first: once their shapes match, n is bounded by the bytes the file
    // holds, and only then is anything of size n (the optimizer's state) allocated.
    let model_names: Vec<&str> = layout.iter().map(|p| p.name.as_str()).collect();
    check_names(
        file,
        &parsed,
        "model.",
        &model_names,
        "the model's configuration",
    )?;
    let params = read_params::<T>(file, &parsed, "model.", &layout)?;

    let model = SequenceModel::from_params(config, &params)?;

    // The optimizer(s), and the state buffers they keep.
    let optimizer = match (meta.get(key::OPTIMIZER), meta.get(key::OPTIMIZER_PARTS)) {
        (Some(_), Some(_)) => {
            return Err(bad(
                key::OPTIMIZER_PARTS,
                format!("a checkpoint holds `{}` or this, not both", key::OPTIMIZER),
            ));
        }
        (_, None) => {
            let text = get(key::OPTIMIZER)?;
            let config: OptimizerConfig = serde_json::from_str(text)
                .map_err(|e| bad(key::OPTIMIZER, json_reason(&e, text)))?;
            let text = get(key::OPTIMIZER_STEP)?;
            let step: u64 = text.parse().map_err(|_| {
                bad(
                    key::OPTIMIZER_STEP,
                    format!("expected a step count, got `{text}`"),
                )
            })?;
            let o = read_optimizer(file, &parsed, "optimizer.", config, step, n, key::OPTIMIZER)?;
            Optimizers::Flat(o)
        }
        (None, Some(text)) => {
            let parts: Vec<PartJson> = serde_json::from_str(text)
                .map_err(|e| bad(key::OPTIMIZER_PARTS, json_reason(&e, text)))?;
            let lens = model.parts().map(<[T]>::len);
            if parts.len() != PART_NAMES.len() {
                return Err(bad(
                    key::OPTIMIZER_PARTS,
                    format!("{} parts, the model has {}", parts.len(), PART_NAMES.len()),
                ));
            }
            let mut opts = Vec::with_capacity(3);
            for ((p, name), len) in parts.into_iter().zip(PART_NAMES).zip(lens) {
                if p.part != name {
                    return Err(bad(
                        key::OPTIMIZER_PARTS,
                        format!("part `{}` where the model's part `{name}` belongs", p.part),
                    ));
                }
                if p.len != len {
                    return Err(bad(
                        key::OPTIMIZER_PARTS,
                        format!("part `{name}` is {} long, the model's part is {len}", p.len),
                    ));
                }
                let prefix = format!("optimizer.{name}.");
                opts.push(read_optimizer(
                    file,
                    &parsed,
                    &prefix,
                    p.optimizer,
                    p.step,
                    len,
                    key::OPTIMIZER_PARTS,
                )?);
            }
            let [a, b, c]: [AnyOptimizer<T>; 3] = opts
                .try_into()
                .map_err(|_| bad(key::OPTIMIZER_PARTS, "3 parts".into()))?;
            Optimizers::Parts(Box::new([a, b, c]))
        }
    };
    // Every optimizer tensor belongs to the optimizer(s) just read.
    let expected_state: Vec<String> = match &optimizer {
        Optimizers::Flat(o) => o
            .state_buffers()
            .iter()
            .map(|(b, _)| format!("optimizer.{b}"))
            .collect(),
        Optimizers::Parts(opts) => PART_NAMES
            .iter()
            .zip(opts.iter())
            .flat_map(|(p, o)| {
                o.state_buffers()
                    .into_iter()
                    .map(move |(b, _)| format!("optimizer.{p}.{b}"))
            })
            .collect(),
    };
    let mut extra_tensors = BTreeMap::new();
    let mut names = parsed.tensors.names();
    names.sort_unstable();
    for name in names {
        if name.starts_with("model.") {
            continue;
        }
        if name.starts_with("optimizer.") {
            if !expected_state.iter().any(|e| e == name) {
                return Err(Error::UnexpectedTensor {
                    file: file.to_string(),
                    name: name.to_string(),
                    reason: "the checkpoint's optimizer keeps no such buffer".into(),
                });
            }
            continue;
        }
        let Some(short) = name.strip_prefix("extra.") else {
            return Err(Error::UnexpectedTensor {
                file: file.to_string(),
                name: name.to_string(),
                reason: "a checkpoint holds only model.*, optimizer.* and extra.* tensors".into(),
            });
        };
        // Shape and dtype come from the file, which holds the data: the allocation is bounded.
        let view = parsed.tensors.tensor(name).map_err(|e| Error::Format {
            file: file.to_string(),
            reason: e.to_string(),
        })?;
        let shape = view.shape().to_vec();
        let mut values = vec![T::zero(); shape.iter().product()];
        read_tensor(file, &parsed, name, &shape, &mut values)?;
        extra_tensors.insert(short.to_string(), Tensor::new(values, &shape)?);
    }
    let extra_metadata: BTreeMap<String, String> = meta
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(key::EXTRA)
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();

    let scheduler = match meta.get(key::SCHEDULER) {
        None => None,
        Some(text) => {
            let s: SchedulerJson = serde_json::from_str(text)
                .map_err(|e| bad(key::SCHEDULER, json_reason(&e, text)))?;
            let mut scheduler = LrScheduler::new(s.config, s.state.base_lr)
                .map_err(|e| bad(key::SCHEDULER, e.to_string()))?;
            scheduler
                .set_state(s.state)
                .map_err(|e| bad(key::SCHEDULER, e.to_string()))?;
            Some(scheduler)
        }
    };
    let text = get(key::PROGRESS)?;
    let progress: TrainingProgress =
        serde_json::from_str(text).map_err(|e| bad(key::PROGRESS, json_reason(&e, text)))?;
    let run_config = get(key::RUN_CONFIG)?.clone();
    serde_json::from_str::<serde_json::Value>(&run_config).map_err(|e| {
        bad(
            key::RUN_CONFIG,
            format!("not JSON: {}", json_reason(&e, &run_config)),
        )
    })?;
    Ok(Checkpoint {
        file: file.to_string(),
        model,
        optimizer,
        scheduler,
        progress,
        run_config,
        extra_tensors,
        extra_metadata,
    })
}

/// An optimizer of `config` over `n` values, its state read from tensors `{prefix}<buffer>`
/// and its step count set to `step`; `meta_key` is the metadata key named in its errors.
fn read_optimizer<T: Float>(
    file: &str,
    parsed: &Parsed<'_>,
    prefix: &str,
    config: OptimizerConfig,
    step: u64,
    n: usize,
    meta_key: &str,
) -> Result<AnyOptimizer<T>> {
    let bad = |reason: String| Error::Metadata {
        file: file.to_string(),
        key: meta_key.to_string(),
        reason,
    };
    let mut optimizer = AnyOptimizer::<T>::new(config, n).map_err(|e| bad(e.to_string()))?;
    let mut buffer_names: Vec<&str> = optimizer.state_buffers().iter().map(|(n, _)| *n).collect();
    let sgd_momentum = matches!(&optimizer, AnyOptimizer::Sgd(s) if s.config().momentum != 0.0);
    if sgd_momentum
        && parsed
            .tensors
            .tensor(&format!("{prefix}momentum_buffer"))
            .is_ok()
    {
        // SGD makes its momentum buffer at its first step: present once it has stepped.
        buffer_names.push("momentum_buffer");
    }
    let buffers = read_buffers::<T>(file, parsed, prefix, &buffer_names, n)?;
    let views: Vec<(&str, &[T])> = buffers.iter().map(|(k, v)| (*k, &v[..])).collect();
    optimizer
        .restore(step, &views)
        .map_err(|e| bad(e.to_string()))?;
    Ok(optimizer)
}

/// The optimizer buffers `{prefix}<name>`, each `[n]`.
fn read_buffers<'n, T: Float>(
    file: &str,
    parsed: &Parsed<'_>,
    prefix: &str,
    names: &[&'n str],
    n: usize,
) -> Result<Vec<(&'n str, Vec<T>)>> {
    names
        .iter()
        .map(|&name| {
            let mut v = Vec::new();
            let full = format!("{prefix}{name}");
            // Shape first (bounded by the file), then allocate.
            let view = parsed
                .tensors
                .tensor(&full)
                .map_err(|_| Error::MissingTensor {
                    file: file.to_string(),
                    name: full.clone(),
                    reason: "the optimizer needs it".into(),
                })?;
            if view.shape() != [n] {
                return Err(Error::TensorShape {
                    file: file.to_string(),
                    name: full,
                    expected: Shape(vec![n]).to_string(),
                    got: Shape(view.shape().to_vec()),
                });
            }
            v.resize(n, T::zero());
            read_tensor(file, parsed, &full, &[n], &mut v)?;
            Ok((name, v))
        })
        .collect()
}
