//! The sequence driver: runs one direction of one layer over a whole batch of sequences.
//! Written once for every cell and both directions.
//!
//! Layout, time-major throughout (`rows = seq_len * batch`, row `t * batch + b`):
//! - the batch is sorted by length (longest first) by the caller, so the rows still running at
//!   time t are a prefix `0..active[t]`: every step product runs on exactly the live rows;
//! - states live in `seq_len + 1` slots. Forward: the state before step t is slot t, after it
//!   slot t + 1. Reverse: before is slot t + 1, after is slot t. Either way the states before
//!   all steps, and after all steps, are contiguous `[rows, ·]` slabs, which is what the
//!   weight-gradient products after the loop read. Rows that are not running at t copy their
//!   state across, so the final slot holds every sequence's state at its own last step.
//!
//! Forward: one GEMM for the input projection of all steps (biases folded in), then per step
//! the cell's one recurrent product and one fused elementwise pass. Backward: per step the
//! cell's elementwise pass and its product for dh_prev; after the loop one GEMM each for the
//! input gradient and every weight gradient.
//!
//! Recurrent dropout ([`DirSpec::rec_mask`]): before each step the live rows of h_prev are
//! multiplied by the mask into one buffer sized before the loop, which the cell's product
//! reads; the backward builds the masked states of all steps once, for the steps and for the
//! weight-gradient products after the loop.
//!
//! Streaming ([`DirSpec::step`]): the same cell step on one time step's rows, over a
//! [`DirStep`] that holds the packed recurrent weights, the folded bias and every buffer the
//! step writes, all sized once by [`DirSpec::prepare`], so that a step allocates nothing of
//! its own (see [`DirSpec::step`] for what the `gemm` crate does at batch > 1).

use crate::Float;
use crate::cell::{BwdStep, CellKind, FwdStep, RecurrentGrads, Slabs, StepWeights};
use crate::kernel::{Accumulate, Mat, add_column_sums, matmul};
use crate::layer::params::Block;

/// What one (layer, direction) runs on.
pub(crate) struct DirSpec<'a, T> {
    pub cell: &'a CellKind,
    pub w: Block<&'a [T]>,
    pub input_size: usize,
    pub hidden: usize,
    pub h_out: usize,
    pub reverse: bool,
    pub seq_len: usize,
    pub batch: usize,
    /// rows running at each time t (a prefix of the sorted batch)
    pub active: &'a [usize],
    pub leak: T,
    /// recurrent-dropout mask `[batch, R]` (sorted rows; 0 or 1/(1−p)), or `None`
    pub rec_mask: Option<&'a [T]>,
}

/// What the forward pass of one direction keeps for the backward.
#[derive(Clone, Debug)]
pub(crate) struct DirTape<T> {
    /// `[seq_len + 1, batch, R]`
    pub h: Vec<T>,
    /// `[seq_len + 1, batch, H]` (LSTM) or empty
    pub c: Vec<T>,
    /// `[seq_len, batch, G*H]` gate activations
    pub gates: Vec<T>,
    /// `[seq_len, batch, aux]` per cell
    pub aux: Vec<T>,
    /// `[seq_len, batch, G*H]` the clamp record of ONNX `clip`, or empty
    pub keep: Vec<T>,
    /// `[seq_len, batch, H]` LSTM projection input, or empty
    pub m: Vec<T>,
}

/// `W_hhᵀ` and `W_hrᵀ` as the forward step product reads them (see [`DirSpec::pack`]).
#[derive(Clone, Debug)]
struct Packed<T> {
    /// batch 1: the stored matrices are read through transposed views and nothing is packed
    single_row: bool,
    /// `[R, G*H]` row-major, or empty
    w_hh_t: Vec<T>,
    /// `[H, P]` row-major, or empty
    w_hr_t: Vec<T>,
}

