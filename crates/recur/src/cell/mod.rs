//! The cells: math only. Each module opens with its equations and the derived backward, and
//! keeps its forward and backward step side by side. The sequence driver in [`crate::layer`]
//! calls them once per time step on the rows of the batch that are still active, as plain
//! slices; the input projection for all steps and all of (1)ᵀ (dX, dW_ih, dW_hh and both
//! biases, one product each over the whole sequence), directions, lengths, stacking and
//! threads live in the driver. Here is no threading.
//!
//! ## A step in pieces
//! A step is cut into the pieces the driver calls in order ([`CellKind::row_passes`] = k):
//! product 0, row pass 0, product 1, …, row pass k − 1, product k. A product piece runs over
//! all the step's rows (the kernel splits a product by columns where a pair of threads runs
//! it); a row pass runs over the rows it is given, the whole step or a part of it, as a
//! [`FwdStep`] / [`BwdStep`] of just those rows: each row's arithmetic is the same whoever
//! runs it, so the driver may hand the two halves of a step's rows to two threads.
//!
//! ## ONNX's options
//! - **Activations**: each cell takes them from its config ([`LstmActivations`],
//!   [`GruActivations`], [`RnnCell::nonlinearity`]), any of ONNX's eleven
//!   ([`crate::Activation`]); the backward works from the saved outputs.
//! - **`clip`** (ONNX's gate pre-activation clip; not cuDNN's cell-state clipping, not gradient
//!   clipping): every gate pre-activation, bias and peepholes included, is clamped to
//!   [−clip, clip] before its activation, as ONNX Runtime does (each cell's docs say exactly
//!   what is clamped). The saved activations cannot always tell whether a value was clamped
//!   (sigmoid(a) rounds to sigmoid(clip) for a slightly below clip), so a clipped cell records
//!   the clamp in a `keep` slab `[rows, G*H]` (1 passed, 0 clamped) that the backward
//!   multiplies into the gate gradients.
//!
//! ## Layer norm
//! A layer-normalised cell ([`CellKind::layer_norm`], Ba et al. 2016) normalises each row's
//! input product W_ih x and recurrent product W_hh h_prev over its own G·H values, in its row
//! pass (the driver projects without biases; the cell adds them after the norms). Its backward
//! keeps ∂L/∂a for the biases and the gains, and hands the driver the gradients at the raw
//! products: `dgates` for dX and dW_ih, and [`RecurrentGrad::dq`] for dh_prev and dW_hh.
//!
//! ## Zoneout
//! Zoneout ([`Zoneout`], Krueger et al. 2017) acts on the states between steps: the driver
//! blends each step's new h (and c) with the previous one by a mask after the cell's step,
//! and before the cell's backward step splits the state's gradient into the part the step
//! sees (m ⊙ dh) and the part that goes straight to the previous state ((1 − m) ⊙ dh).
//!
//! ## Recurrent dropout
//! Under [`crate::RecurrentConfig::recurrent_dropout`] the driver hands each step the masked
//! state `h_rec = m ⊙ h_prev` (one mask per row and unit for the whole sequence, Gal &
//! Ghahramani 2016) besides `h_prev`: the recurrent product reads `h_rec`, everything else
//! (GRU's `z ⊙ h_prev`, the leaky term, the carried state) reads `h_prev`. The backward
//! multiplies the gradient that the product sends to the state by the mask (`dh_rec`), and the
//! recurrent weight gradients read the masked states.

pub mod gru;
pub mod lstm;
pub mod rnn;

pub use gru::{GruActivations, GruCell, ResetPlacement};
pub use lstm::{InputForget, LstmActivations, LstmCell, Peepholes};
pub use rnn::{Leak, RnnCell};

use crate::error::{Result, config_err};
use crate::kernel::Mat;
use crate::kernel::rows::{self, Streams};
use crate::kernel::scalar::Float;

/// Which recurrent cell a layer runs, with the cell's own options.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CellKind {
    /// Long short-term memory (gates i, f, g, o).
    Lstm(LstmCell),
    /// Gated recurrent unit (gates r, z, n).
    Gru(GruCell),
    /// Elman RNN, optionally with leaky integration.
    Rnn(RnnCell),
}

impl CellKind {
    /// A plain PyTorch `nn.LSTM` cell.
    pub fn lstm() -> Self {
        CellKind::Lstm(LstmCell::default())
    }

    /// A plain PyTorch `nn.GRU` cell (reset applied after the recurrent product).
    pub fn gru() -> Self {
        CellKind::Gru(GruCell::default())
    }

    /// A plain PyTorch `nn.RNN` cell with tanh.
    pub fn rnn_tanh() -> Self {
        CellKind::Rnn(RnnCell::default())
    }

    /// A plain PyTorch `nn.RNN` cell with ReLU.
    pub fn rnn_relu() -> Self {
        CellKind::Rnn(RnnCell {
            nonlinearity: crate::kernel::activation::Activation::Relu,
            ..RnnCell::default()
        })
    }

