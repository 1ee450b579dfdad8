//! Shared by the entry-point consistency tests (`consistency.rs`, `stepper.rs`): seeded data,
//! the f32/f64 trait, every cell kind and option, the models, and the comparisons.

use recur::cell::{GruActivations, LstmActivations};
use recur::{
    Activation, CellKind, Direction, Float, GruCell, InputForget, Leak, LstmCell, Peepholes,
    Recurrent, RecurrentConfig, ResetPlacement, RnnCell, State, Tensor,
};

pub const INPUT: usize = 3;
pub const HIDDEN: usize = 5;
/// Projection size of the projected LSTMs (< HIDDEN).
pub const PROJ: usize = 3;

// ---------------------------------------------------------------------------------------------
// Deterministic data

/// SplitMix64 (Steele, Lea & Flood 2014): all randomness of these tests.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [−1, 1), with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// Values are drawn in f64 and rounded to f32 first, so that the same draw gives the same
    /// numbers in both types.
    pub fn vec<T: Real>(&mut self, n: usize) -> Vec<T> {
        (0..n)
            .map(|_| T::of(self.uniform() as f32 as f64))
            .collect()
    }

    pub fn tensor<T: Real>(&mut self, shape: &[usize]) -> Tensor<T> {
        Tensor::new(self.vec(shape.iter().product()), shape).unwrap()
    }

    /// A random state for `batch` sequences of `model`.
    pub fn state<T: Real>(&mut self, model: &Recurrent<T>, batch: usize) -> State<T> {
        let z = model.zero_state(batch);
        State {
            h: self.tensor(z.h.shape()),
            c: z.c.map(|c| self.tensor(c.shape())),
        }
    }
}

/// The two scalar types, with lossless conversions for comparisons.
pub trait Real: Float {
    const NAME: &'static str;
    fn of(v: f64) -> Self;
    fn wide(self) -> f64;
}

impl Real for f64 {
    const NAME: &'static str = "f64";
    fn of(v: f64) -> Self {
        v
    }
    fn wide(self) -> f64 {
        self
    }
}

