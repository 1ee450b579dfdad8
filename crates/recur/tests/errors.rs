//! Every public entry point, given bad input, returns a typed [`Error`] that names the problem
//! (the tensor or setting, what was expected and what was given, in a lowercase message) and
//! never panics. Where an error is returned, nothing the caller passed in is modified.

use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};

mod common;

use common::cases::{HIDDEN, INPUT, config};
use recur::cell::{GruActivations, LstmActivations};
use recur::{
    Activation, BatchLayout, Call, CellKind, Direction, Error, GruCell, InputForget, Leak,
    LstmCell, OutputGrad, Peepholes, Recurrent, RecurrentConfig, ResetPlacement, RnnCell, State,
    Tensor,
};

/// Projection size of the projected LSTMs here (common/cases.rs's `PROJ` is 3).
const PROJ: usize = 2;
const SEQ_LEN: usize = 7;
const BATCH: usize = 3;

// ---------------------------------------------------------------------------------------------
// Helpers

/// SplitMix64: deterministic values for the tensors (their values never matter here, only
/// that they are not all equal).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize]) -> Tensor<f64> {
    Tensor::new(values(shape.iter().product(), 7), shape).unwrap()
}

fn model(cell: CellKind, num_layers: usize, direction: Direction) -> Recurrent<f64> {
    Recurrent::new(config(cell, num_layers, direction), 3).unwrap()
}

fn lstm_proj() -> CellKind {
    CellKind::Lstm(LstmCell {
        proj_size: PROJ,
        ..Default::default()
    })
}

/// One model of each state kind: LSTM (with c), projected LSTM (h and c differ in size),
/// GRU and RNN (no c), uni- and bidirectional, 1 and 2 layers.
fn models() -> Vec<(&'static str, Recurrent<f64>)> {
    vec![
        ("lstm", model(CellKind::lstm(), 1, Direction::Forward)),
        (
            "lstm_proj_bidir_2",
            model(lstm_proj(), 2, Direction::Bidirectional),
        ),
        ("gru_2", model(CellKind::gru(), 2, Direction::Forward)),
        (
            "rnn_reverse",
            model(CellKind::rnn_tanh(), 1, Direction::Reverse),
        ),
    ]
}

/// Runs `f`, failing the test with a clear message if it panics instead of returning.
#[track_caller]
fn no_panic<R>(what: &str, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what}: panicked instead of returning an error: {msg}")
        }
    }
}

/// The error's message follows the house style: starts lowercase, no trailing period.
#[track_caller]
fn message(e: &Error) -> String {
    let m = e.to_string();
    assert!(
        m.chars().next().is_some_and(|c| !c.is_uppercase()),
        "message does not start lowercase: {m:?}"
    );
    assert!(!m.ends_with('.'), "message ends with a period: {m:?}");
    m
}

/// Unwraps an `Error::Shape` naming `what` with the given shapes; returns its message.
#[track_caller]
fn shape_err<R: Debug>(
    r: recur::Result<R>,
    what: &str,
    expected: &[usize],
    got: &[usize],
) -> String {
    match r {
        Err(
            ref e @ Error::Shape {
                what: ref w,
                expected: ref ex,
                got: ref g,
            },
        ) => {
            assert_eq!(
                (w.as_str(), &ex.0[..], &g.0[..]),
                (what, expected, got),
                "{e}"
            );
            let m = message(e);
            assert!(m.contains(what), "{m}");
            m
        }
        other => panic!("expected Error::Shape for {what}, got {other:?}"),
    }
}

#[track_caller]
fn unsupported<R: Debug>(r: recur::Result<R>, mentions: &str) -> String {
    match r {
        Err(ref e @ Error::Unsupported(_)) => {
            let m = message(e);
            assert!(m.contains(mentions), "{m:?} does not mention {mentions:?}");
            m
        }
        other => panic!("expected Error::Unsupported mentioning {mentions}, got {other:?}"),
    }
}

#[track_caller]
fn config_err<R: Debug>(r: recur::Result<R>, what: &str) -> String {
    match r {
        Err(ref e @ Error::Config { what: ref w, .. }) => {
            assert_eq!(w, what, "{e}");
            let m = message(e);
            assert!(
                m.starts_with(&format!("invalid configuration: {what}: ")),
                "{m}"
            );
            m
        }
        other => panic!("expected Error::Config for {what}, got {other:?}"),
    }
}

/// `[L*D, batch, f]` state shapes of a model.
fn state_shapes(m: &Recurrent<f64>, batch: usize) -> (Vec<usize>, Option<Vec<usize>>) {
    let z = m.zero_state(batch);
    (z.h.shape().to_vec(), z.c.map(|c| c.shape().to_vec()))
}

