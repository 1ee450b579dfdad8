//! PyTorch state_dicts in safetensors files (`recur::io::pytorch`): every committed PyTorch
//! fixture loads with its configuration inferred and reproduces PyTorch's output; save → load
//! gives back every configuration bitwise; prefixes and strict mode; every contradiction and
//! every hostile file is a typed error naming the tensor, never a panic.

mod common;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use common::{Fixture, max_rel_err};
use recur::io::{
    LoadOptions, SaveDtype, SaveOptions, load_state_dict, load_state_dict_bytes, save_state_dict,
    state_dict_bytes,
};
use recur::{
    Activation, BatchLayout, Bias, CellKind, Direction, Error, GruCell, InputForget, Leak,
    LstmCell, Peepholes, Recurrent, RecurrentConfig, ResetPlacement, RnnCell,
};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// Both sides compute in float64 with the same weights; only summation orders differ.
const PARITY_TOL: f64 = 1e-10;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh directory for this test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("pytorch_io")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One tensor of a hand-built file: name, dtype, shape, raw little-endian bytes.
type Raw = (String, Dtype, Vec<usize>, Vec<u8>);

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn raw_f64(name: &str, shape: &[usize], v: &[f64]) -> Raw {
    (name.into(), Dtype::F64, shape.to_vec(), f64_bytes(v))
}

/// A safetensors file written by the reference library.
fn build(tensors: &[Raw], metadata: Option<HashMap<String, String>>) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, metadata).unwrap()
}

/// Every tensor and the metadata of a file.
fn unpack(bytes: &[u8]) -> (Vec<Raw>, Option<HashMap<String, String>>) {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<Raw> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    (tensors, meta.metadata().clone())
}

/// A model's tensors as PyTorch names them, without recur's metadata: what
/// `save_file(module.state_dict(), ...)` writes.
fn plain_state_dict(model: &Recurrent<f64>) -> Vec<Raw> {
    unpack(&state_dict_bytes(model, &SaveOptions::default())).0
}

fn without(tensors: &[Raw], name: &str) -> Vec<Raw> {
    assert!(tensors.iter().any(|t| t.0 == name), "no {name} to remove");
    tensors.iter().filter(|t| t.0 != name).cloned().collect()
}

fn replaced(tensors: &[Raw], t: Raw) -> Vec<Raw> {
    let mut out = without(tensors, &t.0);
    out.push(t);
    out
}

fn load(bytes: &[u8], options: &LoadOptions) -> recur::Result<Recurrent<f64>> {
    load_state_dict_bytes::<f64>(bytes, options)
}