    /// Number of gates G stacked in the weight matrices (`[G * hidden_size, ·]`).
    pub fn gate_count(&self) -> usize {
        match self {
            CellKind::Lstm(_) => 4,
            CellKind::Gru(_) => 3,
            CellKind::Rnn(_) => 1,
        }
    }

    /// Projection size P (LSTM only), 0 when there is none.
    pub fn proj_size(&self) -> usize {
        match self {
            CellKind::Lstm(c) => c.proj_size,
            _ => 0,
        }
    }

    /// Whether the cell is layer-normalised (Ba et al. 2016): its gate pre-activations are
    /// the normalised input and recurrent products plus the biases, which the cell adds in
    /// its row pass (the input projection then folds no bias).
    pub fn layer_norm(&self) -> bool {
        match self {
            CellKind::Lstm(c) => c.layer_norm,
            CellKind::Gru(c) => c.layer_norm,
            CellKind::Rnn(_) => false,
        }
    }

    /// Whether the cell carries a cell state `c` besides `h`.
    pub fn has_cell_state(&self) -> bool {
        matches!(self, CellKind::Lstm(_))
    }

    pub(crate) fn validate(&self, hidden_size: usize, num_layers: usize) -> Result<()> {
        match self {
            CellKind::Lstm(c) => c.validate(hidden_size)?,
            CellKind::Gru(c) => c.validate()?,
            CellKind::Rnn(c) => c.validate(num_layers)?,
        }
        for (slot, act) in self.activations() {
            act.validate(slot)?;
        }
        check_clip(self.clip())
    }

    /// A short lowercase name (`lstm`, `gru`, `rnn_tanh`, `rnn_relu`, and `rnn` for an RNN
    /// with another of ONNX's activations).
    pub fn name(&self) -> &'static str {
        match self {
            CellKind::Lstm(_) => "lstm",
            CellKind::Gru(_) => "gru",
            CellKind::Rnn(r) => match r.nonlinearity {
                crate::kernel::activation::Activation::Relu => "rnn_relu",
                crate::kernel::activation::Activation::Tanh => "rnn_tanh",
                _ => "rnn",
            },
        }
    }
}

/// ONNX's `clip`: off, or a finite bound > 0.
fn check_clip(clip: Option<f64>) -> Result<()> {
    match clip {
        Some(c) if !(c.is_finite() && c > 0.0) => Err(config_err(
            "clip",
            format!("must be a finite number > 0 (or None for no clip), got {c}"),
        )),
        _ => Ok(()),
    }
}

/// The clip bound in the model's precision.
pub(crate) fn clip_bound<T: Float>(clip: Option<f64>) -> Option<T> {
    clip.map(|c| T::from_f64(c).unwrap_or_else(T::infinity))
}

/// ONNX `clip`: clamps pre-activations to [−clip, clip] and records in `keep` which passed
/// (1, the clamp's slope) and which were clamped (0). A value exactly at the bound passes.
#[inline]
pub(crate) fn clamp<T: Float>(a: &mut [T], keep: &mut [T], clip: T) {
    let (zero, one) = (T::zero(), T::one());
    for (a, k) in a.iter_mut().zip(keep) {
        if *a > clip {
            *a = clip;
            *k = zero;
        } else if *a < -clip {
            *a = -clip;
            *k = zero;
        } else {
            *k = one;
        }
    }
}

/// `d[j] *= m[j]`: the backward of [`clamp`] (m = keep), or a recurrent-dropout mask.
#[inline]
pub(crate) fn mul_assign<T: Float>(d: &mut [T], m: &[T]) {
    for (d, &m) in d.iter_mut().zip(m) {
        *d *= m;
    }
}

/// `dh += m ⊙ g`: the gradient that reached the masked state, carried to the state.
#[inline]
pub(crate) fn add_masked<T: Float>(dh: &mut [T], m: &[T], g: &[T]) {
    for ((dh, &m), &g) in dh.iter_mut().zip(m).zip(g) {
        *dh += m * g;
    }
}

pub(crate) fn check_rate(what: &str, alpha: f64) -> Result<()> {
    if !(alpha > 0.0 && alpha <= 1.0) {
        return Err(config_err(what, format!("must lie in (0, 1], got {alpha}")));
    }
    Ok(())
}

/// What a parameter tensor is, independent of its layer and direction: the key of the
/// layout table (`layer/params.rs`, one row per kind: PyTorch's name stem, shape and
/// presence) and of [`Block`], through which the cells read the tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// `weight_ih`: `[G * hidden_size, layer_input_size]`
    WeightIh,
    /// `weight_hh`: `[G * hidden_size, H_out]`
    WeightHh,
    /// `bias_ih`: `[G * hidden_size]`
    BiasIh,
    /// `bias_hh`: `[G * hidden_size]`
    BiasHh,
    /// `weight_hr` (LSTM projection): `[proj_size, hidden_size]`
    WeightHr,
    /// `peephole_i` (LSTM): `[hidden_size]`
    PeepholeI,
    /// `peephole_f` (LSTM): `[hidden_size]`
    PeepholeF,
    /// `peephole_o` (LSTM): `[hidden_size]`
    PeepholeO,
    /// `gamma_ih` (layer norm): the gain of the input product's norm, `[G * hidden_size]`
    GammaIh,
    /// `gamma_hh` (layer norm): the gain of the recurrent product's norm, `[G * hidden_size]`
    GammaHh,
    /// `gamma_c` (layer-normalised LSTM): the gain of the cell state's norm, `[hidden_size]`
    GammaC,
    /// `beta_c` (layer-normalised LSTM): the bias of the cell state's norm, `[hidden_size]`
    BetaC,
}

