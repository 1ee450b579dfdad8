//! Whole-model files: a [`SequenceModel`] as one safetensors file that PyTorch loads.
//!
//! The tensors carry the state_dict names of a PyTorch module with the attributes
//! `embedding`, `rnn` and `head` (`embedding.weight`, `rnn.weight_ih_l0`, …, `head.weight`,
//! `head.bias`); a model with tied weights writes the shared table under both
//! `embedding.weight` and `head.weight`, as PyTorch's state_dict lists it. The configuration
//! is JSON in the metadata (`recur.model`), next to `recur.format = sequence-model-1`. The
//! PyTorch module `RecurModel` of `scripts/recur_torch.py` builds itself from that JSON and
//! loads the tensors with `load_state_dict(strict=True)`:
//!
//! ```python
//! from recur_torch import load, save
//! model = load("model.safetensors")          # RecurModel, weights from recur
//! out, state = model(ids, lengths=lengths)   # recur's outputs
//! save(model, "back.safetensors")            # → recur::io::load_model
//! ```
//!
//! The JSON (every key required; [`model_config_to_json`] writes it,
//! [`model_config_from_json`] reads it), with `"rnn"` the stack's own JSON of
//! [`crate::layer::config`], the one schema every file of recur holds:
//! ```json
//! {"input": {"kind": "embedding", "num_embeddings": 50, "embedding_dim": 16, "padding_idx": null},
//!  "rnn": {"cell": {"kind": "lstm", "proj_size": 0,
//!                   "peepholes": {"input": false, "forget": false, "output": false},
//!                   "input_forget": "separate", "activations": ["sigmoid", "tanh", "tanh"],
//!                   "clip": null},
//!          "input_size": 16, "hidden_size": 32, "num_layers": 2, "bias": true,
//!          "direction": "forward", "dropout": 0.5, "recurrent_dropout": 0.0,
//!          "batch_first": false},
//!  "output": "every_step", "out_features": 50, "head_bias": true,
//!  "input_dropout": 0.5, "output_dropout": 0.5, "tie_weights": false}
//! ```
//! with `{"kind": "dense"}` for feature input and `"last"` for one output per sequence.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    IN_MEMORY, Parsed, SaveDtype, TensorOut, check_dtype, decode, encode, parse, read_file,
    write_atomic,
};
use crate::error::{Error, Result, Shape};
use crate::kernel::scalar::Float;
use crate::layer::{Bias, RecurrentConfig};
use crate::model::{
    EmbeddingConfig, Input, ModelParam, OutputForm, SequenceModel, SequenceModelConfig, TieWeights,
};

/// Value of `recur.format` in whole-model files.
pub const MODEL_FORMAT: &str = "sequence-model-1";

/// Metadata keys.
pub(crate) mod key {
    pub const FORMAT: &str = "recur.format";
    pub const MODEL: &str = "recur.model";
    pub const EXTRA: &str = "recur.extra.";
}

