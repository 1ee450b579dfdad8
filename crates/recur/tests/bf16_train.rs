//! bf16 training (`Recurrent::set_precision(WeightFormat::Bf16)`): the forward's products
//! and the backward's step products and input gradient take bf16 operands and accumulate
//! in f32.
//!
//! - The training forward in bf16 equals bf16 inference (`forward_with`) bit for bit: the
//!   same products on the same packed weights.
//! - Outputs, every parameter gradient and the input gradient lie within `BF16_TOL` of the
//!   f32 run's, measured per tensor as ‖bf16 − f32‖ / ‖f32‖, for the LSTM (also with a
//!   projection), the GRU and the RNN, two bidirectional layers over a ragged batch; and
//!   they differ from f32 (the bf16 products ran).
//! - Going back to f32 gives the f32 numbers bit for bit; an f64 model, a layer-normalised
//!   cell and a CPU without AVX-512 BF16 get `Error::Unsupported`.
//!
//! The tolerance: bf16 keeps 8 significant bits, so each operand of a product moves by up
//! to 2⁻⁹ relative and each term by up to ~2⁻⁸. Over a sum of many terms the roundings are
//! independent, so a product's result moves by ~2⁻⁸ ≈ 4e-3 of its norm (not of each
//! element, which a sum with cancellation can make small: hence the norm-wise measure). The
//! backward chains those products through the steps and the layers (each step's δgates
//! feed the next step's product and the weight gradients sum over all steps), which
//! multiplies the figure by a small factor: 2e-2 is 5 × 2⁻⁸ (observed: 3–5e-3, printed). A wrong operand (a weight
//! matrix transposed, a packed block misplaced, a step's product skipped) moves the
//! gradients by O(1) of their norm.

use recur::{
    Call, CellKind, Direction, Error, LstmCell, OutputGrad, Recurrent, RecurrentConfig, Tensor,
    WeightFormat,
};

/// Relative norm-wise distance allowed between a bf16 training run's outputs and gradients
/// and the f32 run's (see the module docs).
const BF16_TOL: f64 = 2e-2;

const T: usize = 24;
const BATCH: usize = 9;
const INPUT: usize = 48;
const HIDDEN: usize = 96;

/// Uniform in [−1, 1), from a seed (SplitMix64).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn cells() -> Vec<(&'static str, CellKind)> {
    vec![
        ("lstm", CellKind::lstm()),
        (
            "lstm proj",
            CellKind::Lstm(LstmCell {
                proj_size: 64,
                ..Default::default()
            }),
        ),
        ("gru", CellKind::gru()),
        ("rnn", CellKind::rnn_tanh()),
    ]
}

fn model(cell: CellKind) -> Recurrent<f32> {
    Recurrent::new(
        RecurrentConfig {
            cell,
            input_size: INPUT,
            hidden_size: HIDDEN,
            num_layers: 2,
            direction: Direction::Bidirectional,
            ..Default::default()
        },
        11,
    )
    .unwrap()
}

/// What a training step gives: the output, h_n, every parameter's gradient, dX.
struct Run {
    output: Vec<f32>,
    h_n: Vec<f32>,
    grads: Vec<f32>,
    dx: Vec<f32>,
}

fn run(m: &Recurrent<f32>, seed: u64) -> Run {
    let x = Tensor::new(values(T * BATCH * INPUT, seed), &[T, BATCH, INPUT]).unwrap();
    let lengths: Vec<usize> = (0..BATCH).map(|b| T - (b * 5) % T).collect();
    let (out, tape) = m.forward_train(&x, Call::new().lengths(&lengths)).unwrap();
    let dy = Tensor::new(
        values(out.output.data().len(), seed + 1),
        out.output.shape(),
    )
    .unwrap();
    let mut grads = vec![0f32; m.params().len()];
    let grad = OutputGrad {
        output: Some(dy.view()),
        ..Default::default()
    };
    let dx = m.backward(&tape, grad, &mut grads).unwrap();
    Run {
        output: out.output.data().to_vec(),
        h_n: out.state.h.data().to_vec(),
        grads,
        dx: dx.input.data().to_vec(),
    }
}

