//! Load an `nn.LSTM` state_dict saved by PyTorch (`safetensors.torch.save_file(
//! lstm.state_dict(), path)`) and reproduce PyTorch's outputs.
//!
//! The file read here is one of the committed parity fixtures: a 2-layer bidirectional
//! `nn.LSTM(3, 4)` state_dict in float64, with PyTorch's input, initial state and output
//! stored beside the weights (`load_state_dict` skips names that are not parameters unless
//! `LoadOptions::strict` is set). Pass another file to load your own.
//!
//! ```sh
//! cargo run --release -p recur --example load_pytorch [-- FILE.safetensors]
//! ```

use std::path::PathBuf;

use recur::io::{LoadOptions, load_state_dict};
use recur::{Call, State, Tensor};
use safetensors::{Dtype, SafeTensors};

/// A float64 tensor of the file, by name.
fn tensor(file: &SafeTensors<'_>, name: &str) -> Option<Tensor<f64>> {
    let view = file.tensor(name).ok()?;
    assert_eq!(view.dtype(), Dtype::F64, "{name}: the fixtures are float64");
    let data = view
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Tensor::new(data, view.shape()).ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/pytorch/lstm_2layer_bidir.safetensors")
        });

    // Cell, sizes, layers, directions, biases and projection come from the names and shapes.
    let lstm = load_state_dict::<f64>(&path, &LoadOptions::default())?;
    let cfg = lstm.config();
    println!(
        "{}: {}, input_size {}, hidden_size {}, {} layer(s), {:?}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        cfg.cell.name(),
        cfg.input_size,
        cfg.hidden_size,
        cfg.num_layers,
        cfg.direction
    );
    // Every parameter under its PyTorch name, with its shape.
    for entry in lstm.layout().entries() {
        println!("  {:<24} {:?}", entry.name, entry.shape);
    }
    let w = lstm
        .param("weight_hh_l0")
        .expect("an LSTM has weight_hh_l0");
    println!("weight_hh_l0[0..3] = {:?}", &w[..3]);

    // The parity fixtures also hold PyTorch's input, initial state and output.
    let bytes = std::fs::read(&path)?;
    let file = SafeTensors::deserialize(&bytes)?;
    let (Some(x), Some(want)) = (tensor(&file, "input"), tensor(&file, "output")) else {
        println!("(no `input` / `output` tensors in this file: nothing to compare)");
        return Ok(());
    };
    let state = tensor(&file, "h0").map(|h| State {
        h,
        c: tensor(&file, "c0"),
    });
    let out = lstm.forward(&x, Call::new().state(state.as_ref().map(State::view)))?;
    let max_diff = out
        .output
        .data()
        .iter()
        .zip(want.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    println!(
        "output {:?}: largest difference from PyTorch's {max_diff:e}",
        out.output.shape()
    );
    assert!(max_diff < 1e-10, "recur and PyTorch disagree");
    Ok(())
}
