//! Gradient check: every gradient [`Recurrent::backward`] returns, against a central
//! difference of the forward pass, in f64: every cell and cell option, both single
//! directions, bidirectional and stacked layers, projection, variable lengths, the
//! batch-first layout and inter-layer dropout.
//!
//! The blueprint is the test of Karpathy's minimal batched LSTM. A scalar loss
//! ```text
//! L = Σ output ⊙ R_y + Σ h_n ⊙ R_h + Σ c_n ⊙ R_c
//! ```
//! with fixed random weights R has the gradient that `backward` computes when it is given
//! (R_y, R_h, R_c) as the upstream gradients. Every scalar θ of every parameter tensor, of the
//! input, of h0 and of c0 is then nudged both ways, and
//! ```text
//! ∂L/∂θ ≈ (L(θ + ε) − L(θ − ε)) / 2ε
//! ```
//! is compared with the analytic value. Everything is drawn from a seeded SplitMix64 written
//! below (the library's own generator is a dependency the tests cannot name), so the numbers
//! depend on nothing outside this file but the library under test.
//!
//! Run `cargo test --test gradcheck -- --nocapture` to see the per-group totals: cases,
//! scalars checked and the worst relative error.

use recur::cell::{GruActivations, LstmActivations};
use recur::{
    Activation, BatchLayout, Bias, CellKind, Direction, GruCell, InputForget, Leak, LstmCell,
    OutputGrad, ParamKind, Peepholes, Recurrent, RecurrentConfig, ResetPlacement, RnnCell, State,
    Tensor,
};

/// Step of the central difference. Its truncation error is O(ε² ∂³L) ≈ 1e-12, far below
/// the rounding error, which is O(u / ε) ≈ 1e-10 (u = 2⁻⁵³) relative to the loss terms.
const EPS: f64 = 1e-6;

/// Largest accepted relative error |a − n| / max(|a| + |n|, GRADCHECK_FLOOR).
const GRADCHECK_TOL: f64 = 1e-6;

/// For gradients that are ~0 a relative error means nothing (0 / 0), so below this size of
/// |a| + |n| the comparison becomes absolute: |a − n| ≤ GRADCHECK_TOL · GRADCHECK_FLOOR = 2e-9.
///
/// Its size is set by the rounding noise of the central difference, not by taste. Every
/// loss term carries a relative rounding error of a few u (u = 2⁻⁵³ ≈ 1.1e-16) that the nudge
/// re-rolls, and the difference is divided by 2ε, so a numeric gradient is only good to about
/// u · Σ|R ⊙ y| / 2ε ≈ 1e-10 … 1e-9 absolute, whatever the gradient's size (measured over
/// every case here: median 5e-11, largest 9e-10, flat from |g| = 1e-7 to 1). A gradient of
/// 1e-5 deep in a stack is thus resolved to ~1e-5 relative at best, and a floor of 1e-7 (an
/// absolute bound of 1e-13) would fail on noise alone. Above |g| ≈ 1e-3, where the finite
/// difference resolves 1e-6, the check is relative; below, it is absolute, at ~4× the largest
/// noise seen there (5e-10).
const GRADCHECK_FLOOR: f64 = 2e-3;

/// The dropout seed every training forward pass of a case uses, so that the dropout masks,
/// and with them the function being differentiated, are the same in every evaluation.
const DROPOUT_SEED: u64 = 7;

/// ReLU units are not differentiable at 0. A nudge of ε moves any pre-activation by at most
/// a few ε (weights, inputs and states are of order 1 or less and the sizes are tiny), so
/// a case whose every ReLU pre-activation is at least this far from 0 never straddles the
/// kink. The ReLU cases assert it: if a change of a case trips it, rename the case (the
/// name seeds its data) rather than loosen anything.
const RELU_MARGIN: f64 = 1e-4;

/// Unsorted, one sequence of length 1, and max(length) = 4 < seq_len = 5.
const RAGGED: [usize; 3] = [3, 1, 4];
const RAGGED_SEQ_LEN: usize = 5;

