//! A whole sequence model: input stage → recurrent stack → linear head, the network that
//! `recur train` fits. In PyTorch words it is the module
//!
//! ```python
//! class SequenceModel(nn.Module):
//!     def __init__(self):
//!         self.embedding = nn.Embedding(num_embeddings, embedding_dim)  # Input::Embedding only
//!         self.rnn = nn.LSTM(...)                                       # or nn.GRU / nn.RNN
//!         self.head = nn.Linear(D * H_out, out_features)
//! ```
//!
//! ```text
//! (1) x = E[ids]                              Input::Embedding   x: [seq_len, batch, embedding_dim]
//!     x = input                               Input::Dense       x: [seq_len, batch, input_size]
//! (1') x = x ⊙ m_in                           training, input_dropout p > 0
//! (2) y, h_n = rnn(x, state, lengths)         y: [seq_len, batch, D * H_out], h_n: [L * D, batch, H_out]
//!     u = y                                   OutputForm::EveryStep
//!     u = [h_n[(L−1)D] | … | h_n[LD−1]]       OutputForm::Last;   u: [batch, D * H_out]
//! (2') u = u ⊙ m_out                          training, output_dropout p > 0
//! (3) z = u Wᵀ + bias                         (EveryStep: z[t, b] = 0 for t ≥ len_b)
//!                                             z: [seq_len, batch, out] or [batch, out]
//! ```
//! The dropout masks m hold 0 with probability p and 1/(1 − p) otherwise (PyTorch's
//! `nn.Dropout`), drawn from the seed of [`SequenceModel::forward_train`]; inference uses
//! none. With the stack's own inter-layer `dropout` this is the placement of Zaremba, Sutskever
//! & Vinyals (2014) and PyTorch's word_language_model: dropout on every non-recurrent
//! connection — into the first layer, between layers, and into the head.
//!
//! With [`TieWeights::Tied`] (Press & Wolf 2017; word_language_model `--tied`) the head has no
//! weight of its own: W is the embedding table E (`[vocab, embedding_dim]`, so
//! `out_features = num_embeddings` and `D * H_out = embedding_dim`), and its gradient is the
//! sum of both uses.
//! `OutputForm::Last` reads each sequence's final state of the top layer: for a bidirectional
//! stack the forward state after step len_b − 1 and the reverse state after step 0,
//! concatenated `[forward, reverse]` (PyTorch users' `torch.cat([h_n[-2], h_n[-1]], 1)`).
//! Outputs past a sequence's end are zero in `EveryStep`, so they are constants and the
//! gradient given for them is ignored, as [`Recurrent`] ignores its own there.
//!
//! Backward, given dz = ∂L/∂z, walks the forward in reverse:
//! ```text
//! (3)ᵀ  EveryStep: dz[t, b] = 0 for t ≥ len_b;   du = dz W;  dW += dzᵀ u;  dbias += Σ dz
//!                                                (tied: dE += dzᵀ u)
//! (2')ᵀ du = du ⊙ m_out
//! (2)ᵀ  EveryStep: dy = du;  Last: dh_n[(L−1)D + d][b] = du[b, d·H_out .. (d+1)·H_out]
//!       dx, dstate = BPTT(dy or dh_n)
//! (1')ᵀ dx = dx ⊙ m_in
//! (1)ᵀ  dE[ids_n] += dx[n]   (Input::Embedding; skips padding_idx)
//! ```
//!
//! ## The flat parameter layout
//! Parameters and gradients are one flat buffer, the three parts one after the other, each
//! part laid out as its own module lays it out, with the names a PyTorch module with the
//! attributes `embedding`, `rnn`, `head` has in its `state_dict`:
//!
//! | part      | names                                                   | present            |
//! |-----------|---------------------------------------------------------|--------------------|
//! | embedding | `embedding.weight` `[num_embeddings, embedding_dim]`    | `Input::Embedding` |
//! | recurrent | `rnn.<name>` for every name of [`Recurrent::layout`]    | always             |
//! | head      | `head.weight` `[out_features, D * H_out]`, `head.bias`  | weight unless tied, bias if enabled |
//!
//! A tied model's flat buffer holds the shared table once, as `embedding.weight`;
//! [`SequenceModel::param`]`("head.weight")` still answers (with the table), and a saved
//! state_dict holds both names, as PyTorch's does.
//!
//! [`SequenceModel::param_layout`] lists them with their offsets. The three parts keep their
//! own buffers (each module owns its parameters); [`SequenceModel::params`] gathers them and
//! [`SequenceModel::set_params`] scatters them back, while an optimizer that updates in place
//! can take the parts from [`SequenceModel::parts_mut`].

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result, Shape, config_err};
use crate::kernel::scalar::Float;
use crate::layer::params::ParamLayout;
use crate::layer::{
    BatchLayout, Bias, Call, OutputGrad, Recurrent, RecurrentConfig, State, Tape, WeightFormat,
    training_seed,
};
use crate::model::embedding::{Embedding, EmbeddingConfig};
use crate::model::linear::{Linear, LinearConfig, affine_backward, affine_forward};
use crate::tensor::{Tensor, TensorView};