impl ParamKind {
    /// The number of kinds (the layout table has one row for each).
    pub const COUNT: usize = 12;
}

/// The tensors of one (layer, direction) by [`ParamKind`], as views `S` (`&[T]` or
/// `&mut [T]`): what the layout table fills from a flat buffer (parameters or gradients)
/// and the cells and the driver read. A kind the configuration does not have is absent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block<S>([Option<S>; ParamKind::COUNT]);

impl<S> Default for Block<S> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| None))
    }
}

impl<S> Block<S> {
    pub fn set(&mut self, kind: ParamKind, s: S) {
        self.0[kind as usize] = Some(s);
    }

    /// The tensor of `kind`, taken out of the block (`None` where absent).
    pub fn take(&mut self, kind: ParamKind) -> Option<S> {
        self.0[kind as usize].take()
    }
}

impl<S: Copy> Block<S> {
    /// The tensor of `kind`, or `None` where the configuration has none.
    pub fn get(&self, kind: ParamKind) -> Option<S> {
        self.0[kind as usize]
    }
}

impl<S> std::ops::Index<ParamKind> for Block<S> {
    type Output = S;

    /// A kind every configuration has (`weight_ih`, `weight_hh`).
    fn index(&self, kind: ParamKind) -> &S {
        self.0[kind as usize]
            .as_ref()
            .expect("every layer and direction has weight_ih and weight_hh")
    }
}

/// The weights of one (layer, direction) as the step functions use them.
pub(crate) struct StepWeights<'a, T> {
    /// H
    pub hidden: usize,
    /// R = H_out: P with a projection, else H
    pub h_out: usize,
    /// every tensor as stored (`b_hh`: only the GRU reads it inside the step; elsewhere it
    /// is folded into the input projection)
    pub params: Block<&'a [T]>,
    /// `W_hh` `[G*H, R]` as the backward step product's right operand (with its panels in
    /// the backward where the panel kernel runs)
    pub w_hh_b: Mat<'a, T>,
    /// `W_hhᵀ` `[R, G*H]` (the forward product's right operand): packed row-major once per
    /// call, or a strided view of `W_hh` when the batch is a single row
    pub w_hh_t: Mat<'a, T>,
    /// `W_hr` as the backward product's right operand, as `w_hh_b`
    pub w_hr_b: Mat<'a, T>,
    /// `W_hrᵀ` `[H, P]`, packed or a view as `w_hh_t` (empty without projection)
    pub w_hr_t: Mat<'a, T>,
    /// leaky-integration rate α of this layer (RNN), 1 otherwise
    pub leak: T,
}

/// One forward step over the first `n` (active) rows of the batch. Every slice holds exactly
/// `n` rows of its width.
pub(crate) struct FwdStep<'a, T> {
    pub n: usize,
    /// `[n, R]` state before the step
    pub h_prev: &'a [T],
    /// `[n, R]` the state as the recurrent product reads it: `h_prev` itself, or under
    /// recurrent dropout its masked copy `m ⊙ h_prev`
    pub h_rec: &'a [T],
    /// `[n, H]` (LSTM)
    pub c_prev: &'a [T],
    /// `[n, R]` state after the step
    pub h: &'a mut [T],
    /// `[n, H]` (LSTM)
    pub c: &'a mut [T],
    /// `[n, G*H]`: in, the input projection of this step (biases folded in); out, what the
    /// backward keeps (the gate activations)
    pub gates: &'a mut [T],
    /// `[n, aux]`: a per-cell saved quantity (see each cell)
    pub aux: &'a mut [T],
    /// `[n, G*H]` with `clip`: 1 where a gate pre-activation passed the clamp, 0 where it was
    /// clamped; else empty
    pub keep: &'a mut [T],
    /// `[n, H]` LSTM projection input m = o ⊙ act(c), else empty
    pub m: &'a mut [T],
    /// per-cell scratch, `[n, ·]`
    pub scratch: &'a mut [T],
}