// ---------------------------------------------------------------------------------------
// Deterministic numbers

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fully specified, good enough for test data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * u
    }

    fn tensor(&mut self, shape: &[usize], scale: f64) -> Tensor<f64> {
        let n = shape.iter().product();
        let data = (0..n).map(|_| self.uniform(-scale, scale)).collect();
        Tensor::new(data, shape).unwrap()
    }
}

/// FNV-1a of the case name: every case draws different numbers, reproducibly.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

// ---------------------------------------------------------------------------------------
// Cases

#[derive(Clone, Debug)]
struct Case {
    name: String,
    config: RecurrentConfig,
    seq_len: usize,
    batch: usize,
    lengths: Option<Vec<usize>>,
}

/// A one-layer forward case: seq_len 4, batch 2, input_size 3, hidden_size 3.
fn case(name: &str, cell: CellKind) -> Case {
    Case {
        name: name.into(),
        config: RecurrentConfig {
            cell,
            input_size: 3,
            hidden_size: 3,
            ..Default::default()
        },
        seq_len: 4,
        batch: 2,
        lengths: None,
    }
}

impl Case {
    fn hidden(mut self, hidden_size: usize) -> Self {
        self.config.hidden_size = hidden_size;
        self
    }

    fn input(mut self, input_size: usize) -> Self {
        self.config.input_size = input_size;
        self
    }

    fn layers(mut self, num_layers: usize) -> Self {
        self.config.num_layers = num_layers;
        self
    }

    fn direction(mut self, direction: Direction) -> Self {
        self.config.direction = direction;
        self
    }

    fn no_bias(mut self) -> Self {
        self.config.bias = Bias::Disabled;
        self
    }

    fn batch_first(mut self) -> Self {
        self.config.layout = BatchLayout::BatchFirst;
        self
    }

    fn dropout(mut self, p: f64) -> Self {
        self.config.dropout = p;
        self
    }

    /// The ragged batch of [`RAGGED`].
    fn ragged(mut self) -> Self {
        self.seq_len = RAGGED_SEQ_LEN;
        self.batch = RAGGED.len();
        self.lengths = Some(RAGGED.to_vec());
        self
    }

    fn is_relu(&self) -> bool {
        matches!(&self.config.cell, CellKind::Rnn(r) if r.nonlinearity == Activation::Relu)
    }
}

fn lstm(options: LstmCell) -> CellKind {
    CellKind::Lstm(options)
}

fn peepholes(spec: &str) -> Peepholes {
    Peepholes {
        input: spec.contains('i'),
        forget: spec.contains('f'),
        output: spec.contains('o'),
    }
}

fn gru(reset: ResetPlacement) -> CellKind {
    CellKind::Gru(GruCell {
        reset,
        ..Default::default()
    })
}

fn rnn(nonlinearity: Activation, leak: Leak) -> CellKind {
    CellKind::Rnn(RnnCell {
        nonlinearity,
        leak,
        clip: None,
    })
}

/// One cell of every kind and option that changes the backward, for the layer-feature
/// cases (directions, stacking, lengths): the name stem and the cell.
fn every_cell() -> Vec<(&'static str, CellKind)> {
    vec![
        ("lstm", CellKind::lstm()),
        (
            "lstm_peephole_ifo_proj",
            lstm(LstmCell {
                peepholes: Peepholes::ALL,
                proj_size: 2,
                ..Default::default()
            }),
        ),
        (
            "lstm_coupled_peephole_io",
            lstm(LstmCell {
                peepholes: peepholes("io"),
                input_forget: InputForget::Coupled,
                ..Default::default()
            }),
        ),
        ("gru_reset_after", gru(ResetPlacement::AfterMatmul)),
        ("gru_reset_before", gru(ResetPlacement::BeforeMatmul)),
        ("rnn_tanh", CellKind::rnn_tanh()),
        ("rnn_relu_leaky", rnn(Activation::Relu, Leak::Uniform(0.3))),
    ]
}