/// What the model reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Input {
    /// Token ids through an embedding table; `embedding_dim` must equal the stack's
    /// `input_size`.
    Embedding(EmbeddingConfig),
    /// Feature vectors `[seq_len, batch, input_size]`, straight into the recurrent stack.
    #[default]
    Dense,
}

/// Where the head reads the recurrent stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputForm {
    /// The head on the top layer's output at every step: `[seq_len, batch, out_features]`
    /// (language models, sequence labelling).
    #[default]
    EveryStep,
    /// The head on each sequence's final state of the top layer (both directions'
    /// concatenated): `[batch, out_features]` (classification or regression of whole
    /// sequences).
    Last,
}

/// Whether the head's weight is the embedding table (Press & Wolf 2017, "Using the Output
/// Embedding to Improve Language Models"; PyTorch word_language_model `--tied`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TieWeights {
    /// The head has its own weight.
    #[default]
    Untied,
    /// `head.weight` is `embedding.weight`: needs [`Input::Embedding`], `out_features =
    /// num_embeddings` and `D * H_out = embedding_dim`.
    Tied,
}

/// Configuration of a [`SequenceModel`].
///
/// ```
/// use recur::model::{EmbeddingConfig, Input, OutputForm, SequenceModelConfig};
/// use recur::{CellKind, RecurrentConfig};
/// let config = SequenceModelConfig {
///     input: Input::Embedding(EmbeddingConfig { num_embeddings: 50, embedding_dim: 16, padding_idx: None }),
///     rnn: RecurrentConfig { cell: CellKind::lstm(), input_size: 16, hidden_size: 32, ..Default::default() },
///     output: OutputForm::EveryStep,
///     out_features: 50,
///     ..Default::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SequenceModelConfig {
    pub input: Input,
    /// The recurrent stack, any cell and option of [`Recurrent`].
    pub rnn: RecurrentConfig,
    pub output: OutputForm,
    /// Width of the head's output (classes, or regression targets).
    pub out_features: usize,
    /// Whether the head has a bias (PyTorch `bias`, default enabled).
    pub head_bias: Bias,
    /// Dropout probability on the recurrent stack's input (the embedding output, or the dense
    /// features), in training only; default 0.
    pub input_dropout: f64,
    /// Dropout probability on what the head reads (the top layer's output, or the final
    /// states for [`OutputForm::Last`]), in training only; default 0.
    pub output_dropout: f64,
    /// Whether the head's weight is the embedding table; default untied.
    pub tie_weights: TieWeights,
}