/// One backward step over the first `n` rows. Every slice holds exactly `n` rows.
pub(crate) struct BwdStep<'a, T> {
    pub n: usize,
    pub h_prev: &'a [T],
    /// as in [`FwdStep`]: `h_prev`, or its masked copy under recurrent dropout
    pub h_rec: &'a [T],
    pub c_prev: &'a [T],
    pub gates: &'a [T],
    pub aux: &'a [T],
    /// as in [`FwdStep`] (empty without `clip`)
    pub keep: &'a [T],
    /// `[n, R]` recurrent-dropout mask (0 or 1/(1−p)), or empty
    pub mask: &'a [T],
    /// `[n, R]` scratch for the gradient through the recurrent product when `mask` is set,
    /// else empty
    pub dh_rec: &'a mut [T],
    /// in: ∂L/∂h of this step (from the output and from step t+1); out: ∂L/∂h_prev
    pub dh: &'a mut [T],
    /// in: ∂L/∂c from step t+1; out: ∂L/∂c_prev (LSTM)
    pub dc: &'a mut [T],
    /// out: ∂L/∂(gate pre-activations) as seen by the input projection, `[n, G*H]`
    pub dgates: &'a mut [T],
    /// out: a per-cell second gradient slab (see each cell)
    pub dalt: &'a mut [T],
    pub scratch: &'a mut [T],
}

/// `s` cut after `mid` of its `n` rows (each slice holds exactly `n` rows of its width).
fn cut<T>(s: &[T], n: usize, mid: usize) -> (&[T], &[T]) {
    debug_assert_eq!(s.len() % n, 0);
    s.split_at(s.len() / n * mid)
}

/// As [`cut`], for a slice to write.
fn cut_mut<T>(s: &mut [T], n: usize, mid: usize) -> (&mut [T], &mut [T]) {
    debug_assert_eq!(s.len() % n, 0);
    let w = s.len() / n;
    s.split_at_mut(w * mid)
}

impl<T> FwdStep<'_, T> {
    /// The same step, borrowed for a piece.
    pub fn reborrow(&mut self) -> FwdStep<'_, T> {
        FwdStep {
            n: self.n,
            h_prev: self.h_prev,
            h_rec: self.h_rec,
            c_prev: self.c_prev,
            h: self.h,
            c: self.c,
            gates: self.gates,
            aux: self.aux,
            keep: self.keep,
            m: self.m,
            scratch: self.scratch,
        }
    }
}

impl<'a, T> FwdStep<'a, T> {
    /// The rows `0..mid` and `mid..n` as two steps of their own.
    pub fn split_at(self, mid: usize) -> (Self, Self) {
        let n = self.n;
        let (h_prev, h_prev2) = cut(self.h_prev, n, mid);
        let (h_rec, h_rec2) = cut(self.h_rec, n, mid);
        let (c_prev, c_prev2) = cut(self.c_prev, n, mid);
        let (h, h2) = cut_mut(self.h, n, mid);
        let (c, c2) = cut_mut(self.c, n, mid);
        let (gates, gates2) = cut_mut(self.gates, n, mid);
        let (aux, aux2) = cut_mut(self.aux, n, mid);
        let (keep, keep2) = cut_mut(self.keep, n, mid);
        let (m, m2) = cut_mut(self.m, n, mid);
        let (scratch, scratch2) = cut_mut(self.scratch, n, mid);
        (
            FwdStep {
                n: mid,
                h_prev,
                h_rec,
                c_prev,
                h,
                c,
                gates,
                aux,
                keep,
                m,
                scratch,
            },
            FwdStep {
                n: n - mid,
                h_prev: h_prev2,
                h_rec: h_rec2,
                c_prev: c_prev2,
                h: h2,
                c: c2,
                gates: gates2,
                aux: aux2,
                keep: keep2,
                m: m2,
                scratch: scratch2,
            },
        )
    }
}

impl<T> BwdStep<'_, T> {
    /// The same step, borrowed for a piece.
    pub fn reborrow(&mut self) -> BwdStep<'_, T> {
        BwdStep {
            n: self.n,
            h_prev: self.h_prev,
            h_rec: self.h_rec,
            c_prev: self.c_prev,
            gates: self.gates,
            aux: self.aux,
            keep: self.keep,
            mask: self.mask,
            dh_rec: self.dh_rec,
            dh: self.dh,
            dc: self.dc,
            dgates: self.dgates,
            dalt: self.dalt,
            scratch: self.scratch,
        }
    }
}

impl<'a, T> BwdStep<'a, T> {
    /// The rows `0..mid` and `mid..n` as two steps of their own.
    pub fn split_at(self, mid: usize) -> (Self, Self) {
        let n = self.n;
        let (h_prev, h_prev2) = cut(self.h_prev, n, mid);
        let (h_rec, h_rec2) = cut(self.h_rec, n, mid);
        let (c_prev, c_prev2) = cut(self.c_prev, n, mid);
        let (gates, gates2) = cut(self.gates, n, mid);
        let (aux, aux2) = cut(self.aux, n, mid);
        let (keep, keep2) = cut(self.keep, n, mid);
        let (mask, mask2) = cut(self.mask, n, mid);
        let (dh_rec, dh_rec2) = cut_mut(self.dh_rec, n, mid);
        let (dh, dh2) = cut_mut(self.dh, n, mid);
        let (dc, dc2) = cut_mut(self.dc, n, mid);
        let (dgates, dgates2) = cut_mut(self.dgates, n, mid);
        let (dalt, dalt2) = cut_mut(self.dalt, n, mid);
        let (scratch, scratch2) = cut_mut(self.scratch, n, mid);
        (
            BwdStep {
                n: mid,
                h_prev,
                h_rec,
                c_prev,
                gates,
                aux,
                keep,
                mask,
                dh_rec,
                dh,
                dc,
                dgates,
                dalt,
                scratch,
            },
            BwdStep {
                n: n - mid,
                h_prev: h_prev2,
                h_rec: h_rec2,
                c_prev: c_prev2,
                gates: gates2,
                aux: aux2,
                keep: keep2,
                mask: mask2,
                dh_rec: dh_rec2,
                dh: dh2,
                dc: dc2,
                dgates: dgates2,
                dalt: dalt2,
                scratch: scratch2,
            },
        )
    }
}