// ---------------------------------------------------------------------------------------------
// The configuration as JSON

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelJson {
    input: InputJson,
    /// The stack, in its own JSON schema ([`crate::layer::config`]).
    rnn: RecurrentConfig,
    output: OutputJson,
    out_features: usize,
    head_bias: bool,
    input_dropout: f64,
    output_dropout: f64,
    tie_weights: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum InputJson {
    Embedding {
        num_embeddings: usize,
        embedding_dim: usize,
        padding_idx: Option<usize>,
    },
    Dense,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OutputJson {
    EveryStep,
    Last,
}

fn bias_flag(b: Bias) -> bool {
    b == Bias::Enabled
}

fn bias_of(flag: bool) -> Bias {
    if flag { Bias::Enabled } else { Bias::Disabled }
}

impl ModelJson {
    fn of(c: &SequenceModelConfig) -> Self {
        // Destructured without `..`, so that a field added to the configuration is a compile
        // error here until it is written to (and read from) the JSON.
        let SequenceModelConfig {
            input,
            rnn,
            output,
            out_features,
            head_bias,
            input_dropout,
            output_dropout,
            tie_weights,
        } = c;
        ModelJson {
            input: match input {
                Input::Embedding(e) => InputJson::Embedding {
                    num_embeddings: e.num_embeddings,
                    embedding_dim: e.embedding_dim,
                    padding_idx: e.padding_idx,
                },
                Input::Dense => InputJson::Dense,
            },
            rnn: rnn.clone(),
            output: match output {
                OutputForm::EveryStep => OutputJson::EveryStep,
                OutputForm::Last => OutputJson::Last,
            },
            out_features: *out_features,
            head_bias: bias_flag(*head_bias),
            input_dropout: *input_dropout,
            output_dropout: *output_dropout,
            tie_weights: *tie_weights == TieWeights::Tied,
        }
    }

    fn into_config(self) -> SequenceModelConfig {
        SequenceModelConfig {
            input: match self.input {
                InputJson::Embedding {
                    num_embeddings,
                    embedding_dim,
                    padding_idx,
                } => Input::Embedding(EmbeddingConfig {
                    num_embeddings,
                    embedding_dim,
                    padding_idx,
                }),
                InputJson::Dense => Input::Dense,
            },
            rnn: self.rnn,
            output: match self.output {
                OutputJson::EveryStep => OutputForm::EveryStep,
                OutputJson::Last => OutputForm::Last,
            },
            out_features: self.out_features,
            head_bias: bias_of(self.head_bias),
            input_dropout: self.input_dropout,
            output_dropout: self.output_dropout,
            tie_weights: if self.tie_weights {
                TieWeights::Tied
            } else {
                TieWeights::Untied
            },
        }
    }
}

/// The configuration as the JSON of the module docs (what `recur.model` holds). A
/// configuration with a non-finite dropout rate (which no valid one has) writes `null` there,
/// which [`model_config_from_json`] refuses.
pub fn model_config_to_json(config: &SequenceModelConfig) -> String {
    serde_json::to_string(&ModelJson::of(config)).expect("the JSON model always serialises")
}

/// Reads the JSON of [`model_config_to_json`] and validates the configuration it describes.
///
/// # Errors
/// [`Error::Config`] naming what is malformed (an unknown or missing key, a value of the
/// wrong type, an unknown activation) or out of range.
pub fn model_config_from_json(json: &str) -> Result<SequenceModelConfig> {
    let parsed: ModelJson = serde_json::from_str(json).map_err(|e| {
        crate::error::config_err(
            "model configuration JSON",
            crate::error::json_reason(&e, json),
        )
    })?;
    let config = parsed.into_config();
    config.validate()?;
    Ok(config)
}

/// The first place two configurations differ, as `path: file has A, expected B` in their
/// JSON (for "a file of another shape" errors).
pub fn config_difference(
    file: &SequenceModelConfig,
    expected: &SequenceModelConfig,
) -> Option<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match y.get(k) {
                        Some(vb) => {
                            if let Some(d) = walk(&p, va, vb) {
                                return Some(d);
                            }
                        }
                        None => return Some(format!("{p}: the file has {va}, expected none")),
                    }
                }
                y.iter()
                    .find(|(k, _)| !x.contains_key(*k))
                    .map(|(k, vb)| format!("{path}.{k}: the file has none, expected {vb}"))
            }
            _ if a != b => Some(format!(
                "{}: the file has {a}, expected {b}",
                if path.is_empty() { "config" } else { path }
            )),
            _ => None,
        }
    }
    let a = serde_json::to_value(ModelJson::of(file)).ok()?;
    let b = serde_json::to_value(ModelJson::of(expected)).ok()?;
    walk("", &a, &b)
}

// ---------------------------------------------------------------------------------------------
// Files

/// Writes `model` to `path` as a safetensors file with PyTorch's state_dict names and the
/// configuration as JSON metadata (see the [module docs](self)), replaced atomically
/// (temporary file in the same directory, fsync, rename).
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
pub fn save_model<T: Float>(
    model: &SequenceModel<T>,
    path: impl AsRef<Path>,
    dtype: SaveDtype,
) -> Result<()> {
    write_atomic(path.as_ref(), &model_bytes(model, dtype))
}