fn lstm(layers: usize, direction: Direction) -> RecurrentConfig {
    RecurrentConfig {
        cell: CellKind::lstm(),
        input_size: 3,
        hidden_size: 4,
        num_layers: layers,
        direction,
        ..Default::default()
    }
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// What the file cannot say about a fixture, from its metadata, as a user would pass it.
fn options_for(fx: &Fixture) -> LoadOptions {
    let config = fx.config();
    let mut o = LoadOptions::default();
    match &config.cell {
        CellKind::Rnn(r) => {
            o.rnn_nonlinearity = Some(r.nonlinearity);
            if r.leak != Leak::None {
                o.leak = Some(r.leak.clone());
            }
        }
        CellKind::Gru(g) if g.reset != ResetPlacement::default() => o.gru_reset = Some(g.reset),
        CellKind::Lstm(l) if l.input_forget != InputForget::default() => {
            o.input_forget = Some(l.input_forget);
        }
        _ => {}
    }
    if config.layout != BatchLayout::default() {
        o.layout = Some(config.layout);
    }
    o
}

// ---------------------------------------------------------------------------------------------
// PyTorch's own files

/// Every fixture's parameters load under their PyTorch names, the configuration is inferred
/// (checked against the fixture's metadata) and the forward pass gives PyTorch's output.
#[test]
fn fixtures_load_with_inferred_config_and_match_pytorch() {
    let dir = common::fixture_dir();
    let mut report = Vec::new();
    let mut n = 0;
    for folder in ["pytorch", "reference"] {
        for fx in common::load_all(folder) {
            // ONNX activations and clip: a state_dict cannot say them and LoadOptions does
            // not take them (tests/parity.rs checks those fixtures)
            if fx.meta.contains_key("activations") || fx.meta.contains_key("clip") {
                continue;
            }
            let path = dir.join(folder).join(format!("{}.safetensors", fx.name));
            let model = load_state_dict::<f64>(&path, &options_for(&fx))
                .unwrap_or_else(|e| panic!("{}: {e}", fx.name));
            assert_eq!(model.config(), &fx.config(), "{}: inferred config", fx.name);
            assert_eq!(
                bits(model.params()),
                bits(fx.model().params()),
                "{}: parameters",
                fx.name
            );
            let out = fx.forward(&model);
            for (what, got, want) in [
                ("output", out.output.data(), "output"),
                ("h_n", out.state.h.data(), "h_n"),
            ] {
                let e = max_rel_err(got, fx.tensor(want).data());
                if e.is_nan() || e > PARITY_TOL {
                    report.push(format!("{}: {what}: max rel err {e:e}", fx.name));
                }
            }
            n += 1;
        }
    }
    assert_eq!(n, 24, "every fixture");
    assert!(report.is_empty(), "{}", report.join("\n"));
}

/// Fixtures carry `input`, `output`, `grad.*` beside the parameters: strict loading refuses
/// them, naming the first.
#[test]
fn strict_loading_refuses_the_fixtures_extra_tensors() {
    let path = common::fixture_dir().join("pytorch/lstm_basic.safetensors");
    let strict = LoadOptions {
        strict: true,
        ..Default::default()
    };
    match load_state_dict::<f64>(&path, &strict) {
        Err(Error::UnexpectedTensor { name, file, .. }) => {
            assert_eq!(name, "c0");
            assert!(file.ends_with("lstm_basic.safetensors"), "{file}");
        }
        other => panic!("{other:?}"),
    }
}

/// tanh and ReLU weights look alike: without recur's metadata an RNN needs the flag.
#[test]
fn an_rnn_file_without_metadata_needs_the_nonlinearity() {
    let path = common::fixture_dir().join("pytorch/rnn_relu.safetensors");
    let e = load_state_dict::<f64>(&path, &LoadOptions::default()).unwrap_err();
    match &e {
        Error::MissingOption { option, .. } => {
            assert!(option.contains("LoadOptions::rnn_nonlinearity"), "{option}")
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("rnn_nonlinearity"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Round trips

fn every_option() -> Vec<(&'static str, RecurrentConfig)> {
    let lstm_with = |l: LstmCell, hidden_size| RecurrentConfig {
        cell: CellKind::Lstm(l),
        hidden_size,
        ..lstm(1, Direction::Forward)
    };
    vec![
        ("lstm", lstm(1, Direction::Forward)),
        ("lstm_stacked", lstm(3, Direction::Forward)),
        ("lstm_reverse", lstm(2, Direction::Reverse)),
        ("lstm_bidir", lstm(2, Direction::Bidirectional)),
        (
            "lstm_nobias_batch_first_dropout",
            RecurrentConfig {
                bias: Bias::Disabled,
                layout: BatchLayout::BatchFirst,
                dropout: 0.25,
                ..lstm(2, Direction::Forward)
            },
        ),
        (
            "lstm_peepholes",
            lstm_with(
                LstmCell {
                    peepholes: Peepholes::ALL,
                    ..Default::default()
                },
                4,
            ),
        ),
        (
            "lstm_projection",
            RecurrentConfig {
                num_layers: 2,
                direction: Direction::Bidirectional,
                ..lstm_with(
                    LstmCell {
                        proj_size: 2,
                        ..Default::default()
                    },
                    5,
                )
            },
        ),
        (
            "lstm_coupled_peep_io_proj",
            lstm_with(
                LstmCell {
                    peepholes: Peepholes {
                        input: true,
                        forget: false,
                        output: true,
                    },
                    proj_size: 3,
                    input_forget: InputForget::Coupled,
                    ..Default::default()
                },
                5,
            ),
        ),
        (
            "gru",
            RecurrentConfig {
                cell: CellKind::gru(),
                ..lstm(2, Direction::Bidirectional)
            },
        ),
        (
            "gru_reset_before",
            RecurrentConfig {
                cell: CellKind::Gru(GruCell {
                    reset: ResetPlacement::BeforeMatmul,
                    ..Default::default()
                }),
                ..lstm(1, Direction::Reverse)
            },
        ),
        (
            "rnn_tanh",
            RecurrentConfig {
                cell: CellKind::rnn_tanh(),
                ..lstm(2, Direction::Forward)
            },
        ),
        (
            "rnn_relu_leaky",
            RecurrentConfig {
                cell: CellKind::Rnn(RnnCell {
                    nonlinearity: Activation::Relu,
                    leak: Leak::Uniform(0.3),
                    clip: None,
                }),
                ..lstm(1, Direction::Bidirectional)
            },
        ),
        (
            "rnn_leaky_per_layer",
            RecurrentConfig {
                cell: CellKind::Rnn(RnnCell {
                    leak: Leak::PerLayer(vec![0.1, 1.0 / 3.0, 1.0]),
                    ..Default::default()
                }),
                ..lstm(3, Direction::Forward)
            },
        ),
    ]
}

/// save → load gives the same configuration (from the metadata) and the same bits, for every
/// cell option; the write is deterministic and leaves no temporary file behind.
#[test]
fn save_then_load_round_trips_every_option_bitwise() {
    let dir = scratch("round_trip");
    for (i, (name, config)) in every_option().into_iter().enumerate() {
        let model = Recurrent::<f64>::new(config.clone(), 100 + i as u64).unwrap();
        let path = dir.join(format!("{name}.safetensors"));
        save_state_dict(&model, &path, &SaveOptions::default()).unwrap();
        let back = load_state_dict::<f64>(&path, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back.config(), &config, "{name}: config");
        assert_eq!(bits(back.params()), bits(model.params()), "{name}: params");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes,
            state_dict_bytes(&model, &SaveOptions::default()),
            "{name}: deterministic"
        );
        // strict: the file holds nothing but the parameters
        let strict = LoadOptions {
            strict: true,
            ..Default::default()
        };
        assert!(load(&bytes, &strict).is_ok(), "{name}: strict");
        // saving again replaces the file
        save_state_dict(&model, &path, &SaveOptions::default()).unwrap();
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".safetensors") || n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// The names are PyTorch's, the metadata names the cell, and without metadata (as PyTorch
/// writes the file) the same model is inferred for the PyTorch cells.
#[test]
fn saved_names_are_pytorchs_and_load_without_metadata() {
    let model = Recurrent::<f64>::new(lstm(2, Direction::Bidirectional), 7).unwrap();
    let (tensors, meta) = unpack(&state_dict_bytes(&model, &SaveOptions::default()));
    let names: Vec<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
    assert!(names.contains(&"weight_ih_l0"));
    assert!(names.contains(&"bias_hh_l1_reverse"));
    assert_eq!(names.len(), 16);
    let meta = meta.unwrap();
    assert_eq!(meta["recur.format"], "pytorch-state-dict-2");
    assert_eq!(
        RecurrentConfig::from_json(&meta["recur.config"]).unwrap(),
        *model.config()
    );
    let back = load(&build(&tensors, None), &LoadOptions::default()).unwrap();
    assert_eq!(back.config(), model.config());
    assert_eq!(bits(back.params()), bits(model.params()));
}

/// float32 files (what a default PyTorch module holds): an f64 model saved as f32 reads back
/// rounded to f32, into f64 and into f32 models; f64 files read into f32 models.
#[test]
fn f32_files_round_to_f32() {
    let model = Recurrent::<f64>::new(lstm(2, Direction::Bidirectional), 3).unwrap();
    let opts = SaveOptions {
        dtype: SaveDtype::F32,
        ..Default::default()
    };
    let bytes = state_dict_bytes(&model, &opts);
    let (tensors, _) = unpack(&bytes);
    assert!(tensors.iter().all(|t| t.1 == Dtype::F32));
    let rounded: Vec<f64> = model
        .params()
        .iter()
        .map(|&v| f64::from(v as f32))
        .collect();
    let as_f64 = load(&bytes, &LoadOptions::default()).unwrap();
    assert_eq!(bits(as_f64.params()), bits(&rounded));
    let as_f32 = load_state_dict_bytes::<f32>(&bytes, &LoadOptions::default()).unwrap();
    let want: Vec<f32> = model.params().iter().map(|&v| v as f32).collect();
    assert_eq!(as_f32.params(), &want[..]);
    let from_f64 = load_state_dict_bytes::<f32>(
        &state_dict_bytes(&model, &SaveOptions::default()),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(from_f64.params(), &want[..]);
    // and an f32 model saves and loads bitwise
    let dir = scratch("f32");
    let path = dir.join("m.safetensors");
    save_state_dict(&as_f32, &path, &opts).unwrap();
    let back = load_state_dict::<f32>(&path, &LoadOptions::default()).unwrap();
    assert_eq!(back.params(), as_f32.params());
}

/// F16 and BF16 tensors (e.g. `module.half()`) convert exactly.
#[test]
fn f16_and_bf16_tensors_convert_exactly() {
    // GRU, input_size 1, hidden_size 2, no bias: weight_ih [6, 1], weight_hh [6, 2]
    let ih = [0.5, -1.25, 2.0, 0.0, 1.0, -0.75];
    let hh = [
        0.5, -1.25, 2.0, 0.0, 1.0, -0.75, 0.25, -0.5, 3.0, -4.0, 0.125, 1.5,
    ];
    let f16 = |v: f64| -> u16 {
        // exact for these values: sign, exponent rebiased 127 → 15, top 10 mantissa bits
        if v == 0.0 {
            return 0;
        }
        let b = (v as f32).to_bits();
        let sign = ((b >> 31) as u16) << 15;
        let exp = (((b >> 23) & 0xff) as i32 - 127 + 15) as u16;
        sign | (exp << 10) | ((b >> 13) & 0x3ff) as u16
    };
    let bf16 = |v: f64| ((v as f32).to_bits() >> 16) as u16;
    for (dtype, enc) in [
        (Dtype::F16, &f16 as &dyn Fn(f64) -> u16),
        (Dtype::BF16, &bf16),
    ] {
        let bytes = |v: &[f64]| v.iter().flat_map(|&x| enc(x).to_le_bytes()).collect();
        let file = build(
            &[
                ("weight_ih_l0".into(), dtype, vec![6, 1], bytes(&ih)),
                ("weight_hh_l0".into(), dtype, vec![6, 2], bytes(&hh)),
            ],
            None,
        );
        let m = load(&file, &LoadOptions::default()).unwrap();
        assert_eq!(m.config().cell, CellKind::gru(), "{dtype:?}");
        assert_eq!(m.config().bias, Bias::Disabled);
        assert_eq!(m.param("weight_ih_l0").unwrap(), &ih, "{dtype:?}");
        assert_eq!(m.param("weight_hh_l0").unwrap(), &hh, "{dtype:?}");
    }
}

/// PyTorch allows NaN and ±inf in parameters, and so does loading.
#[test]
fn non_finite_values_load_as_they_are() {
    let model = Recurrent::<f64>::new(lstm(1, Direction::Forward), 1).unwrap();
    let mut t = plain_state_dict(&model);
    let w = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    let i = t.iter().position(|x| x.0 == "bias_ih_l0").unwrap();
    t[i].3[..24].copy_from_slice(&f64_bytes(&w));
    let m = load(&build(&t, None), &LoadOptions::default()).unwrap();
    let b = m.param("bias_ih_l0").unwrap();
    assert!(b[0].is_nan());
    assert_eq!(b[1], f64::INFINITY);
    assert_eq!(b[2], f64::NEG_INFINITY);
}

// ---------------------------------------------------------------------------------------------
// Prefixes and strict mode

/// A recurrent module inside a larger model: only its prefix is read, others are ignored even
/// in strict mode; with no prefix the error points at the prefix that has parameters.
#[test]
fn prefix_selects_the_module_among_unrelated_tensors() {
    let model = Recurrent::<f64>::new(lstm(2, Direction::Forward), 5).unwrap();
    let saved = state_dict_bytes(
        &model,
        &SaveOptions {
            prefix: "rnn.".into(),
            ..Default::default()
        },
    );
    let (mut tensors, meta) = unpack(&saved);
    assert!(tensors.iter().all(|t| t.0.starts_with("rnn.")));
    tensors.push(raw_f64("embedding.weight", &[10, 3], &[0.5; 30]));
    tensors.push(raw_f64("head.weight", &[2, 4], &[0.5; 8]));
    tensors.push(raw_f64("head.bias", &[2], &[0.5; 2]));
    // a second recurrent module, and one whose name only starts like the prefix
    tensors.push(raw_f64("rnn2.weight_ih_l0", &[4, 3], &[0.5; 12]));
    tensors.push(raw_f64("rnn2.weight_hh_l0", &[4, 4], &[0.5; 16]));
    let file = build(&tensors, meta);
    for strict in [false, true] {
        let o = LoadOptions {
            prefix: "rnn.".into(),
            strict,
            ..Default::default()
        };
        let m = load(&file, &o).unwrap();
        assert_eq!(m.config(), model.config());
        assert_eq!(bits(m.params()), bits(model.params()));
    }
    let m2 = load(
        &file,
        &LoadOptions {
            prefix: "rnn2.".into(),
            rnn_nonlinearity: Some(Activation::Tanh),
            ..Default::default()
        },
    );
    // the metadata is the file's (an lstm), the rnn2 tensors are an RNN's: a contradiction
    assert!(
        matches!(m2, Err(Error::TensorShape { ref name, .. }) if name == "rnn2.weight_hh_l0"),
        "{m2:?}"
    );

    match load(&file, &LoadOptions::default()) {
        Err(Error::MissingTensor { name, reason, .. }) => {
            assert_eq!(name, "weight_ih_l0");
            assert!(
                reason.contains("\"rnn.\"") && reason.contains("\"rnn2.\""),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let strict = LoadOptions {
        strict: true,
        ..Default::default()
    };
    match load(&file, &strict) {
        Err(Error::UnexpectedTensor { name, .. }) => assert_eq!(name, "embedding.weight"),
        other => panic!("{other:?}"),
    }
}

/// Strict mode: a name under the prefix that is not a recurrent parameter is an error;
/// otherwise it is ignored.
#[test]
fn strict_mode_refuses_stray_names_under_the_prefix() {
    let model = Recurrent::<f64>::new(lstm(1, Direction::Forward), 5).unwrap();
    let mut t = plain_state_dict(&model);
    for stray in [
        "weight_ih_l0x",
        "weight_xx_l0",
        "weight_ih_l01",
        "running_mean",
    ] {
        t.push(raw_f64(stray, &[1], &[0.0]));
    }
    assert!(load(&build(&t, None), &LoadOptions::default()).is_ok());
    let strict = LoadOptions {
        strict: true,
        ..Default::default()
    };
    match load(&build(&t, None), &strict) {
        Err(Error::UnexpectedTensor { name, reason, .. }) => {
            assert_eq!(name, "running_mean");
            assert!(reason.contains("strict"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Contradictions

fn expect_missing(r: recur::Result<Recurrent<f64>>, want: &str) -> String {
    match r {
        Err(Error::MissingTensor { name, reason, .. }) => {
            assert_eq!(name, want, "{reason}");
            reason
        }
        other => panic!("expected missing {want}, got {other:?}"),
    }
}

fn expect_unexpected(r: recur::Result<Recurrent<f64>>, want: &str) {
    match r {
        Err(Error::UnexpectedTensor { name, .. }) => assert_eq!(name, want),
        other => panic!("expected unexpected {want}, got {other:?}"),
    }
}

fn expect_shape(r: recur::Result<Recurrent<f64>>, want: &str) {
    match r {
        Err(Error::TensorShape { name, .. }) => assert_eq!(name, want),
        other => panic!("expected a shape error on {want}, got {other:?}"),
    }
}

#[test]
fn missing_tensors_are_named() {
    let o = LoadOptions::default();
    let m3 = Recurrent::<f64>::new(lstm(3, Direction::Forward), 1).unwrap();
    let t = plain_state_dict(&m3);
    expect_missing(
        load(&build(&without(&t, "weight_hh_l1"), None), &o),
        "weight_hh_l1",
    );
    let r = expect_missing(
        load(&build(&without(&t, "bias_hh_l0"), None), &o),
        "bias_hh_l0",
    );
    assert!(r.contains("bias_ih and bias_hh"), "{r}");
    expect_missing(
        load(&build(&without(&t, "bias_ih_l2"), None), &o),
        "bias_ih_l2",
    );

    // a layer gap: l0 and l2 without l1
    let gap: Vec<Raw> = t
        .iter()
        .filter(|x| !x.0.ends_with("_l1"))
        .cloned()
        .collect();
    let r = expect_missing(load(&build(&gap, None), &o), "weight_ih_l1");
    assert!(r.contains("layer 2"), "{r}");
    // only layer 1
    let l1: Vec<Raw> = t.iter().filter(|x| x.0.ends_with("_l1")).cloned().collect();
    expect_missing(load(&build(&l1, None), &o), "weight_ih_l0");

    // a bidirectional stack missing one reverse block
    let bi =
        plain_state_dict(&Recurrent::<f64>::new(lstm(2, Direction::Bidirectional), 1).unwrap());
    let part: Vec<Raw> = bi
        .iter()
        .filter(|x| !x.0.ends_with("_l1_reverse"))
        .cloned()
        .collect();
    expect_missing(load(&build(&part, None), &o), "weight_ih_l1_reverse");

    // a peephole on one layer only
    let mut p = t.clone();
    p.push(raw_f64("peephole_i_l1", &[4], &[0.1; 4]));
    expect_missing(load(&build(&p, None), &o), "peephole_i_l0");

    // a projection in one direction only
    let proj = RecurrentConfig {
        cell: CellKind::Lstm(LstmCell {
            proj_size: 2,
            ..Default::default()
        }),
        ..lstm(1, Direction::Bidirectional)
    };
    let tp = plain_state_dict(&Recurrent::<f64>::new(proj, 1).unwrap());
    expect_missing(
        load(&build(&without(&tp, "weight_hr_l0"), None), &o),
        "weight_hr_l0",
    );

    // nothing at all
    expect_missing(load(&build(&[], None), &o), "weight_ih_l0");
}

#[test]
fn shapes_that_disagree_are_named() {
    let o = LoadOptions::default();
    let t = plain_state_dict(&Recurrent::<f64>::new(lstm(2, Direction::Forward), 1).unwrap());
    // layer 1 takes hidden_size = 4 inputs
    expect_shape(
        load(
            &build(
                &replaced(&t, raw_f64("weight_ih_l1", &[16, 3], &[0.1; 48])),
                None,
            ),
            &o,
        ),
        "weight_ih_l1",
    );
    // 15 rows are not G * 4 for any cell
    expect_shape(
        load(
            &build(
                &replaced(&t, raw_f64("weight_hh_l0", &[15, 4], &[0.1; 60])),
                None,
            ),
            &o,
        ),
        "weight_hh_l0",
    );
    // rank 3
    expect_shape(
        load(
            &build(
                &replaced(&t, raw_f64("weight_ih_l0", &[1, 16, 3], &[0.1; 48])),
                None,
            ),
            &o,
        ),
        "weight_ih_l0",
    );
    expect_shape(
        load(
            &build(
                &replaced(&t, raw_f64("bias_ih_l1", &[15], &[0.1; 15])),
                None,
            ),
            &o,
        ),
        "bias_ih_l1",
    );
    // zero-sized dimensions
    expect_shape(
        load(
            &build(&replaced(&t, raw_f64("weight_ih_l0", &[16, 0], &[])), None),
            &o,
        ),
        "weight_ih_l0",
    );
    // proj_size ≥ hidden_size
    let mut p = t.clone();
    p.push(raw_f64("weight_hr_l0", &[4, 4], &[0.1; 16]));
    expect_shape(load(&build(&p, None), &o), "weight_hr_l0");
    // metadata says GRU, the shapes say LSTM
    let meta = HashMap::from([
        (
            "recur.format".to_string(),
            "pytorch-state-dict-1".to_string(),
        ),
        ("recur.cell".to_string(), "gru".to_string()),
    ]);
    expect_shape(load(&build(&t, Some(meta.clone())), &o), "weight_hh_l0");
    // metadata says GRU and a projection is present: the projection is unexpected
    let gru = plain_state_dict(
        &Recurrent::<f64>::new(
            RecurrentConfig {
                cell: CellKind::gru(),
                ..lstm(1, Direction::Forward)
            },
            1,
        )
        .unwrap(),
    );
    let mut g = gru.clone();
    g.push(raw_f64("weight_hr_l0", &[2, 4], &[0.1; 8]));
    expect_unexpected(load(&build(&g, Some(meta)), &o), "weight_hr_l0");
}

#[test]
fn unsupported_dtypes_are_named() {
    let t = plain_state_dict(&Recurrent::<f64>::new(lstm(1, Direction::Forward), 1).unwrap());
    for dtype in [
        Dtype::I64,
        Dtype::I32,
        Dtype::U8,
        Dtype::BOOL,
        Dtype::F8_E4M3,
    ] {
        let n = 16 * dtype.bitsize() / 8;
        let file = build(
            &replaced(&t, ("bias_hh_l0".into(), dtype, vec![16], vec![0; n])),
            None,
        );
        match load(&file, &LoadOptions::default()) {
            Err(Error::TensorDtype { name, dtype: d, .. }) => {
                assert_eq!(name, "bias_hh_l0");
                assert_eq!(d, format!("{dtype:?}"));
            }
            other => panic!("{dtype:?}: {other:?}"),
        }
    }
}

#[test]
fn metadata_and_options_that_contradict_are_errors() {
    let rnn = Recurrent::<f64>::new(
        RecurrentConfig {
            cell: CellKind::rnn_tanh(),
            ..lstm(1, Direction::Forward)
        },
        1,
    )
    .unwrap();
    let saved = state_dict_bytes(&rnn, &SaveOptions::default());
    // The same file as an earlier recur wrote it, with flat keys.
    let (tensors, meta) = unpack(&saved);
    let legacy: HashMap<String, String> = [
        ("recur.format", "pytorch-state-dict-1"),
        ("recur.cell", "rnn"),
        ("recur.rnn_nonlinearity", "tanh"),
        ("recur.leak", "none"),
        ("recur.clip", "none"),
        ("recur.batch_layout", "seq_first"),
        ("recur.dropout", "0"),
        ("recur.recurrent_dropout", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let old = build(&tensors, Some(legacy.clone()));
    assert_eq!(
        load(&old, &LoadOptions::default()).unwrap().config(),
        rnn.config()
    );
    // the file says tanh
    let relu = LoadOptions {
        rnn_nonlinearity: Some(Activation::Relu),
        ..Default::default()
    };
    assert!(
        matches!(load(&saved, &relu), Err(Error::Metadata { ref key, .. }) if key == "recur.config")
    );
    assert!(
        matches!(load(&old, &relu), Err(Error::Metadata { ref key, .. }) if key == "recur.rnn_nonlinearity")
    );
    let same = LoadOptions {
        rnn_nonlinearity: Some(Activation::Tanh),
        ..Default::default()
    };
    assert!(load(&saved, &same).is_ok());
    // an option for another cell
    let gru_opt = LoadOptions {
        gru_reset: Some(ResetPlacement::BeforeMatmul),
        ..Default::default()
    };
    assert!(
        matches!(load(&saved, &gru_opt), Err(Error::Config { ref what, .. }) if what == "LoadOptions::gru_reset")
    );

    // malformed configuration JSON, or one the tensors contradict
    let meta = meta.unwrap();
    let json = meta["recur.config"].clone();
    for v in [
        String::new(),
        "{}".into(),
        json.replace("\"hidden_size\":4", "\"hidden_size\":5"),
        json.replace("\"tanh\"", "\"gelu\""),
        json.replace("\"num_layers\":1", "\"num_layers\":1,\"extra\":1"),
    ] {
        let mut m = meta.clone();
        m.insert("recur.config".into(), v.clone());
        match load(&build(&tensors, Some(m)), &LoadOptions::default()) {
            Err(Error::Metadata { key, .. }) => assert_eq!(key, "recur.config", "{v}"),
            other => panic!("{v}: {other:?}"),
        }
    }
    let mut m = meta.clone();
    m.remove("recur.config");
    assert!(matches!(
        load(&build(&tensors, Some(m)), &LoadOptions::default()),
        Err(Error::Metadata { ref key, .. }) if key == "recur.config"
    ));

    // malformed flat metadata values of the earlier format
    let meta = legacy;
    for (k, v) in [
        ("recur.cell", "transformer"),
        ("recur.format", "pytorch-state-dict-99"),
        ("recur.leak", "uniform:fast"),
        ("recur.leak", "per_layer:"),
        ("recur.rnn_nonlinearity", "gelu"),
        ("recur.batch_layout", "sideways"),
    ] {
        let mut m = meta.clone();
        m.insert(k.into(), v.into());
        match load(&build(&tensors, Some(m)), &LoadOptions::default()) {
            Err(Error::Metadata { key, .. }) => assert_eq!(key, k, "{v}"),
            other => panic!("{k}={v}: {other:?}"),
        }
    }
    // well-formed but out of range: recur's own validation
    let mut m = meta.clone();
    m.insert("recur.leak".into(), "uniform:1.5".into());
    assert!(matches!(
        load(&build(&tensors, Some(m)), &LoadOptions::default()),
        Err(Error::Config { .. })
    ));
    // keys of other writers are ignored
    let mut m = meta.clone();
    m.insert("format".into(), "pt".into());
    assert!(load(&build(&tensors, Some(m)), &LoadOptions::default()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Hostile files

/// A small valid file (a 1-layer LSTM), for the hostile cases to start from.
fn valid_file() -> Vec<u8> {
    let model = Recurrent::<f64>::new(
        RecurrentConfig {
            cell: CellKind::lstm(),
            input_size: 2,
            hidden_size: 2,
            ..Default::default()
        },
        1,
    )
    .unwrap();
    state_dict_bytes(&model, &SaveOptions::default())
}

/// A file whose JSON header is `header` and whose data section is `data`.
fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn expect_format(bytes: &[u8], case: &str) -> String {
    match catch_unwind(|| load(bytes, &LoadOptions::default())) {
        Ok(Err(e @ Error::Format { .. })) => e.to_string(),
        Ok(other) => panic!("{case}: expected a format error, got {other:?}"),
        Err(_) => panic!("{case}: panicked"),
    }
}

#[test]
fn hostile_files_are_format_errors() {
    let good = valid_file();
    assert!(load(&good, &LoadOptions::default()).is_ok());

    expect_format(b"", "empty");
    expect_format(b"\x01\x02\x03", "shorter than the length field");
    let e = expect_format(b"this is not a safetensors file, it is text", "text");
    assert!(
        e.starts_with("<memory>: not a valid safetensors file"),
        "{e}"
    );
    expect_format(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "png");

    // PyTorch's own files say what they are and how to save safetensors, not "header length
    // exceeds 100 MB": torch.save's zip archive, its legacy pickle (magic number first), a
    // plain pickle of protocol 4
    for (bytes, what) in [
        (
            &b"PK\x03\x04\x00\x00\x08\x08\x00\x00archive/data.pkl"[..],
            "zip archive",
        ),
        (
            &b"\x80\x02\x8a\x0alZ\xfc\x9cF\xf9 j\xa8P\x19."[..],
            "Python pickle",
        ),
        (
            &b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00}\x94."[..],
            "Python pickle",
        ),
    ] {
        let e = expect_format(bytes, what);
        assert!(e.contains(what), "{e}");
        assert!(
            e.contains("safetensors.torch.save_file(model.state_dict()"),
            "{e}"
        );
        assert!(!e.contains("100 MB"), "{e}");
    }

    // header length lying: past the end, absurdly large, too short
    let mut lie = good.clone();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap());
    lie[..8].copy_from_slice(&(n + 1000).to_le_bytes());
    let e = expect_format(&lie, "header length past the end");
    assert!(e.contains("runs past the end"), "{e}");
    lie[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    expect_format(&lie, "header length u64::MAX");
    lie[..8].copy_from_slice(&(n - 8).to_le_bytes());
    expect_format(&lie, "header length too short");

    // huge declared shapes, backed by 16 bytes
    let data = [0u8; 16];
    for (case, header) in [
        (
            "shape overflows usize",
            r#"{"weight_ih_l0":{"dtype":"F64","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,16]}}"#,
        ),
        (
            "shape larger than the data",
            r#"{"weight_ih_l0":{"dtype":"F64","shape":[1073741824,1048576],"data_offsets":[0,16]}}"#,
        ),
        (
            "offsets agree with a huge shape, file too short",
            r#"{"weight_ih_l0":{"dtype":"F64","shape":[1073741824],"data_offsets":[0,8589934592]}}"#,
        ),
        (
            "offsets out of range",
            r#"{"weight_ih_l0":{"dtype":"F64","shape":[125],"data_offsets":[0,1000]}}"#,
        ),
        (
            "offsets reversed",
            r#"{"weight_ih_l0":{"dtype":"F64","shape":[2],"data_offsets":[16,0]}}"#,
        ),
        (
            "offsets overlap",
            r#"{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}}"#,
        ),
        (
            "data left over",
            r#"{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#,
        ),
        (
            "unknown dtype",
            r#"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#,
        ),
        ("not json", "{weight_ih_l0: 1}"),
        ("json but not a header", "[1, 2, 3]"),
    ] {
        expect_format(&with_header(header, &data), case);
    }
    // not UTF-8
    let mut not_utf8 = with_header("{\"a\":1}", &[]);
    not_utf8[9] = 0xff;
    let e = expect_format(&not_utf8, "not utf-8");
    assert!(e.contains("UTF-8"), "{e}");

    // missing files are I/O errors naming the path
    let missing = scratch("missing").join("nope.safetensors");
    match load_state_dict::<f64>(&missing, &LoadOptions::default()) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("nope.safetensors"), "{e}"),
        other => panic!("{other:?}"),
    }
    // and a file that cannot be written (its directory does not exist)
    let model = load(&good, &LoadOptions::default()).unwrap();
    let bad = scratch("unwritable").join("no/such/dir/m.safetensors");
    assert!(matches!(
        save_state_dict(&model, &bad, &SaveOptions::default()),
        Err(Error::Io { .. })
    ));
}

/// A file cut at any byte is an error, never a panic.
#[test]
fn a_file_truncated_anywhere_is_an_error() {
    let good = valid_file();
    for n in 0..good.len() {
        let r = catch_unwind(|| load(&good[..n], &LoadOptions::default()));
        match r {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("truncated at {n} of {} bytes: loaded", good.len()),
            Err(_) => panic!("truncated at {n} of {} bytes: panicked", good.len()),
        }
    }
}

/// Any single corrupted byte gives a model or an error, never a panic.
#[test]
fn a_file_with_any_byte_corrupted_never_panics() {
    let good = valid_file();
    for i in 0..good.len() {
        for flip in [0x01u8, 0x20, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            let r = catch_unwind(AssertUnwindSafe(|| {
                let _ = load(&bad, &LoadOptions::default());
                let _ = load_state_dict_bytes::<f32>(&bad, &LoadOptions::default());
            }));
            assert!(r.is_ok(), "byte {i} ^ {flip:#x}: panicked");
        }
    }
}