/// A whole direction's inputs, saved tensors and gradients, for the weight gradients that
/// are computed after the backward loop as one product each. `rows = seq_len * batch`.
pub(crate) struct Slabs<'a, T> {
    pub rows: usize,
    /// `[rows, input_size]`: the direction's input
    pub x: &'a [T],
    /// `[rows, R]`: the state before each step as the recurrent product read it (masked
    /// under recurrent dropout)
    pub h_prev: &'a [T],
    /// `[rows, H]`: the cell state before and after each step (LSTM)
    pub c_prev: &'a [T],
    pub c: &'a [T],
    pub aux: &'a [T],
    pub m: &'a [T],
    pub dgates: &'a [T],
    pub dalt: &'a [T],
}

/// What (1)ᵀ's recurrent part reads ([`CellKind::recurrent_grad`]): the driver adds
/// dW_hh += dqᵀ u and db_hh += Σ dq over all steps, where u is the recurrent product's input
/// (`Slabs::h_prev`, or `other` for some gate rows).
pub(crate) struct RecurrentGrad<'a, T> {
    /// `(dq, ld)`: ∂L/∂q `[rows, G*H]` with row stride `ld`, the gradient at the recurrent
    /// product's output, where it is not da itself (the GRU with the reset after the product:
    /// `[da_r, da_z, da_n ⊙ r]`; layer norm: the gradient at W_hh h_prev, before its norm;
    /// both kept by the backward); `None`: da (`Slabs::dgates`), with the product part of (1)
    pub dq: Option<(&'a [T], usize)>,
    /// `(row, u)`: from gate row `row` on, the product reads `u` `[rows, R]` instead of
    /// `Slabs::h_prev` (the GRU with the reset before: W_hn reads s = r ⊙ h_prev)
    pub other: Option<(usize, &'a [T])>,
    /// Layer norm: what `b_ih` and `b_hh` read, `(slab, ld)` each (the gradients after the
    /// norms, which the products do not see); `None`: `Slabs::dgates` and dq
    pub bias: Option<[(&'a [T], usize); 2]>,
}

/// `out[j] += Σ_rows x[row * ld + j]` over the first `out.len()` columns (a bias gradient
/// read from a slab of row stride `ld`), each row compiled for the CPU's instruction set
/// ([`rows`]).
pub(crate) fn add_column_sums_ld<T: Float>(out: &mut [T], x: &[T], rows: usize, ld: usize) {
    for row in 0..rows {
        let ins = [&x[row * ld..], &[], &[], &[], &[], &[]];
        rows::run(AddRow, [out, &mut [], &mut [], &mut []], ins);
    }
}

/// `out += x` over `out`'s length.
struct AddRow;

impl<T: Float> Streams<T> for AddRow {
    type Output = ();

    #[inline(always)]
    fn run(self, [out, ..]: [&mut [T]; 4], [x, ..]: [&[T]; 6]) {
        let n = out.len();
        let x = &x[..n];
        for j in 0..n {
            out[j] += x[j];
        }
    }
}

/// Zoneout's masks for one (layer, direction) (Krueger et al. 2017; see
/// [`crate::RecurrentConfig::zoneout_h`]): after each step, every unit of h (and c) is
/// `h = h_prev + m ⊙ (h̃ − h_prev)`, m from `h` (`c`) `[·, R]` (`[·, H]`), rows in the
/// sorted batch order. Training: m ∈ {0, 1}, one row per step and sequence (`per_step`);
/// inference: m = 1 − z, one row per sequence for every step. An empty slab: no zoneout
/// there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Zoneout<'a, T> {
    pub h: &'a [T],
    pub c: &'a [T],
    pub per_step: bool,
    /// the batch (rows of one step's masks)
    pub batch: usize,
}

impl<T: Float> Zoneout<'_, T> {
    /// The mask rows `start..start + n` of step `t` in a slab of width `w` (empty if off).
    fn rows<'m>(&self, m: &'m [T], w: usize, t: usize, start: usize, n: usize) -> &'m [T] {
        if m.is_empty() {
            return m;
        }
        let row0 = if self.per_step { t * self.batch } else { 0 } + start;
        &m[row0 * w..(row0 + n) * w]
    }

    /// After the cell's step of rows `start..start + n` at t: h = h_prev + m ⊙ (h̃ − h_prev),
    /// and the same for c.
    pub fn forward(
        &self,
        (t, start, n): (usize, usize, usize),
        (h_prev, h): (&[T], &mut [T]),
        (c_prev, c): (&[T], &mut [T]),
    ) {
        for (prev, new, m) in [(h_prev, h, self.h), (c_prev, c, self.c)] {
            let w = new.len().checked_div(n).unwrap_or(0);
            let m = self.rows(m, w, t, start, n);
            for ((v, &p), &m) in new.iter_mut().zip(prev).zip(m) {
                *v = p + m * (*v - p);
            }
        }
    }

    /// Before the cell's backward step (dh, dc: ∂L/∂ of the zoned-out states at t): the
    /// cell's step sees m ⊙ d, and (1 − m) ⊙ d goes to the state before it (`carry`, added
    /// to the step's dh_prev, dc_prev by [`Self::add_carry`]).
    pub fn split(
        &self,
        (t, start, n): (usize, usize, usize),
        (dh, carry_h): (&mut [T], &mut [T]),
        (dc, carry_c): (&mut [T], &mut [T]),
    ) {
        for (d, carry, m) in [(dh, carry_h, self.h), (dc, carry_c, self.c)] {
            let w = d.len().checked_div(n).unwrap_or(0);
            let m = self.rows(m, w, t, start, n);
            for ((d, k), &m) in d.iter_mut().zip(carry.iter_mut()).zip(m) {
                *k = (T::one() - m) * *d;
                *d *= m;
            }
        }
    }

    /// After the cell's backward step: dh_prev += carry_h, dc_prev += carry_c (where the
    /// masks are on).
    pub fn add_carry(&self, (dh, carry_h): (&mut [T], &[T]), (dc, carry_c): (&mut [T], &[T])) {
        for (d, carry, m) in [(dh, carry_h, self.h), (dc, carry_c, self.c)] {
            if !m.is_empty() {
                for (d, &k) in d.iter_mut().zip(carry) {
                    *d += k;
                }
            }
        }
    }
}

