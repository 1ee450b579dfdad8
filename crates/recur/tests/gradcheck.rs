//! Gradient check: every gradient [`Recurrent::backward`] returns, against a central
//! difference of the forward pass, in f64: every cell and cell option, both single
//! directions, bidirectional and stacked layers, projection, variable lengths, the
//! batch-first layout, inter-layer dropout, every ONNX activation in every activation slot,
//! ONNX clip and recurrent dropout.
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

mod common;

use common::cases::{SplitMix64, seed_of};
use recur::cell::{GruActivations, LstmActivations};
use recur::{
    Activation, BatchLayout, Bias, Call, CellKind, Direction, GruCell, InputForget, Leak, LstmCell,
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

    fn recurrent_dropout(mut self, p: f64) -> Self {
        self.config.recurrent_dropout = p;
        self
    }

    fn zoneout(mut self, h: f64, c: f64) -> Self {
        self.config.zoneout_h = h;
        self.config.zoneout_c = c;
        self
    }

    /// Single-layer forward cases with an activation that has kinks, or with ONNX clip: those
    /// get their margin from [`kink_margin`] (multi-layer ReLU RNNs keep [`relu_margin`]).
    fn needs_kink_margin(&self) -> bool {
        let c = &self.config;
        let single = c.num_layers == 1
            && c.direction == Direction::Forward
            && c.layout == BatchLayout::SeqFirst
            && c.recurrent_dropout == 0.0;
        single
            && (cfg_clip(c).is_some()
                || cell_activations(&c.cell)
                    .iter()
                    .any(|a| !kinks(*a).is_empty()))
    }
}

fn cfg_clip(c: &RecurrentConfig) -> Option<f64> {
    c.cell.clip()
}

fn cell_activations(cell: &CellKind) -> Vec<Activation> {
    match cell {
        CellKind::Lstm(c) => vec![c.activations.gate, c.activations.cell, c.activations.hidden],
        CellKind::Gru(c) => vec![c.activations.gate, c.activations.candidate],
        CellKind::Rnn(c) => vec![c.nonlinearity],
        _ => unreachable!("a cell kind this test does not know"),
    }
}

