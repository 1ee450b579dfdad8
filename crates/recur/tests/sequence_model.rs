//! The whole sequence model (input stage → recurrent stack → linear head): an f64
//! central-difference check of every gradient it returns, and what `OutputForm::Last` reads.
//!
//! As in `tests/gradcheck.rs`, the scalar loss is `L = Σ R ⊙ z` over the head outputs z with a
//! fixed random R, so `∂L/∂z = R` is what `backward` is given; every scalar θ of every
//! parameter (embedding, recurrent stack, head) and, for dense input, of the input is nudged
//! both ways and `(L(θ + ε) − L(θ − ε)) / 2ε` is compared with the analytic value. Every case
//! runs both output forms on LSTM and GRU stacks, one layer forward and two layers
//! bidirectional, over a ragged batch.
//!
//! Run `cargo test --test sequence_model -- --nocapture` to see each case's worst error.

mod common;

use common::cases::{SplitMix64, seed_of};
use recur::model::{
    EmbeddingConfig, Input, ModelInput, OutputForm, SequenceModel, SequenceModelConfig, TieWeights,
};
use recur::{
    BatchLayout, Bias, Call, CellKind, Direction, Error, LstmCell, RecurrentConfig, State, Tensor,
};

/// Step of the central difference: the value of `tests/gradcheck.rs`, for its reason (the
/// truncation error O(ε²) ≈ 1e-12 lies far below the rounding error O(u/ε) ≈ 1e-10).
const EPS: f64 = 1e-6;

/// Largest accepted relative error |a − n| / max(|a| + |n|, GRADCHECK_FLOOR): the value of
/// `tests/gradcheck.rs`.
const GRADCHECK_TOL: f64 = 1e-6;

/// Below this |a| + |n| the comparison becomes absolute (|a − n| ≤ 2e-9): the value of
/// `tests/gradcheck.rs`, set there by the measured rounding noise of the central difference
/// (≈ 1e-10 … 1e-9 absolute whatever the gradient's size). The model adds a head and an
/// embedding of unit scale to the same tiny stacks, so the noise is of the same size.
const GRADCHECK_FLOOR: f64 = 2e-3;

/// Unsorted, one sequence of length 1, and max(length) = 4 < seq_len = 5 (as gradcheck.rs).
const RAGGED: [usize; 3] = [3, 1, 4];
const SEQ_LEN: usize = 5;

/// The dropout seed of every training forward pass, so every evaluation of a case
/// differentiates the same function.
const DROPOUT_SEED: u64 = 7;

const VOCAB: usize = 6;
const INPUT_SIZE: usize = 3;
const HIDDEN: usize = 3;
const OUT: usize = 2;

/// Data of one case: ids or features, lengths, and the loss weights R.
struct Problem {
    name: String,
    model: SequenceModel<f64>,
    ids: Vec<usize>,
    features: Tensor<f64>,
    lengths: Vec<usize>,
    r: Tensor<f64>,
}

impl Problem {
    fn new(name: &str, config: SequenceModelConfig, r_at_padding: bool) -> Self {
        let mut rng = SplitMix64(seed_of(name));
        let mut model = SequenceModel::<f64>::new(config.clone(), 0).unwrap();
        let params = rng.values(model.param_len(), 0.6);
        model.set_params(&params).unwrap();
        let batch = RAGGED.len();
        let seq_shape = match config.rnn.layout {
            BatchLayout::SeqFirst => [SEQ_LEN, batch],
            BatchLayout::BatchFirst => [batch, SEQ_LEN],
        };
        let ids = (0..SEQ_LEN * batch)
            .map(|_| (rng.next_u64() % VOCAB as u64) as usize)
            .collect();
        let input_size = config.rnn.input_size;
        let features = Tensor::new(
            rng.values(SEQ_LEN * batch * input_size, 1.0),
            &[seq_shape[0], seq_shape[1], input_size],
        )
        .unwrap();
        let out = config.out_features;
        let r_shape: Vec<usize> = match config.output {
            OutputForm::EveryStep => vec![seq_shape[0], seq_shape[1], out],
            OutputForm::Last => vec![batch, out],
        };
        let mut r = rng.values(r_shape.iter().product(), 1.0);
        if config.output == OutputForm::EveryStep && !r_at_padding {
            // ∂L/∂z = 0 at the padded positions: the loss ignores them.
            for (b, &len) in RAGGED.iter().enumerate() {
                for t in len..SEQ_LEN {
                    let row = match config.rnn.layout {
                        BatchLayout::SeqFirst => t * batch + b,
                        BatchLayout::BatchFirst => b * SEQ_LEN + t,
                    };
                    r[row * out..(row + 1) * out].fill(0.0);
                }
            }
        }
        Self {
            name: name.into(),
            model,
            ids,
            features,
            lengths: RAGGED.to_vec(),
            r: Tensor::new(r, &r_shape).unwrap(),
        }
    }

