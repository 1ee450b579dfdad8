//! `recur convert IN OUT`: a recurrent stack between PyTorch state_dict safetensors and ONNX.
//!
//! ```text
//! safetensors -> onnx          load_state_dict, then onnx::export_recurrent
//! onnx -> safetensors          onnx::import_recurrent (checked on a probe input), then save_state_dict
//! safetensors -> safetensors   re-prefix or re-type
//! onnx -> onnx                 import, then export (recur's own graph layout)
//! ```
//! Formats come from the extensions (`.safetensors`, `.onnx`); `--from` / `--to` override.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use recur::io::{LoadOptions, SaveDtype, SaveOptions, load_state_dict, save_state_dict};
use recur::onnx::{ExportOptions, OnnxModel, export_recurrent, import_recurrent};
use recur::{Activation, BatchLayout, InputForget, Recurrent, ResetPlacement};

/// A model file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelFormat {
    /// PyTorch nn.LSTM / nn.GRU / nn.RNN state_dict as safetensors (.safetensors)
    Safetensors,
    /// ONNX model (.onnx)
    Onnx,
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
    /// safetensors in: read only tensors under this name prefix (e.g. "rnn.")
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// safetensors in: an RNN's nonlinearity, when the file has no recur metadata
    #[arg(long, value_enum)]
    pub rnn_nonlinearity: Option<Nonlinearity>,
    /// safetensors in: a GRU's reset placement (PyTorch: after)
    #[arg(long, value_enum)]
    pub gru_reset: Option<Reset>,
    /// safetensors in: an LSTM with a coupled input-forget gate (f = 1 - i)
    #[arg(long)]
    pub coupled: bool,
    /// safetensors in: the stack is batch-first (PyTorch batch_first=True)
    #[arg(long)]
    pub batch_first: bool,
    /// onnx out: add an INT32 sequence_lens input [batch]
    #[arg(long)]
    pub sequence_lens: bool,
    /// onnx out: add h0 (and c0) inputs [num_layers * D, batch, hidden_size]
    #[arg(long)]
    pub initial_state: bool,
    /// safetensors out: prefix put before every name (e.g. "rnn.")
    #[arg(long, default_value = "")]
    pub out_prefix: String,
    /// safetensors out: element type
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

fn format_of(path: &Path, given: Option<ModelFormat>, which: &str) -> Result<ModelFormat> {
    if let Some(f) = given {
        return Ok(f);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Ok(ModelFormat::Safetensors),
        Some("onnx") => Ok(ModelFormat::Onnx),
        _ => bail!(
            "{}: cannot tell the format from the extension; name it with --{which} safetensors|onnx",
            path.display()
        ),
    }
}

pub fn run(args: &ConvertArgs) -> Result<()> {
    let from = format_of(&args.input, args.from, "from")?;
    let to = format_of(&args.output, args.to, "to")?;
    let model: Recurrent<f32> = match from {
        ModelFormat::Safetensors => {
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
            load_state_dict(&args.input, &options)?
        }
        ModelFormat::Onnx => {
            let onnx = OnnxModel::load(&args.input)?;
            import_recurrent(&onnx).with_context(|| format!("{}", args.input.display()))?
        }
    };
    match to {
        ModelFormat::Onnx => {
            let bytes = export_recurrent(
                &model,
                &ExportOptions {
                    sequence_lens: args.sequence_lens,
                    initial_state: args.initial_state,
                },
            )?;
            std::fs::write(&args.output, bytes)
                .with_context(|| format!("{}: cannot write", args.output.display()))?;
        }
        ModelFormat::Safetensors => save_state_dict(
            &model,
            &args.output,
            &SaveOptions {
                prefix: args.out_prefix.clone(),
                dtype: match args.dtype {
                    OutDtype::F32 => SaveDtype::F32,
                    OutDtype::F64 => SaveDtype::F64,
                },
            },
        )?,
    }
    let c = model.config();
    println!(
        "{} ({}, {} layer(s), {:?}, input_size {}, hidden_size {}) -> {}",
        args.input.display(),
        c.cell.name(),
        c.num_layers,
        c.direction,
        c.input_size,
        c.hidden_size,
        args.output.display()
    );
    Ok(())
}