/// Where the activation's slope jumps (Softsign's curvature jumps at 0, which a central
/// difference across it also feels, so 0 counts for it too).
fn kinks(act: Activation) -> Vec<f64> {
    match act {
        Activation::Relu | Activation::LeakyRelu { .. } | Activation::Elu { .. } => vec![0.0],
        Activation::Softsign => vec![0.0],
        Activation::ThresholdedRelu { alpha } => vec![alpha],
        Activation::HardSigmoid { alpha, beta } if alpha != 0.0 => {
            vec![-beta / alpha, (1.0 - beta) / alpha]
        }
        _ => vec![],
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
            *p = rng.uniform_in(-k, k);
        }
        let (t, b) = (case.seq_len, case.batch);
        let seq = |f: usize| match cfg.layout {
            BatchLayout::SeqFirst => [t, b, f],
            BatchLayout::BatchFirst => [b, t, f],
        };
        let ld = cfg.num_layers * cfg.direction.count();
        let lstm = cfg.cell.has_cell_state();
        let input = rng.values_tensor(&seq(cfg.input_size), 1.0);
        let state = State {
            h: rng.values_tensor(&[ld, b, cfg.h_out()], 1.0),
            c: lstm.then(|| rng.values_tensor(&[ld, b, cfg.hidden_size], 1.0)),
        };
        let r_y = rng.values_tensor(&seq(cfg.direction.count() * cfg.h_out()), 1.0);
        let r_h = rng.values_tensor(&[ld, b, cfg.h_out()], 1.0);
        let r_c = lstm.then(|| rng.values_tensor(&[ld, b, cfg.hidden_size], 1.0));
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
                Call {
                    state: Some(self.state.view()),
                    lengths: self.lengths.as_deref(),
                    seed: Some(DROPOUT_SEED),
                },
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
    /// pre-activations that ONNX clip clamped (clip cases)
    clamped: usize,
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

    if case.needs_kink_margin() {
        // Activations with kinks and ONNX clip: every pre-activation of the forward pass,
        // recomputed by the independent step of `kink_margin`, keeps its distance from every
        // kink and from ±clip, and a clip case clamps some pre-activations and not others.
        let k = kink_margin(&p);
        if k.margin < RELU_MARGIN {
            report.failures.push(format!(
                "a pre-activation is {:e} from a kink or the clip bound (< {RELU_MARGIN:e}): \
                     rename the case to draw other data",
                k.margin
            ));
            return report;
        }
        if cfg_clip(&case.config).is_some() && (k.clamped == 0 || k.clamped == k.clippable) {
            report.failures.push(format!(
                "clip clamps {} of {} pre-activations: the case must clamp some and not others",
                k.clamped, k.clippable
            ));
            return report;
        }
        report.clamped = k.clamped;
    } else if case.is_relu() {
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
        output: Some(p.r_y.view()),
        h: Some(p.r_h.view()),
        c: p.r_c.as_ref().map(Tensor::view),
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
            output: Some(r_y.view()),
            h: Some(p.r_h.view()),
            c: p.r_c.as_ref().map(Tensor::view),
        };
        let dx2 = p.model.backward(&tape, upstream, &mut grads2).unwrap();
        if grads2 != grads || dx2 != dx {
            report.failures.push(
                "the upstream gradient at padded output positions changed the gradients".into(),
            );
        }
    }

    // Dropout: the mask must actually drop something, or the dropout cases prove nothing.
    if cfg.dropout > 0.0 || cfg.recurrent_dropout > 0.0 {
        let inference = p
            .model
            .forward(
                &p.input,
                Call {
                    state: Some(p.state.view()),
                    lengths: p.lengths.as_deref(),
                    ..Call::new()
                },
            )
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
                .forward(
                    &p.input,
                    Call {
                        state: Some(state.view()),
                        lengths: p.lengths.as_deref(),
                        ..Call::new()
                    },
                )
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

/// What [`kink_margin`] found.
struct KinkMargin {
    /// smallest distance of a pre-activation from a kink of its activation or from ±clip
    margin: f64,
    /// pre-activations that clip clamped, and those it applies to
    clamped: usize,
    clippable: usize,
}

/// Recomputes a single-layer forward pass step by step, in plain f64 from the parameters,
/// with every cell's equations (docs/equations.md §2, ONNX clip as ONNX Runtime applies it),
/// checks that it gives the layer's outputs, and measures how close any pre-activation comes
/// to a kink of its activation or to the clip bound. An independent forward of every activation and clip
/// setting besides.
///
/// # Panics
/// When the recomputed states miss the layer's outputs by more than 1e-12.
fn kink_margin(p: &Problem) -> KinkMargin {
    let cfg = p.model.config();
    assert!(cfg.num_layers == 1 && cfg.direction == Direction::Forward);
    assert_eq!(cfg.layout, BatchLayout::SeqFirst);
    let (h, n_in, r) = (cfg.hidden_size, cfg.input_size, cfg.h_out());
    let (tl, batch) = (p.input.shape()[0], p.input.shape()[1]);
    let lengths = p.lengths.clone().unwrap_or_else(|| vec![tl; batch]);
    let out = p
        .model
        .forward(
            &p.input,
            Call {
                state: Some(p.state.view()),
                lengths: p.lengths.as_deref(),
                ..Call::new()
            },
        )
        .unwrap()
        .output;
    let param = |stem: &str| p.model.param(&format!("{stem}_l0"));
    let (w_ih, w_hh) = (param("weight_ih").unwrap(), param("weight_hh").unwrap());
    let (b_ih, b_hh) = (param("bias_ih"), param("bias_hh"));
    let clip = cfg.cell.clip();
    let mut k = KinkMargin {
        margin: f64::INFINITY,
        clamped: 0,
        clippable: 0,
    };
    // one pre-activation a of `act`, clipped if `clippable`: returns act(clamp(a))
    let mut pre = |act: Activation, a: f64, clippable: bool| -> f64 {
        let mut x = a;
        if let (Some(c), true) = (clip, clippable) {
            k.clippable += 1;
            k.margin = k.margin.min((a.abs() - c).abs());
            if a.abs() > c {
                k.clamped += 1;
                x = a.clamp(-c, c);
                return act.apply(x); // constant in a: its kinks do not matter
            }
        }
        for kink in kinks(act) {
            k.margin = k.margin.min((x - kink).abs());
        }
        act.apply(x)
    };
    let dot = |w: &[f64], row: usize, len: usize, v: &[f64]| -> f64 {
        w[row * len..(row + 1) * len]
            .iter()
            .zip(v)
            .map(|(a, b)| a * b)
            .sum()
    };
    let bias = |b: Option<&[f64]>, j: usize| b.map_or(0.0, |v| v[j]);
    for (b, &len) in lengths.iter().enumerate() {
        let mut hp = p.state.h.data()[b * r..(b + 1) * r].to_vec();
        let mut cp = p
            .state
            .c
            .as_ref()
            .map(|c| c.data()[b * h..(b + 1) * h].to_vec());
        for t in 0..len {
            let x = &p.input.data()[(t * batch + b) * n_in..][..n_in];
            // W_ih x + b_ih (+ b_hh) and W_hh h_prev, per gate row
            let xi = |j: usize| dot(w_ih, j, n_in, x) + bias(b_ih, j);
            let hh = |j: usize| dot(w_hh, j, r, &hp) + bias(b_hh, j);
            let h_new: Vec<f64> = match &cfg.cell {
                CellKind::Lstm(l) => {
                    let a = l.activations;
                    let c_prev = cp.as_ref().unwrap();
                    let peep = |g: &str, j: usize, c: f64| {
                        p.model
                            .param(&format!("peephole_{g}_l0"))
                            .map_or(0.0, |v| v[j] * c)
                    };
                    let mut c_new = vec![0.0; h];
                    let mut m = vec![0.0; h];
                    for j in 0..h {
                        let i = pre(a.gate, xi(j) + hh(j) + peep("i", j, c_prev[j]), true);
                        let f = match l.input_forget {
                            InputForget::Coupled => 1.0 - i,
                            _ => pre(
                                a.gate,
                                xi(h + j) + hh(h + j) + peep("f", j, c_prev[j]),
                                true,
                            ),
                        };
                        let g = pre(a.cell, xi(2 * h + j) + hh(2 * h + j), true);
                        c_new[j] = f * c_prev[j] + i * g;
                        let o = pre(
                            a.gate,
                            xi(3 * h + j) + hh(3 * h + j) + peep("o", j, c_new[j]),
                            true,
                        );
                        m[j] = o * pre(a.hidden, c_new[j], false);
                    }
                    cp = Some(c_new);
                    match p.model.param("weight_hr_l0") {
                        Some(w_hr) => (0..r).map(|q| dot(w_hr, q, h, &m)).collect(),
                        None => m,
                    }
                }
                CellKind::Gru(g) => {
                    let a = g.activations;
                    let mut r_gate = vec![0.0; h];
                    let mut z = vec![0.0; h];
                    for j in 0..h {
                        r_gate[j] = pre(a.gate, xi(j) + hh(j), true);
                        z[j] = pre(a.gate, xi(h + j) + hh(h + j), true);
                    }
                    let s: Vec<f64> = (0..h).map(|j| r_gate[j] * hp[j]).collect();
                    (0..h)
                        .map(|j| {
                            let a_n = match g.reset {
                                ResetPlacement::AfterMatmul => {
                                    xi(2 * h + j) + r_gate[j] * hh(2 * h + j)
                                }
                                _ => {
                                    xi(2 * h + j)
                                        + bias(b_hh, 2 * h + j)
                                        + dot(w_hh, 2 * h + j, h, &s)
                                }
                            };
                            let n = pre(a.candidate, a_n, true);
                            (1.0 - z[j]) * n + z[j] * hp[j]
                        })
                        .collect()
                }
                CellKind::Rnn(rc) => {
                    let alpha = rc.leak.rate(0);
                    (0..h)
                        .map(|j| {
                            let u = pre(rc.nonlinearity, xi(j) + hh(j), true);
                            (1.0 - alpha) * hp[j] + alpha * u
                        })
                        .collect()
                }
                _ => unreachable!("a cell kind this test does not know"),
            };
            let got = &out.data()[(t * batch + b) * r..][..r];
            for j in 0..r {
                assert!(
                    (h_new[j] - got[j]).abs() < 1e-12,
                    "kink_margin: recomputed h {} but the layer gave {}",
                    h_new[j],
                    got[j]
                );
            }
            hp = h_new;
        }
    }
    k
}

/// Checks every case, prints the group's totals, and fails naming every failing case.
fn run_group(group: &str, cases: &[Case]) {
    let mut failures = Vec::new();
    let (mut scalars, mut worst_abs, mut clamped) = (0, 0.0f64, 0);
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
        clamped += r.clamped;
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
         largest |a - n| {worst_abs:.1e}{}",
        cases.len(),
        if clamped > 0 {
            format!(", {clamped} pre-activations clamped by clip")
        } else {
            String::new()
        }
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

/// The layer-normalised LSTM (haste's LayerNormLSTM): every parameter (the norms' gains and
/// bias included), the input and both initial states, alone and with every other option.
#[test]
fn lstm_layer_norm() {
    let ln = |cell: LstmCell| {
        lstm(LstmCell {
            layer_norm: true,
            ..cell
        })
    };
    let plain = || ln(LstmCell::default());
    run_group(
        "lstm layer norm",
        &[
            case("lstm_layer_norm", plain()),
            case("lstm_layer_norm_no_bias", plain()).no_bias(),
            case("lstm_layer_norm_hidden_5", plain()).hidden(5),
            case(
                "lstm_layer_norm_peephole_ifo",
                ln(LstmCell {
                    peepholes: peepholes("ifo"),
                    ..Default::default()
                }),
            ),
            case(
                "lstm_layer_norm_peephole_io",
                ln(LstmCell {
                    peepholes: peepholes("io"),
                    ..Default::default()
                }),
            ),
            case(
                "lstm_layer_norm_activations_tanh_sigmoid_tanh",
                ln(LstmCell {
                    activations: LstmActivations {
                        gate: Activation::Tanh,
                        cell: Activation::Sigmoid,
                        hidden: Activation::Tanh,
                    },
                    ..Default::default()
                }),
            ),
            case("lstm_layer_norm_2_layers_ragged_bidirectional", plain())
                .layers(2)
                .direction(Direction::Bidirectional)
                .input(2)
                .ragged(),
            case("lstm_layer_norm_reverse_batch_first", plain())
                .direction(Direction::Reverse)
                .batch_first(),
            case("lstm_layer_norm_rec_dropout_2_layers", plain())
                .layers(2)
                .recurrent_dropout(0.3),
        ],
    );
}

/// The layer-normalised GRU (haste's LayerNormGRU, reset after the product).
#[test]
fn gru_layer_norm() {
    let ln = |activations| {
        CellKind::Gru(GruCell {
            activations,
            layer_norm: true,
            ..Default::default()
        })
    };
    let plain = || ln(GruActivations::default());
    run_group(
        "gru layer norm",
        &[
            case("gru_layer_norm", plain()),
            case("gru_layer_norm_no_bias", plain()).no_bias(),
            case("gru_layer_norm_hidden_5", plain()).hidden(5),
            case(
                "gru_layer_norm_activations_tanh_sigmoid",
                ln(GruActivations {
                    gate: Activation::Tanh,
                    candidate: Activation::Sigmoid,
                }),
            ),
            case("gru_layer_norm_2_layers_ragged_bidirectional", plain())
                .layers(2)
                .direction(Direction::Bidirectional)
                .input(2)
                .ragged(),
            case("gru_layer_norm_reverse_batch_first", plain())
                .direction(Direction::Reverse)
                .batch_first(),
            case("gru_layer_norm_rec_dropout_2_layers", plain())
                .layers(2)
                .recurrent_dropout(0.3),
        ],
    );
}

/// Zoneout on h and c (masks fixed by the call's seed): LSTM and GRU, with projection,
/// peepholes, layer norm, recurrent dropout, two layers, both directions and ragged batches.
#[test]
fn zoneout() {
    let ln_lstm = || {
        lstm(LstmCell {
            layer_norm: true,
            ..Default::default()
        })
    };
    let ln_gru = || {
        CellKind::Gru(GruCell {
            layer_norm: true,
            ..Default::default()
        })
    };
    run_group(
        "zoneout",
        &[
            case("lstm_zoneout_h", CellKind::lstm()).zoneout(0.4, 0.0),
            case("lstm_zoneout_c", CellKind::lstm()).zoneout(0.0, 0.4),
            case(
                "lstm_zoneout_h_c_2_layers_ragged_bidirectional",
                CellKind::lstm(),
            )
            .layers(2)
            .direction(Direction::Bidirectional)
            .input(2)
            .ragged()
            .zoneout(0.3, 0.3),
            case(
                "lstm_zoneout_h_c_proj_peephole_if",
                lstm(LstmCell {
                    proj_size: 2,
                    peepholes: peepholes("if"),
                    ..Default::default()
                }),
            )
            .hidden(4)
            .zoneout(0.3, 0.3),
            case("lstm_layer_norm_zoneout_h_c_rec_dropout", ln_lstm())
                .zoneout(0.3, 0.3)
                .recurrent_dropout(0.3),
            case("gru_zoneout", gru(ResetPlacement::AfterMatmul)).zoneout(0.4, 0.0),
            case(
                "gru_reset_before_zoneout_2_layers_reverse",
                gru(ResetPlacement::BeforeMatmul),
            )
            .layers(2)
            .direction(Direction::Reverse)
            .zoneout(0.3, 0.0),
            case("gru_layer_norm_zoneout_ragged", ln_gru())
                .ragged()
                .zoneout(0.3, 0.0),
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
            layer_norm: false,
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

// ---------------------------------------------------------------------------------------
// ONNX activations, clip and recurrent dropout

/// Every ONNX activation, with parameters chosen so that the pre-activations of these small
/// cases (|a| ≲ 2) fall on both sides of each kink: HardSigmoid's flat parts start at
/// ±0.42, ThresholdedRelu's threshold is 0.15.
fn onnx_activations() -> Vec<(&'static str, Activation)> {
    vec![
        ("sigmoid", Activation::Sigmoid),
        ("tanh", Activation::Tanh),
        ("relu", Activation::Relu),
        (
            "affine",
            Activation::Affine {
                alpha: 0.7,
                beta: -0.2,
            },
        ),
        ("leaky_relu", Activation::LeakyRelu { alpha: 0.1 }),
        (
            "thresholded_relu",
            Activation::ThresholdedRelu { alpha: 0.15 },
        ),
        (
            "scaled_tanh",
            Activation::ScaledTanh {
                alpha: 1.3,
                beta: 0.8,
            },
        ),
        (
            "hard_sigmoid",
            Activation::HardSigmoid {
                alpha: 1.2,
                beta: 0.5,
            },
        ),
        ("elu", Activation::Elu { alpha: 0.7 }),
        ("softsign", Activation::Softsign),
        ("softplus", Activation::Softplus),
    ]
}

#[test]
fn lstm_every_activation_in_every_slot() {
    let mut cases = Vec::new();
    for (name, act) in onnx_activations() {
        let d = LstmActivations::default();
        for (slot, activations) in [
            ("gate", LstmActivations { gate: act, ..d }),
            ("cell", LstmActivations { cell: act, ..d }),
            ("hidden", LstmActivations { hidden: act, ..d }),
        ] {
            cases.push(case(
                &format!("lstm_{name}_as_{slot}"),
                lstm(LstmCell {
                    activations,
                    ..Default::default()
                }),
            ));
        }
    }
    run_group("lstm activations", &cases);
}

#[test]
fn gru_every_activation_in_every_slot() {
    let mut cases = Vec::new();
    for (name, act) in onnx_activations() {
        let d = GruActivations::default();
        for (placement, reset) in [
            ("after", ResetPlacement::AfterMatmul),
            ("before", ResetPlacement::BeforeMatmul),
        ] {
            for (slot, activations) in [
                ("gate", GruActivations { gate: act, ..d }),
                (
                    "candidate",
                    GruActivations {
                        candidate: act,
                        ..d
                    },
                ),
            ] {
                cases.push(case(
                    &format!("gru_reset_{placement}_{slot}_{name}"),
                    CellKind::Gru(GruCell {
                        reset,
                        activations,
                        clip: None,
                        layer_norm: false,
                    }),
                ));
            }
        }
    }
    run_group("gru activations", &cases);
}

#[test]
fn rnn_every_activation() {
    let mut cases = Vec::new();
    for (name, act) in onnx_activations() {
        cases.push(case(&format!("rnn_{name}"), rnn(act, Leak::None)));
        cases.push(case(
            &format!("rnn_{name}_leaky_0.4"),
            rnn(act, Leak::Uniform(0.4)),
        ));
    }
    run_group("rnn activations", &cases);
}

/// ONNX clip on every cell and option that changes what is clamped: some pre-activations are
/// clamped in every case (checked), none is within RELU_MARGIN of ±clip (checked).
#[test]
fn onnx_clip() {
    const CLIP: f64 = 0.6;
    let lstm_clip = |c: LstmCell| {
        lstm(LstmCell {
            clip: Some(CLIP),
            ..c
        })
    };
    let gru_clip = |reset, activations| {
        CellKind::Gru(GruCell {
            reset,
            activations,
            clip: Some(CLIP),
            layer_norm: false,
        })
    };
    let rnn_clip = |nonlinearity, leak| {
        CellKind::Rnn(RnnCell {
            nonlinearity,
            leak,
            clip: Some(CLIP),
        })
    };
    let hard = Activation::HardSigmoid {
        alpha: 1.2,
        beta: 0.5,
    };
    let cases = vec![
        case("lstm_clip", lstm_clip(LstmCell::default())),
        case("lstm_clip_no_bias", lstm_clip(LstmCell::default())).no_bias(),
        case(
            "lstm_clip_peephole_ifo",
            lstm_clip(LstmCell {
                peepholes: Peepholes::ALL,
                ..Default::default()
            }),
        ),
        case(
            "lstm_clip_coupled_peephole_io_proj",
            lstm_clip(LstmCell {
                peepholes: peepholes("io"),
                proj_size: 2,
                input_forget: InputForget::Coupled,
                ..Default::default()
            }),
        )
        .hidden(4),
        case(
            // (a hidden activation without kinks: where i and f are both on HardSigmoid's flat
            // 0 the cell state is exactly 0, a kink of Elu or Softsign that no nudge moves but
            // that kink_margin would count)
            "lstm_clip_peephole_ifo_hard_sigmoid_elu_softplus",
            lstm_clip(LstmCell {
                peepholes: Peepholes::ALL,
                activations: LstmActivations {
                    gate: hard,
                    cell: Activation::Elu { alpha: 0.7 },
                    hidden: Activation::Softplus,
                },
                ..Default::default()
            }),
        ),
        case(
            "lstm_clip_peephole_ifo_ragged",
            lstm_clip(LstmCell {
                peepholes: Peepholes::ALL,
                ..Default::default()
            }),
        )
        .ragged(),
        case(
            "gru_reset_after_clip",
            gru_clip(ResetPlacement::AfterMatmul, GruActivations::default()),
        ),
        case(
            "gru_reset_before_clip",
            gru_clip(ResetPlacement::BeforeMatmul, GruActivations::default()),
        ),
        case(
            "gru_reset_after_clip_no_bias",
            gru_clip(ResetPlacement::AfterMatmul, GruActivations::default()),
        )
        .no_bias(),
        case(
            "gru_reset_after_clip_hard_sigmoid_scaled_tanh",
            gru_clip(
                ResetPlacement::AfterMatmul,
                GruActivations {
                    gate: hard,
                    candidate: Activation::ScaledTanh {
                        alpha: 1.3,
                        beta: 0.8,
                    },
                },
            ),
        ),
        case(
            "gru_reset_before_clip_hard_sigmoid_softplus_ragged",
            gru_clip(
                ResetPlacement::BeforeMatmul,
                GruActivations {
                    gate: hard,
                    candidate: Activation::Softplus,
                },
            ),
        )
        .ragged(),
        case("rnn_tanh_clip", rnn_clip(Activation::Tanh, Leak::None)),
        case(
            "rnn_relu_clip_leaky_0.3",
            rnn_clip(Activation::Relu, Leak::Uniform(0.3)),
        ),
        case(
            "rnn_softsign_clip_ragged",
            rnn_clip(Activation::Softsign, Leak::None),
        )
        .ragged(),
    ];
    run_group("onnx clip", &cases);
}

/// Variational recurrent dropout (fixed seed): every cell, one and two layers, both
/// directions, ragged batches, projection, and together with inter-layer dropout.
#[test]
fn recurrent_dropout() {
    let mut cases = Vec::new();
    for (stem, cell) in every_cell() {
        // relu_margin cannot see the masks; the leaky tanh RNN stands in for the leaky ReLU
        let (stem, cell) = match &cell {
            CellKind::Rnn(r) if r.nonlinearity == Activation::Relu => {
                ("rnn_tanh_leaky", rnn(Activation::Tanh, Leak::Uniform(0.3)))
            }
            _ => (stem, cell),
        };
        cases.push(case(&format!("{stem}_rec_dropout"), cell.clone()).recurrent_dropout(0.3));
        cases.push(
            case(&format!("{stem}_rec_dropout_bidirectional"), cell.clone())
                .direction(Direction::Bidirectional)
                .recurrent_dropout(0.4),
        );
        cases.push(
            case(
                &format!("{stem}_rec_dropout_2_layers_ragged_bidirectional"),
                cell.clone(),
            )
            .layers(2)
            .direction(Direction::Bidirectional)
            .input(2)
            .ragged()
            .recurrent_dropout(0.3),
        );
        cases.push(
            case(
                &format!("{stem}_rec_dropout_and_dropout_2_layers_reverse"),
                cell,
            )
            .layers(2)
            .direction(Direction::Reverse)
            .dropout(0.4)
            .recurrent_dropout(0.5),
        );
    }
    run_group("recurrent dropout", &cases);
}