/// One direction made ready to stream (see [`DirSpec::prepare`]): its packed weights, its
/// folded bias and the buffers of one step, `[batch, ·]` each.
#[derive(Clone, Debug)]
pub(crate) struct DirStep<T> {
    packed: Packed<T>,
    /// `W_ihᵀ` `[input_size, G*H]` row-major when batch > 1, else empty (see
    /// [`DirSpec::prepare`])
    w_ih_t: Vec<T>,
    /// `[G*H]`
    bias: Vec<T>,
    /// `[batch, G*H]`
    gates: Vec<T>,
    aux: Vec<T>,
    keep: Vec<T>,
    m: Vec<T>,
    scratch: Vec<T>,
}

impl<T: Float> DirSpec<'_, T> {
    fn gh(&self) -> usize {
        self.cell.gate_count() * self.hidden
    }

    fn prev_slot(&self, t: usize) -> usize {
        t + usize::from(self.reverse)
    }

    fn cur_slot(&self, t: usize) -> usize {
        t + usize::from(!self.reverse)
    }

    /// The slot holding the initial state, and the one holding the final state.
    pub fn first_slot(&self) -> usize {
        if self.reverse { self.seq_len } else { 0 }
    }

    pub fn last_slot(&self) -> usize {
        if self.reverse { 0 } else { self.seq_len }
    }

    /// Time index of the k-th step in this direction's processing order.
    fn time_of(&self, k: usize) -> usize {
        if self.reverse {
            self.seq_len - 1 - k
        } else {
            k
        }
    }

    fn has_c(&self) -> bool {
        self.cell.has_cell_state()
    }

    fn step_weights<'b>(&'b self, w_hh_t: Mat<'b, T>, w_hr_t: Mat<'b, T>) -> StepWeights<'b, T> {
        StepWeights {
            hidden: self.hidden,
            h_out: self.h_out,
            w_hh: self.w.w_hh,
            w_hh_t,
            b_hh: self.w.b_hh,
            w_hr: self.w.w_hr.unwrap_or(&[]),
            w_hr_t,
            p_i: self.w.p_i,
            p_f: self.w.p_f,
            p_o: self.w.p_o,
            leak: self.leak,
        }
    }

    /// Runs the direction over `x` (`[rows, input_size]`) from `h0` (`[batch, R]`) and `c0`
    /// (`[batch, H]`, LSTM).
    pub fn forward(&self, x: &[T], h0: &[T], c0: &[T]) -> DirTape<T> {
        let (tl, bs, h, r) = (self.seq_len, self.batch, self.hidden, self.h_out);
        let gh = self.gh();
        let rows = tl * bs;
        let widths = self.cell.slab_widths(h);

        // The recurrent weights, packed once per call into the layout the step product reads
        // best (see `pack`).
        let packed = self.pack();
        let sw = self.packed_step_weights(&packed);

        // (1) the input projection of every step: one GEMM, biases folded in.
        let bias = self.input_bias();
        let mut gates = Vec::with_capacity(rows * gh);
        for _ in 0..rows {
            gates.extend_from_slice(&bias);
        }
        matmul(
            &mut gates,
            gh,
            Mat::rows(x, rows, self.input_size, self.input_size),
            Mat::rows(self.w.w_ih, gh, self.input_size, self.input_size).t(),
            Accumulate::Add,
        );

        let mut hs = vec![T::zero(); (tl + 1) * bs * r];
        let first = self.first_slot();
        hs[first * bs * r..(first + 1) * bs * r].copy_from_slice(h0);
        let mut cs = Vec::new();
        if self.has_c() {
            cs = vec![T::zero(); (tl + 1) * bs * h];
            cs[first * bs * h..(first + 1) * bs * h].copy_from_slice(c0);
        }
        let mut aux = vec![T::zero(); rows * widths.aux];
        let mut keep = vec![T::zero(); rows * widths.keep];
        let mut m = vec![T::zero(); rows * widths.m];
        let mut scratch = vec![T::zero(); bs * widths.fwd_scratch];
        // recurrent dropout: each step's masked state m ⊙ h_prev, the product's operand
        let mut h_rec = vec![T::zero(); if self.rec_mask.is_some() { bs * r } else { 0 }];

        for k in 0..tl {
            let t = self.time_of(k);
            let n = self.active[t];
            let (h_prev, h_cur) = slots(&mut hs, bs * r, self.prev_slot(t), self.cur_slot(t));
            let (c_prev, c_cur) = if self.has_c() {
                slots(&mut cs, bs * h, self.prev_slot(t), self.cur_slot(t))
            } else {
                (&[][..], &mut [][..])
            };
            // A step where no sequence is running (max(lengths) < seq_len) only carries.
            if n > 0 {
                let h_rec: &[T] = match self.rec_mask {
                    Some(mask) => {
                        let hr = &mut h_rec[..n * r];
                        for ((d, &hp), &m) in hr.iter_mut().zip(&h_prev[..n * r]).zip(mask) {
                            *d = hp * m;
                        }
                        hr
                    }
                    None => &h_prev[..n * r],
                };
                self.cell.forward_step(
                    &sw,
                    FwdStep {
                        n,
                        h_prev: &h_prev[..n * r],
                        h_rec,
                        c_prev: if self.has_c() {
                            &c_prev[..n * h]
                        } else {
                            c_prev
                        },
                        h: &mut h_cur[..n * r],
                        c: if self.has_c() {
                            &mut c_cur[..n * h]
                        } else {
                            c_cur
                        },
                        gates: &mut gates[t * bs * gh..(t * bs + n) * gh],
                        aux: &mut aux[t * bs * widths.aux..(t * bs + n) * widths.aux],
                        keep: &mut keep[t * bs * widths.keep..(t * bs + n) * widths.keep],
                        m: &mut m[t * bs * widths.m..(t * bs + n) * widths.m],
                        scratch: &mut scratch[..n * widths.fwd_scratch],
                    },
                );
            }
            // Sequences that have ended (or, in reverse, not yet begun) carry their state.
            h_cur[n * r..].copy_from_slice(&h_prev[n * r..]);
            if self.has_c() {
                c_cur[n * h..].copy_from_slice(&c_prev[n * h..]);
            }
        }
        DirTape {
            h: hs,
            c: cs,
            gates,
            aux,
            keep,
            m,
        }
    }

    /// `W_hhᵀ` and `W_hrᵀ` in the layout the forward step product reads best, for `batch`
    /// rows. A single row (streaming at batch 1) reads them best as they are stored: the
    /// product is then a dot product per weight row, and packing would cost more than it.
    fn pack(&self) -> Packed<T> {
        let (gh, h, r) = (self.gh(), self.hidden, self.h_out);
        let single_row = self.batch == 1;
        Packed {
            single_row,
            w_hh_t: if single_row {
                Vec::new()
            } else {
                transpose(self.w.w_hh, gh, r)
            },
            w_hr_t: match self.w.w_hr {
                Some(w) if !single_row => transpose(w, r, h),
                _ => Vec::new(),
            },
        }
    }

    /// The step weights with the forward product's operands from `packed` (made by
    /// [`Self::pack`] for this direction).
    fn packed_step_weights<'b>(&'b self, packed: &'b Packed<T>) -> StepWeights<'b, T> {
        let (gh, h, r) = (self.gh(), self.hidden, self.h_out);
        let view = packed.single_row;
        self.step_weights(
            transposed(view, self.w.w_hh, &packed.w_hh_t, gh, r),
            transposed(view, self.w.w_hr.unwrap_or(&[]), &packed.w_hr_t, r, h),
        )
    }

    /// The bias row `[G*H]` that starts every step's gate pre-activations: `b_ih`, plus the
    /// rows of `b_hh` the cell lets the input projection carry.
    fn input_bias(&self) -> Vec<T> {
        let h = self.hidden;
        let mut bias = vec![T::zero(); self.gh()];
        if let Some(b) = self.w.b_ih {
            bias.copy_from_slice(b);
        }
        if let Some(b) = self.w.b_hh {
            for (row, v) in bias.iter_mut().enumerate() {
                if self.cell.folds_hh_bias(row, h) {
                    *v += b[row];
                }
            }
        }
        bias
    }

    /// Everything [`Self::step`] needs besides the states, sized for `batch` rows: the packed
    /// weights, the folded bias and the step's buffers. Reads neither `seq_len` nor `active`.
    ///
    /// Besides the recurrent weights, a batch > 1 also packs `W_ihᵀ`: the whole-sequence
    /// input product runs over `seq_len * batch` rows and packs its operand inside the GEMM,
    /// but a step's few rows read the stored `[G*H, input_size]` matrix through a transposed
    /// view badly (measured, LSTM H = I = 256, 2 threads: 375 µs per step at batch 4 with the
    /// view, 51 µs with `W_ihᵀ` packed once; batch 16: 480 → 125 µs). Batch 1 reads it best
    /// as stored, as it does `W_hh`.
    pub fn prepare(&self) -> DirStep<T> {
        let (bs, gh) = (self.batch, self.gh());
        let widths = self.cell.slab_widths(self.hidden);
        DirStep {
            packed: self.pack(),
            w_ih_t: if bs == 1 {
                Vec::new()
            } else {
                transpose(self.w.w_ih, gh, self.input_size)
            },
            bias: self.input_bias(),
            gates: vec![T::zero(); bs * gh],
            aux: vec![T::zero(); bs * widths.aux],
            keep: vec![T::zero(); bs * widths.keep],
            m: vec![T::zero(); bs * widths.m],
            scratch: vec![T::zero(); bs * widths.fwd_scratch],
        }
    }

    /// One time step of all `batch` rows (streaming): `x` is `[batch, input_size]`, the states
    /// before it `h_prev` `[batch, R]` and `c_prev` `[batch, H]` (LSTM, else empty), after it
    /// `h` and `c`. The arithmetic of [`Self::forward`] on a one-step sequence, over the
    /// buffers of `ds` (made by [`Self::prepare`] for this direction): bit for bit at batch 1;
    /// at batch > 1 the input product reads the packed `W_ihᵀ`, which the `gemm` crate may
    /// round differently. Reads neither `seq_len` nor `active`.
    ///
    /// Allocates nothing of its own. At batch 1 every product is a matrix-vector product and
    /// nothing allocates at all (`tests/stepper.rs` counts); at batch > 1 the `gemm` crate
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
        for row in ds.gates.chunks_exact_mut(gh) {
            row.copy_from_slice(&ds.bias);
        }
        matmul(
            &mut ds.gates,
            gh,
            Mat::rows(x, bs, n_in, n_in),
            transposed(bs == 1, self.w.w_ih, &ds.w_ih_t, gh, n_in),
            Accumulate::Add,
        );
        let sw = self.packed_step_weights(&ds.packed);
        self.cell.forward_step(
            &sw,
            FwdStep {
                n: bs,
                h_prev,
                h_rec: h_prev,
                c_prev,
                h,
                c,
                gates: &mut ds.gates,
                aux: &mut ds.aux,
                keep: &mut ds.keep,
                m: &mut ds.m,
                scratch: &mut ds.scratch,
            },
        );
    }

    /// Writes the direction's outputs into `y` (`[rows, ld]`) at column `off`; rows past a
    /// sequence's end stay as they are (zero).
    pub fn write_output(&self, tape: &DirTape<T>, y: &mut [T], ld: usize, off: usize) {
        let (bs, r) = (self.batch, self.h_out);
        for t in 0..self.seq_len {
            let slot = &tape.h[self.cur_slot(t) * bs * r..];
            for b in 0..self.active[t] {
                let row = t * bs + b;
                y[row * ld + off..row * ld + off + r].copy_from_slice(&slot[b * r..(b + 1) * r]);
            }
        }
    }

    /// Final states `([batch, R], [batch, H])`.
    pub fn final_state<'t>(&self, tape: &'t DirTape<T>) -> (&'t [T], &'t [T]) {
        let (bs, r, h) = (self.batch, self.h_out, self.hidden);
        let last = self.last_slot();
        let hn = &tape.h[last * bs * r..(last + 1) * bs * r];
        let cn = if self.has_c() {
            &tape.c[last * bs * h..(last + 1) * bs * h]
        } else {
            &[][..]
        };
        (hn, cn)
    }

    /// BPTT through the direction. `dy` is the gradient of the layer output (`[rows, ld]`,
    /// this direction's columns at `off`); `dh_n`, `dc_n` those of the final states. Adds the
    /// parameter gradients into `g`, writes (or adds, per `dx_acc`) the input gradient into
    /// `dx` (`[rows, input_size]`) and returns the initial-state gradients.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[T],
        tape: &DirTape<T>,
        (dy, ld, off): (&[T], usize, usize),
        dh_n: &[T],
        dc_n: &[T],
        g: Block<&mut [T]>,
        dx: &mut [T],
        dx_acc: Accumulate,
    ) -> (Vec<T>, Vec<T>) {
        let (tl, bs, h, r) = (self.seq_len, self.batch, self.hidden, self.h_out);
        let gh = self.gh();
        let rows = tl * bs;
        let widths = self.cell.slab_widths(h);
        let sw = self.step_weights(Mat::rows(&[], 0, 0, 0), Mat::rows(&[], 0, 0, 0));

        let mut dh = dh_n.to_vec();
        let mut dc = if self.has_c() {
            dc_n.to_vec()
        } else {
            Vec::new()
        };
        let mut dgates = vec![T::zero(); rows * gh];
        let mut dalt = vec![T::zero(); rows * widths.dalt];
        let mut scratch = vec![T::zero(); bs * widths.bwd_scratch];
        let prev0 = self.prev_slot(0);
        let h_prev_slab = &tape.h[prev0 * bs * r..(prev0 + tl) * bs * r];
        // Recurrent dropout: the states as the recurrent product read them, m ⊙ h_prev for
        // every step (one pass before the loop; the mask is the same at every step), and
        // scratch for the gradient that reaches them.
        let (h_rec_slab, mask, mut dh_rec) = match self.rec_mask {
            Some(mask) => {
                let mut hm = h_prev_slab.to_vec();
                for row in hm.chunks_exact_mut(bs * r) {
                    for (v, &m) in row.iter_mut().zip(mask) {
                        *v *= m;
                    }
                }
                (hm, mask, vec![T::zero(); bs * r])
            }
            None => (Vec::new(), &[][..], Vec::new()),
        };
        let h_rec_all: &[T] = if mask.is_empty() {
            h_prev_slab
        } else {
            &h_rec_slab
        };

        for k in (0..tl).rev() {
            let t = self.time_of(k);
            let n = self.active[t];
            for b in 0..n {
                let src = &dy[(t * bs + b) * ld + off..(t * bs + b) * ld + off + r];
                for (d, &s) in dh[b * r..(b + 1) * r].iter_mut().zip(src) {
                    *d += s;
                }
            }
            let ps = self.prev_slot(t);
            let row0 = t * bs;
            if n > 0 {
                self.cell.backward_step(
                    &sw,
                    BwdStep {
                        n,
                        h_prev: &tape.h[ps * bs * r..(ps * bs + n) * r],
                        h_rec: &h_rec_all[row0 * r..(row0 + n) * r],
                        c_prev: if self.has_c() {
                            &tape.c[ps * bs * h..(ps * bs + n) * h]
                        } else {
                            &[]
                        },
                        gates: &tape.gates[row0 * gh..(row0 + n) * gh],
                        aux: &tape.aux[row0 * widths.aux..(row0 + n) * widths.aux],
                        keep: &tape.keep[row0 * widths.keep..(row0 + n) * widths.keep],
                        mask: if mask.is_empty() {
                            mask
                        } else {
                            &mask[..n * r]
                        },
                        dh_rec: if mask.is_empty() {
                            &mut []
                        } else {
                            &mut dh_rec[..n * r]
                        },
                        dh: &mut dh[..n * r],
                        dc: if self.has_c() {
                            &mut dc[..n * h]
                        } else {
                            &mut []
                        },
                        dgates: &mut dgates[row0 * gh..(row0 + n) * gh],
                        dalt: &mut dalt[row0 * widths.dalt..(row0 + n) * widths.dalt],
                        scratch: &mut scratch[..n * widths.bwd_scratch],
                    },
                );
            }
        }

        // After the loop: every weight gradient is one product over all steps.
        let Block {
            w_ih: dw_ih,
            w_hh: dw_hh,
            b_ih: db_ih,
            b_hh: db_hh,
            w_hr: dw_hr,
            p_i,
            p_f,
            p_o,
        } = g;
        let cur0 = self.cur_slot(0);
        let c_slab = |slot: usize| {
            if self.has_c() {
                &tape.c[slot * bs * h..(slot + tl) * bs * h]
            } else {
                &[][..]
            }
        };
        self.cell.recurrent_grads(
            &sw,
            &Slabs {
                rows,
                h_prev: h_rec_all,
                c_prev: c_slab(prev0),
                c: c_slab(cur0),
                aux: &tape.aux,
                m: &tape.m,
                dgates: &dgates,
                dalt: &dalt,
            },
            RecurrentGrads {
                w_hh: dw_hh,
                b_hh: db_hh,
                w_hr: dw_hr,
                p_i,
                p_f,
                p_o,
            },
        );
        let da = Mat::rows(&dgates[..], rows, gh, gh);
        let n_in = self.input_size;
        // (1)ᵀ dX = da W_ih;  dW_ih += daᵀ X;  db_ih += Σ da
        matmul(dx, n_in, da, Mat::rows(self.w.w_ih, gh, n_in, n_in), dx_acc);
        matmul(
            dw_ih,
            n_in,
            da.t(),
            Mat::rows(x, rows, n_in, n_in),
            Accumulate::Add,
        );
        if let Some(db) = db_ih {
            add_column_sums(db, &dgates, rows, gh);
        }
        (dh, dc)
    }
}

