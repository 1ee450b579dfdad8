//! `recur convert IN OUT`: models between PyTorch state_dict safetensors, recur's whole-model
//! files and checkpoints, and ONNX.
//!
//! ```text
//! state-dict -> onnx          load_state_dict, then onnx::export_recurrent
//! model | checkpoint -> onnx  load_model (a checkpoint's model), then onnx::export_sequence_model
//! onnx -> state-dict          onnx::import_recurrent (checked on a probe input), then save_state_dict
//! model | checkpoint -> model save_model (a checkpoint's model alone)
//! model | checkpoint -> state-dict  the recurrent stack's state_dict
//! state-dict -> state-dict    re-prefix or re-type;  onnx -> onnx: import, then export
//! ```
//! Formats come from the extensions (`.onnx`; `.safetensors` is read as whatever its
//! `recur.format` metadata says, a state_dict when it has none, and written as a whole model
//! when the input was one, else as a state_dict); `--from` / `--to` override.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args, ValueEnum};
use recur::io::{
    CHECKPOINT_FORMAT, LoadOptions, MODEL_FORMAT, SaveDtype, SaveOptions, load_checkpoint,
    load_model_extra, load_state_dict, save_model_extra, save_state_dict,
};

use crate::train::checkpoint::PREDICT_KEYS;
use recur::model::SequenceModel;
use recur::{Activation, BatchLayout, InputForget, Recurrent, ResetPlacement};

/// A model file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelFormat {
    /// PyTorch nn.LSTM / nn.GRU / nn.RNN state_dict as safetensors (a recurrent stack)
    StateDict,
    /// recur's whole-model safetensors file (embedding, stack, head)
    Model,
    /// recur's training checkpoint (read only: its model)
    Checkpoint,
    /// ONNX model (.onnx)
    Onnx,
}

/// What was read.
enum Loaded {
    Stack(Box<Recurrent<f32>>),
    /// with the strings predicting needs (`kind`, `classes`, `vocab`, `forecast`), carried
    /// from a checkpoint or model file into model files and ONNX `metadata_props`
    Model(Box<SequenceModel<f32>>, Vec<(String, String)>),
}

/// Settings of `recur convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The model to read
    pub input: std::path::PathBuf,
    /// The file to write
    pub output: std::path::PathBuf,
    /// Format of IN (default: from its extension)
    #[arg(long, value_enum)]
    pub from: Option<ModelFormat>,
    /// Format of OUT (default: from its extension)
    #[arg(long, value_enum)]
    pub to: Option<ModelFormat>,
    /// state-dict in: read only tensors under this name prefix (e.g. "rnn.")
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// state-dict in: an RNN's nonlinearity, when the file has no recur metadata
    #[arg(long, value_enum)]
    pub rnn_nonlinearity: Option<Nonlinearity>,
    /// state-dict in: a GRU's reset placement (PyTorch: after)
    #[arg(long, value_enum)]
    pub gru_reset: Option<Reset>,
    /// state-dict in: an LSTM with a coupled input-forget gate (f = 1 - i)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub coupled: bool,
    /// state-dict in: the stack is batch-first (PyTorch batch_first=True)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub batch_first: bool,
    /// onnx out: add an INT32 sequence_lens input [batch]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub sequence_lens: bool,
    /// onnx out: add h0 (and c0) inputs [num_layers * D, batch, hidden_size]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = ArgAction::Set)]
    pub initial_state: bool,
    /// state-dict out: prefix put before every name (e.g. "rnn.")
    #[arg(long, default_value = "")]
    pub out_prefix: String,
    /// safetensors out (state-dict or model): element type
    #[arg(long, value_enum, default_value_t = OutDtype::F32)]
    pub dtype: OutDtype,
}

/// RNN nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Nonlinearity {
    Tanh,
    Relu,
}

/// GRU reset placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Reset {
    /// r multiplies (W_hn h + b_hn): PyTorch, ONNX linear_before_reset=1
    After,
    /// r multiplies h before W_hn: Cho et al. 2014, ONNX linear_before_reset=0
    Before,
}