/// [`save_model`] with strings of the caller's own (what predicting needs besides the
/// weights: class names, a forecaster's window and scaling), stored as `recur.extra.<key>`
/// as checkpoints store theirs; [`load_model_extra`] reads them back.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
pub fn save_model_extra<T: Float>(
    model: &SequenceModel<T>,
    path: impl AsRef<Path>,
    dtype: SaveDtype,
    extra: &[(&str, &str)],
) -> Result<()> {
    write_atomic(path.as_ref(), &model_bytes_extra(model, dtype, extra))
}

/// The bytes [`save_model`] writes; the same model and dtype always give the same bytes.
pub fn model_bytes<T: Float>(model: &SequenceModel<T>, dtype: SaveDtype) -> Vec<u8> {
    model_bytes_extra(model, dtype, &[])
}

/// The bytes [`save_model_extra`] writes.
pub fn model_bytes_extra<T: Float>(
    model: &SequenceModel<T>,
    dtype: SaveDtype,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut tensors = model_tensors(model, "", dtype);
    if model.config().tie_weights == TieWeights::Tied {
        let config = model.config().head_config();
        tensors.push(tensor_out(
            "head.weight".into(),
            vec![config.out_features, config.in_features],
            model.head_weight(),
            dtype,
        ));
    }
    let mut metadata = BTreeMap::from([
        (key::FORMAT.to_string(), MODEL_FORMAT.to_string()),
        (key::MODEL.to_string(), model_config_to_json(model.config())),
    ]);
    for (k, v) in extra {
        metadata.insert(format!("{}{k}", key::EXTRA), (*v).to_string());
    }
    encode(&tensors, &metadata)
}

/// One tensor of every entry of the model's flat layout, named `{prefix}{name}`.
pub(crate) fn model_tensors<T: Float>(
    model: &SequenceModel<T>,
    prefix: &str,
    dtype: SaveDtype,
) -> Vec<TensorOut> {
    let params = model.params();
    model
        .param_layout()
        .iter()
        .map(|p| {
            tensor_out(
                format!("{prefix}{}", p.name),
                p.shape.clone(),
                &params[p.offset..p.offset + p.len],
                dtype,
            )
        })
        .collect()
}

pub(crate) fn tensor_out<T: Float>(
    name: String,
    shape: Vec<usize>,
    values: &[T],
    dtype: SaveDtype,
) -> TensorOut {
    let values = values.iter().map(|v| v.to_f64().unwrap_or(f64::NAN));
    let (dtype, data) = match dtype {
        SaveDtype::F64 => ("F64", values.flat_map(f64::to_le_bytes).collect()),
        SaveDtype::F32 => (
            "F32",
            values.flat_map(|v| (v as f32).to_le_bytes()).collect(),
        ),
    };
    TensorOut {
        name,
        dtype,
        shape,
        data,
    }
}

/// Reads a whole-model file written by [`save_model`] or by `scripts/recur_torch.py`
/// (tensors F64, F32, F16 or BF16, converted to `T`).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Format`] for a file that is not
/// well-formed safetensors; [`Error::Metadata`] when `recur.format` or `recur.model` is
/// missing, malformed or describes an invalid configuration; [`Error::MissingTensor`],
/// [`Error::UnexpectedTensor`], [`Error::TensorShape`], [`Error::TensorDtype`] naming the
/// tensor that contradicts the configuration (also a tied model whose `head.weight` is not
/// its `embedding.weight`).
pub fn load_model<T: Float>(path: impl AsRef<Path>) -> Result<SequenceModel<T>> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    load_model_from(&path.display().to_string(), &bytes)
}

/// [`load_model`] and the strings [`save_model_extra`] stored (by key, without the
/// `recur.extra.` prefix; empty for a file written by [`save_model`]).
///
/// # Errors
/// As [`load_model`].
pub fn load_model_extra<T: Float>(
    path: impl AsRef<Path>,
) -> Result<(SequenceModel<T>, BTreeMap<String, String>)> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let file = path.display().to_string();
    let model = load_model_from(&file, &bytes)?;
    let parsed = parse(&file, &bytes)?;
    let extra = parsed
        .metadata
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(key::EXTRA)
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    Ok((model, extra))
}