/// Layer norm's ε (PyTorch's `nn.LayerNorm` default, which haste's layer norms use too).
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// Layer norm's statistics of `v`: its mean μ and `1 / √(σ² + ε)` (σ² biased), for
/// `hat = (v − μ) / √(σ² + ε)`, which the backward reads with `1 / √(σ² + ε)`.
///
/// The mean and the variance are summed in f64 whatever `T` is (in f32 the norm divides by
/// a deviation that can be small, which magnifies a sum's rounding), in [`LANES`] partial
/// sums so that the passes vectorise.
/// Compiled for the CPU's instruction set ([`rows`]).
pub(crate) fn moments<T: Float>(v: &[T]) -> (f64, f64) {
    rows::run(
        Moments,
        [&mut [], &mut [], &mut [], &mut []],
        [v, &[], &[], &[], &[], &[]],
    )
}

/// [`moments`]' passes.
struct Moments;

impl<T: Float> Streams<T> for Moments {
    type Output = (f64, f64);

    #[inline(always)]
    fn run(self, _: [&mut [T]; 4], [v, ..]: [&[T]; 6]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = sum_wide(v, |x| x) / n;
        let var = sum_wide(v, |x| (x - mean) * (x - mean)) / n;
        (mean, 1.0 / (var + LAYER_NORM_EPS).sqrt())
    }
}

/// Partial sums the layer norm's reductions keep: one AVX-512 register of f64.
const LANES: usize = 8;

/// Σ f(v_j) in f64, over [`LANES`] partial sums (a sum in one accumulator is a chain of
/// dependent additions the compiler may not reorder, and does not vectorise).
#[inline(always)]
fn sum_wide<T: Float>(v: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(wide(x));
        }
    }
    tail.iter().map(|&x| f(wide(x))).sum::<f64>() + acc.iter().sum::<f64>()
}

/// The backward of a norm of `d`'s row with gain g reads two means: with y = d ⊙ g (in `T`)
/// and v̂ the normalised values, ∂L/∂v = (y − mean(y) − v̂ mean(y ⊙ v̂)) / √(σ² + ε). This
/// returns `(mean(y), mean(y ⊙ v̂))` in f64, over [`LANES`] partial sums each, compiled for
/// the CPU's instruction set ([`rows`]).
pub(crate) fn backward_means<T: Float>(d: &[T], g: &[T], hat: &[T]) -> (f64, f64) {
    rows::run(
        BackwardMeans,
        [&mut [], &mut [], &mut [], &mut []],
        [d, g, hat, &[], &[], &[]],
    )
}

/// [`backward_means`]' pass.
struct BackwardMeans;

impl<T: Float> Streams<T> for BackwardMeans {
    type Output = (f64, f64);