/// Forward through both entry points, which must give the same error.
fn forward_both(
    m: &Recurrent<f64>,
    x: &Tensor<f64>,
    s: Option<&State<f64>>,
    lengths: Option<&[usize]>,
) -> recur::Result<()> {
    let a = no_panic("forward", || {
        m.forward(
            x,
            Call {
                state: s.map(State::view),
                lengths,
                ..Call::new()
            },
        )
    })
    .map(|_| ());
    let b = no_panic("forward_train", || {
        m.forward_train(
            x,
            Call {
                state: s.map(State::view),
                lengths,
                seed: Some(1),
            },
        )
    })
    .map(|_| ());
    assert_eq!(
        format!("{a:?}"),
        format!("{b:?}"),
        "forward and forward_train disagree"
    );
    a
}

// ---------------------------------------------------------------------------------------------
// Inputs

#[test]
fn input_of_wrong_rank_is_a_rank_error_naming_input() {
    for layout in [BatchLayout::SeqFirst, BatchLayout::BatchFirst] {
        let m = Recurrent::<f64>::new(
            RecurrentConfig {
                layout,
                ..config(CellKind::lstm(), 1, Direction::Forward)
            },
            0,
        )
        .unwrap();
        for shape in [
            vec![SEQ_LEN * BATCH, INPUT],
            vec![INPUT],
            vec![],
            vec![1, SEQ_LEN, BATCH, INPUT],
        ] {
            let r = forward_both(&m, &tensor(&shape), None, None);
            match r {
                Err(
                    ref e @ Error::Rank {
                        ref what,
                        expected_rank,
                        ref got,
                        ..
                    },
                ) => {
                    assert_eq!((what.as_str(), expected_rank, &got.0), ("input", 3, &shape));
                    let msg = message(e);
                    let dims = match layout {
                        BatchLayout::SeqFirst => "[seq_len, batch, input_size]",
                        BatchLayout::BatchFirst => "[batch, seq_len, input_size]",
                    };
                    assert!(msg.starts_with("input: "), "{msg}");
                    assert!(msg.contains(dims), "{msg}");
                    let got = format!("{:?}", recur::Shape(shape.clone()));
                    assert!(msg.ends_with(&got), "{msg}");
                }
                other => panic!("{layout:?} {shape:?}: expected Error::Rank, got {other:?}"),
            }
        }
    }
}

#[test]
fn input_of_wrong_feature_size_names_input_expected_and_got() {
    let m = model(CellKind::gru(), 2, Direction::Bidirectional);
    let x = tensor(&[SEQ_LEN, BATCH, INPUT + 1]);
    let msg = shape_err(
        forward_both(&m, &x, None, None),
        "input",
        &[SEQ_LEN, BATCH, INPUT],
        &[SEQ_LEN, BATCH, INPUT + 1],
    );
    assert_eq!(msg, "input: expected shape [7, 3, 3], got [7, 3, 4]");

    let bf = Recurrent::<f64>::from_params(
        RecurrentConfig {
            layout: BatchLayout::BatchFirst,
            ..m.config().clone()
        },
        m.params().to_vec(),
    )
    .unwrap();
    let x = tensor(&[BATCH, SEQ_LEN, INPUT - 1]);
    shape_err(
        forward_both(&bf, &x, None, None),
        "input",
        &[BATCH, SEQ_LEN, INPUT],
        &[BATCH, SEQ_LEN, INPUT - 1],
    );
}

#[test]
fn empty_input_is_an_empty_error() {
    for layout in [BatchLayout::SeqFirst, BatchLayout::BatchFirst] {
        for (name, cell) in [("lstm", CellKind::lstm()), ("rnn", CellKind::rnn_relu())] {
            let m = Recurrent::<f64>::new(
                RecurrentConfig {
                    layout,
                    ..config(cell, 2, Direction::Bidirectional)
                },
                0,
            )
            .unwrap();
            for (t, b) in [(0, BATCH), (SEQ_LEN, 0), (0, 0)] {
                let shape = match layout {
                    BatchLayout::SeqFirst => [t, b, INPUT],
                    BatchLayout::BatchFirst => [b, t, INPUT],
                };
                let x = Tensor::new(vec![], &shape).unwrap();
                let lengths: Vec<usize> = vec![1; b];
                for l in [None, Some(&lengths[..])] {
                    match forward_both(&m, &x, None, l) {
                        Err(ref e @ Error::Empty(_)) => {
                            let msg = message(e);
                            assert!(msg.starts_with("empty input: "), "{msg}");
                        }
                        other => panic!("{name} {layout:?} {shape:?} {l:?}: {other:?}"),
                    }
                }
            }
        }
    }
}

#[test]
fn lengths_of_wrong_count_name_lengths() {
    let m = model(CellKind::lstm(), 1, Direction::Forward);
    let x = tensor(&[SEQ_LEN, BATCH, INPUT]);
    for lengths in [vec![], vec![SEQ_LEN; BATCH - 1], vec![SEQ_LEN; BATCH + 1]] {
        let msg = shape_err(
            forward_both(&m, &x, None, Some(&lengths)),
            "lengths",
            &[BATCH],
            &[lengths.len()],
        );
        assert!(
            msg.starts_with("lengths: expected shape [3], got ["),
            "{msg}"
        );
    }
}

