//! Training checkpoints: everything a run needs to resume exactly, in one safetensors file.
//!
//! | what | where |
//! |---|---|
//! | model parameters | tensors `model.<name>` for every name of [`SequenceModel::param_layout`] |
//! | optimizer state | tensors `optimizer.<buffer>` (`exp_avg`, `momentum_buffer`, …), each `[param_len]` |
//! | `recur.format` | `checkpoint-1` |
//! | `recur.model` | the model configuration, JSON as in [`super::model`] |
//! | `recur.optimizer` | the optimizer kind and settings, JSON of [`OptimizerConfig`] (the rate in use) |
//! | `recur.optimizer_step` | the optimizer's step count |
//! | `recur.scheduler` | `{"config": ScheduleConfig, "state": SchedulerState}` JSON, when there is one |
//! | `recur.progress` | [`TrainingProgress`] JSON: step, epoch, the trainer's RNG state and data position |
//! | `recur.run_config` | the run's whole configuration, JSON as the caller gave it |
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
use super::{IN_MEMORY, Parsed, SaveDtype, encode, parse, read_file, write_atomic};
use crate::Float;
use crate::error::{Error, Result, Shape, config_err};
use crate::model::{SequenceModel, SequenceModelConfig};
use crate::optim::{AnyOptimizer, LrScheduler, OptimizerConfig, ScheduleConfig, SchedulerState};

/// Value of `recur.format` in checkpoints.
pub const CHECKPOINT_FORMAT: &str = "checkpoint-1";

mod key {
    pub const OPTIMIZER: &str = "recur.optimizer";
    pub const OPTIMIZER_STEP: &str = "recur.optimizer_step";
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

/// What [`save_checkpoint`] writes, borrowed from the running trainer.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointRef<'a, T> {
    pub model: &'a SequenceModel<T>,
    /// The optimizer over the model's flat buffer.
    pub optimizer: &'a AnyOptimizer<T>,
    pub scheduler: Option<&'a LrScheduler>,
    pub progress: &'a TrainingProgress,
    /// The run's whole configuration as a JSON text (it must parse as JSON).
    pub run_config: &'a str,
}

/// What [`load_checkpoint`] gives back.
#[derive(Clone, Debug)]
pub struct Checkpoint<T> {
    pub model: SequenceModel<T>,
    pub optimizer: AnyOptimizer<T>,
    pub scheduler: Option<LrScheduler>,
    pub progress: TrainingProgress,
    pub run_config: String,
}

