//! Sequencing: stacks of recurrent layers run over whole batches of sequences.
//!
//! [`Recurrent`] is what PyTorch calls `nn.LSTM` / `nn.GRU` / `nn.RNN`: `num_layers` layers,
//! one or two directions, inter-layer dropout, per-sequence lengths, and PyTorch's parameter
//! names and output layout. Its forward and backward run each (layer, direction) through
//! the sequence driver (`layer/driver.rs`).

pub mod config;
pub(crate) mod driver;
mod dropout;
mod gradnorms;
mod grads;
pub(crate) mod pack;
pub mod params;
mod stepper;
mod tape;
mod workspace;

use std::borrow::Cow;
use std::sync::OnceLock;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cell::CellKind;
use crate::error::{Error, Result, config_err, shape_err};
use crate::kernel::Accumulate;
use crate::kernel::scalar::Float;
use crate::tensor::{Tensor, TensorView};
pub use config::{BatchLayout, Bias, Direction, MAX_PARAMS, RecurrentConfig};
use driver::DirSpec;
pub use gradnorms::StateGradNorms;
pub use params::{ParamInfo, ParamKind, ParamLayout};
pub use stepper::Stepper;
use tape::DirTape;
use workspace::Workspace;

/// How the matrix products hold their weights: inference in a [`Stepper`]
/// ([`Recurrent::stepper_with`]) or a whole-sequence call ([`Recurrent::forward_with`]), and
/// training's products ([`Recurrent::set_precision`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightFormat {
    /// The model's own values.
    #[default]
    F32,
    /// bfloat16 (8 significant bits; each weight within 2⁻⁹ relative of its f32 value),
    /// multiplied by the inputs and states also rounded to bf16, accumulated in f32
    /// (AVX-512 BF16; `f32` models only). Measured against f32 streaming over 200 steps of
    /// random input (`tests/stepper.rs`, bound 1e-2): largest output difference 1.2e-3
    /// (LSTM, H = 256 and 512) and 2.0e-3 (GRU); against f32 inference over 30 steps of
    /// every cell and option, at most 3.8e-3.
    Bf16,
}

/// Recurrent state: `h` is `[num_layers * D, batch, H_out]`, `c` (LSTM only) is
/// `[num_layers * D, batch, hidden_size]`; index `layer * D + direction`.
///
/// # Names
/// One pair of words, `h` and `c`, both ways and in and out: a call starts from a
/// [`State`] (`Call::state`, PyTorch's `h_0`, `c_0`) and ends with one
/// ([`Output::state`], PyTorch's `h_n`, `c_n`); the backward takes the gradients of that
/// final state as [`OutputGrad::h`] and [`OutputGrad::c`] and returns those of the initial
/// one as [`InputGrad::state`]. Each gradient is named after the value it is the gradient
/// of.
#[derive(Clone, Debug, PartialEq)]
pub struct State<T> {
    pub h: Tensor<T>,
    pub c: Option<Tensor<T>>,
}

impl<T> State<T> {
    /// The state borrowed, as [`Call::state`] and [`Stepper::set_state`] read it.
    pub fn view(&self) -> StateView<'_, T> {
        StateView {
            h: (&self.h).into(),
            c: self.c.as_ref().map(TensorView::from),
        }
    }
}

/// A borrowed [`State`]: `h` and (LSTM) `c`, read in place, shaped as a [`State`]'s.
#[derive(Debug, PartialEq)]
pub struct StateView<'a, T> {
    pub h: TensorView<'a, T>,
    pub c: Option<TensorView<'a, T>>,
}

impl<T> Clone for StateView<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for StateView<'_, T> {}

impl<'a, T> From<&'a State<T>> for StateView<'a, T> {
    fn from(s: &'a State<T>) -> Self {
        s.view()
    }
}

impl<'a, T> From<&'a State<T>> for Option<StateView<'a, T>> {
    fn from(s: &'a State<T>) -> Self {
        Some(s.view())
    }
}

/// The optional arguments of a forward call ([`Recurrent::forward`],
/// [`Recurrent::forward_train`], [`crate::model::SequenceModel::forward`]), named:
///
/// ```
/// # use recur::{Call, Recurrent, RecurrentConfig, Tensor};
/// # let lstm = Recurrent::<f32>::new(RecurrentConfig { input_size: 3, hidden_size: 4, ..Default::default() }, 0)?;
/// # let x = Tensor::new(vec![0.0f32; 5 * 2 * 3], &[5, 2, 3])?;
/// let out = lstm.forward(&x, Call::new())?; // zero state, every sequence seq_len long
/// let out = lstm.forward(&x, Call::new().lengths(&[5, 3]).state(&out.state))?;
/// # Ok::<(), recur::Error>(())
/// ```
///
/// The state is borrowed as a [`StateView`] (`.state(&s)`, `.state(s.view())`, or
/// `.state(opt.as_ref().map(State::view))` for an `Option<State>`).
///
/// A seed is needed only where a training call draws dropout masks (a configuration with
/// dropout: [`Recurrent::forward_train`] says which); inference ignores it.
#[derive(Debug)]
pub struct Call<'a, T> {
    /// The initial state (PyTorch's `h_0`, `c_0`); `None`: zero.
    pub state: Option<StateView<'a, T>>,
    /// Each sequence's length, in any order (PyTorch packed-sequence semantics); `None`:
    /// all are `seq_len`.
    pub lengths: Option<&'a [usize]>,
    /// The seed of a training call's dropout masks.
    pub seed: Option<u64>,
}

impl<T> Clone for Call<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Call<'_, T> {}

impl<T> Default for Call<'_, T> {
    fn default() -> Self {
        Self {
            state: None,
            lengths: None,
            seed: None,
        }
    }
}

impl<'a, T> Call<'a, T> {
    /// No options: a zero state, full lengths, no seed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from `state` (a `&State` or a [`StateView`], or an `Option<StateView>` where
    /// `None` is zero).
    #[must_use]
    pub fn state(mut self, state: impl Into<Option<StateView<'a, T>>>) -> Self {
        self.state = state.into();
        self
    }

    /// Each sequence's length.
    #[must_use]
    pub fn lengths(mut self, lengths: &'a [usize]) -> Self {
        self.lengths = Some(lengths);
        self
    }

    /// The seed of the dropout masks.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl RecurrentConfig {
    /// Whether a training call draws dropout masks (inter-layer dropout between two or more
    /// layers, recurrent dropout, or zoneout), and so needs a seed (`Call::seed`).
    pub(crate) fn draws_masks(&self) -> bool {
        (self.dropout > 0.0 && self.num_layers > 1)
            || self.recurrent_dropout > 0.0
            || self.zoneout_h > 0.0
            || self.zoneout_c > 0.0
    }
}

/// The seed of a training call: `seed`, required where the call `draws` dropout masks;
/// otherwise never read, and 0 when not given.
pub(crate) fn training_seed(seed: Option<u64>, draws: bool) -> Result<u64> {
    match seed {
        Some(seed) => Ok(seed),
        None if draws => Err(config_err(
            "seed",
            "a training call with dropout needs a seed for its masks (Call::seed)",
        )),
        None => Ok(0),
    }
}

/// What a forward pass returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Output<T> {
    /// `[seq_len, batch, D * H_out]` (or batch-first): the last layer's output at every
    /// step, zero past each sequence's end.
    pub output: Tensor<T>,
    /// PyTorch's `h_n`, `c_n`: each sequence's state at its own last step.
    pub state: State<T>,
}