// ---------------------------------------------------------------------------------------
// The problem: model, data, loss weights

/// What is nudged: the flat parameter buffer, the input, h0 or c0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Param,
    Input,
    H0,
    C0,
}

struct Problem {
    model: Recurrent<f64>,
    input: Tensor<f64>,
    state: State<f64>,
    lengths: Option<Vec<usize>>,
    /// R_y, shaped like the output (random also at padded positions, where it must not count)
    r_y: Tensor<f64>,
    r_h: Tensor<f64>,
    r_c: Option<Tensor<f64>>,
}

impl Problem {
    fn new(case: &Case) -> Self {
        let cfg = &case.config;
        let mut rng = SplitMix64(seed_of(&case.name));
        let mut model = Recurrent::<f64>::new(cfg.clone(), 0).unwrap();
        // PyTorch's initialisation, U(−1/√H, 1/√H), from our own generator.
        let k = 1.0 / (cfg.hidden_size as f64).sqrt();
        for p in model.params_mut() {
            *p = rng.uniform(-k, k);
        }
        let (t, b) = (case.seq_len, case.batch);
        let seq = |f: usize| match cfg.layout {
            BatchLayout::SeqFirst => [t, b, f],
            BatchLayout::BatchFirst => [b, t, f],
        };
        let ld = cfg.num_layers * cfg.direction.count();
        let lstm = cfg.cell.has_cell_state();
        let input = rng.tensor(&seq(cfg.input_size), 1.0);
        let state = State {
            h: rng.tensor(&[ld, b, cfg.h_out()], 1.0),
            c: lstm.then(|| rng.tensor(&[ld, b, cfg.hidden_size], 1.0)),
        };
        let r_y = rng.tensor(&seq(cfg.direction.count() * cfg.h_out()), 1.0);
        let r_h = rng.tensor(&[ld, b, cfg.h_out()], 1.0);
        let r_c = lstm.then(|| rng.tensor(&[ld, b, cfg.hidden_size], 1.0));
        Self {
            model,
            input,
            state,
            lengths: case.lengths.clone(),
            r_y,
            r_h,
            r_c,
        }
    }

    /// The training forward pass, always with the same dropout seed.
    fn forward(&self) -> (recur::Output<f64>, recur::Tape<f64>) {
        self.model
            .forward_train(
                &self.input,
                Some(&self.state),
                self.lengths.as_deref(),
                DROPOUT_SEED,
            )
            .unwrap()
    }

    fn target_mut(&mut self, target: Target) -> &mut [f64] {
        match target {
            Target::Param => self.model.params_mut(),
            Target::Input => self.input.data_mut(),
            Target::H0 => self.state.h.data_mut(),
            Target::C0 => self.state.c.as_mut().unwrap().data_mut(),
        }
    }

    /// ∂L/∂θ by central difference, θ = scalar `k` of `target`.
    ///
    /// L(θ+ε) − L(θ−ε) is summed as Σ R ⊙ (y⁺ − y⁻) rather than as the difference of two
    /// sums: the same number, but the terms the nudge leaves untouched cancel exactly instead
    /// of adding their rounding error to the difference. It is divided by the step actually
    /// taken, (θ+ε) − (θ−ε), which is not exactly 2ε in floating point.
    fn central_difference(&mut self, target: Target, k: usize) -> f64 {
        let theta = self.target_mut(target)[k];
        let (up, down) = (theta + EPS, theta - EPS);
        self.target_mut(target)[k] = up;
        let (plus, _) = self.forward();
        self.target_mut(target)[k] = down;
        let (minus, _) = self.forward();
        self.target_mut(target)[k] = theta;
        let dot_diff = |r: &Tensor<f64>, p: &Tensor<f64>, m: &Tensor<f64>| -> f64 {
            r.data()
                .iter()
                .zip(p.data().iter().zip(m.data()))
                .map(|(r, (p, m))| r * (p - m))
                .sum()
        };
        let mut diff = dot_diff(&self.r_y, &plus.output, &minus.output)
            + dot_diff(&self.r_h, &plus.state.h, &minus.state.h);
        if let Some(r_c) = &self.r_c {
            diff += dot_diff(
                r_c,
                plus.state.c.as_ref().unwrap(),
                minus.state.c.as_ref().unwrap(),
            );
        }
        diff / (up - down)
    }