    #[inline(always)]
    fn run(self, _: [&mut [T]; 4], [d, g, hat, ..]: [&[T]; 6]) -> (f64, f64) {
        // two passes (each vectorises; fused, the two sums' lanes get interleaved)
        let n = d.len();
        let (g, hat) = (&g[..n], &hat[..n]);
        let body = n - n % LANES;
        let (mut s, mut p) = ([0.0f64; LANES], [0.0f64; LANES]);
        for (xd, xg) in d[..body].chunks_exact(LANES).zip(g.chunks_exact(LANES)) {
            for ((a, &x), &y) in s.iter_mut().zip(xd).zip(xg) {
                *a += wide(x * y);
            }
        }
        let (cd, cg, ch) = (
            d[..body].chunks_exact(LANES),
            g[..body].chunks_exact(LANES),
            hat[..body].chunks_exact(LANES),
        );
        for ((xd, xg), xh) in cd.zip(cg).zip(ch) {
            for (((a, &x), &y), &z) in p.iter_mut().zip(xd).zip(xg).zip(xh) {
                *a += wide(x * y) * wide(z);
            }
        }
        let (mut s_t, mut p_t) = (0.0, 0.0);
        for j in body..n {
            let y = wide(d[j] * g[j]);
            s_t += y;
            p_t += y * wide(hat[j]);
        }
        let n = n as f64;
        (
            (s_t + s.iter().sum::<f64>()) / n,
            (p_t + p.iter().sum::<f64>()) / n,
        )
    }
}

#[inline(always)]
pub(crate) fn wide<T: Float>(x: T) -> f64 {
    x.to_f64().unwrap_or(f64::NAN)
}

#[inline(always)]
pub(crate) fn narrow<T: Float>(x: f64) -> T {
    T::from_f64(x).unwrap_or_else(T::nan)
}

/// Layer norm with its gain and an optional bias, in place: `v = γ ⊙ v̂ + b`, the normalised
/// values v̂ ([`moments`]) kept in `hat`. Returns 1/√(σ² + ε). (The statistics, then one
/// pass, compiled for the CPU's instruction set: [`rows`].)
pub(crate) fn layer_norm<T: Float>(v: &mut [T], hat: &mut [T], gamma: &[T], b: Option<&[T]>) -> T {
    let (mean, rstd) = moments(v);
    let ins = [gamma, b.unwrap_or(&[]), &[], &[], &[], &[]];
    rows::run(LayerNormWrite(mean, rstd), [v, hat, &mut [], &mut []], ins);
    narrow(rstd)
}

/// [`layer_norm`]'s pass over `[v, v̂]` reading `[γ, b]` (b empty: none).
struct LayerNormWrite(f64, f64);

impl<T: Float> Streams<T> for LayerNormWrite {
    type Output = ();

    #[inline(always)]
    fn run(self, [v, hat, ..]: [&mut [T]; 4], [gamma, b, ..]: [&[T]; 6]) {
        let Self(mean, rstd) = self;
        let n = v.len();
        let (hat, gamma) = (&mut hat[..n], &gamma[..n]);
        if b.len() == n {
            for j in 0..n {
                let h = narrow::<T>((wide(v[j]) - mean) * rstd);
                hat[j] = h;
                v[j] = gamma[j] * h + b[j];
            }
        } else {
            for j in 0..n {
                let h = narrow::<T>((wide(v[j]) - mean) * rstd);
                hat[j] = h;
                v[j] = gamma[j] * h;
            }
        }
    }
}

/// The backward of [`layer_norm`] in place: in, `d` = ∂L/∂(its output); out, ∂L/∂v =
/// rstd · (y − mean(y) − v̂ mean(y ⊙ v̂)), y = d ⊙ γ ([`backward_means`], then one pass).
/// (The gain's and the bias's gradients are sums the cell takes after the loop.)
pub(crate) fn layer_norm_backward<T: Float>(d: &mut [T], hat: &[T], gamma: &[T], rstd: T) {
    let means = backward_means(d, gamma, hat);
    let pass = LayerNormBackwardWrite(means, wide(rstd));
    rows::run(
        pass,
        [d, &mut [], &mut [], &mut []],
        [gamma, hat, &[], &[], &[], &[]],
    );
}

/// [`layer_norm_backward`]'s pass over `[d]` reading `[γ, v̂]`.
struct LayerNormBackwardWrite((f64, f64), f64);

impl<T: Float> Streams<T> for LayerNormBackwardWrite {
    type Output = ();

    #[inline(always)]
    fn run(self, [d, ..]: [&mut [T]; 4], [gamma, hat, ..]: [&[T]; 6]) {
        let Self((mean_d, mean_dh), rstd) = self;
        let n = d.len();
        let (gamma, hat) = (&gamma[..n], &hat[..n]);
        for j in 0..n {
            d[j] = narrow(rstd * (wide(d[j] * gamma[j]) - mean_d - wide(hat[j]) * mean_dh));
        }
    }
}

/// Widths (per batch row) of the per-cell slabs and scratch buffers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SlabWidths {
    pub aux: usize,
    /// G*H with `clip` (the clamp record), else 0
    pub keep: usize,
    pub m: usize,
    pub dalt: usize,
    pub fwd_scratch: usize,
    pub bwd_scratch: usize,
}

