//! ONNX export → load → run gives recur's own outputs, for every cell and option ONNX can
//! express (stacked, bidirectional, reverse, ragged lengths, initial states, batch-first,
//! peepholes, coupled gate, both GRU forms, ReLU RNN, no bias) and for whole sequence
//! models; the imported stack equals the exported one; what ONNX cannot express is refused.

#![cfg(feature = "onnx")]

use recur::cell::{GruActivations, LstmActivations};
use recur::model::{
    EmbeddingConfig, Input, ModelInput, OutputForm, SequenceModel, SequenceModelConfig, TieWeights,
};
use recur::onnx::{
    ExportOptions, OnnxModel, Value, export_recurrent, export_sequence_model, import_recurrent,
};
use recur::{
    Activation, BatchLayout, Bias, Call, CellKind, Direction, Error, GruCell, InputForget, Leak,
    LstmCell, Peepholes, Recurrent, RecurrentConfig, ResetPlacement, RnnCell, State, Tensor,
};

/// Exported graphs run the same kernels one direction at a time; the only difference from
/// the whole-stack call is the matrix-product kernel's blocking for other operand sizes
/// (measured ≤ 1.2e-7 relative in f32 for the stepper; outputs here are O(1)).
const ROUND_TRIP_TOL: f32 = 1e-6;

const T: usize = 5;
const B: usize = 3;
const LENGTHS: [usize; B] = [5, 2, 4];