    /// Whether flat index `k` of a sequence tensor of width `f` lies past its sequence's end.
    fn is_padded(&self, k: usize, f: usize) -> bool {
        let Some(lengths) = &self.lengths else {
            return false;
        };
        let (t, b) = match self.model.config().layout {
            BatchLayout::SeqFirst => (k / f / lengths.len(), k / f % lengths.len()),
            BatchLayout::BatchFirst => {
                let seq_len = self.input.shape()[1];
                (k / f % seq_len, k / f / seq_len)
            }
        };
        t >= lengths[b]
    }
}

// ---------------------------------------------------------------------------------------
// The check

/// |a − n| / max(|a| + |n|, GRADCHECK_FLOOR)
fn rel_err(a: f64, n: f64) -> f64 {
    (a - n).abs() / (a.abs() + n.abs()).max(GRADCHECK_FLOOR)
}

/// What one case found.
#[derive(Default)]
struct Report {
    scalars: usize,
    /// largest |a − n|: the finite difference's noise where the gradients are right
    worst_abs: f64,
    worst: f64,
    worst_at: String,
    failures: Vec<String>,
}

/// `[i, j, k]` of flat index `k` in `shape`.
fn coords(shape: &[usize], mut k: usize) -> String {
    let mut c = vec![0; shape.len()];
    for (d, &n) in shape.iter().enumerate().rev() {
        c[d] = k % n.max(1);
        k /= n.max(1);
    }
    format!("{c:?}")
}

/// The name of scalar `k` of `target`, e.g. `weight_hh_l1_reverse[5, 2]`.
fn scalar_name(p: &Problem, target: Target, k: usize) -> String {
    match target {
        Target::Param => {
            let e = p
                .model
                .layout()
                .entries()
                .iter()
                .find(|e| (e.offset..e.offset + e.len).contains(&k))
                .unwrap();
            format!("{}{}", e.name, coords(&e.shape, k - e.offset))
        }
        Target::Input => format!("input{}", coords(p.input.shape(), k)),
        Target::H0 => format!("h0{}", coords(p.state.h.shape(), k)),
        Target::C0 => format!("c0{}", coords(p.state.c.as_ref().unwrap().shape(), k)),
    }
}