/// Gradients flowing into a backward pass, each named after the [`Output`] value it is
/// the gradient of; a missing one is zero. Each is borrowed ([`Tensor::view`]):
/// `OutputGrad { output: Some(dy.view()), ..Default::default() }`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutputGrad<'a, T> {
    /// ∂L/∂output, shaped like [`Output::output`]. Values past a sequence's end are ignored.
    pub output: Option<TensorView<'a, T>>,
    /// ∂L/∂h of [`Output::state`] (PyTorch's `h_n`).
    pub h: Option<TensorView<'a, T>>,
    /// ∂L/∂c of [`Output::state`] (PyTorch's `c_n`; LSTM only).
    pub c: Option<TensorView<'a, T>>,
}

/// Gradients a backward pass returns besides the parameter gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct InputGrad<T> {
    /// ∂L/∂input, shaped like the input.
    pub input: Tensor<T>,
    /// ∂L/∂h, ∂L/∂c of the initial state, `Call::state` (PyTorch's `h_0`, `c_0`).
    pub state: State<T>,
}

/// Everything a training forward pass keeps for [`Recurrent::backward`].
#[derive(Clone, Debug)]
pub struct Tape<T> {
    config: RecurrentConfig,
    seq_len: usize,
    batch: usize,
    /// sorted position → caller's batch index
    perm: Vec<usize>,
    /// rows running at each time
    active: Vec<usize>,
    /// input of each layer, time-major in sorted order `[seq_len * batch, layer_in]`
    inputs: Vec<Vec<T>>,
    /// dropout mask applied to the output of layer l (scaled by 1/(1−p)), or empty
    masks: Vec<Vec<T>>,
    /// recurrent-dropout mask of each (layer, direction) `[batch, R]` in sorted order, or
    /// empty
    rec_masks: Vec<Vec<T>>,
    /// zoneout masks of each (layer, direction), h `[seq_len * batch, R]` and c
    /// `[seq_len * batch, H]` in sorted order (an empty one: off)
    zone_masks: Vec<[Vec<T>; 2]>,
    dirs: Vec<DirTape<T>>,
    /// the operands of the forward's products, which the backward's take too
    format: WeightFormat,
    /// the model's pool, which the slabs go back to when the tape drops
    workspace: Workspace<T>,
}

impl<T> Drop for Tape<T> {
    fn drop(&mut self) {
        for dir in self.dirs.drain(..) {
            dir.recycle(&self.workspace);
        }
        for v in self.inputs.drain(..) {
            self.workspace.give(v);
        }
    }
}

impl<T> Tape<T> {
    /// Bytes of what the training forward kept for the backward: each layer's input and
    /// dropout mask, the recurrent-dropout masks, and per (layer, direction) the states
    /// h and c of every step, the gate activations (but a plain RNN's, which are its states
    /// h and are kept once), the cell's saved quantity (LSTM: act(c);
    /// GRU: the recurrent candidate product), the clamp record of `clip` and the
    /// projection's input; grows as seq_len · batch.
    pub fn bytes(&self) -> usize {
        let vecs = self
            .inputs
            .iter()
            .chain(&self.masks)
            .chain(&self.rec_masks)
            .chain(self.zone_masks.iter().flatten())
            .map(Vec::len)
            .sum::<usize>();
        let dirs = self
            .dirs
            .iter()
            .map(|d| d.h.len() + d.c.len() + d.gates.len() + d.aux.len() + d.keep.len() + d.m.len())
            .sum::<usize>();
        (vecs + dirs) * std::mem::size_of::<T>()
    }
}

/// A stack of recurrent layers with its parameters in one flat buffer.
#[derive(Clone, Debug)]
pub struct Recurrent<T> {
    config: RecurrentConfig,
    layout: ParamLayout,
    params: Vec<T>,
    /// The forward weights of every (layer, direction) packed for the panel kernel, made
    /// by the first forward call and dropped whenever the parameters can change (every
    /// `&mut self` method that reaches them): inference with fixed weights packs once.
    panels: KeptPanels,
    /// Working buffers kept from one call for the next (see [`Recurrent::workspace_bytes`]);
    /// shared with the model's clones and its tapes.
    workspace: Workspace<T>,
    /// The operands of training's products ([`Recurrent::set_precision`]).
    precision: WeightFormat,
}

/// The packed forward weights a [`Recurrent`] keeps, one set per [`WeightFormat`] asked
/// for.
#[derive(Clone, Debug, Default)]
struct KeptPanels {
    f32: OnceLock<Vec<pack::ForwardPanels>>,
    bf16: OnceLock<Vec<pack::ForwardPanels>>,
}

impl KeptPanels {
    /// Drops every set: the parameters may change.
    fn take(&mut self) {
        self.f32.take();
        self.bf16.take();
    }

    fn get(&self, format: WeightFormat) -> &OnceLock<Vec<pack::ForwardPanels>> {
        match format {
            WeightFormat::F32 => &self.f32,
            WeightFormat::Bf16 => &self.bf16,
        }
    }
}

/// [`Error::Unsupported`] unless this type and CPU run `format` (bf16: an f32 model on a CPU
/// with AVX-512 BF16); `what` names the caller.
fn check_format<T: Float>(format: WeightFormat, cell: &CellKind, what: &str) -> Result<()> {
    if format == WeightFormat::Bf16 && !crate::kernel::has_bf16::<T>() {
        return Err(Error::Unsupported(format!(
            "{what}: bf16 weights need an f32 model and a CPU with AVX-512 BF16"
        )));
    }
    if format == WeightFormat::Bf16 && cell.layer_norm() {
        return Err(Error::Unsupported(format!(
            "{what}: bf16 weights are not offered for a layer-normalised cell (its outputs \
             were not shown to stay close to f32's)"
        )));
    }
    Ok(())
}

/// Zoneout's masks of one call: per (layer, direction) `[h, c]`, each `[seq_len * batch, w]`
/// of 0 and 1 in training (`per_step`), or at inference one set `[batch, w]` of 1 − z that
/// every direction and step reads; an empty slab is off there.
#[derive(Default)]
struct ZoneMasks<T> {
    masks: Vec<[Vec<T>; 2]>,
    per_step: bool,
}

/// `(masks, per_step)` of a [`ZoneMasks`], borrowed.
type ZoneView<'a, T> = (&'a [[Vec<T>; 2]], bool);

/// The zoneout of (layer, direction) `ld` from `(masks, per_step)` of [`ZoneMasks`].
fn zone_of<T>(
    (masks, per_step): ZoneView<'_, T>,
    ld: usize,
    batch: usize,
) -> Option<crate::cell::Zoneout<'_, T>> {
    let [h, c] = masks.get(if per_step { ld } else { 0 })?;
    Some(crate::cell::Zoneout {
        h,
        c,
        per_step,
        batch,
    })
}

/// Shape bookkeeping of one call: sizes, the length sort and the active-row counts.
struct Batch {
    seq_len: usize,
    batch: usize,
    perm: Vec<usize>,
    active: Vec<usize>,
}