impl<T> Checkpoint<T> {
    /// The same checkpoint, borrowed (to save it again).
    pub fn as_ref(&self) -> CheckpointRef<'_, T> {
        CheckpointRef {
            model: &self.model,
            optimizer: &self.optimizer,
            scheduler: self.scheduler.as_ref(),
            progress: &self.progress,
            run_config: &self.run_config,
        }
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
/// [`Error::Config`] when `run_config` is not JSON; [`Error::Length`] when an optimizer
/// state buffer is not as long as the model's flat buffer (an optimizer made for another
/// model).
pub fn checkpoint_bytes<T: Float>(checkpoint: CheckpointRef<'_, T>) -> Result<Vec<u8>> {
    let CheckpointRef {
        model,
        optimizer,
        scheduler,
        progress,
        run_config,
    } = checkpoint;
    serde_json::from_str::<serde_json::Value>(run_config)
        .map_err(|e| config_err("run_config", format!("not JSON: {e}")))?;
    let dtype = own_dtype::<T>();
    let n = model.param_len();
    let mut tensors = model_tensors(model, "model.", dtype);
    for (name, buffer) in optimizer.state_buffers() {
        if buffer.len() != n {
            return Err(Error::Length {
                what: format!("optimizer state `{name}`"),
                shape: Shape(vec![n]),
                len: buffer.len(),
            });
        }
        tensors.push(tensor_out(
            format!("optimizer.{name}"),
            vec![n],
            buffer,
            dtype,
        ));
    }
    let mut metadata = BTreeMap::from([
        (model_key::FORMAT.to_string(), CHECKPOINT_FORMAT.to_string()),
        (
            model_key::MODEL.to_string(),
            model_config_to_json(model.config()),
        ),
        (key::OPTIMIZER.to_string(), to_json(&optimizer.config())),
        (
            key::OPTIMIZER_STEP.to_string(),
            optimizer.step_count().to_string(),
        ),
        (key::PROGRESS.to_string(), to_json(progress)),
        (key::RUN_CONFIG.to_string(), run_config.to_string()),
    ]);
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
/// setting that differs); [`Error::MissingTensor`], [`Error::UnexpectedTensor`],
/// [`Error::TensorShape`], [`Error::TensorDtype`] naming the tensor that contradicts the
/// configuration.
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
    let layout = layout_of(file, &config)?;
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

    // The optimizer, and the state buffers it keeps.
    let optimizer_config: OptimizerConfig = serde_json::from_str(get(key::OPTIMIZER)?)
        .map_err(|e| bad(key::OPTIMIZER, e.to_string()))?;
    let mut optimizer = AnyOptimizer::<T>::new(optimizer_config, n)
        .map_err(|e| bad(key::OPTIMIZER, e.to_string()))?;
    let text = get(key::OPTIMIZER_STEP)?;
    let optimizer_step: u64 = text.parse().map_err(|_| {
        bad(
            key::OPTIMIZER_STEP,
            format!("expected a step count, got `{text}`"),
        )
    })?;
    let mut buffer_names: Vec<&str> = optimizer.state_buffers().iter().map(|(n, _)| *n).collect();
    let sgd_momentum = matches!(&optimizer, AnyOptimizer::Sgd(s) if s.config().momentum != 0.0);
    if sgd_momentum && parsed.tensors.tensor("optimizer.momentum_buffer").is_ok() {
        // SGD makes its momentum buffer at its first step: present once it has stepped.
        buffer_names.push("momentum_buffer");
    }
    check_names(
        file,
        &parsed,
        "optimizer.",
        &buffer_names,
        &format!("the optimizer ({})", optimizer.config().kind()),
    )?;
    if let Some(stray) = parsed
        .tensors
        .names()
        .into_iter()
        .find(|n| !n.starts_with("model.") && !n.starts_with("optimizer."))
    {
        return Err(Error::UnexpectedTensor {
            file: file.to_string(),
            name: stray.to_string(),
            reason: "a checkpoint holds only model.* and optimizer.* tensors".into(),
        });
    }
    let buffers = read_buffers::<T>(file, &parsed, &buffer_names, n)?;
    let views: Vec<(&str, &[T])> = buffers.iter().map(|(k, v)| (*k, &v[..])).collect();
    optimizer
        .restore(optimizer_step, &views)
        .map_err(|e| bad(key::OPTIMIZER, e.to_string()))?;

    let scheduler = match meta.get(key::SCHEDULER) {
        None => None,
        Some(text) => {
            let s: SchedulerJson =
                serde_json::from_str(text).map_err(|e| bad(key::SCHEDULER, e.to_string()))?;
            let mut scheduler = LrScheduler::new(s.config, s.state.base_lr)
                .map_err(|e| bad(key::SCHEDULER, e.to_string()))?;
            scheduler
                .set_state(s.state)
                .map_err(|e| bad(key::SCHEDULER, e.to_string()))?;
            Some(scheduler)
        }
    };
    let progress: TrainingProgress =
        serde_json::from_str(get(key::PROGRESS)?).map_err(|e| bad(key::PROGRESS, e.to_string()))?;
    let run_config = get(key::RUN_CONFIG)?.clone();
    serde_json::from_str::<serde_json::Value>(&run_config)
        .map_err(|e| bad(key::RUN_CONFIG, format!("not JSON: {e}")))?;
    let model = SequenceModel::from_params(config, &params)?;
    Ok(Checkpoint {
        model,
        optimizer,
        scheduler,
        progress,
        run_config,
    })
}

/// The optimizer buffers `optimizer.<name>`, each `[n]`.
fn read_buffers<'n, T: Float>(
    file: &str,
    parsed: &Parsed<'_>,
    names: &[&'n str],
    n: usize,
) -> Result<Vec<(&'n str, Vec<T>)>> {
    names
        .iter()
        .map(|&name| {
            let mut v = Vec::new();
            let full = format!("optimizer.{name}");
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