/// [`load_model`] from bytes in memory (errors name the file `<memory>`).
///
/// # Errors
/// As [`load_model`], without [`Error::Io`].
pub fn load_model_bytes<T: Float>(bytes: &[u8]) -> Result<SequenceModel<T>> {
    load_model_from(IN_MEMORY, bytes)
}

fn load_model_from<T: Float>(file: &str, bytes: &[u8]) -> Result<SequenceModel<T>> {
    let parsed = parse(file, bytes)?;
    check_format(file, &parsed.metadata, MODEL_FORMAT)?;
    let config = config_from_metadata(file, &parsed.metadata)?;
    let layout = layout_of(file, &config, parsed.tensors.len())?;
    let mut names: Vec<&str> = layout.iter().map(|p| p.name.as_str()).collect();
    let tied = config.tie_weights == TieWeights::Tied;
    if tied {
        names.push("head.weight");
    }
    check_names(file, &parsed, "", &names, "the model's configuration")?;
    let params = read_params(file, &parsed, "", &layout)?;
    if tied {
        let table = layout
            .iter()
            .find(|p| p.name == "embedding.weight")
            .expect("a tied model has an embedding");
        let mut head = vec![T::zero(); table.len];
        read_tensor(file, &parsed, "head.weight", &table.shape, &mut head)?;
        let table_values = &params[table.offset..table.offset + table.len];
        let same = |a: &T, b: &T| a == b || (a.is_nan() && b.is_nan());
        if !head.iter().zip(table_values).all(|(a, b)| same(a, b)) {
            return Err(Error::UnexpectedTensor {
                file: file.to_string(),
                name: "head.weight".into(),
                reason: "the model ties head.weight to embedding.weight, but the two differ".into(),
            });
        }
    }
    SequenceModel::from_params(config, &params)
}

/// `recur.format` must be present and equal `format`.
pub(crate) fn check_format(file: &str, meta: &HashMap<String, String>, format: &str) -> Result<()> {
    match meta.get(key::FORMAT) {
        Some(f) if f == format => Ok(()),
        Some(f) => Err(Error::Metadata {
            file: file.to_string(),
            key: key::FORMAT.into(),
            reason: format!("expected `{format}`, got `{f}`"),
        }),
        None => Err(Error::Metadata {
            file: file.to_string(),
            key: key::FORMAT.into(),
            reason: format!(
                "missing: not a file recur wrote as `{format}` (a bare nn.LSTM/GRU/RNN \
                 state_dict loads with recur::io::load_state_dict)"
            ),
        }),
    }
}

/// The configuration in `recur.model`, validated.
pub(crate) fn config_from_metadata(
    file: &str,
    meta: &HashMap<String, String>,
) -> Result<SequenceModelConfig> {
    let json = meta.get(key::MODEL).ok_or_else(|| Error::Metadata {
        file: file.to_string(),
        key: key::MODEL.into(),
        reason: "missing".into(),
    })?;
    model_config_from_json(json).map_err(|e| Error::Metadata {
        file: file.to_string(),
        key: key::MODEL.into(),
        reason: match e {
            Error::Config { what, reason } => format!("{what}: {reason}"),
            other => other.to_string(),
        },
    })
}

/// The configuration's flat layout; sizes that overflow are a metadata error, and so is a
/// configuration with more tensors than the file's `tensors_in_file` (checked first: the
/// layout holds an entry per tensor, so a configuration of millions of layers would
/// otherwise allocate gigabytes before a tensor is found missing).
pub(crate) fn layout_of(
    file: &str,
    config: &SequenceModelConfig,
    tensors_in_file: usize,
) -> Result<Vec<ModelParam>> {
    let bad = |reason: String| Error::Metadata {
        file: file.to_string(),
        key: key::MODEL.into(),
        reason,
    };
    let want = config.tensor_count();
    if want > tensors_in_file {
        let r = &config.rnn;
        return Err(bad(format!(
            "the configuration ({} layers, {} directions) has {want} tensors, the file holds \
             only {tensors_in_file}",
            r.num_layers,
            r.direction.count()
        )));
    }
    config.param_layout().map_err(|e| bad(e.to_string()))
}

