//! Parity with PyTorch (`fixtures/pytorch`, from nn.LSTM / nn.GRU / nn.RNN in float64) and
//! with the independent references of the cells PyTorch lacks (`fixtures/reference`: explicit
//! torch ops whose forward was checked against onnxruntime; among them ONNX's other
//! activations and its gate pre-activation clip). Outputs, final states and every
//! gradient. The fixtures and their generator: scripts/gen_fixtures.py (the layer-normalised
//! cells': scripts/gen_layer_norm_fixtures.py).

mod common;

use common::{Fixture, max_rel_err};
use recur::{Call, OutputGrad, Tensor};

/// Both sides compute in float64; the only differences are summation orders.
const PARITY_TOL: f64 = 1e-10;

fn check(fx: &Fixture) -> Vec<String> {
    let model = fx.model();
    let lstm = fx.has("c0");
    let state = fx.state();
    let lengths = fx.lengths();
    let (out, tape) = model
        .forward_train(
            &fx.tensor("input"),
            Call {
                state: Some(state.view()),
                lengths: lengths.as_deref(),
                seed: Some(0),
            },
        )
        .unwrap();
    let mut report = Vec::new();
    let mut cmp = |what: &str, got: &[f64], want: &str| {
        let e = max_rel_err(got, fx.tensor(want).data());
        if e.is_nan() || e > PARITY_TOL {
            report.push(format!("{}: {what}: max rel err {e:e}", fx.name));
        }
    };
    cmp("output", out.output.data(), "output");
    cmp("h_n", out.state.h.data(), "h_n");
    if lstm {
        cmp("c_n", out.state.c.as_ref().unwrap().data(), "c_n");
    }
    // Inference gives the same numbers as training.
    let inf = fx.forward(&model);
    assert_eq!(inf, out, "{}: forward and forward_train differ", fx.name);

    let (gy, gh) = (fx.tensor("grad_output"), fx.tensor("grad_h_n"));
    let gc = lstm.then(|| fx.tensor("grad_c_n"));
    let mut grads = vec![0.0; model.params().len()];
    let dx = model
        .backward(
            &tape,
            OutputGrad {
                output: Some(gy.view()),
                h: Some(gh.view()),
                c: gc.as_ref().map(Tensor::view),
            },
            &mut grads,
        )
        .unwrap();
    cmp("grad input", dx.input.data(), "grad.input");
    cmp("grad h0", dx.state.h.data(), "grad.h0");
    if lstm {
        cmp("grad c0", dx.state.c.as_ref().unwrap().data(), "grad.c0");
    }
    for e in model.layout().entries() {
        cmp(
            &format!("grad {}", e.name),
            &grads[e.offset..e.offset + e.len],
            &format!("grad.{}", e.name),
        );
    }
    report
}

fn check_folder(folder: &str) {
    let fixtures = common::load_all(folder);
    let mut failures = Vec::new();
    for fx in &fixtures {
        failures.extend(check(fx));
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{folder}: {} fixtures match", fixtures.len());
}

#[test]
fn pytorch_parity_outputs_states_and_every_gradient() {
    check_folder("pytorch");
}

/// The layer-normalised LSTM against a torch.nn.Module written with nn.LayerNorm
/// (scripts/gen_layer_norm_fixtures.py).
#[test]
fn layer_norm_parity_with_a_torch_module() {
    check_folder("layer_norm");
}

#[test]
fn reference_parity_peepholes_cifg_reset_before_gru_leaky_rnn_onnx_activations_clip() {
    check_folder("reference");
}