impl SequenceModelConfig {
    /// Checks every setting, and that the parts fit together.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first setting out of range, `embedding_dim` when it
    /// differs from the stack's `input_size`, or `tie_weights` when the head cannot share the
    /// embedding table.
    pub fn validate(&self) -> Result<()> {
        self.rnn.validate()?;
        for (what, p) in [
            ("input_dropout", self.input_dropout),
            ("output_dropout", self.output_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(config_err(what, format!("must lie in [0, 1), got {p}")));
            }
        }
        if self.tie_weights == TieWeights::Tied {
            let Input::Embedding(e) = &self.input else {
                return Err(config_err(
                    "tie_weights",
                    "needs an embedding input (Input::Embedding) to share its table",
                ));
            };
            let head = self.head_config();
            if head.out_features != e.num_embeddings || head.in_features != e.embedding_dim {
                return Err(config_err(
                    "tie_weights",
                    format!(
                        "the head's weight [out_features, D * H_out] = [{}, {}] must have the \
                         embedding table's shape [num_embeddings, embedding_dim] = [{}, {}]",
                        head.out_features, head.in_features, e.num_embeddings, e.embedding_dim
                    ),
                ));
            }
        }
        if let Input::Embedding(e) = &self.input {
            e.validate()?;
            if e.embedding_dim != self.rnn.input_size {
                return Err(config_err(
                    "embedding_dim",
                    format!(
                        "must equal the recurrent stack's input_size = {}, got {}",
                        self.rnn.input_size, e.embedding_dim
                    ),
                ));
            }
        }
        self.head_config().validate()
    }

    /// Every tensor of the flat parameter buffer of a model of this configuration (what
    /// [`SequenceModel::param_layout`] gives), computed without allocating the parameters:
    /// what a loader checks a file against before it allocates anything.
    ///
    /// # Errors
    /// As [`SequenceModelConfig::validate`], and [`Error::Config`] when a tensor's size
    /// overflows `usize`.
    pub fn param_layout(&self) -> Result<Vec<ModelParam>> {
        self.validate()?;
        let mut layout = Vec::new();
        let mut offset = 0usize;
        let mut push = |name: String, shape: Vec<usize>| -> Result<()> {
            let len = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(|| config_err(name.clone(), "tensor size overflows usize"))?;
            layout.push(ModelParam {
                name,
                shape,
                offset,
                len,
            });
            offset = offset
                .checked_add(len)
                .ok_or_else(|| config_err("parameters", "total size overflows usize"))?;
            Ok(())
        };
        if let Input::Embedding(e) = &self.input {
            push(
                "embedding.weight".into(),
                vec![e.num_embeddings, e.embedding_dim],
            )?;
        }
        for entry in ParamLayout::of_valid(&self.rnn).entries() {
            push(format!("rnn.{}", entry.name), entry.shape.clone())?;
        }
        let hc = self.head_config();
        if self.tie_weights == TieWeights::Untied {
            push("head.weight".into(), vec![hc.out_features, hc.in_features])?;
        }
        if hc.bias == Bias::Enabled {
            push("head.bias".into(), vec![hc.out_features])?;
        }
        Ok(layout)
    }

    /// How many tensors [`SequenceModelConfig::param_layout`] would list, counted without
    /// building it (saturating): a loader checks it against the tensors a file holds first.
    pub fn tensor_count(&self) -> usize {
        let embedding = usize::from(matches!(self.input, Input::Embedding(_)));
        let head = usize::from(self.tie_weights == TieWeights::Untied)
            + usize::from(self.head_bias == Bias::Enabled);
        ParamLayout::tensor_count(&self.rnn).saturating_add(embedding + head)
    }

    /// The head: `in_features = D * H_out` in both output forms.
    pub fn head_config(&self) -> LinearConfig {
        LinearConfig {
            in_features: self.rnn.direction.count() * self.rnn.h_out(),
            out_features: self.out_features,
            bias: self.head_bias,
        }
    }
}

/// What the model is given: token ids for [`Input::Embedding`], features for
/// [`Input::Dense`].
#[derive(Clone, Copy, Debug)]
pub enum ModelInput<'a, T> {
    /// Row-major ids of shape `shape`: `[seq_len, batch]`, or `[batch, seq_len]` with
    /// [`BatchLayout::BatchFirst`].
    Ids { ids: &'a [usize], shape: [usize; 2] },
    /// `[seq_len, batch, input_size]`, or batch-first, borrowed (`Features(x.view())`).
    Features(TensorView<'a, T>),
}

/// What a forward pass returns.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOutput<T> {
    /// The head's outputs: `[seq_len, batch, out_features]` (batch-first if so laid out,
    /// zero past each sequence's end) for [`OutputForm::EveryStep`], `[batch, out_features]`
    /// for [`OutputForm::Last`].
    pub output: Tensor<T>,
    /// The recurrent stack's final state (`h_n`, `c_n`), to carry into the next chunk of a
    /// truncated-BPTT stream.
    pub state: State<T>,
}