impl CellKind {
    pub(crate) fn slab_widths(&self, hidden: usize) -> SlabWidths {
        match self {
            CellKind::Lstm(c) => lstm::slab_widths(c, hidden),
            CellKind::Gru(c) => gru::slab_widths(c, hidden),
            CellKind::Rnn(c) => SlabWidths {
                keep: if c.clip.is_some() { hidden } else { 0 },
                ..SlabWidths::default()
            },
        }
    }

    /// Every activation of the cell, named by its slot.
    pub(crate) fn activations(&self) -> Vec<(&'static str, crate::kernel::activation::Activation)> {
        match self {
            CellKind::Lstm(c) => vec![
                ("activations.gate", c.activations.gate),
                ("activations.cell", c.activations.cell),
                ("activations.hidden", c.activations.hidden),
            ],
            CellKind::Gru(c) => vec![
                ("activations.gate", c.activations.gate),
                ("activations.candidate", c.activations.candidate),
            ],
            CellKind::Rnn(c) => vec![("nonlinearity", c.nonlinearity)],
        }
    }

    /// ONNX's `clip`, if set.
    pub fn clip(&self) -> Option<f64> {
        match self {
            CellKind::Lstm(c) => c.clip,
            CellKind::Gru(c) => c.clip,
            CellKind::Rnn(c) => c.clip,
        }
    }

    /// Whether `b_hh[row]` may be added to the input projection instead of inside the step.
    pub(crate) fn folds_hh_bias(&self, row: usize, hidden: usize) -> bool {
        match self {
            CellKind::Gru(c) => gru::folds_hh_bias(c, row, hidden),
            _ => true,
        }
    }

    /// The number of row passes k of a step, forward and backward (see the module docs: a
    /// step is product 0, row pass 0, …, row pass k − 1, product k).
    pub(crate) fn row_passes(&self) -> usize {
        match self {
            CellKind::Gru(c) if c.reset == ResetPlacement::BeforeMatmul => 2,
            _ => 1,
        }
    }

    /// Product `k` of a forward step, over all its rows.
    pub(crate) fn forward_product<T: Float>(
        &self,
        k: usize,
        w: &StepWeights<'_, T>,
        s: &mut FwdStep<'_, T>,
    ) {
        match self {
            CellKind::Lstm(c) => lstm::forward_product(c, k, w, s),
            CellKind::Gru(c) => gru::forward_product(c, k, w, s),
            CellKind::Rnn(_) => rnn::forward_product(k, w, s),
        }
    }

    /// Row pass `k` of a forward step, over the rows of `s`.
    pub(crate) fn forward_rows<T: Float>(
        &self,
        k: usize,
        w: &StepWeights<'_, T>,
        s: FwdStep<'_, T>,
    ) {
        match self {
            CellKind::Lstm(c) => lstm::forward_rows(c, w, s),
            CellKind::Gru(c) => gru::forward_rows(c, k, w, s),
            CellKind::Rnn(c) => rnn::forward_rows(c, w, s),
        }
    }

    /// Product `k` of a backward step, over all its rows.
    pub(crate) fn backward_product<T: Float>(
        &self,
        k: usize,
        w: &StepWeights<'_, T>,
        s: &mut BwdStep<'_, T>,
    ) {
        match self {
            CellKind::Lstm(c) => lstm::backward_product(c, k, w, s),
            CellKind::Gru(c) => gru::backward_product(c, k, w, s),
            CellKind::Rnn(_) => rnn::backward_product(k, w, s),
        }
    }

    /// Row pass `k` of a backward step, over the rows of `s`.
    pub(crate) fn backward_rows<T: Float>(
        &self,
        k: usize,
        w: &StepWeights<'_, T>,
        s: BwdStep<'_, T>,
    ) {
        match self {
            CellKind::Lstm(c) => lstm::backward_rows(c, w, s),
            CellKind::Gru(c) => gru::backward_rows(c, k, w, s),
            CellKind::Rnn(c) => rnn::backward_rows(c, w, s),
        }
    }

    /// What (1)ᵀ's recurrent part reads (see [`RecurrentGrad`]).
    pub(crate) fn recurrent_grad<'a, T>(
        &self,
        hidden: usize,
        s: &Slabs<'a, T>,
    ) -> RecurrentGrad<'a, T> {
        match self {
            CellKind::Gru(c) => gru::recurrent_grad(c, hidden, s),
            CellKind::Lstm(c) if c.layer_norm => lstm::recurrent_grad(hidden, s),
            _ => RecurrentGrad {
                dq: None,
                other: None,
                bias: None,
            },
        }
    }

    /// The weight gradients after the loop that are the cell's own: those of `g` that the
    /// driver's (1)ᵀ has not taken (it takes `W_ih`, `W_hh` and both biases).
    pub(crate) fn weight_grads<T: Float>(
        &self,
        w: &StepWeights<'_, T>,
        s: &Slabs<'_, T>,
        g: Block<&mut [T]>,
    ) {
        match self {
            CellKind::Lstm(c) => lstm::weight_grads(c, w, s, g),
            CellKind::Gru(c) => gru::weight_grads(c, w.hidden, s, g),
            // (1)ᵀ is all of an RNN's
            CellKind::Rnn(_) => {}
        }
    }
}