/// ‖a − b‖ / ‖b‖.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut d, mut n) = (0f64, 0f64);
    for (&p, &q) in a.iter().zip(b) {
        d += (f64::from(p) - f64::from(q)).powi(2);
        n += f64::from(q).powi(2);
    }
    (d / n.max(f64::MIN_POSITIVE)).sqrt()
}

/// Whether this CPU has AVX-512 BF16 (the bf16 products' instruction).
fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn bf16_training_stays_close_to_f32_and_its_forward_is_bf16_inference() {
    for (name, cell) in cells() {
        let f32_model = model(cell.clone());
        let mut bf = f32_model.clone();
        if bf.set_precision(WeightFormat::Bf16).is_err() {
            assert!(
                !cpu_has_bf16(),
                "{name}: refused on a CPU with AVX-512 BF16"
            );
            assert_eq!(bf.precision(), WeightFormat::F32);
            return;
        }
        assert_eq!(bf.precision(), WeightFormat::Bf16);
        let want = run(&f32_model, 5);
        let got = run(&bf, 5);

        // the training forward is bf16 inference, bit for bit
        let x = Tensor::new(values(T * BATCH * INPUT, 5), &[T, BATCH, INPUT]).unwrap();
        let lengths: Vec<usize> = (0..BATCH).map(|b| T - (b * 5) % T).collect();
        let inference = f32_model
            .forward_with(&x, Call::new().lengths(&lengths), WeightFormat::Bf16)
            .unwrap();
        assert!(
            inference
                .output
                .data()
                .iter()
                .zip(&got.output)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: the bf16 training forward is not bf16 inference"
        );

        let mut worst = 0f64;
        let mut check = |what: &str, a: &[f32], b: &[f32]| {
            let e = rel(a, b);
            assert!(e <= BF16_TOL, "{name} {what}: {e:.2e} > {BF16_TOL:e}");
            worst = worst.max(e);
            e
        };
        check("output", &got.output, &want.output);
        check("h_n", &got.h_n, &want.h_n);
        check("dX", &got.dx, &want.dx);
        for e in bf.layout().entries() {
            let span = e.offset..e.offset + e.len;
            check(&e.name, &got.grads[span.clone()], &want.grads[span]);
        }
        println!("bf16 vs f32 training, {name}: largest ‖Δ‖/‖f32‖ = {worst:.2e}");
        assert!(worst > 0.0, "{name}: bf16 did not change anything");
    }
}

/// bf16 then f32 again: the f32 numbers of a model that never left f32, bit for bit.
#[test]
fn back_to_f32_is_f32_bit_for_bit() {
    let plain = model(CellKind::lstm());
    let mut m = plain.clone();
    if m.set_precision(WeightFormat::Bf16).is_ok() {
        let _ = run(&m, 3);
    }
    m.set_precision(WeightFormat::F32).unwrap();
    let (a, b) = (run(&plain, 3), run(&m, 3));
    for (p, q) in [(&a.output, &b.output), (&a.grads, &b.grads), (&a.dx, &b.dx)] {
        assert!(p.iter().zip(q).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn bf16_training_is_refused_where_it_does_not_run() {
    let mut m64 = Recurrent::<f64>::new(
        RecurrentConfig {
            input_size: 3,
            hidden_size: 4,
            ..Default::default()
        },
        0,
    )
    .unwrap();
    assert!(matches!(
        m64.set_precision(WeightFormat::Bf16),
        Err(Error::Unsupported(_))
    ));
    assert_eq!(m64.precision(), WeightFormat::F32);
    let mut norm = model(CellKind::Lstm(LstmCell {
        layer_norm: true,
        ..Default::default()
    }));
    assert!(matches!(
        norm.set_precision(WeightFormat::Bf16),
        Err(Error::Unsupported(_))
    ));
    let mut plain = model(CellKind::lstm());
    assert_eq!(
        plain.set_precision(WeightFormat::Bf16).is_ok(),
        cpu_has_bf16()
    );
}