/// Gradients a backward pass returns besides the parameter gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelGrad<T> {
    /// ∂L/∂input for [`Input::Dense`] (shaped like the input); `None` for token ids.
    pub input: Option<Tensor<T>>,
    /// ∂L/∂h0, ∂L/∂c0.
    pub state: State<T>,
}

/// Everything a training forward pass keeps for [`SequenceModel::backward`].
#[derive(Clone, Debug)]
pub struct SequenceTape<T> {
    config: SequenceModelConfig,
    /// the ids and their shape (empty for dense input)
    ids: Vec<usize>,
    ids_shape: [usize; 2],
    rnn: Tape<T>,
    /// m_in and m_out (empty without that dropout)
    input_mask: Vec<T>,
    output_mask: Vec<T>,
    /// what the head read: u (`y` or the concatenated final states), after dropout
    head_input: Tensor<T>,
    /// rows of the head's input past a sequence's end (`EveryStep` only)
    padded: Vec<usize>,
    output_shape: Vec<usize>,
    batch: usize,
}

/// One tensor of the flat parameter buffer of a [`SequenceModel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelParam {
    /// state_dict name, e.g. `rnn.weight_ih_l0` or `head.bias`.
    pub name: String,
    pub shape: Vec<usize>,
    /// Start in the flat buffer.
    pub offset: usize,
    pub len: usize,
}

/// Input stage → [`Recurrent`] stack → [`Linear`] head.
#[derive(Clone, Debug)]
pub struct SequenceModel<T> {
    config: SequenceModelConfig,
    embedding: Option<Embedding<T>>,
    rnn: Recurrent<T>,
    /// The head's own parameters: `[weight | bias]`, or `[bias]` when tied.
    head: Vec<T>,
    layout: Vec<ModelParam>,
}

impl<T: Float> SequenceModel<T> {
    /// A model with each part's PyTorch default initialisation ([`Embedding::new`],
    /// [`Recurrent::new`], [`Linear::new`]), the parts seeded with `seed`, `seed + 1` and
    /// `seed + 2` (a tied head keeps only the bias of its draw).
    ///
    /// # Errors
    /// [`Error::Config`] when the configuration is invalid.
    pub fn new(config: SequenceModelConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let embedding = match &config.input {
            Input::Embedding(e) => Some(Embedding::new(e.clone(), seed)?),
            Input::Dense => None,
        };
        let rnn = Recurrent::new(config.rnn.clone(), seed.wrapping_add(1))?;
        let linear = Linear::new(config.head_config(), seed.wrapping_add(2))?;
        let skip = match config.tie_weights {
            TieWeights::Tied => {
                config.head_config().out_features * config.head_config().in_features
            }
            TieWeights::Untied => 0,
        };
        let head = linear.params()[skip..].to_vec();
        Self::assemble(config, embedding, rnn, head)
    }

    /// A model holding the given flat parameters (laid out as
    /// [`SequenceModel::param_layout`] says).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::Length`] when `params` has
    /// the wrong length.
    pub fn from_params(config: SequenceModelConfig, params: &[T]) -> Result<Self> {
        let mut model = Self::new(config, 0)?;
        model.set_params(params)?;
        Ok(model)
    }

    fn assemble(
        config: SequenceModelConfig,
        embedding: Option<Embedding<T>>,
        rnn: Recurrent<T>,
        head: Vec<T>,
    ) -> Result<Self> {
        let layout = config.param_layout()?;
        Ok(Self {
            config,
            embedding,
            rnn,
            head,
            layout,
        })
    }

    pub fn config(&self) -> &SequenceModelConfig {
        &self.config
    }

    /// Every parameter tensor with its name, shape and offset in the flat buffer.
    pub fn param_layout(&self) -> &[ModelParam] {
        &self.layout
    }

    /// Length of the flat parameter (and gradient) buffer.
    pub fn param_len(&self) -> usize {
        self.part_lens().iter().sum()
    }