impl<T: Float> Recurrent<T> {
    /// A stack with PyTorch's default initialisation: every parameter ~ U(−1/√H, 1/√H)
    /// (layer-norm gains 1 and biases 0, as the table's `init` says), drawn from a ChaCha8
    /// generator seeded with `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] when the configuration is invalid.
    pub fn new(config: RecurrentConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let layout = ParamLayout::of_valid(&config);
        let k = 1.0 / (config.hidden_size as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params: Vec<T> = (0..layout.len())
            .map(|_| T::from_f64(rng.random_range(-k..k)).unwrap_or_else(T::zero))
            .collect();
        // layer-norm gains and biases: ones and zeros (as nn.LayerNorm and haste)
        for e in layout.entries() {
            let fill = match e.kind.row().init {
                params::Init::Uniform => continue,
                params::Init::Ones => T::one(),
                params::Init::Zeros => T::zero(),
            };
            params[e.offset..e.offset + e.len].fill(fill);
        }
        Ok(Self {
            config,
            layout,
            params,
            panels: KeptPanels::default(),
            workspace: Workspace::default(),
            precision: WeightFormat::F32,
        })
    }

    /// A stack holding the given parameters (laid out as [`Recurrent::layout`] says).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::Length`] when `params` has
    /// the wrong length.
    pub fn from_params(config: RecurrentConfig, params: Vec<T>) -> Result<Self> {
        config.validate()?;
        let layout = ParamLayout::of_valid(&config);
        if params.len() != layout.len() {
            return Err(Error::Length {
                what: "params".into(),
                shape: crate::error::Shape(vec![layout.len()]),
                len: params.len(),
            });
        }
        Ok(Self {
            config,
            layout,
            params,
            panels: KeptPanels::default(),
            workspace: Workspace::default(),
            precision: WeightFormat::F32,
        })
    }

    pub fn config(&self) -> &RecurrentConfig {
        &self.config
    }

    /// The parameter layout table: names, shapes, offsets.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// All parameters, flat, in [`Recurrent::layout`] order.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut [T] {
        self.panels.take();
        &mut self.params
    }

    /// The parameter tensor named `name` (PyTorch state_dict name), if present.
    pub fn param(&self, name: &str) -> Option<&[T]> {
        self.layout
            .get(name)
            .map(|e| &self.params[e.offset..e.offset + e.len])
    }

    pub fn param_mut(&mut self, name: &str) -> Option<&mut [T]> {
        self.panels.take();
        let e = self.layout.get(name)?;
        Some(&mut self.params[e.offset..e.offset + e.len])
    }

    /// Chrono initialisation (Tallec & Ollivier 2018, "Can recurrent neural networks warp
    /// time?") for dependencies up to `t_max` steps long: per unit, u ~ U(1, t_max − 1),
    /// ```text
    /// LSTM:  b_f = ln u,  b_i = −ln u        (forget gate open, input gate nearly closed)
    /// GRU:   b_z = ln u                      (update gate keeps h for about u steps)
    /// ```
    /// written into `bias_ih` with the same rows of `bias_hh` set to zero (the two biases
    /// are summed), in every layer and direction; the other parameters are left as they are.
    /// A unit then forgets on a time scale of about u steps, spread over 1 … t_max.
    ///
    /// # Errors
    /// [`Error::Config`] when the cell is a plain RNN (no gate to set), the stack has no
    /// biases, or `t_max` is not a finite number above 2.
    pub fn chrono_init(&mut self, t_max: f64, seed: u64) -> Result<()> {
        if !(t_max.is_finite() && t_max > 2.0) {
            return Err(config_err(
                "chrono_init",
                format!("t_max must be a finite number above 2, got {t_max}"),
            ));
        }
        let lstm = match self.config.cell {
            CellKind::Lstm(_) => true,
            CellKind::Gru(_) => false,
            CellKind::Rnn(_) => {
                return Err(config_err(
                    "chrono_init",
                    "a plain RNN has no gate whose bias sets a time scale",
                ));
            }
        };
        if self.config.bias != Bias::Enabled {
            return Err(config_err("chrono_init", "the stack has no biases"));
        }
        let h = self.config.hidden_size;
        self.panels.take();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let entries: Vec<(usize, ParamKind)> = self
            .layout
            .entries()
            .iter()
            .filter(|e| matches!(e.kind, ParamKind::BiasIh | ParamKind::BiasHh))
            .map(|e| (e.offset, e.kind))
            .collect();
        for (offset, kind) in entries {
            // Gate rows: LSTM i [0, H), f [H, 2H); GRU z [H, 2H).
            let b = &mut self.params[offset..offset + 2 * h];
            let (first, gate) = b.split_at_mut(h);
            for (j, g) in gate.iter_mut().enumerate() {
                let value = if kind == ParamKind::BiasIh {
                    rng.random_range(1.0..t_max - 1.0).ln()
                } else {
                    0.0
                };
                *g = T::from_f64(value).unwrap_or_else(T::zero);
                if lstm {
                    first[j] = T::from_f64(-value).unwrap_or_else(T::zero);
                }
            }
        }
        Ok(())
    }

    /// Bytes of working memory the model keeps for its next calls: the slabs of its last
    /// training calls (the tape's and the backward's, handed back when the backward is done
    /// and the tape dropped) and of small-batch inference, reused instead of allocated
    /// afresh. At most what the largest calls held at once; shared with the model's clones.
    pub fn workspace_bytes(&self) -> usize {
        self.workspace.bytes()
    }

    /// Frees the working memory kept for later calls (see [`Recurrent::workspace_bytes`]);
    /// the next calls allocate afresh.
    pub fn free_workspace(&self) {
        self.workspace.clear();
    }

    /// A zero initial state for `batch` sequences.
    ///
    /// # Panics
    /// When the state's size overflows `usize`.
    pub fn zero_state(&self, batch: usize) -> State<T> {
        let ld = self.config.num_layers * self.config.direction.count();
        State {
            h: Tensor::zeros(&[ld, batch, self.config.h_out()]),
            c: self
                .config
                .cell
                .has_cell_state()
                .then(|| Tensor::zeros(&[ld, batch, self.config.hidden_size])),
        }
    }