fn check_case(case: &Case) -> Report {
    let mut p = Problem::new(case);
    let mut report = Report::default();

    if case.is_relu() {
        let margin = relu_margin(&p);
        if margin < RELU_MARGIN {
            report.failures.push(format!(
                "a ReLU pre-activation is {margin:e} from the kink (< {RELU_MARGIN:e}): \
                     rename the case to draw other data"
            ));
            return report;
        }
    }

    // Analytic gradients.
    let (out, tape) = p.forward();
    let mut grads = vec![0.0; p.model.params().len()];
    let upstream = OutputGrad {
        output: Some(&p.r_y),
        h_n: Some(&p.r_h),
        c_n: p.r_c.as_ref(),
    };
    let dx = p.model.backward(&tape, upstream, &mut grads).unwrap();

    let mut targets = vec![
        (Target::Param, grads.clone()),
        (Target::Input, dx.input.data().to_vec()),
        (Target::H0, dx.state.h.data().to_vec()),
    ];
    if let Some(dc0) = &dx.state.c {
        targets.push((Target::C0, dc0.data().to_vec()));
    }
    let mut numeric_params = Vec::new();
    for (target, analytic) in &targets {
        for (k, &a) in analytic.iter().enumerate() {
            let n = p.central_difference(*target, k);
            if *target == Target::Param {
                numeric_params.push(n);
            }
            let e = rel_err(a, n);
            report.scalars += 1;
            report.worst_abs = report.worst_abs.max((a - n).abs());
            if e > report.worst || e.is_nan() {
                report.worst = e;
                report.worst_at = scalar_name(&p, *target, k);
            }
            if e.is_nan() || e > GRADCHECK_TOL {
                let name = scalar_name(&p, *target, k);
                report.failures.push(format!(
                    "{name}: analytic {a:e}, numeric {n:e}, rel err {e:e}"
                ));
            }
        }
    }

    let cfg = p.model.config().clone();

    // Coupled input-forget (f = 1 − i): the f rows stay in the weights, unused; their
    // gradient is exactly zero, and so is their effect on the loss.
    if let CellKind::Lstm(c) = &cfg.cell
        && c.input_forget == InputForget::Coupled
    {
        let h = cfg.hidden_size;
        for e in p.model.layout().entries() {
            let cols = match e.kind {
                ParamKind::WeightIh | ParamKind::WeightHh => e.shape[1],
                ParamKind::BiasIh | ParamKind::BiasHh => 1,
                _ => continue,
            };
            for k in e.offset + h * cols..e.offset + 2 * h * cols {
                if grads[k] != 0.0 || numeric_params[k] != 0.0 {
                    let name = scalar_name(&p, Target::Param, k);
                    report.failures.push(format!(
                        "coupled f row {name}: analytic {:e}, numeric {:e}, want exactly 0",
                        grads[k], numeric_params[k]
                    ));
                }
            }
        }
    }

    // Variable lengths: outputs past a sequence's end are zero, so the upstream gradient
    // there must not matter, and the input there has no effect.
    if p.lengths.is_some() {
        let width = cfg.direction.count() * cfg.h_out();
        for (k, &y) in out.output.data().iter().enumerate() {
            if p.is_padded(k, width) && y != 0.0 {
                let at = coords(out.output.shape(), k);
                report
                    .failures
                    .push(format!("output{at} is padded but {y:e}"));
            }
        }
        for (k, &d) in dx.input.data().iter().enumerate() {
            if p.is_padded(k, cfg.input_size) && d != 0.0 {
                let at = coords(dx.input.shape(), k);
                report
                    .failures
                    .push(format!("grad input{at} is padded but {d:e}"));
            }
        }
        let mut r_y = p.r_y.clone();
        for (k, r) in r_y.data_mut().iter_mut().enumerate() {
            if p.is_padded(k, width) {
                *r = 0.0;
            }
        }
        let mut grads2 = vec![0.0; grads.len()];
        let upstream = OutputGrad {
            output: Some(&r_y),
            h_n: Some(&p.r_h),
            c_n: p.r_c.as_ref(),
        };
        let dx2 = p.model.backward(&tape, upstream, &mut grads2).unwrap();
        if grads2 != grads || dx2 != dx {
            report.failures.push(
                "the upstream gradient at padded output positions changed the gradients".into(),
            );
        }
    }

    // Dropout: the mask must actually drop something, or the dropout cases prove nothing.
    if cfg.dropout > 0.0 {
        let inference = p
            .model
            .forward(&p.input, Some(&p.state), p.lengths.as_deref())
            .unwrap();
        if inference.output == out.output {
            report
                .failures
                .push("forward_train with dropout gave the inference output".into());
        }
    }
    report
}