    fn part_lens(&self) -> [usize; 3] {
        [
            self.embedding.as_ref().map_or(0, |e| e.params().len()),
            self.rnn.params().len(),
            self.head.len(),
        ]
    }

    /// All parameters gathered into one flat buffer `[embedding | rnn | head]`.
    pub fn params(&self) -> Vec<T> {
        let mut flat = Vec::with_capacity(self.param_len());
        for part in self.parts() {
            flat.extend_from_slice(part);
        }
        flat
    }

    /// Sets all parameters from one flat buffer laid out as [`SequenceModel::params`].
    ///
    /// # Errors
    /// [`Error::Length`] when `flat` has the wrong length.
    pub fn set_params(&mut self, flat: &[T]) -> Result<()> {
        check_len("params", self.param_len(), flat.len())?;
        let mut rest = flat;
        for part in self.parts_mut() {
            let (here, tail) = rest.split_at(part.len());
            part.copy_from_slice(here);
            rest = tail;
        }
        Ok(())
    }

    /// One optimizer step over the whole flat buffer: gathers the parameters, lets
    /// `optimizer` (made for [`SequenceModel::param_len`] values) update them from `grads`
    /// (laid out as [`SequenceModel::param_layout`]), and scatters them back. The optimizer's
    /// state then has the flat layout, which is what [`crate::io::save_checkpoint`] stores.
    ///
    /// # Errors
    /// As the optimizer's step ([`Error::Length`] for buffers of another length); the model
    /// is unchanged then.
    pub fn update(
        &mut self,
        optimizer: &mut dyn crate::optim::Optimizer<T>,
        grads: &[T],
    ) -> Result<()> {
        let mut flat = self.params();
        optimizer.step(&mut flat, grads)?;
        self.set_params(&flat)
    }

    /// The three parts' parameter buffers `[embedding, rnn, head]` (the first empty for
    /// [`Input::Dense`]), in flat-buffer order.
    pub fn parts(&self) -> [&[T]; 3] {
        [
            self.embedding.as_ref().map_or(&[][..], |e| e.params()),
            self.rnn.params(),
            &self.head,
        ]
    }

    /// As [`SequenceModel::parts`], mutable: an optimizer can update each part in place
    /// against the matching range of the flat gradient buffer.
    pub fn parts_mut(&mut self) -> [&mut [T]; 3] {
        [
            self.embedding
                .as_mut()
                .map_or(&mut [][..], |e| e.params_mut()),
            self.rnn.params_mut(),
            &mut self.head,
        ]
    }

    /// The parameter tensor named `name` (see the module's layout table), if present;
    /// `head.weight` of a tied model is the embedding table.
    pub fn param(&self, name: &str) -> Option<&[T]> {
        if let Some(rest) = name.strip_prefix("embedding.") {
            return self.embedding.as_ref()?.param(rest);
        }
        if let Some(rest) = name.strip_prefix("rnn.") {
            return self.rnn.param(rest);
        }
        match name {
            "head.weight" => Some(self.head_weight()),
            "head.bias" => self.head_bias(),
            _ => None,
        }
    }

    /// The head's weight `[out_features, D * H_out]` (the embedding table when tied).
    pub fn head_weight(&self) -> &[T] {
        match (self.config.tie_weights, &self.embedding) {
            (TieWeights::Tied, Some(e)) => e.weight(),
            _ => &self.head[..self.head_weight_len()],
        }
    }

    /// The head's bias `[out_features]`, when it has one.
    pub fn head_bias(&self) -> Option<&[T]> {
        (self.config.head_bias == Bias::Enabled).then(|| &self.head[self.head_weight_len()..])
    }

    /// Length of the head's own weight in its buffer (0 when tied).
    fn head_weight_len(&self) -> usize {
        match self.config.tie_weights {
            TieWeights::Tied => 0,
            TieWeights::Untied => self.config.out_features * self.config.head_config().in_features,
        }
    }

    pub fn embedding(&self) -> Option<&Embedding<T>> {
        self.embedding.as_ref()
    }

    pub fn rnn(&self) -> &Recurrent<T> {
        &self.rnn
    }