/// Element type of a written safetensors file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutDtype {
    F32,
    F64,
}

/// The `recur.format` metadata of a safetensors file, if it has one (read from its JSON
/// header, bounded as safetensors bounds it).
fn recur_format(path: &Path) -> Result<Option<String>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return Ok(None);
    }
    let n = u64::from_le_bytes(len);
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    if n > 100_000_000 || n > size.saturating_sub(8) {
        return Ok(None); // not safetensors: the loader will say so precisely
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)?;
    let json: serde_json::Value = match serde_json::from_slice(&header) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    Ok(json
        .get("__metadata__")
        .and_then(|m| m.get("recur.format"))
        .and_then(|f| f.as_str())
        .map(str::to_string))
}

fn input_format(path: &Path, given: Option<ModelFormat>) -> Result<ModelFormat> {
    if let Some(f) = given {
        return Ok(f);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("onnx") => Ok(ModelFormat::Onnx),
        Some("safetensors") => Ok(match recur_format(path)?.as_deref() {
            Some(MODEL_FORMAT) => ModelFormat::Model,
            Some(CHECKPOINT_FORMAT) => ModelFormat::Checkpoint,
            _ => ModelFormat::StateDict,
        }),
        // PyTorch's own files: the state_dict loader says what they are and how to save one
        Some("pt" | "pth" | "pkl" | "bin") => Ok(ModelFormat::StateDict),
        _ => bail!(
            "{}: cannot tell the format from the extension; name it with --from state-dict|model|checkpoint|onnx",
            path.display()
        ),
    }
}

fn output_format(path: &Path, given: Option<ModelFormat>, whole: bool) -> Result<ModelFormat> {
    if let Some(f) = given {
        return Ok(f);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("onnx") => Ok(ModelFormat::Onnx),
        Some("safetensors") if whole => Ok(ModelFormat::Model),
        Some("safetensors") => Ok(ModelFormat::StateDict),
        _ => bail!(
            "{}: cannot tell the format from the extension; name it with --to state-dict|model|onnx",
            path.display()
        ),
    }
}

/// ONNX in and out, where the `onnx` feature (on by default) built them.
#[cfg(feature = "onnx")]
mod onnx_io {
    use std::path::Path;

    use anyhow::{Context, Result};
    use recur::Recurrent;
    use recur::onnx::{
        ExportOptions, OnnxModel, export_recurrent, export_sequence_model, import_recurrent,
        with_metadata,
    };

    use crate::train::checkpoint::ONNX_META_PREFIX;

    use super::{ConvertArgs, Loaded};

    pub fn import(path: &Path) -> Result<Recurrent<f32>> {
        let onnx = OnnxModel::load(path)?;
        import_recurrent(&onnx).with_context(|| format!("{}", path.display()))
    }

    pub fn export(loaded: &Loaded, args: &ConvertArgs) -> Result<Vec<u8>> {
        let options = ExportOptions {
            sequence_lens: args.sequence_lens,
            initial_state: args.initial_state,
        };
        Ok(match loaded {
            Loaded::Stack(s) => export_recurrent(s, &options)?,
            Loaded::Model(m, extra) => {
                let props: Vec<(String, &str)> = extra
                    .iter()
                    .map(|(k, v)| (format!("{ONNX_META_PREFIX}{k}"), v.as_str()))
                    .collect();
                let props: Vec<(&str, &str)> =
                    props.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                with_metadata(&export_sequence_model(m, &options)?, &props)?
            }
        })
    }
}

/// Without the `onnx` feature: ONNX files are refused with a clear error.
#[cfg(not(feature = "onnx"))]
mod onnx_io {
    use std::path::Path;

    use anyhow::{Result, bail};
    use recur::Recurrent;

    use super::{ConvertArgs, Loaded};

    const NO_ONNX: &str = "ONNX files need recur built with the `onnx` feature (on by default)";