/// The transpose of a stored `[rows, cols]` matrix: a strided view of it, or its packed copy.
fn transposed<'a, T>(
    view: bool,
    stored: &'a [T],
    packed: &'a [T],
    rows: usize,
    cols: usize,
) -> Mat<'a, T> {
    if view {
        Mat::rows(stored, rows, cols, cols).t()
    } else {
        Mat::rows(packed, cols, rows, rows)
    }
}

/// `[rows, cols]` → `[cols, rows]`, in square tiles so that neither side is walked with a
/// page-sized stride (a plain loop costs ~1.3 ms for a 1024 × 256 matrix here, the tiled one
/// a small fraction of that).
pub(crate) fn transpose<T: Float>(a: &[T], rows: usize, cols: usize) -> Vec<T> {
    const TILE: usize = 32;
    let mut out = vec![T::zero(); rows * cols];
    for i0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            for i in i0..(i0 + TILE).min(rows) {
                for j in j0..(j0 + TILE).min(cols) {
                    out[j * rows + i] = a[i * cols + j];
                }
            }
        }
    }
    out
}

/// Two distinct slots of a slotted buffer: `(&slot[prev], &mut slot[cur])`.
fn slots<T>(v: &mut [T], stride: usize, prev: usize, cur: usize) -> (&[T], &mut [T]) {
    debug_assert_ne!(prev, cur);
    if prev < cur {
        let (a, b) = v.split_at_mut(cur * stride);
        (&a[prev * stride..(prev + 1) * stride], &mut b[..stride])
    } else {
        let (a, b) = v.split_at_mut(prev * stride);
        (&b[..stride], &mut a[cur * stride..(cur + 1) * stride])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn transpose_over_awkward_sizes() {
        for (rows, cols) in [
            (0, 3),
            (1, 1),
            (1, 70),
            (33, 1),
            (31, 65),
            (64, 64),
            (100, 37),
        ] {
            let a: Vec<f64> = (0..rows * cols).map(|v| v as f64).collect();
            let t = super::transpose(&a, rows, cols);
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(t[j * rows + i], a[i * cols + j]);
                }
            }
        }
    }
}