    fn input<'a>(&'a self, features: &'a Tensor<f64>) -> ModelInput<'a, f64> {
        match self.model.config().input {
            Input::Embedding(_) => {
                let shape = features.shape();
                ModelInput::Ids {
                    ids: &self.ids,
                    shape: [shape[0], shape[1]],
                }
            }
            Input::Dense => ModelInput::Features(features.view()),
        }
    }

    fn loss(&self, model: &SequenceModel<f64>, features: &Tensor<f64>) -> f64 {
        let (out, _) = model
            .forward_train(
                self.input(features),
                Call::new().lengths(&self.lengths).seed(DROPOUT_SEED),
            )
            .unwrap();
        assert_eq!(out.output.shape(), self.r.shape());
        out.output
            .data()
            .iter()
            .zip(self.r.data())
            .map(|(z, r)| z * r)
            .sum()
    }

    /// Checks every parameter and (dense input) every input scalar; returns the worst error.
    fn check(&self) -> f64 {
        let model = &self.model;
        let (_, tape) = model
            .forward_train(
                self.input(&self.features),
                Call::new().lengths(&self.lengths).seed(DROPOUT_SEED),
            )
            .unwrap();
        // Start from non-zero gradients: backward must add to them, as PyTorch's .grad.
        let start = SplitMix64(seed_of(&self.name) ^ 1).values(model.param_len(), 1.0);
        let mut grads = start.clone();
        let dx = model.backward(&tape, &self.r, &mut grads).unwrap();
        let analytic: Vec<f64> = grads.iter().zip(&start).map(|(g, s)| g - s).collect();

        let mut worst: f64 = 0.0;
        let params = model.params();
        let mut nudged = model.clone();
        let mut p = params.clone();
        for entry in model.param_layout() {
            let range = entry.offset..entry.offset + entry.len;
            for (j, &a) in analytic[range].iter().enumerate() {
                let numeric = central(&mut p, entry.offset + j, |v| {
                    nudged.set_params(v).unwrap();
                    self.loss(&nudged, &self.features)
                });
                let what = format!("{}: {}[{j}]", self.name, entry.name);
                worst = worst.max(compare(&what, a, numeric));
            }
        }
        match (&model.config().input, dx.input) {
            (Input::Dense, Some(dinput)) => {
                assert_eq!(dinput.shape(), self.features.shape());
                let shape = self.features.shape().to_vec();
                let mut x = self.features.data().to_vec();
                for k in 0..x.len() {
                    let numeric = central(&mut x, k, |v| {
                        self.loss(model, &Tensor::new(v.to_vec(), &shape).unwrap())
                    });
                    let what = format!("{}: input[{k}]", self.name);
                    worst = worst.max(compare(&what, dinput.data()[k], numeric));
                }
            }
            (Input::Embedding(_), None) => {}
            (input, got) => panic!("{}: input {input:?} gave input gradient {got:?}", self.name),
        }
        worst
    }
}

/// `(f(v + ε e_k) − f(v − ε e_k)) / 2ε`, leaving `v` as it was.
fn central(v: &mut [f64], k: usize, mut f: impl FnMut(&[f64]) -> f64) -> f64 {
    let v0 = v[k];
    v[k] = v0 + EPS;
    let up = f(v);
    v[k] = v0 - EPS;
    let down = f(v);
    v[k] = v0;
    (up - down) / (2.0 * EPS)
}

fn compare(what: &str, analytic: f64, numeric: f64) -> f64 {
    let e = (analytic - numeric).abs() / (analytic.abs() + numeric.abs()).max(GRADCHECK_FLOOR);
    assert!(
        e <= GRADCHECK_TOL,
        "{what}: analytic {analytic:e}, numeric {numeric:e}, rel err {e:e}"
    );
    e
}