    pub fn import(path: &Path) -> Result<Recurrent<f32>> {
        bail!("{}: {NO_ONNX}", path.display())
    }

    pub fn export(_loaded: &Loaded, args: &ConvertArgs) -> Result<Vec<u8>> {
        bail!("{}: {NO_ONNX}", args.output.display())
    }
}

/// The strings of a checkpoint or model file that predicting needs.
fn predict_meta(extra: std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    extra
        .into_iter()
        .filter(|(k, _)| PREDICT_KEYS.contains(&k.as_str()))
        .collect()
}

fn read(args: &ConvertArgs, from: ModelFormat) -> Result<Loaded> {
    Ok(match from {
        ModelFormat::StateDict => {
            let options = LoadOptions {
                prefix: args.prefix.clone(),
                rnn_nonlinearity: args.rnn_nonlinearity.map(|n| match n {
                    Nonlinearity::Tanh => Activation::Tanh,
                    Nonlinearity::Relu => Activation::Relu,
                }),
                gru_reset: args.gru_reset.map(|r| match r {
                    Reset::After => ResetPlacement::AfterMatmul,
                    Reset::Before => ResetPlacement::BeforeMatmul,
                }),
                input_forget: args.coupled.then_some(InputForget::Coupled),
                layout: args.batch_first.then_some(BatchLayout::BatchFirst),
                ..Default::default()
            };
            Loaded::Stack(Box::new(load_state_dict(&args.input, &options)?))
        }
        ModelFormat::Model => {
            let (model, extra) = load_model_extra(&args.input)?;
            Loaded::Model(Box::new(model), predict_meta(extra))
        }
        ModelFormat::Checkpoint => {
            let ck = load_checkpoint::<f32>(&args.input, None)?;
            Loaded::Model(Box::new(ck.model), predict_meta(ck.extra_metadata))
        }
        ModelFormat::Onnx => Loaded::Stack(Box::new(onnx_io::import(&args.input)?)),
    })
}

pub fn run(args: &ConvertArgs) -> Result<()> {
    let from = input_format(&args.input, args.from)?;
    let loaded = read(args, from)?;
    let to = output_format(&args.output, args.to, matches!(loaded, Loaded::Model(..)))?;
    let save = SaveOptions {
        prefix: args.out_prefix.clone(),
        dtype: match args.dtype {
            OutDtype::F32 => SaveDtype::F32,
            OutDtype::F64 => SaveDtype::F64,
        },
    };
    let write = |bytes: Vec<u8>| {
        std::fs::write(&args.output, bytes)
            .with_context(|| format!("{}: cannot write", args.output.display()))
    };
    let stack = match &loaded {
        Loaded::Stack(s) => s,
        Loaded::Model(m, _) => m.rnn(),
    };
    match (to, &loaded) {
        (ModelFormat::Onnx, _) => write(onnx_io::export(&loaded, args)?)?,
        (ModelFormat::StateDict, _) => save_state_dict(stack, &args.output, &save)?,
        (ModelFormat::Model, Loaded::Model(m, extra)) => {
            let extra: Vec<(&str, &str)> = extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            save_model_extra(m, &args.output, save.dtype, &extra)?
        }
        (ModelFormat::Model, Loaded::Stack(_)) => bail!(
            "{}: a recurrent stack has no embedding or head to make a whole model of; write a state-dict or onnx",
            args.input.display()
        ),
        (ModelFormat::Checkpoint, _) => bail!(
            "--to checkpoint: checkpoints are written by training (recur train), not converted"
        ),
    }
    let c = stack.config();
    println!(
        "{} ({}{}, {} layer(s), {:?}, input_size {}, hidden_size {}) -> {}",
        args.input.display(),
        if matches!(loaded, Loaded::Model(..)) {
            "sequence model, "
        } else {
            ""
        },
        c.cell.name(),
        c.num_layers,
        c.direction,
        c.input_size,
        c.hidden_size,
        args.output.display()
    );
    Ok(())
}
