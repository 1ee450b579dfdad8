//! Streaming: a session that runs a unidirectional stack one time step at a time.
//!
//! [`Stepper`] does once what every step would otherwise repeat: it packs each layer's
//! recurrent weights into the layout the step product reads best (at batch 1 the stored
//! layout already is), folds the biases, and sizes every buffer a step writes. A step then
//! runs, per layer, the driver's one-step entry point ([`DirSpec::step`]: the input product
//! and the cell's step, [`DirSpec::cell_forward`]) and allocates nothing of its own (at batch 1 nothing at
//! all; see [`Stepper::step`]).
//!
//! The state is double-buffered: layer l reads its state before the step from `h[l]`, `c[l]`
//! and writes the state after it into `h_next[l]`, `c_next[l]`; the layer above reads
//! `h_next[l]` as its input. After the last layer the two buffers swap.

use std::fmt;

use super::driver::DirSpec;
use super::pack::{Packed, pack_panels, transpose, transposed};
use super::{Direction, Recurrent, State, StateView, WeightFormat};
use crate::cell::{FwdStep, ParamKind, Zoneout};
use crate::error::{Error, Result, Shape};
use crate::kernel::pair::{self, Pair};
use crate::kernel::scalar::Float;
use crate::kernel::{Mat, Panels, matmul_bias};
use crate::tensor::Tensor;

/// A streaming session over a unidirectional [`Recurrent`] stack for a fixed `batch`: it
/// owns the state (`h` `[num_layers, batch, H_out]`, `c` `[num_layers, batch, hidden_size]`
/// for an LSTM) and a workspace sized once, and [`Stepper::step`] advances every sequence by
/// one time step without allocating (at batch > 1, see its note on the `gemm` crate).
///
/// It borrows the model, so the parameters cannot change under it. Its outputs are those of
/// [`Recurrent::forward`] on one-step sequences: bit for bit at batch 1; at batch > 1 it
/// reads `W_ihᵀ` packed once, for speed, and the input product may round differently in the
/// last bit. Over a whole sequence see the rounding note of [`Recurrent::step`].
///
/// ```
/// use recur::{CellKind, Recurrent, RecurrentConfig};
/// let model = Recurrent::<f32>::new(
///     RecurrentConfig { cell: CellKind::lstm(), input_size: 3, hidden_size: 4, ..Default::default() },
///     0,
/// )?;
/// let mut stepper = model.stepper(2)?;
/// let (x, mut y) = ([0.5f32; 2 * 3], [0.0f32; 2 * 4]); // [batch, input_size], [batch, H_out]
/// for _ in 0..10 {
///     stepper.step(&x, &mut y)?;
/// }
/// let state = stepper.state(); // h: [1, 2, 4], c: [1, 2, 4]
/// stepper.reset();
/// # Ok::<(), recur::Error>(())
/// ```
pub struct Stepper<'a, T> {
    model: &'a Recurrent<T>,
    batch: usize,
    /// per layer: the driver's view (seq_len 1, no `active`) and its prepared step
    layers: Vec<(DirSpec<'a, T>, DirStep<T>)>,
    /// `[num_layers, batch, H_out]`: the state before the next step
    h: Vec<T>,
    /// `[num_layers, batch, hidden_size]` (LSTM) or empty
    c: Vec<T>,
    /// the state being written by a step, swapped with `h`, `c` after it
    h_next: Vec<T>,
    c_next: Vec<T>,
    /// the helper thread that takes half of each step product (small batches on two
    /// threads or more, see `kernel::pair`), or `None`
    pair: Option<Pair>,
}