fn config(
    cell: CellKind,
    input: &Input,
    output: OutputForm,
    num_layers: usize,
    direction: Direction,
) -> SequenceModelConfig {
    SequenceModelConfig {
        input: input.clone(),
        rnn: RecurrentConfig {
            cell,
            input_size: INPUT_SIZE,
            hidden_size: HIDDEN,
            num_layers,
            direction,
            ..Default::default()
        },
        output,
        out_features: OUT,
        head_bias: Bias::Enabled,
        input_dropout: 0.0,
        output_dropout: 0.0,
        tie_weights: TieWeights::Untied,
    }
}

fn embedding() -> Input {
    Input::Embedding(EmbeddingConfig {
        num_embeddings: VOCAB,
        embedding_dim: INPUT_SIZE,
        padding_idx: None,
    })
}

/// Both output forms × LSTM and GRU × embedding and dense input × (one layer forward, two
/// layers bidirectional), over the ragged batch.
#[test]
fn gradcheck_every_parameter_and_input() {
    let cells = [("lstm", CellKind::lstm()), ("gru", CellKind::gru())];
    let inputs = [("embedding", embedding()), ("dense", Input::Dense)];
    let forms = [
        ("every_step", OutputForm::EveryStep),
        ("last", OutputForm::Last),
    ];
    let stacks = [
        ("1x_forward", 1, Direction::Forward),
        ("2x_bidirectional", 2, Direction::Bidirectional),
    ];
    let mut cases = 0;
    for (cell_name, cell) in &cells {
        for (input_name, input) in &inputs {
            for (form_name, form) in forms {
                for (stack_name, layers, direction) in stacks {
                    let name = format!("{cell_name}_{input_name}_{form_name}_{stack_name}");
                    let cfg = config(cell.clone(), input, form, layers, direction);
                    let worst = Problem::new(&name, cfg, false).check();
                    println!("{name}: worst rel err {worst:.1e}");
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 16);
}

/// Options that change the model's index arithmetic: batch-first layout, a reverse-only
/// stack, an LSTM projection (the head reads `D * proj_size`), inter-layer dropout, a head
/// without bias; and a nonzero R at padded positions of `EveryStep`, which must not count
/// (the outputs there are constant zeros).
#[test]
fn gradcheck_layouts_and_options() {
    let lstm_proj = CellKind::Lstm(LstmCell {
        proj_size: 2,
        ..Default::default()
    });
    let mut cases: Vec<(&str, SequenceModelConfig, bool)> = Vec::new();
    for (name, form) in [
        ("batch_first_every_step", OutputForm::EveryStep),
        ("batch_first_last", OutputForm::Last),
    ] {
        let mut c = config(
            CellKind::gru(),
            &embedding(),
            form,
            2,
            Direction::Bidirectional,
        );
        c.rnn.layout = BatchLayout::BatchFirst;
        cases.push((name, c, false));
    }
    cases.push((
        "reverse_last",
        config(
            CellKind::lstm(),
            &Input::Dense,
            OutputForm::Last,
            1,
            Direction::Reverse,
        ),
        false,
    ));
    for (name, form) in [
        ("proj_bidirectional_last", OutputForm::Last),
        ("proj_bidirectional_every_step", OutputForm::EveryStep),
    ] {
        cases.push((
            name,
            config(
                lstm_proj.clone(),
                &Input::Dense,
                form,
                2,
                Direction::Bidirectional,
            ),
            false,
        ));
    }
    let mut dropout = config(
        CellKind::lstm(),
        &embedding(),
        OutputForm::EveryStep,
        2,
        Direction::Bidirectional,
    );
    dropout.rnn.dropout = 0.4;
    cases.push(("dropout_every_step", dropout, false));
    let mut no_bias = config(
        CellKind::gru(),
        &Input::Dense,
        OutputForm::Last,
        2,
        Direction::Forward,
    );
    no_bias.head_bias = Bias::Disabled;
    cases.push(("head_without_bias_last", no_bias, false));
    cases.push((
        "r_at_padding_every_step",
        config(
            CellKind::lstm(),
            &Input::Dense,
            OutputForm::EveryStep,
            2,
            Direction::Bidirectional,
        ),
        true,
    ));
    for (name, cfg, r_at_padding) in cases {
        let worst = Problem::new(name, cfg, r_at_padding).check();
        println!("{name}: worst rel err {worst:.1e}");
    }
}

/// Dropout on the stack's input and on what the head reads (Zaremba et al.'s placement, with
/// the stack's inter-layer dropout), and a head tied to the embedding table: for each, every
/// gradient against central differences of the same seeded training function.
#[test]
fn gradcheck_dropout_and_tied_weights() {
    let mut cases: Vec<(&str, SequenceModelConfig)> = Vec::new();
    for (name, input, form, layers) in [
        (
            "dropout_embedding_every_step",
            embedding(),
            OutputForm::EveryStep,
            2,
        ),
        ("dropout_embedding_last", embedding(), OutputForm::Last, 1),
        (
            "dropout_dense_every_step",
            Input::Dense,
            OutputForm::EveryStep,
            1,
        ),
        ("dropout_dense_last", Input::Dense, OutputForm::Last, 2),
    ] {
        let mut c = config(
            CellKind::lstm(),
            &input,
            form,
            layers,
            Direction::Bidirectional,
        );
        c.input_dropout = 0.3;
        c.output_dropout = 0.5;
        c.rnn.dropout = 0.25;
        cases.push((name, c));
    }
    // Tied: out_features = VOCAB, D * H = embedding_dim.
    let tied = |form, direction: Direction, input_dropout, output_dropout| {
        let d = if direction == Direction::Bidirectional {
            2
        } else {
            1
        };
        let mut c = config(CellKind::gru(), &embedding(), form, 2, direction);
        c.input = Input::Embedding(EmbeddingConfig {
            num_embeddings: VOCAB,
            embedding_dim: d * HIDDEN,
            // (no padding_idx: PyTorch's, and recur's, lookup gradient skips that row although
            // the forward reads it, so a central difference would disagree by design)
            padding_idx: None,
        });
        c.rnn.input_size = d * HIDDEN;
        c.out_features = VOCAB;
        c.tie_weights = TieWeights::Tied;
        c.input_dropout = input_dropout;
        c.output_dropout = output_dropout;
        c
    };
    cases.push((
        "tied_every_step",
        tied(OutputForm::EveryStep, Direction::Forward, 0.0, 0.0),
    ));
    cases.push((
        "tied_bidirectional_dropout_every_step",
        tied(OutputForm::EveryStep, Direction::Bidirectional, 0.2, 0.4),
    ));
    cases.push((
        "tied_last",
        tied(OutputForm::Last, Direction::Forward, 0.0, 0.3),
    ));
    for (name, cfg) in cases {
        let p = Problem::new(name, cfg, false);
        // Dropout must really act in training and not at all in inference.
        let c = p.model.config();
        if c.input_dropout > 0.0 {
            let input = p.input(&p.features);
            let eval = p
                .model
                .forward(input, Call::new().lengths(&p.lengths))
                .unwrap();
            let (train, _) = p
                .model
                .forward_train(input, Call::new().lengths(&p.lengths).seed(DROPOUT_SEED))
                .unwrap();
            assert_ne!(eval.output, train.output, "{name}: dropout changed nothing");
            let again = p
                .model
                .forward(input, Call::new().lengths(&p.lengths))
                .unwrap();
            assert_eq!(eval.output, again.output);
        }
        let worst = p.check();
        println!("{name}: worst rel err {worst:.1e}");
    }
}

/// A tied model holds the table once in its flat buffer and answers `head.weight` with it;
/// shapes that cannot be shared are configuration errors.
#[test]
fn tied_weights_share_the_embedding_table() {
    let mut c = config(
        CellKind::lstm(),
        &embedding(),
        OutputForm::EveryStep,
        1,
        Direction::Forward,
    );
    c.out_features = VOCAB;
    let untied = SequenceModel::<f64>::new(c.clone(), 0).unwrap();
    c.tie_weights = TieWeights::Tied;
    let model = SequenceModel::<f64>::new(c.clone(), 0).unwrap();
    assert_eq!(model.param_len(), untied.param_len() - VOCAB * HIDDEN);
    assert!(model.param_layout().iter().all(|p| p.name != "head.weight"));
    assert_eq!(model.param("head.weight"), model.param("embedding.weight"));
    assert_eq!(model.head_weight(), model.embedding().unwrap().weight());
    // dropout rates out of range, and untieable shapes
    for bad in [
        SequenceModelConfig {
            out_features: VOCAB + 1,
            ..c.clone()
        },
        SequenceModelConfig {
            input: Input::Dense,
            ..c.clone()
        },
        SequenceModelConfig {
            rnn: RecurrentConfig {
                hidden_size: HIDDEN + 1,
                ..c.rnn.clone()
            },
            ..c.clone()
        },
    ] {
        let e = SequenceModel::<f64>::new(bad, 0).unwrap_err();
        assert!(
            matches!(&e, Error::Config { what, .. } if what == "tie_weights"),
            "{e}"
        );
    }
    for (bad, what) in [
        (
            SequenceModelConfig {
                input_dropout: 1.0,
                ..c.clone()
            },
            "input_dropout",
        ),
        (
            SequenceModelConfig {
                output_dropout: -0.1,
                ..c.clone()
            },
            "output_dropout",
        ),
    ] {
        let e = SequenceModel::<f64>::new(bad, 0).unwrap_err();
        assert!(
            matches!(&e, Error::Config { what: w, .. } if w == what),
            "{e}"
        );
    }
}

/// `Last` is the head applied by hand to the top layer's `[h_n[-2] | h_n[-1]]`, and that
/// state is each sequence's own: the stack run on sequence b alone, cut to its length.
#[test]
fn last_is_the_head_on_each_sequences_final_state() {
    let cfg = config(
        CellKind::lstm(),
        &Input::Dense,
        OutputForm::Last,
        2,
        Direction::Bidirectional,
    );
    let p = Problem::new("last_by_hand", cfg, false);
    let model = &p.model;
    let out = model
        .forward(
            ModelInput::Features(p.features.view()),
            Call::new().lengths(&p.lengths),
        )
        .unwrap();
    let batch = RAGGED.len();
    assert_eq!(out.output.shape(), &[batch, OUT]);
    let w = model.param("head.weight").unwrap();
    let bias = model.param("head.bias").unwrap();
    let h_n = out.state.h.data();
    let feat = 2 * HIDDEN;
    for (b, &len) in RAGGED.iter().enumerate() {
        // torch.cat([h_n[-2], h_n[-1]], dim=1)[b]
        let mut h: Vec<f64> = Vec::new();
        for ld in [2, 3] {
            h.extend_from_slice(&h_n[(ld * batch + b) * HIDDEN..(ld * batch + b + 1) * HIDDEN]);
        }
        // The same state from sequence b alone, cut to its length.
        let x: Vec<f64> = (0..len)
            .flat_map(|t| {
                let row = t * batch + b;
                p.features.data()[row * INPUT_SIZE..(row + 1) * INPUT_SIZE].to_vec()
            })
            .collect();
        let alone = model
            .rnn()
            .forward(&Tensor::new(x, &[len, 1, INPUT_SIZE]).unwrap(), Call::new())
            .unwrap();
        let h_alone = &alone.state.h.data()[2 * HIDDEN..4 * HIDDEN];
        for (a, e) in h.iter().zip(h_alone) {
            assert!((a - e).abs() < 1e-12, "sequence {b}: h_n {a} vs alone {e}");
        }
        for j in 0..OUT {
            let by_hand: f64 = bias[j] + (0..feat).map(|k| w[j * feat + k] * h[k]).sum::<f64>();
            let got = out.output.data()[b * OUT + j];
            assert!(
                (got - by_hand).abs() < 1e-12,
                "z[{b}, {j}] = {got}, by hand {by_hand}"
            );
        }
    }
}

/// `EveryStep` outputs are zero past each sequence's end.
#[test]
fn every_step_is_zero_past_each_end() {
    let cfg = config(
        CellKind::gru(),
        &embedding(),
        OutputForm::EveryStep,
        1,
        Direction::Bidirectional,
    );
    let p = Problem::new("zero_past_end", cfg, false);
    let out = p
        .model
        .forward(p.input(&p.features), Call::new().lengths(&p.lengths))
        .unwrap();
    assert_eq!(out.output.shape(), &[SEQ_LEN, RAGGED.len(), OUT]);
    for (b, &len) in RAGGED.iter().enumerate() {
        for t in 0..SEQ_LEN {
            let row = t * RAGGED.len() + b;
            let z = &out.output.data()[row * OUT..(row + 1) * OUT];
            assert_eq!(t >= len, z.iter().all(|&v| v == 0.0), "t {t}, b {b}: {z:?}");
        }
    }
}

/// The flat layout holds the names a PyTorch module with attributes embedding/rnn/head has
/// in its state_dict, in that order, and tiles the buffer.
#[test]
fn parameter_names_are_a_pytorch_state_dict() {
    let cfg = config(
        CellKind::lstm(),
        &embedding(),
        OutputForm::EveryStep,
        1,
        Direction::Bidirectional,
    );
    let model = SequenceModel::<f32>::new(cfg, 3).unwrap();
    let names: Vec<&str> = model
        .param_layout()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "embedding.weight",
            "rnn.weight_ih_l0",
            "rnn.weight_hh_l0",
            "rnn.bias_ih_l0",
            "rnn.bias_hh_l0",
            "rnn.weight_ih_l0_reverse",
            "rnn.weight_hh_l0_reverse",
            "rnn.bias_ih_l0_reverse",
            "rnn.bias_hh_l0_reverse",
            "head.weight",
            "head.bias",
        ]
    );
    let mut end = 0;
    let flat = model.params();
    for p in model.param_layout() {
        assert_eq!(p.offset, end, "{}", p.name);
        assert_eq!(p.len, p.shape.iter().product::<usize>());
        assert_eq!(
            model.param(&p.name).unwrap(),
            &flat[p.offset..p.offset + p.len]
        );
        end += p.len;
    }
    assert_eq!(end, model.param_len());
    // the layout from the configuration alone (what loaders check files against) is the
    // model's, and its rnn part is the stack's own table
    assert_eq!(model.config().param_layout().unwrap(), model.param_layout());
    let rnn: Vec<(String, Vec<usize>)> = model
        .rnn()
        .layout()
        .entries()
        .iter()
        .map(|e| (format!("rnn.{}", e.name), e.shape.clone()))
        .collect();
    let ours: Vec<(String, Vec<usize>)> = model
        .param_layout()
        .iter()
        .filter(|p| p.name.starts_with("rnn."))
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect();
    assert_eq!(ours, rnn);
    assert_eq!(model.param("head.weight").unwrap().len(), OUT * 2 * HIDDEN);
    assert!(model.param("rnn.weight_hr_l0").is_none());
}

#[test]
fn errors_name_what_is_wrong() {
    let cfg = config(
        CellKind::lstm(),
        &embedding(),
        OutputForm::Last,
        1,
        Direction::Forward,
    );
    let model = SequenceModel::<f64>::new(cfg.clone(), 0).unwrap();
    let x = Tensor::new(
        vec![0.0; SEQ_LEN * 2 * INPUT_SIZE],
        &[SEQ_LEN, 2, INPUT_SIZE],
    )
    .unwrap();
    assert!(matches!(
        model.forward(ModelInput::Features(x.view()), Call::new()),
        Err(Error::Unsupported(_))
    ));
    let ids = [0, 1, 2, VOCAB, 1, 0];
    let e = model
        .forward(
            ModelInput::Ids {
                ids: &ids,
                shape: [3, 2],
            },
            Call::new(),
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "ids[3] = 6 is not below num_embeddings = 6");
    assert!(matches!(
        model.forward(
            ModelInput::Ids {
                ids: &ids[..5],
                shape: [3, 2]
            },
            Call::new()
        ),
        Err(Error::Length { .. })
    ));
    let ids = [0, 1, 2, 3, 1, 0];
    let input = ModelInput::Ids {
        ids: &ids,
        shape: [3, 2],
    };
    assert!(matches!(
        model.forward(input, Call::new().lengths(&[3, 4])),
        Err(Error::SequenceLength { .. })
    ));
    let (out, tape) = model
        .forward_train(input, Call::new().lengths(&[3, 1]).seed(0))
        .unwrap();
    assert_eq!(out.output.shape(), &[2, OUT]);
    // no dropout: the seed is optional and never read
    let (unseeded, _) = model
        .forward_train(input, Call::new().lengths(&[3, 1]))
        .unwrap();
    assert_eq!(unseeded, out);
    // any dropout (input, output, the stack's): a training call needs a seed
    for set in [
        |c: &mut SequenceModelConfig| c.input_dropout = 0.2,
        |c: &mut SequenceModelConfig| c.output_dropout = 0.2,
        |c: &mut SequenceModelConfig| c.rnn.recurrent_dropout = 0.2,
    ] {
        let mut c = cfg.clone();
        set(&mut c);
        let m = SequenceModel::<f64>::new(c, 0).unwrap();
        let e = m.forward_train(input, Call::new()).unwrap_err();
        assert!(
            matches!(&e, Error::Config { what, .. } if what == "seed"),
            "{e}"
        );
        assert!(m.forward_train(input, Call::new().seed(3)).is_ok());
    }
    let mut grads = vec![0.0; model.param_len()];
    let bad = Tensor::new(vec![0.0; 3 * 2 * OUT], &[3, 2, OUT]).unwrap();
    let e = model.backward(&tape, &bad, &mut grads).unwrap_err();
    assert_eq!(
        e.to_string(),
        "grad output: expected shape [2, 2], got [3, 2, 2]"
    );
    assert!(matches!(
        model.backward(&tape, &out.output, &mut grads[1..]),
        Err(Error::Length { .. })
    ));
    let other = SequenceModel::<f64>::new(
        config(
            CellKind::gru(),
            &embedding(),
            OutputForm::Last,
            1,
            Direction::Forward,
        ),
        0,
    )
    .unwrap();
    let mut other_grads = vec![0.0; other.param_len()];
    assert!(matches!(
        other.backward(&tape, &out.output, &mut other_grads),
        Err(Error::Unsupported(_))
    ));
    let dense = SequenceModel::<f64>::new(
        config(
            CellKind::gru(),
            &Input::Dense,
            OutputForm::EveryStep,
            1,
            Direction::Forward,
        ),
        0,
    )
    .unwrap();
    assert!(matches!(
        dense.forward(input, Call::new()),
        Err(Error::Unsupported(_))
    ));
    let mut mismatched = cfg;
    mismatched.rnn.input_size = INPUT_SIZE + 1;
    let e = SequenceModel::<f64>::new(mismatched, 0).unwrap_err();
    assert!(
        matches!(&e, Error::Config { what, .. } if what == "embedding_dim"),
        "{e}"
    );
    let mut no_out = config(
        CellKind::gru(),
        &Input::Dense,
        OutputForm::Last,
        1,
        Direction::Forward,
    );
    no_out.out_features = 0;
    assert!(matches!(
        SequenceModel::<f64>::new(no_out, 0),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        SequenceModel::<f64>::from_params(
            config(
                CellKind::gru(),
                &Input::Dense,
                OutputForm::Last,
                1,
                Direction::Forward
            ),
            &[0.0; 3]
        ),
        Err(Error::Length { .. })
    ));
}

/// A state given to the forward pass is used, and its gradient comes back shaped like it.
#[test]
fn initial_state_flows_through() {
    let cfg = config(
        CellKind::lstm(),
        &Input::Dense,
        OutputForm::EveryStep,
        2,
        Direction::Forward,
    );
    let p = Problem::new("state", cfg, false);
    let mut rng = SplitMix64(11);
    let state = State {
        h: Tensor::new(rng.values(2 * 3 * HIDDEN, 0.5), &[2, 3, HIDDEN]).unwrap(),
        c: Some(Tensor::new(rng.values(2 * 3 * HIDDEN, 0.5), &[2, 3, HIDDEN]).unwrap()),
    };
    let input = ModelInput::Features(p.features.view());
    let zero = p
        .model
        .forward(input, Call::new().lengths(&p.lengths))
        .unwrap();
    let (out, tape) = p
        .model
        .forward_train(input, Call::new().state(&state).lengths(&p.lengths).seed(0))
        .unwrap();
    assert_ne!(zero.output, out.output);
    let mut grads = vec![0.0; p.model.param_len()];
    let g = p.model.backward(&tape, &p.r, &mut grads).unwrap();
    assert_eq!(g.state.h.shape(), state.h.shape());
    assert_eq!(g.state.c.as_ref().unwrap().shape(), &[2, 3, HIDDEN]);
    assert!(g.state.h.data().iter().any(|&v| v != 0.0));
}