/// Every tensor under `prefix` must be one of `names` (given without the prefix) and every
/// one of `names` must be there.
pub(crate) fn check_names(
    file: &str,
    parsed: &Parsed<'_>,
    prefix: &str,
    names: &[&str],
    what: &str,
) -> Result<()> {
    let mut present: Vec<String> = parsed
        .tensors
        .names()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    present.sort();
    for n in &present {
        if !names.contains(&&n[prefix.len()..]) {
            return Err(Error::UnexpectedTensor {
                file: file.to_string(),
                name: n.clone(),
                reason: format!("{what} has no such tensor"),
            });
        }
    }
    for n in names {
        let full = format!("{prefix}{n}");
        if !present.contains(&full) {
            return Err(Error::MissingTensor {
                file: file.to_string(),
                name: full,
                reason: format!("{what} needs it"),
            });
        }
    }
    Ok(())
}

/// Reads every tensor of `layout` (named `{prefix}{name}`) into one flat buffer, checking
/// every shape and dtype before allocating it (so the allocation is bounded by the file).
pub(crate) fn read_params<T: Float>(
    file: &str,
    parsed: &Parsed<'_>,
    prefix: &str,
    layout: &[ModelParam],
) -> Result<Vec<T>> {
    for p in layout {
        let name = format!("{prefix}{}", p.name);
        let view = tensor(file, parsed, &name)?;
        check_shape(file, &name, &p.shape, view.shape())?;
        check_dtype(file, &name, view.dtype())?;
    }
    let total = layout.last().map_or(0, |p| p.offset + p.len);
    let mut params = vec![T::zero(); total];
    for p in layout {
        let name = format!("{prefix}{}", p.name);
        decode(
            file,
            &name,
            &tensor(file, parsed, &name)?,
            &mut params[p.offset..p.offset + p.len],
        )?;
    }
    Ok(params)
}

/// Reads one tensor of the given shape into `out` (its element count long).
pub(crate) fn read_tensor<T: Float>(
    file: &str,
    parsed: &Parsed<'_>,
    name: &str,
    shape: &[usize],
    out: &mut [T],
) -> Result<()> {
    let view = tensor(file, parsed, name)?;
    check_shape(file, name, shape, view.shape())?;
    decode(file, name, &view, out)
}

fn tensor<'a>(
    file: &str,
    parsed: &Parsed<'a>,
    name: &str,
) -> Result<safetensors::tensor::TensorView<'a>> {
    parsed
        .tensors
        .tensor(name)
        .map_err(|_| Error::MissingTensor {
            file: file.to_string(),
            name: name.to_string(),
            reason: "the configuration needs it".into(),
        })
}