fn values(n: usize, seed: u64) -> Vec<f32> {
    // a small deterministic generator, enough for test inputs
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn configs() -> Vec<(&'static str, RecurrentConfig)> {
    let base = RecurrentConfig {
        input_size: 4,
        hidden_size: 6,
        ..Default::default()
    };
    vec![
        (
            "lstm 2-layer bidirectional",
            RecurrentConfig {
                num_layers: 2,
                direction: Direction::Bidirectional,
                ..base.clone()
            },
        ),
        (
            "lstm reverse batch-first no bias",
            RecurrentConfig {
                direction: Direction::Reverse,
                layout: BatchLayout::BatchFirst,
                bias: Bias::Disabled,
                ..base.clone()
            },
        ),
        (
            "lstm peepholes i, o",
            RecurrentConfig {
                cell: CellKind::Lstm(LstmCell {
                    peepholes: Peepholes {
                        input: true,
                        forget: false,
                        output: true,
                    },
                    ..Default::default()
                }),
                num_layers: 2,
                ..base.clone()
            },
        ),
        (
            "lstm all peepholes bidirectional",
            RecurrentConfig {
                cell: CellKind::Lstm(LstmCell {
                    peepholes: Peepholes::ALL,
                    ..Default::default()
                }),
                direction: Direction::Bidirectional,
                ..base.clone()
            },
        ),
        (
            "lstm coupled",
            RecurrentConfig {
                cell: CellKind::Lstm(LstmCell {
                    input_forget: InputForget::Coupled,
                    ..Default::default()
                }),
                ..base.clone()
            },
        ),
        (
            "gru reset after, 2 layers",
            RecurrentConfig {
                cell: CellKind::gru(),
                num_layers: 2,
                ..base.clone()
            },
        ),
        (
            "gru reset before, bidirectional",
            RecurrentConfig {
                cell: CellKind::Gru(GruCell {
                    reset: ResetPlacement::BeforeMatmul,
                    ..Default::default()
                }),
                direction: Direction::Bidirectional,
                ..base.clone()
            },
        ),
        (
            "rnn relu 3 layers",
            RecurrentConfig {
                cell: CellKind::rnn_relu(),
                num_layers: 3,
                ..base.clone()
            },
        ),
        (
            // parameters exactly representable in float32, as ONNX stores them
            "lstm onnx activations and clip, bidirectional",
            RecurrentConfig {
                cell: CellKind::Lstm(LstmCell {
                    peepholes: Peepholes::ALL,
                    activations: LstmActivations {
                        gate: Activation::HardSigmoid {
                            alpha: 0.25,
                            beta: 0.5,
                        },
                        cell: Activation::Softsign,
                        hidden: Activation::ScaledTanh {
                            alpha: 1.5,
                            beta: 0.75,
                        },
                    },
                    clip: Some(0.75),
                    ..Default::default()
                }),
                direction: Direction::Bidirectional,
                ..base.clone()
            },
        ),
        (
            "gru leaky-relu candidate, clip, 2 layers",
            RecurrentConfig {
                cell: CellKind::Gru(GruCell {
                    activations: GruActivations {
                        gate: Activation::Sigmoid,
                        candidate: Activation::LeakyRelu { alpha: 0.125 },
                    },
                    clip: Some(1.5),
                    ..Default::default()
                }),
                num_layers: 2,
                ..base.clone()
            },
        ),
        (
            "rnn elu reverse, clip",
            RecurrentConfig {
                cell: CellKind::Rnn(RnnCell {
                    nonlinearity: Activation::Elu { alpha: 0.5 },
                    clip: Some(0.5),
                    ..Default::default()
                }),
                direction: Direction::Reverse,
                ..base.clone()
            },
        ),
        (
            "rnn tanh bidirectional batch-first",
            RecurrentConfig {
                cell: CellKind::rnn_tanh(),
                direction: Direction::Bidirectional,
                layout: BatchLayout::BatchFirst,
                ..base
            },
        ),
    ]
}

fn input_for(cfg: &RecurrentConfig, seed: u64) -> Tensor<f32> {
    let shape = match cfg.layout {
        BatchLayout::SeqFirst => [T, B, cfg.input_size],
        BatchLayout::BatchFirst => [B, T, cfg.input_size],
    };
    Tensor::new(values(T * B * cfg.input_size, seed), &shape).unwrap()
}

fn state_for(cfg: &RecurrentConfig, seed: u64) -> State<f32> {
    let ld = cfg.num_layers * cfg.direction.count();
    let n = ld * B * cfg.hidden_size;
    State {
        h: Tensor::new(values(n, seed), &[ld, B, cfg.hidden_size]).unwrap(),
        c: cfg
            .cell
            .has_cell_state()
            .then(|| Tensor::new(values(n, seed + 1), &[ld, B, cfg.hidden_size]).unwrap()),
    }
}

/// Runs an exported stack through the ONNX runner with lengths and initial states.
fn run_exported(
    bytes: &[u8],
    x: &Tensor<f32>,
    state: Option<&State<f32>>,
    lengths: bool,
) -> Vec<(String, Value)> {
    let model = OnnxModel::from_bytes("exported", bytes).unwrap();
    let mut inputs = vec![("input", Value::f32(x.data().to_vec(), x.shape()).unwrap())];
    if lengths {
        let l: Vec<i32> = LENGTHS.iter().map(|&l| l as i32).collect();
        inputs.push(("sequence_lens", Value::i32(l, &[B]).unwrap()));
    }
    if let Some(s) = state {
        inputs.push(("h0", Value::f32(s.h.data().to_vec(), s.h.shape()).unwrap()));
        if let Some(c) = &s.c {
            inputs.push(("c0", Value::f32(c.data().to_vec(), c.shape()).unwrap()));
        }
    }
    model.run(&inputs).unwrap()
}

#[test]
fn exported_stacks_give_recurs_outputs() {
    let mut worst = 0.0f32;
    for (k, (what, cfg)) in configs().into_iter().enumerate() {
        let model = Recurrent::<f32>::new(cfg.clone(), 100 + k as u64).unwrap();
        let x = input_for(&cfg, k as u64);
        let state = state_for(&cfg, 50 + k as u64);
        for (lengths, initial) in [(false, false), (true, true), (true, false)] {
            let options = ExportOptions {
                sequence_lens: lengths,
                initial_state: initial,
            };
            let bytes = export_recurrent(&model, &options).unwrap();
            let st = initial.then_some(&state);
            let want = model
                .forward(
                    &x,
                    Call {
                        state: st.map(State::view),
                        lengths: lengths.then_some(&LENGTHS[..]),
                        ..Call::new()
                    },
                )
                .unwrap();
            let got = run_exported(&bytes, &x, st, lengths);
            let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
            let expected_names: &[&str] = if cfg.cell.has_cell_state() {
                &["output", "h_n", "c_n"]
            } else {
                &["output", "h_n"]
            };
            assert_eq!(names, expected_names, "{what}");
            let mut pairs = vec![(&got[0].1, &want.output), (&got[1].1, &want.state.h)];
            if let Some(c) = &want.state.c {
                pairs.push((&got[2].1, c));
            }
            for (g, w) in pairs {
                assert_eq!(g.shape(), w.shape(), "{what}");
                let d = max_diff(g.as_f32().unwrap(), w.data());
                assert!(
                    d <= ROUND_TRIP_TOL,
                    "{what} (lengths {lengths}, h0 {initial}): {d}"
                );
                worst = worst.max(d);
            }
        }
    }
    eprintln!("worst export round-trip difference: {worst:.2e}");
}

#[test]
fn imported_stacks_equal_the_exported_ones() {
    for (k, (what, cfg)) in configs().into_iter().enumerate() {
        let model = Recurrent::<f32>::new(cfg.clone(), 200 + k as u64).unwrap();
        for options in [
            ExportOptions::default(),
            ExportOptions {
                sequence_lens: true,
                initial_state: true,
            },
        ] {
            let bytes = export_recurrent(&model, &options).unwrap();
            let back = import_recurrent(&OnnxModel::from_bytes("x", &bytes).unwrap()).unwrap();
            let x = input_for(&cfg, k as u64);
            let want = model.forward(&x, Call::new().lengths(&LENGTHS)).unwrap();
            let got = back.forward(&x, Call::new().lengths(&LENGTHS)).unwrap();
            assert_eq!(back.config().layout, cfg.layout, "{what}");
            assert_eq!(back.config().direction, cfg.direction, "{what}");
            assert_eq!(back.config().num_layers, cfg.num_layers, "{what}");
            let c = &cfg.cell;
            let partial_peepholes = matches!(c, CellKind::Lstm(l) if l.peepholes.any() && l.peepholes != Peepholes::ALL);
            if partial_peepholes {
                // ONNX has all three peepholes or none: the missing one comes back as zeros
                assert_eq!(got.output, want.output, "{what}");
            } else {
                assert_eq!(back.config(), model.config(), "{what}");
                assert_eq!(back.params(), model.params(), "{what}");
            }
        }
    }
}

#[test]
fn exported_sequence_models_give_recurs_outputs() {
    let embedded = SequenceModelConfig {
        input: Input::Embedding(EmbeddingConfig {
            num_embeddings: 11,
            embedding_dim: 4,
            padding_idx: None,
        }),
        rnn: RecurrentConfig {
            cell: CellKind::lstm(),
            input_size: 4,
            hidden_size: 6,
            num_layers: 2,
            ..Default::default()
        },
        output: OutputForm::EveryStep,
        out_features: 11,
        ..Default::default()
    };
    let dense_last = SequenceModelConfig {
        input: Input::Dense,
        rnn: RecurrentConfig {
            cell: CellKind::gru(),
            input_size: 4,
            hidden_size: 5,
            direction: Direction::Bidirectional,
            layout: BatchLayout::BatchFirst,
            ..Default::default()
        },
        output: OutputForm::Last,
        out_features: 3,
        ..Default::default()
    };
    let embedded_bf = SequenceModelConfig {
        rnn: RecurrentConfig {
            layout: BatchLayout::BatchFirst,
            ..embedded.rnn.clone()
        },
        head_bias: Bias::Disabled,
        ..embedded.clone()
    };
    // the head tied to the embedding table (embedding_dim = hidden_size)
    let tied = SequenceModelConfig {
        rnn: RecurrentConfig {
            input_size: 6,
            ..embedded.rnn.clone()
        },
        input: Input::Embedding(EmbeddingConfig {
            num_embeddings: 11,
            embedding_dim: 6,
            padding_idx: None,
        }),
        tie_weights: TieWeights::Tied,
        ..embedded.clone()
    };
    for (k, cfg) in [embedded, dense_last, embedded_bf, tied]
        .into_iter()
        .enumerate()
    {
        let model = SequenceModel::<f32>::new(cfg.clone(), 300 + k as u64).unwrap();
        let batch_first = cfg.rnn.layout == BatchLayout::BatchFirst;
        let ids: Vec<usize> = (0..T * B).map(|j| (j * 7 + k) % 11).collect();
        let x = input_for(&cfg.rnn, 9);
        let ids_shape = if batch_first { [B, T] } else { [T, B] };
        for lengths in [false, true] {
            let options = ExportOptions {
                sequence_lens: lengths,
                initial_state: false,
            };
            let bytes = export_sequence_model(&model, &options).unwrap();
            let onnx = OnnxModel::from_bytes("seq", &bytes).unwrap();
            let lens = lengths.then_some(&LENGTHS[..]);
            let (want, mut inputs) = match cfg.input {
                Input::Embedding(_) => (
                    model
                        .forward(
                            ModelInput::Ids {
                                ids: &ids,
                                shape: ids_shape,
                            },
                            Call {
                                lengths: lens,
                                ..Call::new()
                            },
                        )
                        .unwrap(),
                    vec![(
                        "ids",
                        Value::i64(ids.iter().map(|&i| i as i64).collect(), &ids_shape).unwrap(),
                    )],
                ),
                Input::Dense => (
                    model
                        .forward(
                            ModelInput::Features(x.view()),
                            Call {
                                lengths: lens,
                                ..Call::new()
                            },
                        )
                        .unwrap(),
                    vec![("input", Value::f32(x.data().to_vec(), x.shape()).unwrap())],
                ),
            };
            if lengths {
                let l: Vec<i32> = LENGTHS.iter().map(|&l| l as i32).collect();
                inputs.push(("sequence_lens", Value::i32(l, &[B]).unwrap()));
            }
            let got = onnx.run(&inputs).unwrap();
            assert_eq!(got[0].1.shape(), want.output.shape(), "model {k}");
            let d = max_diff(got[0].1.as_f32().unwrap(), want.output.data());
            assert!(d <= ROUND_TRIP_TOL, "model {k}, lengths {lengths}: {d}");
            let d = max_diff(got[1].1.as_f32().unwrap(), want.state.h.data());
            assert!(d <= ROUND_TRIP_TOL, "model {k} h_n: {d}");
        }
    }
}

#[test]
fn what_onnx_cannot_express_is_refused() {
    let projected = Recurrent::<f32>::new(
        RecurrentConfig {
            cell: CellKind::Lstm(LstmCell {
                proj_size: 2,
                ..Default::default()
            }),
            input_size: 3,
            hidden_size: 4,
            ..Default::default()
        },
        0,
    )
    .unwrap();
    let leaky = Recurrent::<f32>::new(
        RecurrentConfig {
            cell: CellKind::Rnn(RnnCell {
                nonlinearity: Activation::Tanh,
                leak: Leak::Uniform(0.5),
                ..Default::default()
            }),
            input_size: 3,
            hidden_size: 4,
            ..Default::default()
        },
        0,
    )
    .unwrap();
    for (what, m) in [("projection", projected), ("leaky", leaky)] {
        match export_recurrent(&m, &ExportOptions::default()) {
            Err(Error::Unsupported(msg)) => assert!(msg.contains(what), "{msg}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// A recurrent node's engine models are built once from constant weights and reused; a run
/// that overrides a weight initializer with an input of the same name uses that value.
#[test]
fn repeated_runs_and_overridden_weights() {
    let cfg = RecurrentConfig {
        input_size: 4,
        hidden_size: 6,
        ..Default::default()
    };
    let model = Recurrent::<f32>::new(cfg.clone(), 9).unwrap();
    let bytes = export_recurrent(&model, &ExportOptions::default()).unwrap();
    let onnx = OnnxModel::from_bytes("m", &bytes).unwrap();
    let x = input_for(&cfg, 3);
    let xv = Value::f32(x.data().to_vec(), x.shape()).unwrap();
    let first = onnx.run(&[("input", xv.clone())]).unwrap();
    let second = onnx.run(&[("input", xv.clone())]).unwrap();
    assert_eq!(first, second);
    // W_l0 [1, 4H, I] replaced by zeros: the same as a model with weight_ih_l0 = 0
    let zeros = Value::f32(vec![0.0; 4 * 6 * 4], &[1, 24, 4]).unwrap();
    let got = onnx.run(&[("input", xv.clone()), ("W_l0", zeros)]).unwrap();
    let mut zeroed = model.clone();
    zeroed.param_mut("weight_ih_l0").unwrap().fill(0.0);
    let want = zeroed.forward(&x, Call::new()).unwrap();
    assert!(max_diff(got[0].1.as_f32().unwrap(), want.output.data()) <= ROUND_TRIP_TOL);
    assert_ne!(got[0].1, first[0].1);
    // and the cached models are untouched
    assert_eq!(onnx.run(&[("input", xv)]).unwrap(), first);
}