    /// The operands of the recurrent stack's training products: see
    /// [`Recurrent::set_precision`] (the embedding and the head stay f32).
    ///
    /// # Errors
    /// As [`Recurrent::set_precision`].
    pub fn set_precision(&mut self, format: WeightFormat) -> Result<()> {
        self.rnn.set_precision(format)
    }

    /// Inference: (1)–(3) from `call.state` (zero when `None`) over sequences of
    /// `call.lengths` (`None`: all `seq_len`). No dropout; a seed is ignored.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when `input` is ids for a dense model or features for an
    /// embedding model; [`Error::Length`] or [`Error::Index`] for ids that do not fill their
    /// shape or lie outside the vocabulary; otherwise as [`Recurrent::forward`].
    pub fn forward(&self, input: ModelInput<'_, T>, call: Call<'_, T>) -> Result<ModelOutput<T>> {
        self.run(input, call, None).map(|(out, _)| out)
    }

    /// Training: as [`SequenceModel::forward`], with the dropout masks (input, the stack's
    /// inter-layer and recurrent, output) drawn from `call.seed`, and keeps what
    /// [`SequenceModel::backward`] needs. The seed is needed when the configuration draws
    /// masks (input or output dropout, or the stack's: see [`Recurrent::forward_train`]).
    ///
    /// # Errors
    /// As [`SequenceModel::forward`] and [`Recurrent::forward_train`]; [`Error::Config`]
    /// (`seed`) for a configuration with dropout and no seed.
    pub fn forward_train(
        &self,
        input: ModelInput<'_, T>,
        call: Call<'_, T>,
    ) -> Result<(ModelOutput<T>, SequenceTape<T>)> {
        let draws = self.config.input_dropout > 0.0
            || self.config.output_dropout > 0.0
            || self.config.rnn.draws_masks();
        let seed = training_seed(call.seed, draws)?;
        self.run(input, call, Some(seed))
            .map(|(out, tape)| (out, tape.expect("training run keeps a tape")))
    }

    fn run(
        &self,
        input: ModelInput<'_, T>,
        call: Call<'_, T>,
        train_seed: Option<u64>,
    ) -> Result<(ModelOutput<T>, Option<SequenceTape<T>>)> {
        let lengths = call.lengths;
        // (1) x = E[ids]  or  x = input
        let embedded;
        let (x, ids, ids_shape) = match (input, &self.embedding) {
            (ModelInput::Ids { ids, shape }, Some(e)) => {
                embedded = e.forward(ids, &shape)?;
                (embedded.view(), ids, shape)
            }
            (ModelInput::Features(x), None) => (x, &[][..], [0, 0]),
            (ModelInput::Ids { .. }, None) => {
                return Err(Error::Unsupported(
                    "input: this model reads features (Input::Dense), got token ids".into(),
                ));
            }
            (ModelInput::Features(_), Some(_)) => {
                return Err(Error::Unsupported(
                    "input: this model reads token ids (Input::Embedding), got features".into(),
                ));
            }
        };
        // (1') x = x ⊙ m_in
        let input_mask = match train_seed {
            Some(seed) => dropout_mask(x.data().len(), self.config.input_dropout, seed, 1),
            None => Vec::new(),
        };
        let dropped;
        let x = if input_mask.is_empty() {
            x
        } else {
            dropped = Tensor::new(mul(x.data(), &input_mask), x.shape())?;
            dropped.view()
        };
        // (2) y, h_n = rnn(x, state, lengths)
        let (out, rnn_tape) = match train_seed {
            Some(seed) => {
                let (out, tape) = self.rnn.forward_train(x, call.seed(seed))?;
                (out, Some(tape))
            }
            None => (self.rnn.forward(x, call)?, None),
        };
        let (seq_len, batch) = match self.config.rnn.layout {
            BatchLayout::SeqFirst => (x.shape()[0], x.shape()[1]),
            BatchLayout::BatchFirst => (x.shape()[1], x.shape()[0]),
        };
        // u = y or [h_n(top, fwd) | h_n(top, rev)]
        let (mut head_input, padded) = match self.config.output {
            OutputForm::EveryStep => (
                out.output,
                self.padded_rows(seq_len, batch, lengths.unwrap_or(&[])),
            ),
            OutputForm::Last => (self.last_states(&out.state.h, batch)?, Vec::new()),
        };
        // (2') u = u ⊙ m_out
        let output_mask = match train_seed {
            Some(seed) => {
                dropout_mask(head_input.data().len(), self.config.output_dropout, seed, 2)
            }
            None => Vec::new(),
        };
        if !output_mask.is_empty() {
            for (u, &m) in head_input.data_mut().iter_mut().zip(&output_mask) {
                *u *= m;
            }
        }
        // (3) z = u Wᵀ + bias
        let mut z = affine_forward(
            &self.config.head_config(),
            self.head_weight(),
            self.head_bias(),
            &head_input,
        )?;
        zero_rows(z.data_mut(), &padded, self.config.out_features);
        let tape = rnn_tape.map(|rnn| SequenceTape {
            config: self.config.clone(),
            ids: ids.to_vec(),
            ids_shape,
            rnn,
            input_mask,
            output_mask,
            head_input,
            padded,
            output_shape: z.shape().to_vec(),
            batch,
        });
        Ok((
            ModelOutput {
                output: z,
                state: out.state,
            },
            tape,
        ))
    }