    /// Inference: runs the stack over `input` (`[seq_len, batch, input_size]`, or batch-first)
    /// from `call.state` (zero when `None`) over sequences of `call.lengths` (any order;
    /// PyTorch packed-sequence semantics; `None`: all are `seq_len`). No dropout; a seed is
    /// ignored.
    ///
    /// # Errors
    /// [`Error::Rank`] or [`Error::Shape`] naming a tensor of the wrong shape,
    /// [`Error::SequenceLength`] for a length outside `1..=seq_len`, [`Error::Empty`] for an
    /// empty batch, [`Error::Unsupported`] for a state that does not fit the cell (a `c` for a
    /// GRU, none for an LSTM).
    pub fn forward<'x>(
        &self,
        input: impl Into<TensorView<'x, T>>,
        call: Call<'_, T>,
    ) -> Result<Output<T>> {
        self.run(input.into(), call, None, WeightFormat::F32)
            .map(|(out, _)| out)
    }

    /// Inference as [`Recurrent::forward`], with the weights in `format`.
    /// [`WeightFormat::Bf16`] rounds every weight matrix (and each product's left operand)
    /// to bfloat16 and accumulates in f32 on the AVX-512 BF16 dot product: half the bytes
    /// read per step, for small batches, whose steps are bound by reading the weights. The
    /// bf16 weights are packed on the first such call and kept until the parameters change,
    /// as the f32 ones are. The outputs differ from f32 by the rounding of the operands
    /// (measured in `tests/stepper.rs`: at most 3.8e-3 over 30 steps of every cell and
    /// option, two bidirectional layers; 1.2e-3 (LSTM) and 2.0e-3 (GRU) over 200 steps at
    /// H = 256 and 512); at batch 1 they equal a bf16 [`Stepper`]'s, step by step, bit for
    /// bit. Products that do not run on the panel kernel (the column ranges of a
    /// reset-before GRU whose 2H is not a multiple of 64) keep f32 weights.
    ///
    /// # Errors
    /// As [`Recurrent::forward`]; also [`Error::Unsupported`] for bf16 on an f64 model or a
    /// CPU without AVX-512 BF16.
    pub fn forward_with<'x>(
        &self,
        input: impl Into<TensorView<'x, T>>,
        call: Call<'_, T>,
        format: WeightFormat,
    ) -> Result<Output<T>> {
        check_format::<T>(format, &self.config.cell, "forward_with")?;
        self.run(input.into(), call, None, format)
            .map(|(out, _)| out)
    }

    /// Training: as [`Recurrent::forward`], with inter-layer dropout and recurrent dropout
    /// drawn from `call.seed` (two separate streams, so that turning recurrent dropout on
    /// does not change the inter-layer masks), and keeps what [`Recurrent::backward`] needs.
    /// The seed is needed when the configuration draws masks (`dropout` > 0 with two or
    /// more layers, or `recurrent_dropout` > 0), and not otherwise. Its products, and those
    /// of the [`Recurrent::backward`] of its tape, take the model's
    /// [`Recurrent::precision`].
    ///
    /// # Errors
    /// As [`Recurrent::forward`]; also [`Error::Config`] (`seed`) for a configuration with
    /// dropout and no seed, and [`Error::Unsupported`] for an activation whose derivative
    /// its output does not determine (LeakyRelu or Elu with α < 0, ThresholdedRelu with
    /// α < 0), which the backward pass could not differentiate exactly.
    pub fn forward_train<'x>(
        &self,
        input: impl Into<TensorView<'x, T>>,
        call: Call<'_, T>,
    ) -> Result<(Output<T>, Tape<T>)> {
        for (slot, act) in self.config.cell.activations() {
            if !act.output_determines_derivative() {
                return Err(Error::Unsupported(format!(
                    "training with {slot} = {act:?}: its derivative is not a function of its \
                     output (a negative alpha), which is what the backward pass keeps"
                )));
            }
        }
        let seed = training_seed(call.seed, self.config.draws_masks())?;
        self.run(input.into(), call, Some(seed), self.precision)
            .map(|(out, tape)| (out, tape.expect("training run keeps a tape")))
    }

    /// Sets the operands of training's matrix products ([`Recurrent::forward_train`] and
    /// the backward of its tape); f32 by default. [`WeightFormat::Bf16`]: the forward's
    /// input projection and recurrent products, the backward's recurrent products
    /// (δgates · W_hh at each step), its input gradient (dX = δG · W_ih) and its weight
    /// gradients (dW_ih = δGᵀX, dW_hh = δGᵀH) multiply bf16 operands and accumulate in f32,
    /// on the AVX-512 BF16 dot product. The weights are rounded once per forward or
    /// backward call into packed bf16 panels (so once per optimizer step in a training
    /// loop), X and H once per backward; each left operand is rounded as the kernel reads
    /// it (δG after being copied to rows, since the kernel reads rows). The parameters,
    /// their gradients' accumulation, the optimizer, the gates' elementwise passes, the cell
    /// state and the loss stay f32, and so do the products that do not run on the panel
    /// kernel (as in [`Recurrent::forward_with`]) and the weight gradients of a projection,
    /// peepholes and the reset-before GRU's W_hn. The forward's outputs equal
    /// [`Recurrent::forward_with`]'s in bf16 bit for bit; how far outputs and gradients lie
    /// from f32's is measured in `tests/bf16_train.rs`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for bf16 on an f64 model, a CPU without AVX-512 BF16 or a
    /// layer-normalised cell (as [`Recurrent::forward_with`]); the precision is then
    /// unchanged.
    pub fn set_precision(&mut self, format: WeightFormat) -> Result<()> {
        check_format::<T>(format, &self.config.cell, "set_precision")?;
        self.precision = format;
        Ok(())
    }

    /// The operands of training's products ([`Recurrent::set_precision`]).
    pub fn precision(&self) -> WeightFormat {
        self.precision
    }

    fn check_batch(&self, input: TensorView<'_, T>, lengths: Option<&[usize]>) -> Result<Batch> {
        let shape = input.shape();
        let i = self.config.input_size;
        if shape.len() != 3 {
            return Err(Error::Rank {
                what: "input".into(),
                expected_rank: 3,
                expected: match self.config.layout {
                    BatchLayout::SeqFirst => "[seq_len, batch, input_size]".into(),
                    BatchLayout::BatchFirst => "[batch, seq_len, input_size]".into(),
                },
                got: crate::error::Shape(shape.to_vec()),
            });
        }
        if shape[2] != i {
            return Err(shape_err("input", &[shape[0], shape[1], i], shape));
        }
        let (seq_len, batch) = match self.config.layout {
            BatchLayout::SeqFirst => (shape[0], shape[1]),
            BatchLayout::BatchFirst => (shape[1], shape[0]),
        };
        if seq_len == 0 || batch == 0 {
            return Err(Error::Empty("input has no steps or no sequences".into()));
        }
        let lens: Vec<usize> = match lengths {
            None => vec![seq_len; batch],
            Some(l) => {
                if l.len() != batch {
                    return Err(shape_err("lengths", &[batch], &[l.len()]));
                }
                for (index, &length) in l.iter().enumerate() {
                    if length == 0 || length > seq_len {
                        return Err(Error::SequenceLength {
                            index,
                            length,
                            seq_len,
                        });
                    }
                }
                l.to_vec()
            }
        };
        let mut perm: Vec<usize> = (0..batch).collect();
        perm.sort_by(|&a, &b| lens[b].cmp(&lens[a]));
        let active = (0..seq_len)
            .map(|t| lens.iter().filter(|&&l| l > t).count())
            .collect();
        Ok(Batch {
            seq_len,
            batch,
            perm,
            active,
        })
    }

    fn check_state(
        &self,
        state: Option<StateView<'_, T>>,
        batch: usize,
        what: [&str; 2],
    ) -> Result<()> {
        let Some(s) = state else { return Ok(()) };
        let ld = self.config.num_layers * self.config.direction.count();
        s.h.expect_shape(what[0], &[ld, batch, self.config.h_out()])?;
        match (s.c, self.config.cell.has_cell_state()) {
            (Some(c), true) => c.expect_shape(what[1], &[ld, batch, self.config.hidden_size]),
            (None, false) => Ok(()),
            (None, true) => Err(Error::Unsupported(format!(
                "{}: an LSTM state needs c",
                what[1]
            ))),
            (Some(_), false) => Err(Error::Unsupported(format!(
                "{}: only an LSTM has a cell state",
                what[1]
            ))),
        }
    }

    /// `[seq_len, batch, f]` or `[batch, seq_len, f]` in the caller's order → time-major in
    /// sorted order.
    fn gather_seq<'s>(&self, src: &'s [T], b: &Batch, f: usize) -> Cow<'s, [T]> {
        if self.in_order(b) {
            return Cow::Borrowed(src);
        }
        // every row is copied
        let mut out = self.workspace.take(b.seq_len * b.batch * f);
        for t in 0..b.seq_len {
            for (s, &orig) in b.perm.iter().enumerate() {
                let from = self.seq_index(t, orig, b) * f;
                out[(t * b.batch + s) * f..(t * b.batch + s + 1) * f]
                    .copy_from_slice(&src[from..from + f]);
            }
        }
        Cow::Owned(out)
    }

    /// `x` as a vector of its own: a borrowed slice is copied into a buffer of the
    /// workspace.
    fn owned(&self, x: Cow<'_, [T]>) -> Vec<T> {
        match x {
            Cow::Owned(v) => v,
            Cow::Borrowed(s) => {
                let mut v = self.workspace.take(s.len());
                v.copy_from_slice(s);
                v
            }
        }
    }

    /// Whether the caller's layout is already time-major in sorted order (seq-first, the
    /// lengths not increasing): then gathering and scattering move nothing.
    fn in_order(&self, b: &Batch) -> bool {
        self.config.layout == BatchLayout::SeqFirst
            && b.perm.iter().enumerate().all(|(i, &p)| i == p)
    }

    /// The inverse of [`Self::gather_seq`].
    fn scatter_seq(&self, src: Vec<T>, b: &Batch, f: usize) -> Vec<T> {
        if self.in_order(b) {
            return src;
        }
        let mut out = vec![T::zero(); b.seq_len * b.batch * f];
        for t in 0..b.seq_len {
            for (s, &orig) in b.perm.iter().enumerate() {
                let to = self.seq_index(t, orig, b) * f;
                out[to..to + f]
                    .copy_from_slice(&src[(t * b.batch + s) * f..(t * b.batch + s + 1) * f]);
            }
        }
        out
    }

    fn seq_index(&self, t: usize, b: usize, bt: &Batch) -> usize {
        match self.config.layout {
            BatchLayout::SeqFirst => t * bt.batch + b,
            BatchLayout::BatchFirst => b * bt.seq_len + t,
        }
    }

    fn seq_shape(&self, b: &Batch, f: usize) -> [usize; 3] {
        match self.config.layout {
            BatchLayout::SeqFirst => [b.seq_len, b.batch, f],
            BatchLayout::BatchFirst => [b.batch, b.seq_len, f],
        }
    }

    /// Block `ld` of a `[L*D, batch, f]` state in sorted order.
    fn gather_state(src: &[T], ld: usize, b: &Batch, f: usize) -> Vec<T> {
        let base = ld * b.batch * f;
        let mut out = vec![T::zero(); b.batch * f];
        for (s, &orig) in b.perm.iter().enumerate() {
            out[s * f..(s + 1) * f].copy_from_slice(&src[base + orig * f..base + (orig + 1) * f]);
        }
        out
    }

    fn scatter_state(dst: &mut [T], ld: usize, b: &Batch, f: usize, src: &[T]) {
        let base = ld * b.batch * f;
        for (s, &orig) in b.perm.iter().enumerate() {
            dst[base + orig * f..base + (orig + 1) * f].copy_from_slice(&src[s * f..(s + 1) * f]);
        }
    }

    fn spec<'a>(
        &'a self,
        b: &'a Batch,
        layer: usize,
        dir: usize,
        (rec_masks, zone): (&'a [Vec<T>], ZoneView<'a, T>),
        format: WeightFormat,
    ) -> DirSpec<'a, T> {
        let mut spec = self.dir_spec(layer, dir, (b.seq_len, b.batch, &b.active));
        let ld = layer * self.config.direction.count() + dir;
        spec.format = format;
        spec.panels = self.forward_panels(format).get(ld);
        spec.rec_mask = rec_masks
            .get(ld)
            .filter(|m| !m.is_empty())
            .map(Vec::as_slice);
        spec.zoneout = zone_of(zone, ld, b.batch);
        spec
    }

    /// Zoneout's masks of a training call (`seed`), or its expectation at inference (see
    /// [`ZoneMasks`]); `None` without zoneout.
    fn zoneout_masks(&self, b: &Batch, seed: Option<u64>) -> ZoneMasks<T> {
        let cfg = &self.config;
        let (zh, zc) = (cfg.zoneout_h, cfg.zoneout_c);
        let widths = [(zh, cfg.h_out()), (zc, cfg.hidden_size)];
        let dirs = cfg.num_layers * cfg.direction.count();
        if zh <= 0.0 && zc <= 0.0 {
            return ZoneMasks::default();
        }
        let Some(seed) = seed else {
            // inference: m = 1 − z for every row (one set serves every direction)
            return ZoneMasks {
                masks: vec![dropout::zoneout_expectation(cfg, b.batch)],
                per_step: false,
            };
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // a stream of its own (0: inter-layer dropout, 1: recurrent dropout)
        rng.set_stream(2);
        let (tl, bs) = (b.seq_len, b.batch);
        // step by step, each sequence in the caller's order its h row and then its c row (so
        // that a sequence's masks depend neither on the others' lengths nor on what follows);
        // stored in the sorted order
        let mut sorted_of = vec![0; bs];
        for (s, &orig) in b.perm.iter().enumerate() {
            sorted_of[orig] = s;
        }
        let masks = (0..dirs)
            .map(|_| {
                let mut m =
                    widths.map(|(z, w)| vec![T::zero(); if z > 0.0 { tl * bs * w } else { 0 }]);
                for t in 0..tl {
                    for &s in &sorted_of {
                        for (m, &(z, w)) in m.iter_mut().zip(&widths) {
                            if z > 0.0 {
                                for v in &mut m[(t * bs + s) * w..(t * bs + s + 1) * w] {
                                    if rng.random::<f64>() < 1.0 - z {
                                        *v = T::one();
                                    }
                                }
                            }
                        }
                    }
                }
                m
            })
            .collect();
        ZoneMasks {
            masks,
            per_step: true,
        }
    }

    /// The forward weights of every (layer, direction) packed in `format`, made on first
    /// use.
    fn forward_panels(&self, format: WeightFormat) -> &[pack::ForwardPanels] {
        self.panels.get(format).get_or_init(|| {
            let d = self.config.direction.count();
            (0..self.config.num_layers * d)
                .map(|ld| {
                    self.dir_spec(ld / d, ld % d, (0, 0, &[]))
                        .forward_panels(format)
                })
                .collect()
        })
    }

    /// The driver's view of (layer, dir) for `(seq_len, batch, active)`.
    fn dir_spec<'a>(
        &'a self,
        layer: usize,
        dir: usize,
        (seq_len, batch, active): (usize, usize, &'a [usize]),
    ) -> DirSpec<'a, T> {
        let cfg = &self.config;
        let d = cfg.direction.count();
        let leak = match &cfg.cell {
            CellKind::Rnn(r) => r.leak.rate(layer),
            _ => 1.0,
        };
        DirSpec {
            cell: &cfg.cell,
            w: self.layout.block(&self.params, layer * d + dir),
            input_size: if layer == 0 {
                cfg.input_size
            } else {
                d * cfg.h_out()
            },
            hidden: cfg.hidden_size,
            h_out: cfg.h_out(),
            reverse: dir == 1 || cfg.direction == Direction::Reverse,
            seq_len,
            batch,
            active,
            leak: T::from_f64(leak).unwrap_or_else(T::one),
            rec_mask: None,
            panels: None,
            format: WeightFormat::F32,
            zoneout: None,
        }
    }

    fn run(
        &self,
        input: TensorView<'_, T>,
        call: Call<'_, T>,
        train_seed: Option<u64>,
        format: WeightFormat,
    ) -> Result<(Output<T>, Option<Tape<T>>)> {
        let Call { state, lengths, .. } = call;
        let b = self.check_batch(input, lengths)?;
        self.check_state(state, b.batch, ["h0", "c0"])?;
        let cfg = &self.config;
        let (nl, nd, h, r) = (
            cfg.num_layers,
            cfg.direction.count(),
            cfg.hidden_size,
            cfg.h_out(),
        );
        let rows = b.seq_len * b.batch;
        let mut x = self.gather_seq(input.data(), &b, cfg.input_size);
        let mut rng = train_seed.map(ChaCha8Rng::seed_from_u64);
        let rec_masks = train_seed.map_or_else(Vec::new, |s| {
            dropout::recurrent_masks(cfg.recurrent_dropout, nl * nd, &b.perm, r, s)
        });
        let zone = self.zoneout_masks(&b, train_seed);
        let (mut inputs, mut masks, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
        let mut h_n = vec![T::zero(); nl * nd * b.batch * r];
        let mut c_n = vec![
            T::zero();
            if cfg.cell.has_cell_state() {
                nl * nd * b.batch * h
            } else {
                0
            }
        ];
        let zeros_h = vec![T::zero(); b.batch * r];
        let zeros_c = vec![T::zero(); b.batch * h];
        let mut y = Vec::new();
        for layer in 0..nl {
            // The last layer's output is the caller's; the others' feed the next layer and
            // come from the workspace (every row is written: see `write_output`).
            y = if layer + 1 == nl {
                vec![T::zero(); rows * nd * r]
            } else {
                self.workspace.take(rows * nd * r)
            };
            for dir in 0..nd {
                let ld = layer * nd + dir;
                let zones = (&zone.masks[..], zone.per_step);
                let spec = self.spec(&b, layer, dir, (&rec_masks, zones), format);
                let h0 = state.map_or_else(
                    || zeros_h.clone(),
                    |s| Self::gather_state(s.h.data(), ld, &b, r),
                );
                let c0 = match state.and_then(|s| s.c) {
                    Some(c) => Self::gather_state(c.data(), ld, &b, h),
                    None => zeros_c.clone(),
                };
                let tape = spec.forward(&x, &h0, &c0, rng.is_some(), &self.workspace);
                spec.write_output(&tape, &mut y, nd * r, dir * r);
                let (hn, cn) = spec.final_state(&tape);
                Self::scatter_state(&mut h_n, ld, &b, r, hn);
                if cfg.cell.has_cell_state() {
                    Self::scatter_state(&mut c_n, ld, &b, h, cn);
                }
                if rng.is_some() {
                    dirs.push(tape);
                } else {
                    tape.recycle(&self.workspace);
                }
            }
            if layer + 1 == nl {
                // The last layer's output is the call's: nothing to hand on.
                if rng.is_some() {
                    inputs.push(self.owned(std::mem::take(&mut x)));
                    masks.push(Vec::new());
                } else if let Cow::Owned(v) = std::mem::take(&mut x) {
                    self.workspace.give(v);
                }
                break;
            }
            let mut mask = Vec::new();
            if let Some(rng) = rng.as_mut()
                && cfg.dropout > 0.0
            {
                mask = dropout::draw_mask(rng, cfg.dropout, y.len());
            }
            for (v, &m) in y.iter_mut().zip(&mask) {
                *v *= m;
            }
            let input = std::mem::replace(&mut x, Cow::Owned(std::mem::take(&mut y)));
            if rng.is_some() {
                inputs.push(self.owned(input));
                masks.push(mask);
            } else if let Cow::Owned(v) = input {
                self.workspace.give(v);
            }
        }
        let output = Tensor::new(self.scatter_seq(y, &b, nd * r), &self.seq_shape(&b, nd * r))?;
        let state_out = State {
            h: Tensor::new(h_n, &[nl * nd, b.batch, r])?,
            c: if cfg.cell.has_cell_state() {
                Some(Tensor::new(c_n, &[nl * nd, b.batch, h])?)
            } else {
                None
            },
        };
        let tape = rng.map(|_| Tape {
            config: cfg.clone(),
            seq_len: b.seq_len,
            batch: b.batch,
            perm: b.perm,
            active: b.active,
            inputs,
            masks,
            rec_masks,
            zone_masks: zone.masks,
            dirs,
            format,
            workspace: self.workspace.clone(),
        });
        Ok((
            Output {
                output,
                state: state_out,
            },
            tape,
        ))
    }

    /// BPTT through the whole stack. Adds every parameter's gradient into `param_grads`
    /// (laid out as [`Recurrent::layout`]; accumulation, as PyTorch's `.grad`) and returns
    /// the gradients of the input and the initial states. Gradients of the final states may
    /// be given, so that truncated BPTT over consecutive chunks composes exactly with BPTT
    /// over the whole sequence.
    ///
    /// # Errors
    /// [`Error::Shape`] for a gradient of the wrong shape, [`Error::Length`] for a
    /// `param_grads` of the wrong length, [`Error::Unsupported`] for a tape recorded by a
    /// model of another configuration.
    pub fn backward(
        &self,
        tape: &Tape<T>,
        grad: OutputGrad<'_, T>,
        param_grads: &mut [T],
    ) -> Result<InputGrad<T>> {
        self.backward_recording(tape, grad, param_grads, None)
    }

    /// [`Recurrent::backward`], which it equals bit for bit, recording besides ‖∂L/∂h_t‖ and
    /// ‖∂L/∂c_t‖ of every sequence at every step of every (layer, direction): how far back
    /// in time the gradient reaches (see [`StateGradNorms`] for which derivatives these are).
    ///
    /// # Errors
    /// As [`Recurrent::backward`].
    pub fn backward_with_norms(
        &self,
        tape: &Tape<T>,
        grad: OutputGrad<'_, T>,
        param_grads: &mut [T],
    ) -> Result<(InputGrad<T>, StateGradNorms<T>)> {
        let ld = self.config.num_layers * self.config.direction.count();
        let has_c = self.config.cell.has_cell_state();
        let mut norms = StateGradNorms::zeros(ld, tape.seq_len, tape.batch, has_c);
        let dx = self.backward_recording(tape, grad, param_grads, Some(&mut norms))?;
        Ok((dx, norms))
    }

    fn backward_recording(
        &self,
        tape: &Tape<T>,
        grad: OutputGrad<'_, T>,
        param_grads: &mut [T],
        mut norms: Option<&mut StateGradNorms<T>>,
    ) -> Result<InputGrad<T>> {
        let cfg = &self.config;
        if tape.config != *cfg {
            return Err(Error::Unsupported(
                "the tape was recorded by a model of another configuration".into(),
            ));
        }
        if param_grads.len() != self.layout.len() {
            return Err(Error::Length {
                what: "param_grads".into(),
                shape: crate::error::Shape(vec![self.layout.len()]),
                len: param_grads.len(),
            });
        }
        let b = Batch {
            seq_len: tape.seq_len,
            batch: tape.batch,
            perm: tape.perm.clone(),
            active: tape.active.clone(),
        };
        let (nl, nd, h, r) = (
            cfg.num_layers,
            cfg.direction.count(),
            cfg.hidden_size,
            cfg.h_out(),
        );
        let rows = b.seq_len * b.batch;
        let mut dy = match grad.output {
            Some(g) => {
                g.expect_shape("grad output", &self.seq_shape(&b, nd * r))?;
                self.gather_seq(g.data(), &b, nd * r)
            }
            None => Cow::Owned(self.workspace.take_zeroed(rows * nd * r)),
        };
        let ldb = nl * nd;
        if let Some(g) = grad.h {
            g.expect_shape("grad h", &[ldb, b.batch, r])?;
        }
        match (grad.c, cfg.cell.has_cell_state()) {
            (Some(g), true) => g.expect_shape("grad c", &[ldb, b.batch, h])?,
            (Some(_), false) => {
                return Err(Error::Unsupported(
                    "grad c: only an LSTM has a cell state".into(),
                ));
            }
            _ => {}
        }
        let mut dh0 = vec![T::zero(); ldb * b.batch * r];
        let mut dc0 = vec![
            T::zero();
            if cfg.cell.has_cell_state() {
                ldb * b.batch * h
            } else {
                0
            }
        ];
        let mut dx = Vec::new();
        for layer in (0..nl).rev() {
            let x = &tape.inputs[layer];
            let n_in = if layer == 0 { cfg.input_size } else { nd * r };
            // The first direction overwrites every row; the input's gradient is the caller's.
            dx = if layer == 0 {
                vec![T::zero(); rows * n_in]
            } else {
                self.workspace.take(rows * n_in)
            };
            for dir in 0..nd {
                let ld = layer * nd + dir;
                let zones = (&tape.zone_masks[..], true);
                let spec = self.spec(&b, layer, dir, (&tape.rec_masks, zones), tape.format);
                let dh_n = grad.h.map_or_else(
                    || vec![T::zero(); b.batch * r],
                    |g| Self::gather_state(g.data(), ld, &b, r),
                );
                let dc_n = grad.c.map_or_else(
                    || vec![T::zero(); b.batch * h],
                    |g| Self::gather_state(g.data(), ld, &b, h),
                );
                let g = self.layout.block_mut(param_grads, ld);
                let acc = if dir == 0 {
                    Accumulate::Overwrite
                } else {
                    Accumulate::Add
                };
                let width = norms.as_deref().map_or(0, StateGradNorms::width);
                let mut record = vec![T::zero(); rows * width];
                let (dh, dc) = spec.backward(
                    x,
                    &tape.dirs[ld],
                    (&dy, nd * r, dir * r),
                    &dh_n,
                    &dc_n,
                    g,
                    &mut dx,
                    acc,
                    &mut record,
                    &self.workspace,
                );
                if let Some(norms) = norms.as_deref_mut() {
                    norms.scatter(ld, &b.perm, &record);
                }
                Self::scatter_state(&mut dh0, ld, &b, r, &dh);
                if cfg.cell.has_cell_state() {
                    Self::scatter_state(&mut dc0, ld, &b, h, &dc);
                }
            }
            if layer > 0 {
                let mask = &tape.masks[layer - 1];
                if !mask.is_empty() {
                    for (d, &m) in dx.iter_mut().zip(mask) {
                        *d *= m;
                    }
                }
                if let Cow::Owned(done) =
                    std::mem::replace(&mut dy, Cow::Owned(std::mem::take(&mut dx)))
                {
                    self.workspace.give(done);
                }
            }
        }
        if let Cow::Owned(done) = dy {
            self.workspace.give(done);
        }
        Ok(InputGrad {
            input: Tensor::new(
                self.scatter_seq(dx, &b, cfg.input_size),
                &self.seq_shape(&b, cfg.input_size),
            )?,
            state: State {
                h: Tensor::new(dh0, &[ldb, b.batch, r])?,
                c: if cfg.cell.has_cell_state() {
                    Some(Tensor::new(dc0, &[ldb, b.batch, h])?)
                } else {
                    None
                },
            },
        })
    }

    /// A streaming session for `batch` sequences, starting from a zero state: see
    /// [`Stepper`]. It packs every layer's recurrent weights and sizes its buffers once here,
    /// so that [`Stepper::step`] allocates nothing; it borrows the model, so the parameters
    /// cannot change under it.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a reverse or bidirectional stack (those need the whole
    /// sequence), [`Error::Empty`] for `batch = 0`.
    pub fn stepper(&self, batch: usize) -> Result<Stepper<'_, T>> {
        Stepper::new(self, batch, WeightFormat::F32)
    }

    /// As [`Recurrent::stepper`], with the weights of every product held in `format`.
    /// [`WeightFormat::Bf16`] halves the bytes a step reads (a streaming step is bound by
    /// reading the weights); the outputs then differ from f32's by about 1e-3 (see
    /// [`WeightFormat::Bf16`]).
    ///
    /// # Errors
    /// As [`Recurrent::stepper`]; [`Error::Unsupported`] for bf16 weights in an `f64` model
    /// or on a CPU without AVX-512 BF16.
    pub fn stepper_with(&self, batch: usize, format: WeightFormat) -> Result<Stepper<'_, T>> {
        Stepper::new(self, batch, format)
    }

    /// Streaming inference: one time step for `batch` sequences, `x` is `[batch, input_size]`.
    /// Updates `state` in place and returns the last layer's output `[batch, H_out]`.
    ///
    /// A one-call [`Stepper`]: it packs the weights and allocates its buffers on every call,
    /// so a loop over steps should hold a [`Recurrent::stepper`] instead (same numbers, bit
    /// for bit). Each step runs the arithmetic of [`Recurrent::forward`] on a one-step
    /// sequence, so T calls give the numbers of one call over T steps, up to the rounding of
    /// the matrix-product kernel: the `gemm` crate picks its kernel (and blocking) by matrix
    /// size and operand layout, and the whole-sequence call projects `seq_len * batch` input
    /// rows at once where a step projects `batch` (through `W_ihᵀ` packed once, at
    /// batch > 1). Measured: bitwise equal when both pick the same kernel, otherwise within
    /// 2.2e-16 (f64) / 1.2e-7 (f32) relative.
    ///
    /// # Errors
    /// [`Error::Rank`] or [`Error::Shape`] for a wrong `x` or `state`, [`Error::Unsupported`]
    /// for a reverse or bidirectional stack (those need the whole sequence) or a state that
    /// does not fit the cell, [`Error::Empty`] for an empty batch. On error `state` is
    /// untouched.
    pub fn step<'x>(
        &self,
        x: impl Into<TensorView<'x, T>>,
        state: &mut State<T>,
    ) -> Result<Tensor<T>> {
        let x: TensorView<'_, T> = x.into();
        if self.config.direction != Direction::Forward {
            return Err(Error::Unsupported(
                "step: a reverse direction needs the whole sequence".into(),
            ));
        }
        let i = self.config.input_size;
        if x.shape().len() != 2 {
            return Err(Error::Rank {
                what: "x".into(),
                expected_rank: 2,
                expected: "[batch, input_size]".into(),
                got: crate::error::Shape(x.shape().to_vec()),
            });
        }
        if x.shape()[1] != i {
            return Err(shape_err("x", &[x.shape()[0], i], x.shape()));
        }
        let batch = x.shape()[0];
        let mut stepper = self.stepper(batch)?;
        stepper.set_state(&*state)?;
        let mut out = vec![T::zero(); batch * self.config.h_out()];
        stepper.step(x.data(), &mut out)?;
        *state = stepper.state();
        Tensor::new(out, &[batch, self.config.h_out()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(cell: CellKind, direction: Direction) -> Recurrent<f64> {
        let config = RecurrentConfig {
            cell,
            input_size: 3,
            hidden_size: 8,
            num_layers: 2,
            direction,
            ..Default::default()
        };
        Recurrent::new(config, 1).unwrap()
    }

    /// A training call needs a seed exactly when it draws masks: inter-layer dropout between
    /// two or more layers, or recurrent dropout. Without dropout the seed is never read, so
    /// a call without one gives the numbers of a call with any.
    #[test]
    fn a_seed_only_where_dropout_draws_masks() {
        let x = Tensor::new(
            (0..4 * 2 * 3).map(|v| (v as f64 * 0.3).sin()).collect(),
            &[4, 2, 3],
        )
        .unwrap();
        let plain = stack(CellKind::lstm(), Direction::Forward);
        let (a, _) = plain.forward_train(&x, Call::new()).unwrap();
        let (b, _) = plain.forward_train(&x, Call::new().seed(9)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, plain.forward(&x, Call::new().seed(9)).unwrap());
        for (dropout, recurrent_dropout, num_layers, needs) in [
            (0.3, 0.0, 2, true),
            (0.0, 0.3, 1, true),
            (0.3, 0.0, 1, false),
        ] {
            let config = RecurrentConfig {
                dropout,
                recurrent_dropout,
                num_layers,
                ..plain.config().clone()
            };
            let m = Recurrent::<f64>::new(config, 1).unwrap();
            match m.forward_train(&x, Call::new()) {
                Err(Error::Config { what, .. }) => assert!(needs && what == "seed"),
                Ok(_) => assert!(!needs),
                Err(e) => panic!("{e}"),
            }
            assert!(m.forward_train(&x, Call::new().seed(1)).is_ok());
            assert!(m.forward(&x, Call::new()).is_ok());
        }
    }

    /// LSTM: b_f = ln u ∈ [0, ln(t_max − 1)), b_i = −b_f, b_hh's i and f rows zero, every
    /// other parameter untouched; the same seed gives the same biases.
    #[test]
    fn chrono_init_sets_lstm_gate_biases_only() {
        let (t_max, h) = (100.0, 8);
        let before = stack(CellKind::lstm(), Direction::Bidirectional);
        let mut after = before.clone();
        after.chrono_init(t_max, 5).unwrap();
        let mut again = before.clone();
        again.chrono_init(t_max, 5).unwrap();
        assert_eq!(after.params(), again.params());
        let mut touched = vec![false; before.params().len()];
        for e in before.layout().entries() {
            match e.kind {
                ParamKind::BiasIh => {
                    let b = after.param(&e.name).unwrap();
                    for j in 0..h {
                        let f = b[h + j];
                        assert!((0.0..(t_max - 1.0f64).ln()).contains(&f), "{f}");
                        assert_eq!(b[j], -f);
                    }
                    touched[e.offset..e.offset + 2 * h].fill(true);
                }
                ParamKind::BiasHh => {
                    assert!(
                        after.param(&e.name).unwrap()[..2 * h]
                            .iter()
                            .all(|&v| v == 0.0)
                    );
                    touched[e.offset..e.offset + 2 * h].fill(true);
                }
                _ => {}
            }
        }
        for (i, (&a, &b)) in after.params().iter().zip(before.params()).enumerate() {
            if !touched[i] {
                assert_eq!(a, b, "parameter {i} changed");
            }
        }
        // The time scales spread out: not all units alike.
        let f = &after.param("bias_ih_l0").unwrap()[h..2 * h];
        assert!(f.iter().any(|&v| (v - f[0]).abs() > 0.1));
    }

    /// The tape holds what the backward reads and nothing per step beyond it, and grows
    /// linearly in seq_len · batch. A plain RNN's activations are its states (kept once);
    /// a leaky RNN's are not, and are kept besides.
    #[test]
    fn tape_bytes_count_what_the_backward_keeps() {
        let (t, b, i, h) = (7usize, 3usize, 3usize, 5usize);
        let leaky = CellKind::Rnn(crate::RnnCell {
            leak: crate::Leak::Uniform(0.5),
            ..Default::default()
        });
        for (cell, g, aux) in [
            (CellKind::lstm(), 4, h),
            (CellKind::gru(), 3, h),
            (CellKind::rnn_tanh(), 0, 0),
            (leaky, 1, 0),
        ] {
            let config = RecurrentConfig {
                cell: cell.clone(),
                input_size: i,
                hidden_size: h,
                ..Default::default()
            };
            let m = Recurrent::<f32>::new(config, 0).unwrap();
            let bytes = |t: usize, b: usize| {
                let x = Tensor::new(vec![0.1f32; t * b * i], &[t, b, i]).unwrap();
                m.forward_train(&x, Call::new().seed(0)).unwrap().1.bytes()
            };
            let c = if cell.has_cell_state() {
                (t + 1) * b * h
            } else {
                0
            };
            let expected = t * b * i + (t + 1) * b * h + c + t * b * g * h + t * b * aux;
            assert_eq!(bytes(t, b), 4 * expected, "{cell:?}");
            // per token: constant up to the one extra state slot
            let per_token = |t: usize, b: usize| bytes(t, b) as f64 / (t * b) as f64;
            assert!((per_token(70, 6) - per_token(140, 12)).abs() < 0.02 * per_token(70, 6));
        }
    }

    /// The packed weights kept between calls follow every change of the parameters: after
    /// `params_mut`, `param_mut` or `chrono_init` a forward equals that of a fresh model
    /// holding the same parameters, with f32 weights and (where the CPU has AVX-512 BF16)
    /// bf16 ones.
    #[test]
    fn kept_panels_follow_the_parameters() {
        let config = RecurrentConfig {
            cell: CellKind::lstm(),
            input_size: 20,
            hidden_size: 32,
            num_layers: 2,
            ..Default::default()
        };
        let x = Tensor::new(
            (0..5 * 2 * 20).map(|v| (v as f32 * 0.37).sin()).collect(),
            &[5, 2, 20],
        )
        .unwrap();
        let mut formats = vec![WeightFormat::F32];
        if crate::kernel::Panels::bf16_available() {
            formats.push(WeightFormat::Bf16);
        }
        for format in formats {
            let mut m = Recurrent::<f32>::new(config.clone(), 1).unwrap();
            let run = |m: &Recurrent<f32>| m.forward_with(&x, Call::new(), format).unwrap();
            let fresh = |m: &Recurrent<f32>| {
                run(&Recurrent::from_params(config.clone(), m.params().to_vec()).unwrap())
            };
            let first = run(&m);
            assert_eq!(first, fresh(&m), "{format:?}");
            m.params_mut()[7] += 0.5;
            assert_eq!(run(&m), fresh(&m), "{format:?}");
            m.param_mut("weight_hh_l1").unwrap()[3] -= 0.25;
            assert_eq!(run(&m), fresh(&m), "{format:?}");
            m.chrono_init(10.0, 3).unwrap();
            let last = run(&m);
            assert_eq!(last, fresh(&m), "{format:?}");
            assert_ne!(last, first, "{format:?}");
            // a clone carries the same parameters and so may carry the same panels
            assert_eq!(run(&m.clone()), last, "{format:?}");
        }
    }

    /// GRU: only the update gate's rows (H..2H) change; a plain RNN and nonsense t_max are
    /// refused.
    #[test]
    fn chrono_init_gru_and_refusals() {
        let h = 8;
        let before = stack(CellKind::gru(), Direction::Forward);
        let mut after = before.clone();
        after.chrono_init(50.0, 0).unwrap();
        for name in ["bias_ih_l0", "bias_ih_l1"] {
            let (b0, b1) = (before.param(name).unwrap(), after.param(name).unwrap());
            assert_eq!(b0[..h], b1[..h]);
            assert_eq!(b0[2 * h..], b1[2 * h..]);
            assert!(b1[h..2 * h].iter().all(|&v| (0.0..49f64.ln()).contains(&v)));
        }
        assert_eq!(
            before.param("weight_hh_l1").unwrap(),
            after.param("weight_hh_l1").unwrap()
        );
        let mut rnn = stack(CellKind::rnn_tanh(), Direction::Forward);
        assert!(matches!(
            rnn.chrono_init(50.0, 0),
            Err(Error::Config { .. })
        ));
        let mut lstm = stack(CellKind::lstm(), Direction::Forward);
        for bad in [2.0, 1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                lstm.chrono_init(bad, 0),
                Err(Error::Config { .. })
            ));
        }
    }
}
