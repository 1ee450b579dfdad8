//! Shared by the tests: seeded data (`SplitMix64`, `seed_of`; every test file draws from
//! these), and for the entry-point consistency tests (`consistency.rs`, `stepper.rs`) the
//! f32/f64 trait, every cell kind and option, the models, the kernel-dispatch tolerance and
//! the comparisons.

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

    /// Uniform in [lo, hi), with 53 random bits (the gradchecks' draws).
    pub fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * u
    }

    /// `n` values uniform in [−scale, scale), in f64.
    pub fn values(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform_in(-scale, scale)).collect()
    }

    /// A tensor of [`SplitMix64::values`].
    pub fn values_tensor(&mut self, shape: &[usize], scale: f64) -> Tensor<f64> {
        Tensor::new(self.values(shape.iter().product(), scale), shape).unwrap()
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

/// FNV-1a of a case's name: every case draws different numbers, reproducibly.
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Two tests of one generic check: `$f64` runs `$check::<f64>()` and `$f32` runs
/// `$check::<f32>()`.
#[allow(unused_macros)] // not every test binary that includes this module uses it
macro_rules! in_f64_and_f32 {
    ($check:ident => $f64:ident, $f32:ident) => {
        #[test]
        fn $f64() {
            $check::<f64>();
        }

        #[test]
        fn $f32() {
            $check::<f32>();
        }
    };
}
#[allow(unused_imports)]
pub(crate) use in_f64_and_f32;

// ---------------------------------------------------------------------------------------------
// The kernel-dispatch tolerance (consistency.rs, stepper.rs)

/// The same arithmetic run by a different GEMM kernel. The `gemm` crate (0.19) picks its kernel
/// by problem size and layout, and each rounds differently: with the reduction axis contiguous
/// in both operands and `m·n ≤ 256`, a "horizontal" kernel that splits the k-sum across SIMD
/// lanes and adds the lanes at the end; for `k ≤ 2` a plain loop; for a single row (`m = 1`) a
/// matrix-vector kernel; otherwise the packed FMA microkernel. The comparisons of those tests put the
/// same rows through products of different sizes:
/// - streaming projects `batch` rows through `W_ih` per step, the whole sequence
///   `seq_len · batch` rows in one product, a chunk `k · batch` rows: an LSTM with
///   `4·HIDDEN = 20` gate columns takes the microkernel for the whole sequence (21·20 > 256)
///   and the horizontal kernel for one step (3·20 ≤ 256);
/// - a sequence run alone has its recurrent product `h_prev · W_hhᵀ` on one row (the
///   matrix-vector kernel) where the ragged batch has it on all live rows (the microkernel).
///
/// The results then differ in the last bit, and the difference propagates through up to
/// 3 layers × 7 steps: observed ≤ 2.2e-16 relative in f64, ≤ 1.2e-7 in f32. Where both sides
/// land in the same kernel (every plain RNN when streaming: 21·5 ≤ 256) they are bitwise
/// equal. The tolerances leave a margin of > 1000× in f64 and ~100× in f32; a real bug (a wrong
/// state carried, a step lost or repeated) moves values by O(0.01–1).
pub const DISPATCH_TOL_F64: f64 = 1e-12;
pub const DISPATCH_TOL_F32: f64 = 1e-5;

/// The kernel-dispatch tolerance of `T`.
pub fn dispatch_tol<T: Real>() -> f64 {
    if T::NAME == "f64" {
        DISPATCH_TOL_F64
    } else {
        DISPATCH_TOL_F32
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
        (
            "lstm_layer_norm",
            lstm(LstmCell {
                layer_norm: true,
                ..Default::default()
            }),
        ),
        ("gru_reset_after", CellKind::gru()),
        (
            "gru_layer_norm",
            CellKind::Gru(GruCell {
                layer_norm: true,
                ..Default::default()
            }),
        ),
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
                layer_norm: false,
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