/// The smallest |pre-activation| of any ReLU unit at any step the forward pass runs,
/// recomputed from the parameters and each layer's outputs (those of the stack's first
/// layers, run as a model of their own). Single-direction and bidirectional stacks,
/// sequence-first, without dropout.
///
/// # Panics
/// When the recomputed step, h = (1 − α) h_prev + α relu(a), misses the layer's output:
/// then the margin would not describe the forward pass that is differentiated.
fn relu_margin(p: &Problem) -> f64 {
    let cfg = p.model.config();
    assert_eq!(
        cfg.layout,
        BatchLayout::SeqFirst,
        "relu_margin: sequence-first only"
    );
    assert_eq!(cfg.dropout, 0.0, "relu_margin: no dropout");
    let (nd, h) = (cfg.direction.count(), cfg.hidden_size);
    let (tl, batch) = (p.input.shape()[0], p.input.shape()[1]);
    let lengths = p.lengths.clone().unwrap_or_else(|| vec![tl; batch]);
    // outputs[l]: the output of layer l, [seq_len, batch, D * H]
    let outputs: Vec<Tensor<f64>> = (1..=cfg.num_layers)
        .map(|layers| {
            let mut sub = cfg.clone();
            sub.num_layers = layers;
            if let CellKind::Rnn(RnnCell {
                leak: Leak::PerLayer(rates),
                ..
            }) = &mut sub.cell
            {
                rates.truncate(layers);
            }
            let n = Recurrent::<f64>::new(sub.clone(), 0)
                .unwrap()
                .params()
                .len();
            let model = Recurrent::from_params(sub, p.model.params()[..n].to_vec()).unwrap();
            let ld = layers * nd;
            let h0 =
                Tensor::new(p.state.h.data()[..ld * batch * h].to_vec(), &[ld, batch, h]).unwrap();
            let state = State { h: h0, c: None };
            model
                .forward(&p.input, Some(&state), p.lengths.as_deref())
                .unwrap()
                .output
        })
        .collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut margin = f64::INFINITY;
    for layer in 0..cfg.num_layers {
        let (x, n_in) = match layer {
            0 => (p.input.data(), cfg.input_size),
            _ => (outputs[layer - 1].data(), nd * h),
        };
        let y = outputs[layer].data();
        let CellKind::Rnn(rnn) = &cfg.cell else {
            panic!("relu_margin: an RNN cell only")
        };
        let alpha = rnn.leak.rate(layer);
        for dir in 0..nd {
            let ld = layer * nd + dir;
            let reverse = dir == 1 || cfg.direction == Direction::Reverse;
            let sfx = if reverse { "_reverse" } else { "" };
            let param = |stem: &str| p.model.param(&format!("{stem}_l{layer}{sfx}"));
            let (w_ih, w_hh) = (param("weight_ih").unwrap(), param("weight_hh").unwrap());
            let (b_ih, b_hh) = (param("bias_ih"), param("bias_hh"));
            for (b, &len) in lengths.iter().enumerate() {
                let mut h_prev = &p.state.h.data()[(ld * batch + b) * h..][..h];
                let steps: Vec<usize> = match reverse {
                    true => (0..len).rev().collect(),
                    false => (0..len).collect(),
                };
                for t in steps {
                    let xt = &x[(t * batch + b) * n_in..][..n_in];
                    let ht = &y[(t * batch + b) * nd * h + dir * h..][..h];
                    for j in 0..h {
                        let a = dot(&w_ih[j * n_in..][..n_in], xt)
                            + dot(&w_hh[j * h..][..h], h_prev)
                            + b_ih.map_or(0.0, |v| v[j])
                            + b_hh.map_or(0.0, |v| v[j]);
                        let want = (1.0 - alpha) * h_prev[j] + alpha * a.max(0.0);
                        assert!(
                            (want - ht[j]).abs() < 1e-12,
                            "relu_margin: recomputed h {want} but the layer gave {}",
                            ht[j]
                        );
                        margin = margin.min(a.abs());
                    }
                    h_prev = ht;
                }
            }
        }
    }
    margin
}