    /// The backward of [`SequenceModel::forward_train`], given `grad_output = ∂L/∂z` shaped
    /// like the head outputs (values past a sequence's end in `EveryStep` are ignored). Adds
    /// every parameter's gradient into `param_grads` (laid out as
    /// [`SequenceModel::param_layout`]; accumulation, as PyTorch's `.grad`) and returns the
    /// gradients of a dense input and of the initial state.
    ///
    /// # Errors
    /// [`Error::Shape`] for a `grad_output` of the wrong shape, [`Error::Length`] for a
    /// `param_grads` of the wrong length, [`Error::Unsupported`] for a tape recorded by a
    /// model of another configuration.
    pub fn backward(
        &self,
        tape: &SequenceTape<T>,
        grad_output: &Tensor<T>,
        param_grads: &mut [T],
    ) -> Result<ModelGrad<T>> {
        if tape.config != self.config {
            return Err(Error::Unsupported(
                "the tape was recorded by a model of another configuration".into(),
            ));
        }
        check_len("param_grads", self.param_len(), param_grads.len())?;
        grad_output.expect_shape("grad output", &tape.output_shape)?;
        let [n_emb, n_rnn, _] = self.part_lens();
        let (g_emb, rest) = param_grads.split_at_mut(n_emb);
        let (g_rnn, g_head) = rest.split_at_mut(n_rnn);
        // (3)ᵀ dz = 0 past each end; dW += dzᵀ u (into dE when tied); dbias += Σ dz; du = dz W
        // (a copy only when some rows are past an end: the full-length batches of a
        // language model read `grad_output` as it is)
        let zeroed;
        let dz = if tape.padded.is_empty() {
            grad_output
        } else {
            let mut d = grad_output.clone();
            zero_rows(d.data_mut(), &tape.padded, self.config.out_features);
            zeroed = d;
            &zeroed
        };
        let (dw, db) = match self.config.tie_weights {
            TieWeights::Tied => (&mut *g_emb, g_head),
            TieWeights::Untied => g_head.split_at_mut(self.head_weight_len()),
        };
        let db = (self.config.head_bias == Bias::Enabled).then_some(db);
        let mut d_head_input = affine_backward(
            &self.config.head_config(),
            self.head_weight(),
            &tape.head_input,
            dz,
            dw,
            db,
        )?;
        // (2')ᵀ du = du ⊙ m_out
        if !tape.output_mask.is_empty() {
            for (d, &m) in d_head_input.data_mut().iter_mut().zip(&tape.output_mask) {
                *d *= m;
            }
        }
        // (2)ᵀ BPTT from dy (every step) or from dh_n of the top layer (last)
        let dh_n;
        let grad = match self.config.output {
            OutputForm::EveryStep => OutputGrad {
                output: Some(d_head_input.view()),
                ..Default::default()
            },
            OutputForm::Last => {
                dh_n = self.last_states_backward(&d_head_input, tape.batch)?;
                OutputGrad {
                    h: Some(dh_n.view()),
                    ..Default::default()
                }
            }
        };
        let mut dx = self.rnn.backward(&tape.rnn, grad, g_rnn)?;
        // (1')ᵀ dx = dx ⊙ m_in
        if !tape.input_mask.is_empty() {
            for (d, &m) in dx.input.data_mut().iter_mut().zip(&tape.input_mask) {
                *d *= m;
            }
        }
        // (1)ᵀ dE[ids_n] += dx[n]
        let input = match &self.embedding {
            Some(e) => {
                e.backward(&tape.ids, &tape.ids_shape, &dx.input, g_emb)?;
                None
            }
            None => Some(dx.input),
        };
        Ok(ModelGrad {
            input,
            state: dx.state,
        })
    }