impl Real for f32 {
    const NAME: &'static str = "f32";
    fn of(v: f64) -> Self {
        v as f32
    }
    fn wide(self) -> f64 {
        f64::from(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Models

/// Every cell kind and option, named. `num_layers` sizes the per-layer leak list.
pub fn cells(num_layers: usize) -> Vec<(&'static str, CellKind)> {
    let lstm = |c: LstmCell| CellKind::Lstm(c);
    vec![
        ("lstm", CellKind::lstm()),
        (
            "lstm_peepholes",
            lstm(LstmCell {
                peepholes: Peepholes::ALL,
                ..Default::default()
            }),
        ),
        (
            "lstm_proj",
            lstm(LstmCell {
                proj_size: PROJ,
                ..Default::default()
            }),
        ),
        (
            "lstm_coupled",
            lstm(LstmCell {
                input_forget: InputForget::Coupled,
                ..Default::default()
            }),
        ),
        (
            "lstm_peephole_io_coupled_proj",
            lstm(LstmCell {
                peepholes: Peepholes {
                    input: true,
                    forget: false,
                    output: true,
                },
                proj_size: PROJ,
                input_forget: InputForget::Coupled,
                ..Default::default()
            }),
        ),
        ("gru_reset_after", CellKind::gru()),
        (
            "gru_reset_before",
            CellKind::Gru(GruCell {
                reset: ResetPlacement::BeforeMatmul,
                ..Default::default()
            }),
        ),
        ("rnn_tanh", CellKind::rnn_tanh()),
        ("rnn_relu", CellKind::rnn_relu()),
        (
            "rnn_tanh_leaky",
            CellKind::Rnn(RnnCell {
                leak: Leak::Uniform(0.3),
                ..Default::default()
            }),
        ),
        (
            "rnn_relu_leaky_per_layer",
            CellKind::Rnn(RnnCell {
                nonlinearity: Activation::Relu,
                leak: Leak::PerLayer((0..num_layers).map(|l| 0.9 - 0.3 * l as f64).collect()),
                clip: None,
            }),
        ),
        // ONNX activations and clip (clip 1.5: some gates clamped in these tests' data)
        (
            "lstm_onnx_activations_clip_peepholes",
            lstm(LstmCell {
                peepholes: Peepholes::ALL,
                activations: LstmActivations {
                    gate: Activation::HardSigmoid {
                        alpha: 0.2,
                        beta: 0.5,
                    },
                    cell: Activation::Softsign,
                    hidden: Activation::Elu { alpha: 0.8 },
                },
                clip: Some(1.5),
                ..Default::default()
            }),
        ),
        (
            "gru_reset_before_onnx_activations_clip",
            CellKind::Gru(GruCell {
                reset: ResetPlacement::BeforeMatmul,
                activations: GruActivations {
                    gate: Activation::Softplus,
                    candidate: Activation::ScaledTanh {
                        alpha: 1.2,
                        beta: 0.7,
                    },
                },
                clip: Some(1.5),
            }),
        ),
        (
            "gru_reset_after_clip",
            CellKind::Gru(GruCell {
                clip: Some(1.5),
                ..Default::default()
            }),
        ),
        (
            "rnn_leaky_relu_clip",
            CellKind::Rnn(RnnCell {
                nonlinearity: Activation::LeakyRelu { alpha: 0.05 },
                leak: Leak::None,
                clip: Some(1.5),
            }),
        ),
    ]
}

pub fn config(cell: CellKind, num_layers: usize, direction: Direction) -> RecurrentConfig {
    RecurrentConfig {
        cell,
        input_size: INPUT,
        hidden_size: HIDDEN,
        num_layers,
        direction,
        ..Default::default()
    }
}

/// PyTorch's initialisation from a fixed seed, with the weights rounded to f32 so that an f32
/// and an f64 model can hold exactly the same numbers.
pub fn model<T: Real>(config: RecurrentConfig) -> Recurrent<T> {
    let mut m = Recurrent::<T>::new(config, 17).unwrap();
    for p in m.params_mut() {
        *p = T::of(p.wide() as f32 as f64);
    }
    m
}

pub fn cast<T: Real, U: Real>(v: &[T]) -> Vec<U> {
    v.iter().map(|x| U::of(x.wide())).collect()
}

// ---------------------------------------------------------------------------------------------
// Comparisons

#[derive(Clone, Copy, Debug)]
pub enum Tol {
    /// Every value identical, bit for bit (0.0 and −0.0 differ).
    Bitwise,
    /// max |a − b| / (1 + |b|) ≤ tol.
    Rel(f64),
}

#[track_caller]
pub fn assert_same<T: Real>(what: &str, got: &[T], want: &[T], tol: Tol) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    match tol {
        Tol::Bitwise => {
            if let Some(i) =
                (0..got.len()).find(|&i| got[i].wide().to_bits() != want[i].wide().to_bits())
            {
                panic!(
                    "{what}: not bitwise equal at {i}: {:e} vs {:e} (diff {:e})",
                    got[i].wide(),
                    want[i].wide(),
                    got[i].wide() - want[i].wide()
                );
            }
        }
        Tol::Rel(tol) => {
            let (mut worst, mut at) = (0.0f64, 0);
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                let e = (a.wide() - b.wide()).abs() / (1.0 + b.wide().abs());
                if e.is_nan() || e > worst {
                    (worst, at) = (e, i);
                }
            }
            assert!(
                worst <= tol,
                "{what}: max rel err {worst:e} > {tol:e} at {at}: {:e} vs {:e}",
                got[at].wide(),
                want[at].wide()
            );
        }
    }
}

#[track_caller]
pub fn assert_state_same<T: Real>(what: &str, got: &State<T>, want: &State<T>, tol: Tol) {
    assert_eq!(got.h.shape(), want.h.shape(), "{what}: h shape");
    assert_same(&format!("{what} h"), got.h.data(), want.h.data(), tol);
    assert_eq!(got.c.is_some(), want.c.is_some(), "{what}: c presence");
    if let (Some(a), Some(b)) = (&got.c, &want.c) {
        assert_eq!(a.shape(), b.shape(), "{what}: c shape");
        assert_same(&format!("{what} c"), a.data(), b.data(), tol);
    }
}
