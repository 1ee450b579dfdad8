//! Zoneout (Krueger et al. 2017) around its gradient (which `gradcheck.rs` checks): what a
//! training step and an inference step compute, seeds, z = 0, streaming, the JSON and what
//! refuses it.

mod common;

use common::cases::SplitMix64;
use recur::{
    Call, CellKind, Direction, Error, GruCell, LstmCell, OutputGrad, Peepholes, Recurrent,
    RecurrentConfig, State, Tensor,
};

const T: usize = 6;
const B: usize = 5;
const I: usize = 3;
const H: usize = 8;

fn config(cell: CellKind, zh: f64, zc: f64) -> RecurrentConfig {
    RecurrentConfig {
        cell,
        input_size: I,
        hidden_size: H,
        zoneout_h: zh,
        zoneout_c: zc,
        ..Default::default()
    }
}

fn input(seed: u64) -> Tensor<f64> {
    SplitMix64(seed).values_tensor(&[T, B, I], 1.0)
}

/// The plain cell's step from `state` on step `t` of `x`: h̃ (and c̃).
fn plain_step(plain: &Recurrent<f64>, x: &Tensor<f64>, t: usize, state: &State<f64>) -> State<f64> {
    let xt = Tensor::new(x.data()[t * B * I..(t + 1) * B * I].to_vec(), &[1, B, I]).unwrap();
    plain.forward(&xt, Call::new().state(state)).unwrap().state
}

/// Runs `model` (with zoneout) and checks every step against the plain cell's step from the
/// zoned-out state before it: in training each unit is the previous value or the new one
/// (returns how many units kept their previous value, of how many); at inference the
/// expectation z·prev + (1 − z)·new.
fn check_steps(model: &Recurrent<f64>, train: Option<u64>) -> [(usize, usize); 2] {
    let cfg = model.config().clone();
    let plain = Recurrent::<f64>::from_params(
        RecurrentConfig {
            zoneout_h: 0.0,
            zoneout_c: 0.0,
            ..cfg.clone()
        },
        model.params().to_vec(),
    )
    .unwrap();
    let x = input(3);
    let lstm = cfg.cell.has_cell_state();
    let mut state = model.zero_state(B);
    let mut kept = [(0, 0); 2];
    for t in 1..=T {
        // the zoned-out state after t steps: the model run on the first t steps
        let xt = Tensor::new(x.data()[..t * B * I].to_vec(), &[t, B, I]).unwrap();
        let out = match train {
            Some(seed) => model.forward_train(&xt, Call::new().seed(seed)).unwrap().0,
            None => model.forward(&xt, Call::new()).unwrap(),
        };
        let new = plain_step(&plain, &x, t - 1, &state);
        let mut pairs = vec![(&state.h, &new.h, &out.state.h, cfg.zoneout_h, 0)];
        if lstm {
            pairs.push((
                state.c.as_ref().unwrap(),
                new.c.as_ref().unwrap(),
                out.state.c.as_ref().unwrap(),
                cfg.zoneout_c,
                1,
            ));
        }
        for (prev, new, got, z, which) in pairs {
            for ((&p, &v), &g) in prev.data().iter().zip(new.data()).zip(got.data()) {
                match train {
                    Some(_) if z > 0.0 => {
                        // (the t-step run and the (t−1)-step one may round their input
                        // products differently in the last bit)
                        let held = (g - p).abs() < 1e-12;
                        assert!(
                            held || (g - v).abs() < 1e-12,
                            "t {t}: {g} is neither {p} nor {v}"
                        );
                        kept[which].0 += usize::from(held && (p - v).abs() > 1e-9);
                        kept[which].1 += 1;
                    }
                    _ => {
                        let want = z * p + (1.0 - z) * v;
                        assert!((g - want).abs() < 1e-12, "t {t}: {g} vs {want}");
                    }
                }
            }
        }
        state = out.state;
    }
    kept
}

#[test]
fn training_keeps_each_unit_or_takes_the_new_value_at_rate_z() {
    for (cell, zh, zc) in [
        (CellKind::lstm(), 0.3, 0.5),
        (CellKind::gru(), 0.4, 0.0),
        (
            CellKind::Lstm(LstmCell {
                layer_norm: true,
                ..Default::default()
            }),
            0.5,
            0.2,
        ),
    ] {
        let model = Recurrent::<f64>::new(config(cell.clone(), zh, zc), 5).unwrap();
        let [(kh, nh), (kc, nc)] = check_steps(&model, Some(11));
        // each unit is held with probability z (a binomial over T·B·H = 240 draws)
        let rate = |k: usize, n: usize| k as f64 / n.max(1) as f64;
        assert!(
            (rate(kh, nh) - zh).abs() < 0.1,
            "{}: h held {kh}/{nh}",
            cell.name()
        );
        if zc > 0.0 {
            assert!(
                (rate(kc, nc) - zc).abs() < 0.1,
                "{}: c held {kc}/{nc}",
                cell.name()
            );
        }
    }
}

