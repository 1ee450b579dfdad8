//! The layer-normalised LSTM and GRU around their math (which `gradcheck.rs`, `parity.rs`,
//! `consistency.rs` and `stepper.rs` check): its tensors and their initialisation, its JSON,
//! PyTorch state_dicts with its extra names, and what refuses it.

use recur::io::{LoadOptions, SaveOptions, load_state_dict_bytes, state_dict_bytes};
use recur::{
    CellKind, Error, GruCell, LstmCell, Recurrent, RecurrentConfig, ResetPlacement, Tensor,
};

fn ln_config() -> RecurrentConfig {
    RecurrentConfig {
        cell: CellKind::Lstm(LstmCell {
            layer_norm: true,
            ..Default::default()
        }),
        input_size: 3,
        hidden_size: 4,
        num_layers: 2,
        direction: recur::Direction::Bidirectional,
        ..Default::default()
    }
}

#[test]
fn the_norms_have_their_tensors_initialised_to_ones_and_zeros() {
    let m = Recurrent::<f64>::new(ln_config(), 7).unwrap();
    for (name, len, value) in [
        ("gamma_ih_l1_reverse", 16, 1.0),
        ("gamma_hh_l0", 16, 1.0),
        ("gamma_c_l1", 4, 1.0),
        ("beta_c_l0_reverse", 4, 0.0),
    ] {
        let v = m.param(name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(v, vec![value; len].as_slice(), "{name}");
    }
    // the other tensors are drawn as for the plain cell
    let plain = RecurrentConfig {
        cell: CellKind::lstm(),
        num_layers: 1,
        direction: recur::Direction::Forward,
        ..ln_config()
    };
    let (a, b) = (
        Recurrent::<f64>::new(plain, 7).unwrap(),
        Recurrent::<f64>::new(
            RecurrentConfig {
                num_layers: 1,
                direction: recur::Direction::Forward,
                ..ln_config()
            },
            7,
        )
        .unwrap(),
    );
    assert_eq!(a.param("weight_hh_l0"), b.param("weight_hh_l0"));
    assert!(a.param("gamma_ih_l0").is_none());
}

#[test]
fn layer_norm_is_in_the_json_and_absent_means_off() {
    let c = ln_config();
    let json = c.to_json();
    assert!(json.contains("\"layer_norm\":true"), "{json}");
    assert_eq!(RecurrentConfig::from_json(&json).unwrap(), c);
    // files of earlier versions, and plain cells, have no key: off
    let plain = RecurrentConfig {
        cell: CellKind::lstm(),
        ..ln_config()
    };
    let json = plain.to_json();
    assert!(!json.contains("layer_norm"), "{json}");
    assert_eq!(RecurrentConfig::from_json(&json).unwrap(), plain);
}

#[test]
fn a_projection_is_refused_with_layer_norm() {
    let c = RecurrentConfig {
        cell: CellKind::Lstm(LstmCell {
            layer_norm: true,
            proj_size: 2,
            ..Default::default()
        }),
        ..ln_config()
    };
    let e = Recurrent::<f32>::new(c, 0).unwrap_err();
    assert!(
        matches!(&e, Error::Config { .. }) && e.to_string().contains("layer_norm"),
        "{e}"
    );
}

#[test]
fn onnx_export_refuses_layer_norm() {
    let m = Recurrent::<f32>::new(ln_config(), 0).unwrap();
    let e = recur::onnx::export_recurrent(&m, &Default::default()).unwrap_err();
    assert!(
        matches!(&e, Error::Unsupported(msg) if msg.contains("layer-normalised")),
        "{e}"
    );
}

#[test]
fn state_dicts_carry_the_norms_by_name_and_load_back() {
    let mut m = Recurrent::<f64>::new(ln_config(), 3).unwrap();
    for (k, p) in m.params_mut().iter_mut().enumerate() {
        *p = (k as f64 * 0.37).sin();
    }
    let bytes = state_dict_bytes(&m, &SaveOptions::default());
    let back: Recurrent<f64> = load_state_dict_bytes(&bytes, &LoadOptions::default()).unwrap();
    assert_eq!(back.config(), m.config());
    assert_eq!(back.params(), m.params());
    let names: Vec<&str> = back
        .layout()
        .entries()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for name in [
        "gamma_ih_l0",
        "gamma_hh_l1_reverse",
        "gamma_c_l1",
        "beta_c_l0",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    // and the model they give runs as the original
    let x = Tensor::new(
        (0..5 * 2 * 3).map(|i| (i as f64).cos()).collect(),
        &[5, 2, 3],
    )
    .unwrap();
    let call = recur::Call::new();
    assert_eq!(
        back.forward(&x, call).unwrap(),
        m.forward(&x, call).unwrap()
    );
}

#[test]
fn norms_make_the_output_independent_of_the_weights_scale() {
    // LN(s·W x) = LN(W x) for s > 0: scaling W_ih and W_hh by the same factor leaves a
    // layer-normalised LSTM's output unchanged (up to ε), which a plain LSTM's is not.
    let config = RecurrentConfig {
        num_layers: 1,
        direction: recur::Direction::Forward,
        ..ln_config()
    };
    let m = Recurrent::<f64>::new(config.clone(), 11).unwrap();
    let mut scaled = m.clone();
    let layout = m.layout().clone();
    for e in layout.entries() {
        if e.name.starts_with("weight_") {
            for v in scaled.param_mut(&e.name).unwrap() {
                *v *= 4.0;
            }
        }
    }
    let x = Tensor::new(
        (0..6 * 2 * 3).map(|i| (i as f64 * 0.7).sin()).collect(),
        &[6, 2, 3],
    )
    .unwrap();
    let (a, b) = (
        m.forward(&x, recur::Call::new()).unwrap(),
        scaled.forward(&x, recur::Call::new()).unwrap(),
    );
    let worst = a
        .output
        .data()
        .iter()
        .zip(b.output.data())
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-3, "scaled weights move the output by {worst:e}");
    assert!(a.output.data().iter().any(|v| v.abs() > 1e-2));
}

fn ln_gru() -> RecurrentConfig {
    RecurrentConfig {
        cell: CellKind::Gru(GruCell {
            layer_norm: true,
            ..Default::default()
        }),
        ..ln_config()
    }
}

#[test]
fn the_layer_normalised_gru_has_product_gains_only_and_resets_after() {
    let m = Recurrent::<f64>::new(ln_gru(), 1).unwrap();
    assert_eq!(m.param("gamma_ih_l0"), Some(&[1.0; 12][..]));
    assert_eq!(m.param("gamma_hh_l1_reverse"), Some(&[1.0; 12][..]));
    assert!(m.param("gamma_c_l0").is_none() && m.param("beta_c_l0").is_none());
    let json = ln_gru().to_json();
    assert!(json.contains("\"layer_norm\":true"), "{json}");
    assert_eq!(RecurrentConfig::from_json(&json).unwrap(), ln_gru());
    let bytes = state_dict_bytes(&m, &SaveOptions::default());
    let back: Recurrent<f64> = load_state_dict_bytes(&bytes, &LoadOptions::default()).unwrap();
    assert_eq!((back.config(), back.params()), (m.config(), m.params()));
    let before = RecurrentConfig {
        cell: CellKind::Gru(GruCell {
            layer_norm: true,
            reset: ResetPlacement::BeforeMatmul,
            ..Default::default()
        }),
        ..ln_config()
    };
    let e = Recurrent::<f32>::new(before, 0).unwrap_err();
    assert!(e.to_string().contains("reset"), "{e}");
    let m32 = Recurrent::<f32>::new(ln_gru(), 0).unwrap();
    assert!(recur::onnx::export_recurrent(&m32, &Default::default()).is_err());
}

#[test]
fn inference_equals_the_training_forward_on_a_large_ragged_batch() {
    // 37 rows: split between threads, inference projecting each step's input in the loop
    for cell in [ln_config().cell, ln_gru().cell] {
        let c = RecurrentConfig {
            cell,
            input_size: 3,
            hidden_size: 16,
            ..ln_config()
        };
        let m = Recurrent::<f32>::new(c, 2).unwrap();
        let (t, b) = (30, 37);
        let x = Tensor::new(
            (0..t * b * 3).map(|i| ((i as f32) * 0.37).sin()).collect(),
            &[t, b, 3],
        )
        .unwrap();
        let lengths: Vec<usize> = (0..b).map(|k| 1 + (k * 7) % t).collect();
        let call = recur::Call::new().lengths(&lengths);
        let inf = m.forward(&x, call).unwrap();
        let (train, _) = m.forward_train(&x, call.seed(0)).unwrap();
        let worst = inf
            .output
            .data()
            .iter()
            .zip(train.output.data())
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{worst:e}");
    }
}