/// Checks every case, prints the group's totals, and fails naming every failing case.
fn run_group(group: &str, cases: &[Case]) {
    let mut failures = Vec::new();
    let (mut scalars, mut worst_abs) = (0, 0.0f64);
    let (mut worst, mut worst_at) = (0.0f64, String::new());
    for case in cases {
        // A panic inside the library fails the case, not the whole group.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_case(case)))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Report {
                    failures: vec![format!("panicked: {what}")],
                    ..Default::default()
                }
            });
        scalars += r.scalars;
        worst_abs = worst_abs.max(r.worst_abs);
        if r.worst > worst || r.worst.is_nan() {
            worst = r.worst;
            worst_at = format!("{}: {}", case.name, r.worst_at);
        }
        if !r.failures.is_empty() {
            const SHOWN: usize = 12;
            let mut msg = format!("{} ({} failures):", case.name, r.failures.len());
            for f in r.failures.iter().take(SHOWN) {
                msg += &format!("\n    {f}");
            }
            if r.failures.len() > SHOWN {
                msg += &format!("\n    … {} more", r.failures.len() - SHOWN);
            }
            failures.push(msg);
        }
    }
    eprintln!(
        "gradcheck {group}: {} cases, {scalars} scalars, worst rel err {worst:.3e} ({worst_at}), \
         largest |a - n| {worst_abs:.1e}",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "gradcheck {group}: {} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The groups

#[test]
fn lstm_every_option() {
    let with = |cell: LstmCell| lstm(cell);
    let peep = |spec: &str| {
        with(LstmCell {
            peepholes: peepholes(spec),
            ..Default::default()
        })
    };
    run_group(
        "lstm",
        &[
            case("lstm", CellKind::lstm()),
            case("lstm_no_bias", CellKind::lstm()).no_bias(),
            case("lstm_peephole_i", peep("i")),
            case("lstm_peephole_f", peep("f")),
            case("lstm_peephole_o", peep("o")),
            case("lstm_peephole_ifo", peep("ifo")),
            case(
                "lstm_proj",
                with(LstmCell {
                    proj_size: 2,
                    ..Default::default()
                }),
            )
            .hidden(4),
            case(
                "lstm_coupled",
                with(LstmCell {
                    input_forget: InputForget::Coupled,
                    ..Default::default()
                }),
            ),
            case(
                "lstm_coupled_peephole_io_proj",
                with(LstmCell {
                    peepholes: peepholes("io"),
                    proj_size: 2,
                    input_forget: InputForget::Coupled,
                    ..Default::default()
                }),
            )
            .hidden(4),
            // With the default (σ, tanh, tanh) this makes every pair of the three activation
            // slots differ in some case, so a slot reading another's derivative is caught.
            case(
                "lstm_activations_tanh_sigmoid_tanh",
                with(LstmCell {
                    activations: LstmActivations {
                        gate: Activation::Tanh,
                        cell: Activation::Sigmoid,
                        hidden: Activation::Tanh,
                    },
                    ..Default::default()
                }),
            ),
        ],
    );
}

#[test]
fn gru_every_option() {
    let swapped = |reset| {
        CellKind::Gru(GruCell {
            reset,
            activations: GruActivations {
                gate: Activation::Tanh,
                candidate: Activation::Sigmoid,
            },
            clip: None,
        })
    };
    run_group(
        "gru",
        &[
            case("gru_reset_after", gru(ResetPlacement::AfterMatmul)),
            case("gru_reset_before", gru(ResetPlacement::BeforeMatmul)),
            case("gru_reset_after_no_bias", gru(ResetPlacement::AfterMatmul)).no_bias(),
            case(
                "gru_reset_before_no_bias",
                gru(ResetPlacement::BeforeMatmul),
            )
            .no_bias(),
            case(
                "gru_reset_after_activations_tanh_sigmoid",
                swapped(ResetPlacement::AfterMatmul),
            ),
            case(
                "gru_reset_before_activations_tanh_sigmoid",
                swapped(ResetPlacement::BeforeMatmul),
            ),
        ],
    );
}

#[test]
fn rnn_every_option() {
    use Activation::{Relu, Tanh};
    run_group(
        "rnn",
        &[
            case("rnn_tanh", rnn(Tanh, Leak::None)),
            case("rnn_relu", rnn(Relu, Leak::None)),
            case("rnn_tanh_no_bias", rnn(Tanh, Leak::None)).no_bias(),
            case("rnn_tanh_leaky_0.3", rnn(Tanh, Leak::Uniform(0.3))),
            case("rnn_relu_leaky_0.3", rnn(Relu, Leak::Uniform(0.3))),
            case(
                "rnn_tanh_leaky_per_layer",
                rnn(Tanh, Leak::PerLayer(vec![0.3, 0.7])),
            )
            .layers(2),
            case(
                "rnn_relu_leaky_per_layer",
                rnn(Relu, Leak::PerLayer(vec![0.6, 0.2])),
            )
            .layers(2),
        ],
    );
}

#[test]
fn directions_and_stacks() {
    let mut cases = Vec::new();
    for (stem, cell) in every_cell() {
        cases.push(case(&format!("{stem}_reverse"), cell.clone()).direction(Direction::Reverse));
        cases.push(
            case(&format!("{stem}_bidirectional"), cell.clone())
                .direction(Direction::Bidirectional),
        );
        cases.push(case(&format!("{stem}_2_layers"), cell.clone()).layers(2));
        cases.push(
            case(&format!("{stem}_3_layers_bidirectional"), cell.clone())
                .layers(3)
                .direction(Direction::Bidirectional)
                .hidden(3)
                .input(2),
        );
        cases.push(
            case(&format!("{stem}_2_layers_reverse"), cell)
                .layers(2)
                .direction(Direction::Reverse),
        );
    }
    run_group("directions and stacks", &cases);
}

#[test]
fn variable_lengths() {
    let mut cases = Vec::new();
    for (stem, cell) in every_cell() {
        for (dir_name, dir) in [
            ("forward", Direction::Forward),
            ("reverse", Direction::Reverse),
            ("bidirectional", Direction::Bidirectional),
        ] {
            cases.push(
                case(&format!("{stem}_ragged_{dir_name}"), cell.clone())
                    .direction(dir)
                    .ragged(),
            );
        }
        cases.push(
            case(&format!("{stem}_ragged_2_layers_bidirectional"), cell)
                .layers(2)
                .direction(Direction::Bidirectional)
                .input(2)
                .ragged(),
        );
    }
    run_group("variable lengths", &cases);
}

#[test]
fn batch_first_layout() {
    let mut cases = Vec::new();
    for (stem, cell) in every_cell() {
        if matches!(&cell, CellKind::Rnn(r) if r.nonlinearity == Activation::Relu) {
            continue; // relu_margin reads sequence-first data; the layout is cell-blind
        }
        cases.push(
            case(&format!("{stem}_batch_first"), cell.clone())
                .direction(Direction::Bidirectional)
                .batch_first(),
        );
        cases.push(
            case(&format!("{stem}_batch_first_ragged_2_layers"), cell)
                .layers(2)
                .direction(Direction::Bidirectional)
                .input(2)
                .batch_first()
                .ragged(),
        );
    }
    run_group("batch-first layout", &cases);
}

#[test]
fn inter_layer_dropout() {
    let mut cases = Vec::new();
    for (stem, cell) in every_cell() {
        if matches!(&cell, CellKind::Rnn(r) if r.nonlinearity == Activation::Relu) {
            continue; // relu_margin cannot see the dropout masks
        }
        cases.push(
            case(
                &format!("{stem}_dropout_3_layers_bidirectional"),
                cell.clone(),
            )
            .layers(3)
            .direction(Direction::Bidirectional)
            .input(2)
            .dropout(0.4),
        );
        cases.push(
            case(&format!("{stem}_dropout_2_layers_ragged"), cell)
                .layers(2)
                .dropout(0.5)
                .ragged(),
        );
    }
    run_group("inter-layer dropout", &cases);
}