#[test]
fn inference_is_the_expectation() {
    for (cell, zh, zc) in [(CellKind::lstm(), 0.3, 0.5), (CellKind::gru(), 0.4, 0.0)] {
        let model = Recurrent::<f64>::new(config(cell, zh, zc), 2).unwrap();
        check_steps(&model, None);
    }
}

#[test]
fn streaming_gives_the_whole_sequence_inference() {
    let model = Recurrent::<f64>::new(config(CellKind::lstm(), 0.3, 0.2), 4).unwrap();
    let x = input(9);
    let whole = model.forward(&x, Call::new()).unwrap();
    let mut stepper = model.stepper(B).unwrap();
    let mut y = vec![0.0; B * H];
    for t in 0..T {
        stepper
            .step(&x.data()[t * B * I..(t + 1) * B * I], &mut y)
            .unwrap();
        let want = &whole.output.data()[t * B * H..(t + 1) * B * H];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "t {t}: {a} vs {b}");
        }
    }
}

/// One training call's output and every gradient.
fn train_run(model: &Recurrent<f64>, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let x = input(1);
    let (out, tape) = model.forward_train(&x, Call::new().seed(seed)).unwrap();
    let dy = SplitMix64(2).values_tensor(out.output.shape(), 1.0);
    let mut grads = vec![0.0; model.params().len()];
    let dx = model
        .backward(
            &tape,
            OutputGrad {
                output: Some(dy.view()),
                ..Default::default()
            },
            &mut grads,
        )
        .unwrap();
    (out.output.data().to_vec(), grads, dx.input.data().to_vec())
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let model = Recurrent::<f64>::new(config(CellKind::lstm(), 0.3, 0.3), 1).unwrap();
    assert_eq!(train_run(&model, 7), train_run(&model, 7));
    assert_ne!(train_run(&model, 7).0, train_run(&model, 8).0);
    // a training call with zoneout needs a seed
    assert!(model.forward_train(&input(1), Call::new()).is_err());
}

#[test]
fn zero_zoneout_is_bitwise_the_plain_cell() {
    for cell in [CellKind::lstm(), CellKind::gru()] {
        let plain = Recurrent::<f64>::new(config(cell.clone(), 0.0, 0.0), 3).unwrap();
        let mut zero = RecurrentConfig {
            num_layers: 2,
            direction: Direction::Bidirectional,
            ..config(cell.clone(), 0.0, 0.0)
        };
        let plain2 = Recurrent::<f64>::new(zero.clone(), 3).unwrap();
        // the same model with zoneout at 0 written out, through the JSON (absent key)
        zero = RecurrentConfig::from_json(&zero.to_json()).unwrap();
        let z2 = Recurrent::<f64>::from_params(zero, plain2.params().to_vec()).unwrap();
        assert_eq!(train_run(&plain2, 4), train_run(&z2, 4));
        let z1 =
            Recurrent::<f64>::from_params(config(cell, 0.0, 0.0), plain.params().to_vec()).unwrap();
        assert_eq!(train_run(&plain, 4), train_run(&z1, 4));
        let x = input(5);
        assert_eq!(
            plain.forward(&x, Call::new()).unwrap(),
            z1.forward(&x, Call::new()).unwrap()
        );
    }
}

#[test]
fn the_json_carries_zoneout_and_refusals_name_the_setting() {
    let c = config(CellKind::lstm(), 0.25, 0.125);
    let json = c.to_json();
    assert!(json.contains("\"zoneout_h\":0.25") && json.contains("\"zoneout_c\":0.125"));
    assert_eq!(RecurrentConfig::from_json(&json).unwrap(), c);
    let plain = config(CellKind::lstm(), 0.0, 0.0).to_json();
    assert!(!plain.contains("zoneout"), "{plain}");

    let refused = |c: RecurrentConfig, what: &str| {
        let e = c.validate().unwrap_err();
        assert!(
            matches!(&e, Error::Config { what: w, .. } if w == what),
            "{what}: {e}"
        );
    };
    refused(config(CellKind::lstm(), 1.0, 0.0), "zoneout_h");
    refused(config(CellKind::lstm(), 0.0, -0.1), "zoneout_c");
    refused(config(CellKind::rnn_tanh(), 0.2, 0.0), "zoneout_h");
    refused(config(CellKind::gru(), 0.0, 0.2), "zoneout_c");
    refused(
        config(
            CellKind::Lstm(LstmCell {
                peepholes: Peepholes::ALL,
                ..Default::default()
            }),
            0.0,
            0.2,
        ),
        "zoneout_c",
    );
    // ONNX's operators have no zoneout
    let m = Recurrent::<f32>::new(
        config(
            CellKind::Gru(GruCell {
                ..Default::default()
            }),
            0.1,
            0.0,
        ),
        0,
    )
    .unwrap();
    assert!(matches!(
        recur::onnx::export_recurrent(&m, &Default::default()),
        Err(Error::Unsupported(_))
    ));
}