    /// The rows of `[seq_len, batch, ·]` (or batch-first) past each sequence's end.
    fn padded_rows(&self, seq_len: usize, batch: usize, lengths: &[usize]) -> Vec<usize> {
        let mut rows = Vec::new();
        for (b, &len) in lengths.iter().enumerate() {
            for t in len..seq_len {
                rows.push(match self.config.rnn.layout {
                    BatchLayout::SeqFirst => t * batch + b,
                    BatchLayout::BatchFirst => b * seq_len + t,
                });
            }
        }
        rows
    }

    /// The top layer's blocks of `h_n` (`[L * D, batch, H_out]`), concatenated per sequence
    /// `[forward | reverse]`: `[batch, D * H_out]`.
    fn last_states(&self, h_n: &Tensor<T>, batch: usize) -> Result<Tensor<T>> {
        let (d, r) = (self.config.rnn.direction.count(), self.config.rnn.h_out());
        let top = (self.config.rnn.num_layers - 1) * d;
        let h = h_n.data();
        let mut out = vec![T::zero(); batch * d * r];
        for b in 0..batch {
            for dir in 0..d {
                let from = ((top + dir) * batch + b) * r;
                out[(b * d + dir) * r..(b * d + dir + 1) * r].copy_from_slice(&h[from..from + r]);
            }
        }
        Tensor::new(out, &[batch, d * r])
    }

    /// The inverse of [`Self::last_states`]: `[batch, D * H_out]` → a gradient of `h_n`
    /// `[L * D, batch, H_out]`, zero outside the top layer.
    fn last_states_backward(&self, dlast: &Tensor<T>, batch: usize) -> Result<Tensor<T>> {
        let cfg = &self.config.rnn;
        let (d, r) = (cfg.direction.count(), cfg.h_out());
        let top = (cfg.num_layers - 1) * d;
        let src = dlast.data();
        let mut dh = vec![T::zero(); cfg.num_layers * d * batch * r];
        for b in 0..batch {
            for dir in 0..d {
                let to = ((top + dir) * batch + b) * r;
                dh[to..to + r].copy_from_slice(&src[(b * d + dir) * r..(b * d + dir + 1) * r]);
            }
        }
        Tensor::new(dh, &[cfg.num_layers * d, batch, r])
    }
}

/// A dropout mask of `len` values: 0 with probability `p`, else 1/(1 − p) (empty for p = 0),
/// from the ChaCha8 stream `stream` of `seed` (the stack's own masks use stream 0 of the
/// same seed, so the three never share numbers).
fn dropout_mask<T: Float>(len: usize, p: f64, seed: u64, stream: u64) -> Vec<T> {
    if p == 0.0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let keep = 1.0 - p;
    let scale = T::from_f64(1.0 / keep).unwrap_or_else(T::one);
    (0..len)
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                T::zero()
            }
        })
        .collect()
}

fn mul<T: Float>(a: &[T], b: &[T]) -> Vec<T> {
    a.iter().zip(b).map(|(&x, &m)| x * m).collect()
}

fn zero_rows<T: Float>(data: &mut [T], rows: &[usize], width: usize) {
    for &row in rows {
        data[row * width..(row + 1) * width].fill(T::zero());
    }
}

fn check_len(what: &str, expected: usize, got: usize) -> Result<()> {
    if expected != got {
        return Err(Error::Length {
            what: what.into(),
            shape: Shape(vec![expected]),
            len: got,
        });
    }
    Ok(())
}