impl<T> fmt::Debug for Stepper<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stepper")
            .field("config", &self.model.config)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl<'a, T: Float> Stepper<'a, T> {
    /// See [`Recurrent::stepper`].
    pub(super) fn new(model: &'a Recurrent<T>, batch: usize, format: WeightFormat) -> Result<Self> {
        let cfg = &model.config;
        if cfg.direction != Direction::Forward {
            return Err(Error::Unsupported(
                "stepper: a reverse direction needs the whole sequence".into(),
            ));
        }
        if batch == 0 {
            return Err(Error::Empty("stepper: batch is 0".into()));
        }
        super::check_format::<T>(format, &cfg.cell, "stepper")?;
        let nl = cfg.num_layers;
        let layers: Vec<(DirSpec<'a, T>, DirStep<T>)> = (0..nl)
            .map(|layer| {
                let spec = model.dir_spec(layer, 0, (1, batch, &[]));
                let mut prepared = spec.prepare(format);
                // zoneout at inference: the expectation, h = z h_prev + (1 − z) h̃
                prepared.zone = super::dropout::zoneout_expectation(cfg, batch);
                (spec, prepared)
            })
            .collect();
        let pair = layers
            .iter()
            .map(|(spec, prepared)| spec.step_products(prepared))
            .max_by_key(|&(panels, fmas)| (panels, fmas))
            .and_then(|(panels, fmas)| pair::for_stepper(panels, fmas));
        let h_len = nl * batch * cfg.h_out();
        let c_len = if cfg.cell.has_cell_state() {
            nl * batch * cfg.hidden_size
        } else {
            0
        };
        Ok(Self {
            model,
            batch,
            layers,
            h: vec![T::zero(); h_len],
            c: vec![T::zero(); c_len],
            h_next: vec![T::zero(); h_len],
            c_next: vec![T::zero(); c_len],
            pair,
        })
    }

    /// The number of sequences stepped together.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// One time step of every sequence: `x` is `[batch, input_size]` (row-major, whatever
    /// the model's [`super::BatchLayout`]), the last layer's output goes to `out`
    /// `[batch, H_out]`, and the state advances.
    ///
    /// At batch 1 this allocates nothing (`tests/stepper.rs` counts), nor at any batch with
    /// the panel kernel (f32 on AVX-512F; except a GRU with the reset before the product,
    /// ONNX's `linear_before_reset = 0`, when 2H is not a multiple of 64: its two column
    /// ranges of `W_hhᵀ` then go to the `gemm` crate). Elsewhere at batch > 1 recur still
    /// allocates
    /// nothing, but the `gemm` crate (0.19) runs its packed kernel for the products, which
    /// allocates a small bookkeeping buffer on every call.
    ///
    /// # Errors
    /// [`Error::Length`] when `x` or `out` does not hold exactly the values of its shape; the
    /// state is then untouched.
    pub fn step(&mut self, x: &[T], out: &mut [T]) -> Result<()> {
        let cfg = &self.model.config;
        let (bs, r, h) = (self.batch, cfg.h_out(), cfg.hidden_size);
        check_len("x", x.len(), [bs, cfg.input_size])?;
        check_len("out", out.len(), [bs, r])?;
        let has_c = cfg.cell.has_cell_state();
        let (hs, cs) = (bs * r, if has_c { bs * h } else { 0 });
        let Self {
            layers,
            h: h_before,
            c: c_before,
            h_next,
            c_next,
            pair,
            ..
        } = self;
        pair::install(pair.as_ref(), || {
            for (l, (spec, prepared)) in layers.iter_mut().enumerate() {
                // Layer l writes h_next[l]; its input is x or h_next[l − 1] just below it.
                let (below, h_out) = h_next.split_at_mut(l * hs);
                let input = if l == 0 { x } else { &below[(l - 1) * hs..] };
                spec.step(
                    prepared,
                    input,
                    (
                        &h_before[l * hs..(l + 1) * hs],
                        &c_before[l * cs..(l + 1) * cs],
                    ),
                    &mut h_out[..hs],
                    &mut c_next[l * cs..(l + 1) * cs],
                );
            }
        });
        std::mem::swap(&mut self.h, &mut self.h_next);
        std::mem::swap(&mut self.c, &mut self.c_next);
        out.copy_from_slice(&self.h[(self.layers.len() - 1) * hs..]);
        Ok(())
    }

    /// The current state: `h` `[num_layers, batch, H_out]`, `c` `[num_layers, batch,
    /// hidden_size]` (LSTM only), as [`Recurrent::forward`] takes and returns it.
    pub fn state(&self) -> State<T> {
        let cfg = &self.model.config;
        let nl = cfg.num_layers;
        let tensor = |v: &[T], f: usize| {
            Tensor::new(v.to_vec(), &[nl, self.batch, f]).expect("the state fills its shape")
        };
        State {
            h: tensor(&self.h, cfg.h_out()),
            c: cfg
                .cell
                .has_cell_state()
                .then(|| tensor(&self.c, cfg.hidden_size)),
        }
    }

    /// Continues from `state` (a `&State` or a [`StateView`], shaped as [`Stepper::state`]
    /// returns it; the initial state of the steps to come, so errors name its tensors `h0`
    /// and `c0`, as [`Recurrent::forward`]'s do).
    ///
    /// # Errors
    /// [`Error::Shape`] or [`Error::Rank`] for a tensor of the wrong shape,
    /// [`Error::Unsupported`] for a state that does not fit the cell (a `c` for a GRU, none
    /// for an LSTM); the state is then untouched.
    pub fn set_state<'s>(&mut self, state: impl Into<StateView<'s, T>>) -> Result<()> {
        let state: StateView<'_, T> = state.into();
        self.model
            .check_state(Some(state), self.batch, ["h0", "c0"])?;
        self.h.copy_from_slice(state.h.data());
        if let Some(c) = state.c {
            self.c.copy_from_slice(c.data());
        }
        Ok(())
    }

    /// Back to the zero state.
    pub fn reset(&mut self) {
        self.h.fill(T::zero());
        self.c.fill(T::zero());
    }
}