fn check_shape(file: &str, name: &str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected != got {
        return Err(Error::TensorShape {
            file: file.to_string(),
            name: name.to_string(),
            expected: Shape(expected.to_vec()).to_string(),
            got: Shape(got.to_vec()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::{
        CellKind, GruCell, InputForget, Leak, LstmActivations, LstmCell, Peepholes, ResetPlacement,
        RnnCell,
    };
    use crate::kernel::activation::Activation;
    use crate::layer::{BatchLayout, Direction};
    use crate::model::Input;

    fn lstm_lm() -> SequenceModelConfig {
        SequenceModelConfig {
            input: Input::Embedding(EmbeddingConfig {
                num_embeddings: 7,
                embedding_dim: 4,
                padding_idx: Some(0),
            }),
            rnn: RecurrentConfig {
                input_size: 4,
                hidden_size: 4,
                num_layers: 2,
                dropout: 0.25,
                ..Default::default()
            },
            out_features: 7,
            input_dropout: 0.5,
            output_dropout: 0.125,
            tie_weights: TieWeights::Tied,
            ..Default::default()
        }
    }

    #[test]
    fn every_configuration_round_trips_through_json() {
        let mut configs = vec![lstm_lm()];
        let mut c = lstm_lm();
        c.tie_weights = TieWeights::Untied;
        c.input = Input::Dense;
        c.output = OutputForm::Last;
        c.head_bias = Bias::Disabled;
        c.rnn.cell = CellKind::Lstm(LstmCell {
            peepholes: Peepholes {
                input: true,
                forget: false,
                output: true,
            },
            proj_size: 2,
            input_forget: InputForget::Coupled,
            activations: LstmActivations {
                gate: Activation::HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                },
                cell: Activation::LeakyRelu { alpha: 0.1 },
                hidden: Activation::Softsign,
            },
            clip: Some(2.5),
            layer_norm: false,
        });
        c.rnn.recurrent_dropout = 0.125;
        c.rnn.direction = Direction::Bidirectional;
        c.rnn.layout = BatchLayout::BatchFirst;
        c.rnn.bias = Bias::Disabled;
        configs.push(c.clone());
        c.rnn.cell = CellKind::Gru(GruCell {
            reset: ResetPlacement::BeforeMatmul,
            ..Default::default()
        });
        c.rnn.direction = Direction::Reverse;
        configs.push(c.clone());
        c.rnn.cell = CellKind::Rnn(RnnCell {
            nonlinearity: Activation::Relu,
            leak: Leak::PerLayer(vec![0.5, 0.1 + 0.2]),
            clip: None,
        });
        configs.push(c.clone());
        c.rnn.cell = CellKind::Rnn(RnnCell {
            nonlinearity: Activation::ScaledTanh {
                alpha: 1.5,
                beta: 0.5,
            },
            leak: Leak::Uniform(0.3),
            clip: Some(3.0),
        });
        configs.push(c);
        for c in configs {
            let json = model_config_to_json(&c);
            assert_eq!(model_config_from_json(&json).unwrap(), c, "{json}");
            assert_eq!(config_difference(&c, &c), None);
            // and a whole model of it through a file
            let model = SequenceModel::<f64>::new(c.clone(), 9).unwrap();
            let back = load_model_bytes::<f64>(&model_bytes(&model, SaveDtype::F64)).unwrap();
            assert_eq!(back.config(), &c);
            assert_eq!(back.params(), model.params());
        }
    }

    #[test]
    fn malformed_json_is_a_config_error() {
        let good = model_config_to_json(&lstm_lm());
        for bad in [
            String::new(),
            "{}".into(),
            "[1, 2]".into(),
            good.replace("\"out_features\":7", "\"out_features\":-7"),
            good.replace("\"out_features\":7", "\"out_features\":1e300"),
            good.replace("\"tanh\"", "\"swish\""),
            good.replace(
                "\"tanh\"",
                "{\"name\":\"tanh\",\"alpha\":1.0,\"beta\":null}",
            ),
            good.replace("\"num_layers\":2", "\"num_layers\":2,\"extra\":1"),
            good.replace("\"hidden_size\":4", "\"hidden_size\":0"),
            // validation runs: untieable shapes, out-of-range dropout, huge sizes
            good.replace("\"out_features\":7", "\"out_features\":8"),
            good.replace("\"input_dropout\":0.5", "\"input_dropout\":1.5"),
            good.replace(
                "\"num_embeddings\":7",
                "\"num_embeddings\":18446744073709551615",
            ),
        ] {
            assert!(
                matches!(model_config_from_json(&bad), Err(Error::Config { .. })),
                "{bad}"
            );
        }
    }

    /// A file of a recur without clip and recurrent dropout reads as "none" and 0.
    #[test]
    fn older_json_without_clip_reads() {
        let json = model_config_to_json(&lstm_lm());
        assert!(json.contains("\"clip\":null") && json.contains("\"recurrent_dropout\":0.0"));
        let old = json
            .replace(",\"clip\":null", "")
            .replace("\"recurrent_dropout\":0.0,", "");
        assert_eq!(model_config_from_json(&old).unwrap(), lstm_lm());
    }

    #[test]
    fn differences_name_the_first_field() {
        let a = lstm_lm();
        let mut b = a.clone();
        b.rnn.hidden_size = 5;
        assert_eq!(
            config_difference(&a, &b).unwrap(),
            "rnn.hidden_size: the file has 4, expected 5"
        );
    }
}