#[test]
fn a_length_of_zero_or_past_seq_len_is_a_sequence_length_error() {
    for (name, m) in models() {
        let x = tensor(&[SEQ_LEN, BATCH, INPUT]);
        for (index, length) in [(0, 0), (1, 0), (2, SEQ_LEN + 1), (1, usize::MAX)] {
            let mut lengths = vec![SEQ_LEN, 2, 1];
            lengths[index] = length;
            match forward_both(&m, &x, None, Some(&lengths)) {
                Err(
                    ref e @ Error::SequenceLength {
                        index: i,
                        length: l,
                        seq_len,
                    },
                ) => {
                    assert_eq!((i, l, seq_len), (index, length, SEQ_LEN), "{name}");
                    assert_eq!(
                        message(e),
                        format!("lengths[{index}] = {length} is outside 1..=7")
                    );
                }
                other => panic!("{name} {lengths:?}: {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Initial states

#[test]
fn h0_of_wrong_shape_names_h0_expected_and_got() {
    for (name, m) in models() {
        let (h_shape, c_shape) = state_shapes(&m, BATCH);
        let x = tensor(&[SEQ_LEN, BATCH, INPUT]);
        // Wrong batch, wrong layer × direction count, wrong width, wrong rank.
        let bad = [
            vec![h_shape[0], BATCH + 1, h_shape[2]],
            vec![h_shape[0] + 1, BATCH, h_shape[2]],
            vec![h_shape[0], BATCH, h_shape[2] + 1],
            vec![BATCH, h_shape[2]],
        ];
        for got in bad {
            let s = State {
                h: tensor(&got),
                c: c_shape.as_ref().map(|c| tensor(c)),
            };
            let msg = shape_err(forward_both(&m, &x, Some(&s), None), "h0", &h_shape, &got);
            assert!(msg.starts_with("h0: expected shape ["), "{name}: {msg}");
        }
    }
    // A projected LSTM's h is P wide, not H.
    let m = model(lstm_proj(), 1, Direction::Forward);
    let s = State {
        h: tensor(&[1, BATCH, HIDDEN]),
        c: Some(tensor(&[1, BATCH, HIDDEN])),
    };
    let msg = shape_err(
        forward_both(&m, &tensor(&[SEQ_LEN, BATCH, INPUT]), Some(&s), None),
        "h0",
        &[1, BATCH, PROJ],
        &[1, BATCH, HIDDEN],
    );
    assert_eq!(msg, "h0: expected shape [1, 3, 2], got [1, 3, 5]");
}

#[test]
fn c0_of_wrong_shape_names_c0_expected_and_got() {
    let x = tensor(&[SEQ_LEN, BATCH, INPUT]);
    for m in [
        model(CellKind::lstm(), 2, Direction::Bidirectional),
        model(lstm_proj(), 1, Direction::Forward),
    ] {
        let (h_shape, c_shape) = state_shapes(&m, BATCH);
        let c_shape = c_shape.unwrap();
        // A projected LSTM's c is H wide while its h is P wide: c shaped like h is wrong.
        for got in [
            h_shape.clone(),
            vec![c_shape[0], BATCH - 1, c_shape[2]],
            vec![c_shape[0] * 2, BATCH, c_shape[2]],
        ] {
            if got == c_shape {
                continue;
            }
            let s = State {
                h: tensor(&h_shape),
                c: Some(tensor(&got)),
            };
            shape_err(forward_both(&m, &x, Some(&s), None), "c0", &c_shape, &got);
        }
    }
}

#[test]
fn c0_given_to_a_cell_without_cell_state_is_refused() {
    let x = tensor(&[SEQ_LEN, BATCH, INPUT]);
    for cell in [
        CellKind::gru(),
        CellKind::Gru(GruCell {
            reset: ResetPlacement::BeforeMatmul,
            ..Default::default()
        }),
        CellKind::rnn_tanh(),
    ] {
        let m = model(cell, 1, Direction::Forward);
        let (h_shape, _) = state_shapes(&m, BATCH);
        let s = State {
            h: tensor(&h_shape),
            c: Some(tensor(&h_shape)),
        };
        unsupported(forward_both(&m, &x, Some(&s), None), "c0");
    }
}

#[test]
fn an_lstm_state_without_c_is_refused() {
    let x = tensor(&[SEQ_LEN, BATCH, INPUT]);
    for cell in [CellKind::lstm(), lstm_proj()] {
        let m = model(cell, 2, Direction::Forward);
        let (h_shape, _) = state_shapes(&m, BATCH);
        let s = State {
            h: tensor(&h_shape),
            c: None,
        };
        unsupported(forward_both(&m, &x, Some(&s), None), "c0");
    }
}

// ---------------------------------------------------------------------------------------------
// Construction and configuration

/// Configurations that must be refused, with the setting the error must name.
fn invalid_configs() -> Vec<(RecurrentConfig, &'static str)> {
    let base = config(CellKind::lstm(), 2, Direction::Forward);
    let rnn = |leak: Leak| RecurrentConfig {
        cell: CellKind::Rnn(RnnCell {
            leak,
            ..Default::default()
        }),
        ..base.clone()
    };
    let lstm = |c: LstmCell| RecurrentConfig {
        cell: CellKind::Lstm(c),
        ..base.clone()
    };
    let mut v = vec![
        (
            RecurrentConfig {
                hidden_size: 0,
                ..base.clone()
            },
            "hidden_size",
        ),
        (
            RecurrentConfig {
                input_size: 0,
                ..base.clone()
            },
            "input_size",
        ),
        (
            RecurrentConfig {
                num_layers: 0,
                ..base.clone()
            },
            "num_layers",
        ),
        (RecurrentConfig::default(), "input_size"),
    ];
    for dropout in [1.0, 1.5, -0.1, -f64::MIN_POSITIVE, f64::NAN, f64::INFINITY] {
        v.push((
            RecurrentConfig {
                dropout,
                ..base.clone()
            },
            "dropout",
        ));
    }
    for proj_size in [HIDDEN, HIDDEN + 1] {
        v.push((
            lstm(LstmCell {
                proj_size,
                ..Default::default()
            }),
            "proj_size",
        ));
    }
    v.push((
        lstm(LstmCell {
            input_forget: InputForget::Coupled,
            peepholes: Peepholes::ALL,
            ..Default::default()
        }),
        "peepholes.forget",
    ));
    for a in [0.0, -0.5, 1.0 + 1e-12, 2.0, f64::NAN, f64::INFINITY] {
        v.push((rnn(Leak::Uniform(a)), "leak"));
    }
    v.push((rnn(Leak::PerLayer(vec![0.5])), "leak"));
    v.push((rnn(Leak::PerLayer(vec![0.5, 0.5, 0.5])), "leak"));
    v.push((rnn(Leak::PerLayer(vec![])), "leak"));
    v.push((rnn(Leak::PerLayer(vec![0.5, 0.0])), "leak[1]"));
    v.push((rnn(Leak::PerLayer(vec![f64::NAN, 0.5])), "leak[0]"));
    for recurrent_dropout in [1.0, 1.5, -0.1, f64::NAN, f64::INFINITY] {
        v.push((
            RecurrentConfig {
                recurrent_dropout,
                ..base.clone()
            },
            "recurrent_dropout",
        ));
    }
    // ONNX clip: finite and > 0 on every cell
    for clip in [0.0, -0.5, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        v.push((
            lstm(LstmCell {
                clip: Some(clip),
                ..Default::default()
            }),
            "clip",
        ));
        v.push((
            RecurrentConfig {
                cell: CellKind::Gru(GruCell {
                    clip: Some(clip),
                    ..Default::default()
                }),
                ..base.clone()
            },
            "clip",
        ));
        v.push((
            RecurrentConfig {
                cell: CellKind::Rnn(RnnCell {
                    clip: Some(clip),
                    ..Default::default()
                }),
                ..base.clone()
            },
            "clip",
        ));
    }
    // activation parameters: finite, named by their slot
    for bad in [f64::NAN, f64::INFINITY] {
        let d = LstmActivations::default();
        for (acts, slot) in [
            (
                LstmActivations {
                    gate: Activation::HardSigmoid {
                        alpha: bad,
                        beta: 0.5,
                    },
                    ..d
                },
                "activations.gate",
            ),
            (
                LstmActivations {
                    cell: Activation::LeakyRelu { alpha: bad },
                    ..d
                },
                "activations.cell",
            ),
            (
                LstmActivations {
                    hidden: Activation::ScaledTanh {
                        alpha: 1.0,
                        beta: bad,
                    },
                    ..d
                },
                "activations.hidden",
            ),
        ] {
            v.push((
                lstm(LstmCell {
                    activations: acts,
                    ..Default::default()
                }),
                slot,
            ));
        }
        v.push((
            RecurrentConfig {
                cell: CellKind::Gru(GruCell {
                    activations: GruActivations {
                        candidate: Activation::Elu { alpha: bad },
                        ..Default::default()
                    },
                    ..Default::default()
                }),
                ..base.clone()
            },
            "activations.candidate",
        ));
        v.push((
            RecurrentConfig {
                cell: CellKind::Rnn(RnnCell {
                    nonlinearity: Activation::Affine {
                        alpha: bad,
                        beta: 0.0,
                    },
                    ..Default::default()
                }),
                ..base.clone()
            },
            "nonlinearity",
        ));
    }
    v
}

/// ONNX activation names: an unknown one is `Unsupported` naming it; a NaN or infinite α or β,
/// or one given to a function that takes none, is `Config` naming the attribute.
#[test]
fn onnx_activation_names_and_parameters_are_checked() {
    for name in ["Swish", "", "tanhh", "Gelu"] {
        match Activation::from_onnx(name, None, None) {
            Err(Error::Unsupported(m)) => assert!(m.contains(&format!("`{name}`")), "{m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    for (name, alpha, beta, what) in [
        ("LeakyRelu", Some(f64::NAN), None, "activation_alpha"),
        ("Elu", Some(f64::INFINITY), None, "activation_alpha"),
        ("HardSigmoid", Some(0.2), Some(f64::NAN), "activation_beta"),
        ("ScaledTanh", Some(f64::NAN), Some(1.0), "activation_alpha"),
        (
            "Affine",
            Some(1.0),
            Some(f64::NEG_INFINITY),
            "activation_beta",
        ),
        ("ThresholdedRelu", Some(f64::NAN), None, "activation_alpha"),
        ("Sigmoid", Some(1.0), None, "activation_alpha"),
        ("LeakyRelu", Some(0.1), Some(0.0), "activation_beta"),
    ] {
        config_err(
            no_panic(name, || Activation::from_onnx(name, alpha, beta)),
            what,
        );
    }
}

/// An activation whose slope its output cannot tell (a negative α) runs forward, but training
/// with it is refused with `Unsupported` naming the slot, rather than a wrong gradient.
#[test]
fn training_refuses_activations_whose_slope_the_output_cannot_tell() {
    let x = tensor(&[SEQ_LEN, BATCH, INPUT]);
    for (cell, slot) in [
        (
            CellKind::Lstm(LstmCell {
                activations: LstmActivations {
                    cell: Activation::LeakyRelu { alpha: -0.1 },
                    ..Default::default()
                },
                ..Default::default()
            }),
            "activations.cell",
        ),
        (
            CellKind::Gru(GruCell {
                activations: GruActivations {
                    gate: Activation::ThresholdedRelu { alpha: -0.5 },
                    ..Default::default()
                },
                ..Default::default()
            }),
            "activations.gate",
        ),
        (
            CellKind::Rnn(RnnCell {
                nonlinearity: Activation::Elu { alpha: -1.0 },
                ..Default::default()
            }),
            "nonlinearity",
        ),
    ] {
        let m = model(cell, 1, Direction::Forward);
        assert!(m.forward(&x, Call::new()).is_ok(), "{slot}: inference runs");
        match no_panic(slot, || m.forward_train(&x, Call::new().seed(0))) {
            Err(Error::Unsupported(msg)) => assert!(msg.contains(slot), "{msg}"),
            other => panic!("{slot}: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn invalid_configurations_are_refused_by_every_constructor() {
    for (cfg, what) in invalid_configs() {
        let ctx = format!("{what}: {cfg:?}");
        config_err(no_panic(&ctx, || cfg.validate()), what);
        config_err(
            no_panic(&ctx, || Recurrent::<f64>::new(cfg.clone(), 0)),
            what,
        );
        config_err(
            no_panic(&ctx, || Recurrent::<f32>::new(cfg.clone(), 0)),
            what,
        );
        config_err(
            no_panic(&ctx, || {
                Recurrent::<f64>::from_params(cfg.clone(), vec![0.0; 10])
            }),
            what,
        );
    }
    let m = config_err(
        RecurrentConfig {
            dropout: 1.0,
            ..config(CellKind::gru(), 2, Direction::Forward)
        }
        .validate(),
        "dropout",
    );
    assert_eq!(
        m,
        "invalid configuration: dropout: must lie in [0, 1), got 1"
    );
}

/// The edges of every range are accepted, so the checks above refuse only what they should.
#[test]
fn boundary_configurations_are_accepted() {
    let base = config(CellKind::lstm(), 2, Direction::Bidirectional);
    let ok = [
        RecurrentConfig {
            dropout: 0.0,
            ..base.clone()
        },
        RecurrentConfig {
            dropout: 0.999,
            ..base.clone()
        },
        RecurrentConfig {
            recurrent_dropout: 0.999,
            ..base.clone()
        },
        RecurrentConfig {
            cell: CellKind::Lstm(LstmCell {
                clip: Some(f64::MIN_POSITIVE),
                ..Default::default()
            }),
            ..base.clone()
        },
        RecurrentConfig {
            cell: CellKind::Gru(GruCell {
                clip: Some(f64::MAX),
                ..Default::default()
            }),
            ..base.clone()
        },
        RecurrentConfig {
            cell: CellKind::Lstm(LstmCell {
                proj_size: HIDDEN - 1,
                ..Default::default()
            }),
            ..base.clone()
        },
        RecurrentConfig {
            cell: CellKind::Lstm(LstmCell {
                input_forget: InputForget::Coupled,
                peepholes: Peepholes {
                    input: true,
                    forget: false,
                    output: true,
                },
                ..Default::default()
            }),
            ..base.clone()
        },
        RecurrentConfig {
            cell: CellKind::Rnn(RnnCell {
                leak: Leak::Uniform(1.0),
                ..Default::default()
            }),
            ..base.clone()
        },
        RecurrentConfig {
            cell: CellKind::Rnn(RnnCell {
                leak: Leak::PerLayer(vec![1e-9, 1.0]),
                ..Default::default()
            }),
            ..base.clone()
        },
        RecurrentConfig {
            input_size: 1,
            hidden_size: 1,
            num_layers: 1,
            ..base.clone()
        },
    ];
    for cfg in ok {
        assert!(cfg.validate().is_ok(), "{cfg:?}");
        assert!(Recurrent::<f64>::new(cfg.clone(), 0).is_ok(), "{cfg:?}");
    }
}

/// Runs `validate`, `new` and `from_params` on huge sizes; lists every call that does not
/// return `Error::Config`.
fn huge_size_failures(cases: &[(usize, usize, usize)]) -> Vec<String> {
    let mut failures = Vec::new();
    for &(input_size, hidden_size, num_layers) in cases {
        for direction in [Direction::Forward, Direction::Bidirectional] {
            let cfg = RecurrentConfig {
                input_size,
                hidden_size,
                num_layers,
                direction,
                ..Default::default()
            };
            let ctx = format!(
                "input_size={input_size} hidden_size={hidden_size} num_layers={num_layers} \
                 {direction:?}"
            );
            let calls: [(&str, &dyn Fn() -> recur::Result<()>); 3] = [
                ("validate", &|| cfg.validate()),
                ("new", &|| Recurrent::<f32>::new(cfg.clone(), 0).map(|_| ())),
                ("from_params", &|| {
                    Recurrent::<f32>::from_params(cfg.clone(), vec![]).map(|_| ())
                }),
            ];
            for (call, f) in calls {
                match catch_unwind(AssertUnwindSafe(f)) {
                    Ok(Err(Error::Config { .. })) => {}
                    Ok(other) => failures.push(format!("{call}: {ctx}: {other:?}")),
                    Err(_) => failures.push(format!("{call}: {ctx}: panicked")),
                }
            }
        }
    }
    failures
}

/// Sizes whose parameter count overflows `usize` or cannot be allocated (e.g. read from a
/// hostile checkpoint header) are a configuration error, not an arithmetic overflow panic or a
/// runaway allocation.
#[test]
fn sizes_too_large_to_allocate_are_a_config_error() {
    let failures = huge_size_failures(&[
        (INPUT, 1 << 40, 1),
        (1 << 62, HIDDEN, 1),
        (1 << 40, 1 << 22, 1),
        (INPUT, 1 << 33, 1),
        (INPUT, HIDDEN, 1 << 40),
        (INPUT, HIDDEN, usize::MAX),
    ]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// As above, for sizes so large that the parameter count overflows even 128-bit arithmetic.
#[test]
fn sizes_whose_parameter_count_overflows_u128_are_a_config_error() {
    let failures = huge_size_failures(&[
        (INPUT, 1 << 62, 1),
        (usize::MAX, usize::MAX, 1),
        (usize::MAX, usize::MAX, usize::MAX),
        (INPUT, usize::MAX, usize::MAX),
    ]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn from_params_with_the_wrong_number_of_params_is_a_length_error() {
    for (name, m) in models() {
        let n = m.params().len();
        for len in [0, 1, n - 1, n + 1] {
            let r = no_panic(name, || {
                Recurrent::from_params(m.config().clone(), vec![0.0f64; len])
            });
            match r {
                Err(
                    ref e @ Error::Length {
                        ref what,
                        ref shape,
                        len: l,
                    },
                ) => {
                    assert_eq!((what.as_str(), &shape.0[..], l), ("params", &[n][..], len));
                    assert_eq!(
                        message(e),
                        format!("params: {len} values do not fill shape [{n}]")
                    );
                }
                other => panic!("{name} {len}: {other:?}"),
            }
        }
        assert!(Recurrent::from_params(m.config().clone(), m.params().to_vec()).is_ok());
    }
}

#[test]
fn tensor_new_with_a_mismatched_length_is_a_length_error() {
    for (data, shape) in [
        (vec![0.0; 5], vec![2, 3]),
        (vec![0.0; 7], vec![2, 3]),
        (vec![], vec![1]),
        (vec![0.0; 2], vec![]),
        (vec![0.0; 4], vec![usize::MAX, 2, 2]),
    ] {
        let len = data.len();
        match no_panic("Tensor::new", || Tensor::<f64>::new(data, &shape)) {
            Err(
                ref e @ Error::Length {
                    ref what,
                    shape: ref s,
                    len: l,
                },
            ) => {
                assert_eq!((what.as_str(), &s.0, l), ("tensor", &shape, len));
                message(e);
            }
            other => panic!("{shape:?}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backward

/// A model, a recorded tape and upstream gradients of the right shapes.
struct Recorded {
    m: Recurrent<f64>,
    tape: recur::Tape<f64>,
    dy: Tensor<f64>,
    dh: Tensor<f64>,
    dc: Option<Tensor<f64>>,
}

fn recorded(m: Recurrent<f64>) -> Recorded {
    let x = match m.config().layout {
        BatchLayout::SeqFirst => tensor(&[SEQ_LEN, BATCH, INPUT]),
        BatchLayout::BatchFirst => tensor(&[BATCH, SEQ_LEN, INPUT]),
    };
    let (out, tape) = m
        .forward_train(&x, Call::new().lengths(&[4, SEQ_LEN, 2]).seed(0))
        .unwrap();
    Recorded {
        dy: tensor(out.output.shape()),
        dh: tensor(out.state.h.shape()),
        dc: out.state.c.as_ref().map(|c| tensor(c.shape())),
        m,
        tape,
    }
}

impl Recorded {
    /// `backward` with `grad`; checks that a failed call left `param_grads` untouched.
    fn backward(&self, grad: OutputGrad<'_, f64>, len: usize) -> recur::Result<()> {
        let before = values(len, 99);
        let mut g = before.clone();
        let r = no_panic("backward", || self.m.backward(&self.tape, grad, &mut g)).map(|_| ());
        if r.is_err() {
            assert!(
                g.iter()
                    .zip(&before)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "a failed backward wrote into param_grads"
            );
        }
        r
    }

    fn full(&self) -> OutputGrad<'_, f64> {
        OutputGrad {
            output: Some(self.dy.view()),
            h: Some(self.dh.view()),
            c: self.dc.as_ref().map(Tensor::view),
        }
    }
}

#[test]
fn backward_with_a_tape_of_another_configuration_is_refused() {
    let lstm = recorded(model(CellKind::lstm(), 2, Direction::Forward));
    let others = [
        model(CellKind::gru(), 2, Direction::Forward),
        model(CellKind::lstm(), 1, Direction::Forward),
        model(CellKind::lstm(), 2, Direction::Bidirectional),
        model(lstm_proj(), 2, Direction::Forward),
        Recurrent::new(
            RecurrentConfig {
                hidden_size: HIDDEN + 1,
                ..config(CellKind::lstm(), 2, Direction::Forward)
            },
            0,
        )
        .unwrap(),
        Recurrent::new(
            RecurrentConfig {
                layout: BatchLayout::BatchFirst,
                ..config(CellKind::lstm(), 2, Direction::Forward)
            },
            0,
        )
        .unwrap(),
    ];
    for other in others {
        let mut g = vec![0.0; other.params().len()];
        let r = no_panic("backward", || {
            other.backward(&lstm.tape, OutputGrad::default(), &mut g)
        });
        unsupported(r, "tape");
        assert!(g.iter().all(|&v| v == 0.0), "{:?}", other.config());
    }
    // The tape's own configuration, in another model with other weights, is fine.
    let twin = Recurrent::<f64>::new(lstm.m.config().clone(), 123).unwrap();
    let mut g = vec![0.0; twin.params().len()];
    assert!(twin.backward(&lstm.tape, lstm.full(), &mut g).is_ok());
}

#[test]
fn backward_with_param_grads_of_the_wrong_length_is_a_length_error() {
    for (name, m) in models() {
        let rec = recorded(m);
        let n = rec.m.params().len();
        for len in [0, n - 1, n + 1] {
            match rec.backward(rec.full(), len) {
                Err(
                    ref e @ Error::Length {
                        ref what,
                        ref shape,
                        len: l,
                    },
                ) => {
                    assert_eq!(
                        (what.as_str(), &shape.0[..], l),
                        ("param_grads", &[n][..], len)
                    );
                    assert_eq!(
                        message(e),
                        format!("param_grads: {len} values do not fill shape [{n}]")
                    );
                }
                other => panic!("{name} {len}: {other:?}"),
            }
        }
        assert!(rec.backward(rec.full(), n).is_ok(), "{name}");
    }
}

#[test]
fn backward_with_gradients_of_the_wrong_shape_names_the_gradient() {
    for (name, m) in models() {
        for layout in [BatchLayout::SeqFirst, BatchLayout::BatchFirst] {
            let m = Recurrent::from_params(
                RecurrentConfig {
                    layout,
                    ..m.config().clone()
                },
                m.params().to_vec(),
            )
            .unwrap();
            let rec = recorded(m);
            let n = rec.m.params().len();
            let ys = rec.dy.shape().to_vec();
            let hs = rec.dh.shape().to_vec();
            let ctx = format!("{name} {layout:?}");

            // grad output: the other layout's shape, a wrong width, a wrong rank
            let swapped = vec![ys[1], ys[0], ys[2]];
            for got in [
                swapped,
                vec![ys[0], ys[1], ys[2] + 1],
                vec![ys[0] * ys[1], ys[2]],
            ] {
                let dy = tensor(&got);
                let r = rec.backward(
                    OutputGrad {
                        output: Some(dy.view()),
                        ..rec.full()
                    },
                    n,
                );
                let msg = shape_err(r, "grad output", &ys, &got);
                assert!(msg.starts_with("grad output: "), "{ctx}: {msg}");
            }
            // grad h (of the final state)
            for got in [vec![hs[0], hs[1] + 1, hs[2]], vec![hs[0] + 1, hs[1], hs[2]]] {
                let dh = tensor(&got);
                let r = rec.backward(
                    OutputGrad {
                        h: Some(dh.view()),
                        ..rec.full()
                    },
                    n,
                );
                shape_err(r, "grad h", &hs, &got);
            }
            // grad c: wrong shape for an LSTM, present at all for the others
            let dc = tensor(&[hs[0], hs[1], HIDDEN + 1]);
            let r = rec.backward(
                OutputGrad {
                    c: Some(dc.view()),
                    ..rec.full()
                },
                n,
            );
            match &rec.dc {
                Some(want) => {
                    shape_err(r, "grad c", want.shape(), dc.shape());
                }
                None => {
                    unsupported(r, "grad c");
                }
            }
            // All gradients are optional.
            assert!(rec.backward(OutputGrad::default(), n).is_ok(), "{ctx}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[test]
fn step_with_x_of_wrong_shape_names_x_and_leaves_the_state() {
    for (name, m) in [
        ("lstm_proj", model(lstm_proj(), 2, Direction::Forward)),
        ("gru", model(CellKind::gru(), 1, Direction::Forward)),
    ] {
        let mut s = m.zero_state(BATCH);
        let before = s.clone();
        // Wrong width.
        let x = tensor(&[BATCH, INPUT + 2]);
        let r = no_panic(name, || m.step(&x, &mut s));
        let msg = shape_err(r, "x", &[BATCH, INPUT], &[BATCH, INPUT + 2]);
        assert_eq!(msg, "x: expected shape [3, 3], got [3, 5]");
        // Wrong rank: a whole sequence, or a bare vector.
        for shape in [vec![1, BATCH, INPUT], vec![INPUT], vec![]] {
            let x = tensor(&shape);
            match no_panic(name, || m.step(&x, &mut s)) {
                Err(
                    ref e @ Error::Rank {
                        ref what,
                        expected_rank,
                        ..
                    },
                ) => {
                    assert_eq!((what.as_str(), expected_rank), ("x", 2), "{e}");
                    let msg = message(e);
                    assert!(
                        msg.starts_with("x: ") && msg.contains("[batch, input_size]"),
                        "{msg}"
                    );
                }
                other => panic!("{name} {shape:?}: {other:?}"),
            }
        }
        // No sequences.
        let x = Tensor::new(vec![], &[0, INPUT]).unwrap();
        let r = no_panic(name, || m.step(&x, &mut s));
        assert!(matches!(r, Err(Error::Empty(_))), "{name}: {r:?}");
        assert_eq!(s, before, "{name}: a failed step changed the state");
    }
}

#[test]
fn step_with_a_state_of_wrong_shape_names_it_and_leaves_it() {
    let m = model(CellKind::lstm(), 2, Direction::Forward);
    let x = tensor(&[BATCH, INPUT]);
    // State for another batch size.
    let mut s = m.zero_state(BATCH + 1);
    let before = s.clone();
    let r = no_panic("step", || m.step(&x, &mut s));
    shape_err(r, "h0", &[2, BATCH, HIDDEN], &[2, BATCH + 1, HIDDEN]);
    assert_eq!(s, before);
    // An LSTM state without c.
    let mut s = State {
        h: tensor(&[2, BATCH, HIDDEN]),
        c: None,
    };
    let before = s.clone();
    unsupported(no_panic("step", || m.step(&x, &mut s)), "c0");
    assert_eq!(s, before);
    // A GRU state with c.
    let g = model(CellKind::gru(), 1, Direction::Forward);
    let mut s = State {
        h: tensor(&[1, BATCH, HIDDEN]),
        c: Some(tensor(&[1, BATCH, HIDDEN])),
    };
    unsupported(no_panic("step", || g.step(&x, &mut s)), "c0");
}

#[test]
fn step_on_a_reverse_or_bidirectional_stack_is_unsupported() {
    for direction in [Direction::Reverse, Direction::Bidirectional] {
        let m = model(CellKind::rnn_tanh(), 1, direction);
        let mut s = m.zero_state(BATCH);
        let before = s.clone();
        let x = tensor(&[BATCH, INPUT]);
        let msg = unsupported(no_panic("step", || m.step(&x, &mut s)), "step");
        assert!(msg.starts_with("unsupported: step: "), "{msg}");
        assert_eq!(s, before);
    }
}