/// One direction made ready to stream (see [`DirSpec::prepare`]): its packed weights, its
/// folded bias and the buffers of one step, `[batch, ·]` each.
#[derive(Clone, Debug)]
pub(crate) struct DirStep<T> {
    packed: Packed<T>,
    /// `W_ihᵀ` `[input_size, G*H]` row-major when batch > 1 and there are no panels, else
    /// empty (see [`DirSpec::prepare`])
    w_ih_t: Vec<T>,
    /// `W_ihᵀ` for the panel kernel, else `None`
    w_ih_p: Option<Panels>,
    /// `[G*H]`
    bias: Vec<T>,
    /// `[batch, G*H]`
    gates: Vec<T>,
    aux: Vec<T>,
    keep: Vec<T>,
    m: Vec<T>,
    scratch: Vec<T>,
    /// zoneout's expectation rows 1 − z, h `[batch, R]` and c `[batch, H]` (empty: off)
    pub zone: [Vec<T>; 2],
}

impl<T: Float> DirSpec<'_, T> {
    /// Everything [`Self::step`] needs besides the states, sized for `batch` rows: the packed
    /// weights, the folded bias and the step's buffers. Reads neither `seq_len` nor `active`.
    ///
    /// Besides the recurrent weights, a batch > 1 also packs `W_ihᵀ`: the whole-sequence
    /// input product runs over `seq_len * batch` rows and packs its operand inside the GEMM,
    /// but a step's few rows read the stored `[G*H, input_size]` matrix through a transposed
    /// view badly (measured, LSTM H = I = 256, 2 threads: 375 µs per step at batch 4 with the
    /// view, 51 µs with `W_ihᵀ` packed once; batch 16: 480 → 125 µs). Batch 1 reads it best
    /// as stored, as it does `W_hh`.
    ///
    /// With [`WeightFormat::Bf16`] every weight matrix is packed in bf16 (see
    /// [`crate::kernel::Panels::pack_bf16`]); the caller has checked that the CPU runs it.
    pub fn prepare(&self, format: WeightFormat) -> DirStep<T> {
        let (bs, gh) = (self.batch, self.gh());
        let widths = self.cell.slab_widths(self.hidden);
        let w_ih_p = pack_panels::<T>(
            Mat::rows(
                self.w[ParamKind::WeightIh],
                gh,
                self.input_size,
                self.input_size,
            )
            .t(),
            format,
        );
        DirStep {
            packed: self.pack_with(format, None),
            w_ih_t: if bs == 1 || w_ih_p.is_some() {
                Vec::new()
            } else {
                transpose(self.w[ParamKind::WeightIh], gh, self.input_size)
            },
            w_ih_p,
            bias: self.input_bias(),
            gates: vec![T::zero(); bs * gh],
            aux: vec![T::zero(); bs * widths.aux],
            keep: vec![T::zero(); bs * widths.keep],
            m: vec![T::zero(); bs * widths.m],
            scratch: vec![T::zero(); bs * widths.fwd_scratch],
            zone: [Vec::new(), Vec::new()],
        }
    }

    /// Whether the step products of `ds` run on the panel kernel, and how many multiply-adds
    /// the recurrent one has (for [`pair::for_stepper`]).
    pub fn step_products(&self, ds: &DirStep<T>) -> (bool, usize) {
        (ds.packed.on_panels(), self.batch * self.gh() * self.h_out)
    }

    /// One time step of all `batch` rows (streaming): `x` is `[batch, input_size]`, the states
    /// before it `h_prev` `[batch, R]` and `c_prev` `[batch, H]` (LSTM, else empty), after it
    /// `h` and `c`. The arithmetic of [`Self::forward`] on a one-step sequence, over the
    /// buffers of `ds` (made by [`Self::prepare`] for this direction): bit for bit at batch 1;
    /// at batch > 1 the input product reads the packed `W_ihᵀ`, which the `gemm` crate may
    /// round differently. Reads neither `seq_len` nor `active`.
    ///
    /// Allocates nothing of its own. With the panel kernel (f32 on AVX-512F) nothing
    /// allocates at any batch (but for the reset-before GRU when 2H is not a multiple of 64,
    /// whose column ranges then go to the `gemm` crate); otherwise at batch 1 every product
    /// is a matrix-vector product
    /// and nothing allocates (`tests/stepper.rs` counts), and at batch > 1 the `gemm` crate
    /// (0.19) runs its packed kernel, which allocates a small bookkeeping buffer per call.
    pub fn step(
        &self,
        ds: &mut DirStep<T>,
        x: &[T],
        (h_prev, c_prev): (&[T], &[T]),
        h: &mut [T],
        c: &mut [T],
    ) {
        let (bs, gh, n_in) = (self.batch, self.gh(), self.input_size);
        debug_assert_eq!(x.len(), bs * n_in);
        debug_assert_eq!(ds.gates.len(), bs * gh);
        // (1) the input projection of this step, biases folded in.
        let w_ih_t = transposed(
            bs == 1 || ds.w_ih_p.is_some(),
            self.w[ParamKind::WeightIh],
            &ds.w_ih_t,
            gh,
            n_in,
        );
        matmul_bias(
            &mut ds.gates,
            gh,
            Mat::rows(x, bs, n_in, n_in),
            w_ih_t.with_panels(ds.w_ih_p.as_ref()),
            &ds.bias,
        );
        let sw = self.forward_weights(&ds.packed);
        self.cell_forward(
            &sw,
            FwdStep {
                n: bs,
                h_prev,
                h_rec: h_prev,
                c_prev,
                h: &mut *h,
                c: &mut *c,
                gates: &mut ds.gates,
                aux: &mut ds.aux,
                keep: &mut ds.keep,
                m: &mut ds.m,
                scratch: &mut ds.scratch,
            },
        );
        let [zh, zc] = &ds.zone;
        if !(zh.is_empty() && zc.is_empty()) {
            let z = Zoneout {
                h: zh,
                c: zc,
                per_step: false,
                batch: bs,
            };
            z.forward((0, 0, bs), (h_prev, h), (c_prev, c));
        }
    }
}

/// `Err(Error::Length)` unless a buffer of `len` values fills `shape`.
fn check_len(what: &str, len: usize, shape: [usize; 2]) -> Result<()> {
    if len == shape[0] * shape[1] {
        Ok(())
    } else {
        Err(Error::Length {
            what: what.into(),
            shape: Shape(shape.to_vec()),
            len,
        })
    }
}
