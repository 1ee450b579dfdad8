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
use crate::cell::{BwdStep, CellKind, FwdStep, Slabs, StepWeights, WeightGrads};
use std::sync::Arc;

use crate::kernel::pair::{self, Pair};
use crate::kernel::split::{SharedRows, in_part, row_parts, run_parts};
use crate::kernel::{Accumulate, Mat, Panels, add_column_sums, matmul, matmul_bias};
use crate::layer::WeightFormat;
use crate::layer::params::Block;
use crate::layer::workspace::Workspace;

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
    /// the forward weights already packed ([`DirSpec::forward_panels`]), or `None`
    pub panels: Option<&'a ForwardPanels>,
    /// the format of the forward products' weights (bf16: inference only)
    pub format: WeightFormat,
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

impl<T> DirTape<T> {
    /// Hands every slab back to `ws`.
    pub fn recycle(self, ws: &Workspace<T>) {
        for v in [self.h, self.c, self.gates, self.aux, self.keep, self.m] {
            ws.give(v);
        }
    }
}

/// `W_hhᵀ` and `W_hrᵀ` as the forward step product reads them (see [`DirSpec::pack`]).
#[derive(Clone, Debug)]
struct Packed<T> {
    /// the stored matrices are read through transposed views (batch 1, or panels): nothing
    /// is transposed
    view: bool,
    /// `[R, G*H]` row-major, or empty
    w_hh_t: Vec<T>,
    /// `[H, P]` row-major, or empty
    w_hr_t: Vec<T>,
    /// `W_hhᵀ` for the panel kernel (`f32` with AVX-512F), else `None`
    w_hh_p: Option<Arc<Panels>>,
    /// `W_hrᵀ` likewise
    w_hr_p: Option<Arc<Panels>>,
}

/// The forward products' weights of one (layer, direction) packed for the panel kernel in
/// f32: what [`crate::Recurrent`] keeps between calls (until its parameters change), so
/// that inference does not repack them on every call.
#[derive(Clone, Debug, Default)]
pub(crate) struct ForwardPanels {
    /// `W_ihᵀ`
    w_ih: Option<Arc<Panels>>,
    /// `W_hhᵀ`
    w_hh: Option<Arc<Panels>>,
    /// `W_hrᵀ`
    w_hr: Option<Arc<Panels>>,
}

/// The backward step product's right operands, `W_hh` `[G*H, R]` and `W_hr` `[P, H]` as
/// stored, packed for the panel kernel where there is one (see [`DirSpec::pack_backward`]).
#[derive(Clone, Debug, Default)]
struct PackedBwd {
    w_hh: Option<Panels>,
    w_hr: Option<Panels>,
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

    /// Whether the gate activations are the new state itself (a plain RNN without leak:
    /// h = act(a)): then the tape keeps them once, in its states.
    fn gates_are_h(&self) -> bool {
        matches!(self.cell, CellKind::Rnn(_)) && self.leak == T::one()
    }

    fn step_weights<'b>(
        &'b self,
        w_hh_t: Mat<'b, T>,
        w_hr_t: Mat<'b, T>,
        bwd: Option<&'b PackedBwd>,
    ) -> StepWeights<'b, T> {
        let (gh, h, r) = (self.gh(), self.hidden, self.h_out);
        StepWeights {
            hidden: self.hidden,
            h_out: self.h_out,
            w_hh: self.w.w_hh,
            w_hh_b: Mat::rows(self.w.w_hh, gh, r, r).with_panels(bwd.and_then(|b| b.w_hh.as_ref())),
            w_hh_t,
            b_hh: self.w.b_hh,
            w_hr_b: match self.w.w_hr {
                Some(w) => Mat::rows(w, r, h, h).with_panels(bwd.and_then(|b| b.w_hr.as_ref())),
                None => Mat::rows(&[], 0, 0, 0),
            },
            w_hr_t,
            p_i: self.w.p_i,
            p_f: self.w.p_f,
            p_o: self.w.p_o,
            leak: self.leak,
        }
    }

    /// Runs the direction over `x` (`[rows, input_size]`) from `h0` (`[batch, R]`) and `c0`
    /// (`[batch, H]`, LSTM).
    ///
    /// With `keep` false (inference) the tape keeps only the states, and where the panel
    /// kernel runs and the rows are split between threads, each step projects its own rows'
    /// input inside the loop, into a gate buffer of one step: no `[rows, G*H]` slab is
    /// written and read back. The sums are the same
    /// (each row's product starts from the bias and runs in k order whatever the rows around
    /// it), so inference gives the training forward's numbers bit for bit.
    ///
    /// The slabs come from `ws` (see [`DirTape::recycle`]).
    pub fn forward(
        &self,
        x: &[T],
        h0: &[T],
        c0: &[T],
        keep: bool,
        ws: &Workspace<T>,
    ) -> DirTape<T> {
        let (tl, bs, h, r) = (self.seq_len, self.batch, self.hidden, self.h_out);
        let gh = self.gh();
        let rows = tl * bs;
        let widths = self.cell.slab_widths(h);

        // The recurrent weights, packed once per call into the layout the step product reads
        // best (see `pack`).
        debug_assert!(
            !keep || self.format == WeightFormat::F32,
            "training runs in f32"
        );
        let own;
        let fp = match self.panels {
            Some(fp) => fp,
            None => {
                own = self.forward_panels(self.format);
                &own
            }
        };
        let packed = self.pack_with(self.format, Some(fp));
        let sw = self.packed_step_weights(&packed);

        // (1) the input projection of every step: one GEMM, biases folded in (inference
        // with panels: per step, inside the loop).
        let bias = self.input_bias();
        let n_in = self.input_size;
        let w_ih_t = Mat::rows(self.w.w_ih, gh, n_in, n_in)
            .t()
            .with_panels(fp.w_ih.as_deref());
        // Per step only when the rows are split between threads: a small batch's slab is
        // small, and projecting per step would read W_ih again at every step, which is what
        // bounds a small batch's step.
        let parts = row_parts(bs);
        let per_step = !keep && fp.w_ih.is_some() && parts.len() > 1;
        let slab_rows = if keep { rows } else { 0 };
        // Every slab below is written before it is read: the projection writes every row of
        // `gates`, each step writes (or carries) every row of its state slot, and the rows
        // of the kept slabs that a step does not run are zeroed at that step.
        let mut gates = ws.take(if per_step { 0 } else { rows * gh });

        let mut hs = ws.take((tl + 1) * bs * r);
        let first = self.first_slot();
        hs[first * bs * r..(first + 1) * bs * r].copy_from_slice(h0);
        let mut cs = Vec::new();
        if self.has_c() {
            cs = ws.take((tl + 1) * bs * h);
            cs[first * bs * h..(first + 1) * bs * h].copy_from_slice(c0);
        }
        let mut aux = ws.take(slab_rows * widths.aux);
        let mut clamp = ws.take(slab_rows * widths.keep);
        let mut m = ws.take(slab_rows * widths.m);

        // The batch's rows split between threads for the whole loop (see `kernel::split`):
        // part `rows` reads and writes only those rows of every slab.
        // width of the cell-state slab's rows (0: no cell state, every piece empty)
        let ch = if self.has_c() { h } else { 0 };
        let (hs_p, cs_p) = (SharedRows::new(&mut hs), SharedRows::new(&mut cs));
        let (gates_p, aux_p) = (SharedRows::new(&mut gates), SharedRows::new(&mut aux));
        let (keep_p, m_p) = (SharedRows::new(&mut clamp), SharedRows::new(&mut m));
        let paired = pair_worth(parts.len(), packed.w_hh_p.is_some(), bs * gh * r);
        // The projection runs inside the pair's scope too: a small batch's pair splits it
        // by columns, and its helper is then awake when the loop starts.
        with_pair_if(paired, || {
            if !per_step {
                // SAFETY: no piece of the slab is held before the loop.
                let all = unsafe { gates_p.piece_mut(0..gates_p.len()) };
                matmul_bias(all, gh, Mat::rows(x, rows, n_in, n_in), w_ih_t, &bias);
            }
            run_parts(parts.len(), |p| {
                let (r0, r1) = (parts[p].start, parts[p].end);
                let mut scratch = vec![T::zero(); (r1 - r0) * widths.fwd_scratch];
                // inference: one step's gates and saved quantities, reused at every step
                let step_rows = if keep { 0 } else { r1 - r0 };
                let mut gates_step = vec![T::zero(); if per_step { (r1 - r0) * gh } else { 0 }];
                let mut aux_step = vec![T::zero(); step_rows * widths.aux];
                let mut keep_step = vec![T::zero(); step_rows * widths.keep];
                let mut m_step = vec![T::zero(); step_rows * widths.m];
                // recurrent dropout: each step's masked state m ⊙ h_prev, the product's operand
                let mut h_rec = vec![
                    T::zero();
                    if self.rec_mask.is_some() {
                        (r1 - r0) * r
                    } else {
                        0
                    }
                ];
                // Row ranges `[row0 + r0, row0 + r0 + n)` of a slab `w` values wide.
                let span = |row0: usize, n: usize, w: usize| (row0 + r0) * w..(row0 + r0 + n) * w;
                for k in 0..tl {
                    let t = self.time_of(k);
                    // rows of this part still running at t
                    let n = self.active[t].clamp(r0, r1) - r0;
                    let (prev, cur) = (self.prev_slot(t) * bs, self.cur_slot(t) * bs);
                    // SAFETY: every piece below lies in rows r0..r1 of its slab (this part's
                    // alone), and the two slots of a state slab are distinct.
                    let (h_prev, h_cur, c_prev, c_cur) = unsafe {
                        (
                            hs_p.piece(span(prev, r1 - r0, r)),
                            hs_p.piece_mut(span(cur, r1 - r0, r)),
                            cs_p.piece(span(prev, r1 - r0, ch)),
                            cs_p.piece_mut(span(cur, r1 - r0, ch)),
                        )
                    };
                    // A step where none of the part's sequences is running only carries.
                    if n > 0 {
                        let h_rec: &[T] = match self.rec_mask {
                            Some(mask) => {
                                let hr = &mut h_rec[..n * r];
                                let mask = &mask[r0 * r..];
                                for ((d, &hp), &m) in hr.iter_mut().zip(&h_prev[..n * r]).zip(mask)
                                {
                                    *d = hp * m;
                                }
                                hr
                            }
                            None => &h_prev[..n * r],
                        };
                        let row0 = t * bs;
                        let gates = if per_step {
                            let g = &mut gates_step[..n * gh];
                            let xs = Mat::rows(&x[(row0 + r0) * n_in..], n, n_in, n_in);
                            matmul_bias(g, gh, xs, w_ih_t, &bias);
                            g
                        } else {
                            // SAFETY: as above.
                            unsafe { gates_p.piece_mut(span(row0, n, gh)) }
                        };
                        let (aux, clamp, m) = if keep {
                            // SAFETY: as above.
                            unsafe {
                                (
                                    aux_p.piece_mut(span(row0, n, widths.aux)),
                                    keep_p.piece_mut(span(row0, n, widths.keep)),
                                    m_p.piece_mut(span(row0, n, widths.m)),
                                )
                            }
                        } else {
                            (
                                &mut aux_step[..n * widths.aux],
                                &mut keep_step[..n * widths.keep],
                                &mut m_step[..n * widths.m],
                            )
                        };
                        self.cell.forward_step(
                            &sw,
                            FwdStep {
                                n,
                                h_prev: &h_prev[..n * r],
                                h_rec,
                                c_prev: &c_prev[..n * ch],
                                h: &mut h_cur[..n * r],
                                c: &mut c_cur[..n * ch],
                                gates,
                                aux,
                                keep: clamp,
                                m,
                                scratch: &mut scratch[..n * widths.fwd_scratch],
                            },
                        );
                    }
                    // Sequences that have ended (or, in reverse, not yet begun) carry their state
                    // and keep zeros in the slabs the weight gradients read whole.
                    h_cur[n * r..].copy_from_slice(&h_prev[n * r..]);
                    c_cur[n * ch..].copy_from_slice(&c_prev[n * ch..]);
                    if keep && n < r1 - r0 {
                        let idle = |w| span(t * bs + n, r1 - r0 - n, w);
                        // SAFETY: rows of this part at t that the step did not touch.
                        unsafe {
                            aux_p.piece_mut(idle(widths.aux)).fill(T::zero());
                            keep_p.piece_mut(idle(widths.keep)).fill(T::zero());
                            m_p.piece_mut(idle(widths.m)).fill(T::zero());
                        }
                    }
                }
            })
        });
        // a plain RNN's activations are its states, kept in `hs` already
        if !keep || self.gates_are_h() {
            ws.give(std::mem::take(&mut gates));
        }
        DirTape {
            h: hs,
            c: cs,
            gates,
            aux,
            keep: clamp,
            m,
        }
    }

    /// `W_hhᵀ` and `W_hrᵀ` in the layout the forward step product reads best, for `batch`
    /// rows: panels where the panel kernel runs (`f32` with AVX-512F, see
    /// [`crate::kernel::panels`]); otherwise, for the `gemm` crate, a row-major transposed
    /// copy, except for a single row (streaming at batch 1), which reads them best as they
    /// are stored: the product is then a dot product per weight row, and packing would cost
    /// more than it.
    /// With [`WeightFormat::Bf16`] the panels hold bf16 values (the caller has checked
    /// that they exist).
    /// `cached`: the panels already made for these weights in `format`.
    fn pack_with(&self, format: WeightFormat, cached: Option<&ForwardPanels>) -> Packed<T> {
        let (gh, h, r) = (self.gh(), self.hidden, self.h_out);
        let (w_hh_p, w_hr_p) = match cached {
            Some(fp) => (fp.w_hh.clone(), fp.w_hr.clone()),
            _ => (
                pack_panels::<T>(Mat::rows(self.w.w_hh, gh, r, r).t(), format).map(Arc::new),
                self.w
                    .w_hr
                    .and_then(|w| pack_panels::<T>(Mat::rows(w, r, h, h).t(), format))
                    .map(Arc::new),
            ),
        };
        let view = self.batch == 1 || w_hh_p.is_some();
        Packed {
            view,
            w_hh_t: if view {
                Vec::new()
            } else {
                transpose(self.w.w_hh, gh, r)
            },
            w_hr_t: match self.w.w_hr {
                Some(w) if !view => transpose(w, r, h),
                _ => Vec::new(),
            },
            w_hh_p,
            w_hr_p,
        }
    }

    /// The forward products' weights packed for the panel kernel in `format` (all `None`
    /// where it does not run).
    pub fn forward_panels(&self, format: WeightFormat) -> ForwardPanels {
        let (gh, h, r, n_in) = (self.gh(), self.hidden, self.h_out, self.input_size);
        let pack = |b: Mat<'_, T>| pack_panels::<T>(b, format).map(Arc::new);
        ForwardPanels {
            w_ih: pack(Mat::rows(self.w.w_ih, gh, n_in, n_in).t()),
            w_hh: pack(Mat::rows(self.w.w_hh, gh, r, r).t()),
            w_hr: self.w.w_hr.and_then(|w| pack(Mat::rows(w, r, h, h).t())),
        }
    }

    /// `W_hh` and `W_hr` packed for the backward step product, where the panel kernel runs.
    fn pack_backward(&self) -> PackedBwd {
        let (gh, h, r) = (self.gh(), self.hidden, self.h_out);
        PackedBwd {
            w_hh: T::pack_panels(Mat::rows(self.w.w_hh, gh, r, r)),
            w_hr: self
                .w
                .w_hr
                .and_then(|w| T::pack_panels(Mat::rows(w, r, h, h))),
        }
    }

    /// The step weights with the forward product's operands from `packed` (made by
    /// [`Self::pack`] for this direction).
    fn packed_step_weights<'b>(&'b self, packed: &'b Packed<T>) -> StepWeights<'b, T> {
        let (gh, h, r) = (self.gh(), self.hidden, self.h_out);
        let view = packed.view;
        self.step_weights(
            transposed(view, self.w.w_hh, &packed.w_hh_t, gh, r)
                .with_panels(packed.w_hh_p.as_deref()),
            transposed(view, self.w.w_hr.unwrap_or(&[]), &packed.w_hr_t, r, h)
                .with_panels(packed.w_hr_p.as_deref()),
            None,
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
    ///
    /// With [`WeightFormat::Bf16`] every weight matrix is packed in bf16 (see
    /// [`crate::kernel::Panels::pack_bf16`]); the caller has checked that the CPU runs it.
    pub fn prepare(&self, format: WeightFormat) -> DirStep<T> {
        let (bs, gh) = (self.batch, self.gh());
        let widths = self.cell.slab_widths(self.hidden);
        let w_ih_p = pack_panels::<T>(
            Mat::rows(self.w.w_ih, gh, self.input_size, self.input_size).t(),
            format,
        );
        DirStep {
            packed: self.pack_with(format, None),
            w_ih_t: if bs == 1 || w_ih_p.is_some() {
                Vec::new()
            } else {
                transpose(self.w.w_ih, gh, self.input_size)
            },
            w_ih_p,
            bias: self.input_bias(),
            gates: vec![T::zero(); bs * gh],
            aux: vec![T::zero(); bs * widths.aux],
            keep: vec![T::zero(); bs * widths.keep],
            m: vec![T::zero(); bs * widths.m],
            scratch: vec![T::zero(); bs * widths.fwd_scratch],
        }
    }

    /// Whether the step products of `ds` run on the panel kernel, and how many multiply-adds
    /// the recurrent one has (for [`stepper_pair`]).
    pub fn step_products(&self, ds: &DirStep<T>) -> (bool, usize) {
        (
            ds.packed.w_hh_p.is_some(),
            self.batch * self.gh() * self.h_out,
        )
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
            self.w.w_ih,
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

    /// Writes the direction's outputs into `y` (`[rows, ld]`) at column `off`, and zeros in
    /// the rows past a sequence's end.
    pub fn write_output(&self, tape: &DirTape<T>, y: &mut [T], ld: usize, off: usize) {
        let (bs, r) = (self.batch, self.h_out);
        for t in 0..self.seq_len {
            let slot = &tape.h[self.cur_slot(t) * bs * r..];
            for b in 0..bs {
                let row = t * bs + b;
                let out = &mut y[row * ld + off..row * ld + off + r];
                if b < self.active[t] {
                    out.copy_from_slice(&slot[b * r..(b + 1) * r]);
                } else {
                    // padding: zero, as PyTorch's pad_packed_sequence
                    out.fill(T::zero());
                }
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
        ws: &Workspace<T>,
    ) -> (Vec<T>, Vec<T>) {
        let (tl, bs, h, r) = (self.seq_len, self.batch, self.hidden, self.h_out);
        let gh = self.gh();
        let rows = tl * bs;
        let widths = self.cell.slab_widths(h);
        let packed = self.pack_backward();
        let sw = self.step_weights(
            Mat::rows(&[], 0, 0, 0),
            Mat::rows(&[], 0, 0, 0),
            Some(&packed),
        );

        let mut dh = dh_n.to_vec();
        let mut dc = if self.has_c() {
            dc_n.to_vec()
        } else {
            Vec::new()
        };
        // Written at every step, zeros in the rows a step does not run (the products after
        // the loop read them whole).
        let mut dgates = ws.take(rows * gh);
        let mut dalt = ws.take(rows * widths.dalt);
        let prev0 = self.prev_slot(0);
        let h_prev_slab = &tape.h[prev0 * bs * r..(prev0 + tl) * bs * r];
        // Recurrent dropout: the states as the recurrent product read them, m ⊙ h_prev for
        // every step (one pass before the loop; the mask is the same at every step).
        let (h_rec_slab, mask) = match self.rec_mask {
            Some(mask) => {
                let mut hm = h_prev_slab.to_vec();
                for row in hm.chunks_exact_mut(bs * r) {
                    for (v, &m) in row.iter_mut().zip(mask) {
                        *v *= m;
                    }
                }
                (hm, mask)
            }
            None => (Vec::new(), &[][..]),
        };
        let h_rec_all: &[T] = if mask.is_empty() {
            h_prev_slab
        } else {
            &h_rec_slab
        };
        let ch = if self.has_c() { h } else { 0 };

        // The batch's rows split between threads for the whole loop, as in the forward.
        let parts = row_parts(bs);
        let (dh_p, dc_p) = (SharedRows::new(&mut dh), SharedRows::new(&mut dc));
        let (dgates_p, dalt_p) = (SharedRows::new(&mut dgates), SharedRows::new(&mut dalt));
        let paired = pair_worth(parts.len(), packed.w_hh.is_some(), bs * gh * r);
        with_pair_if(paired, || {
            run_parts(parts.len(), |p| {
                let (r0, r1) = (parts[p].start, parts[p].end);
                let mut scratch = vec![T::zero(); (r1 - r0) * widths.bwd_scratch];
                // recurrent dropout: the gradient that reaches m ⊙ h_prev
                let mut dh_rec = vec![T::zero(); if mask.is_empty() { 0 } else { (r1 - r0) * r }];
                let span = |row0: usize, n: usize, w: usize| (row0 + r0) * w..(row0 + r0 + n) * w;
                // SAFETY: rows r0..r1 of the running gradients are this part's alone.
                let (dh, dc) = unsafe {
                    (
                        dh_p.piece_mut(span(0, r1 - r0, r)),
                        dc_p.piece_mut(span(0, r1 - r0, ch)),
                    )
                };
                for k in (0..tl).rev() {
                    let t = self.time_of(k);
                    let n = self.active[t].clamp(r0, r1) - r0;
                    let row0 = t * bs;
                    for b in 0..n {
                        let src = &dy[(row0 + r0 + b) * ld + off..][..r];
                        for (d, &s) in dh[b * r..(b + 1) * r].iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                    if n < r1 - r0 {
                        // SAFETY: rows of this part at t that the step does not touch.
                        unsafe {
                            let idle = |w| span(row0 + n, r1 - r0 - n, w);
                            dgates_p.piece_mut(idle(gh)).fill(T::zero());
                            dalt_p.piece_mut(idle(widths.dalt)).fill(T::zero());
                        }
                    }
                    if n == 0 {
                        continue;
                    }
                    let (ps, cs) = (self.prev_slot(t) * bs, self.cur_slot(t) * bs);
                    // SAFETY: rows of this part only, as above.
                    let (dgates, dalt) = unsafe {
                        (
                            dgates_p.piece_mut(span(row0, n, gh)),
                            dalt_p.piece_mut(span(row0, n, widths.dalt)),
                        )
                    };
                    self.cell.backward_step(
                        &sw,
                        BwdStep {
                            n,
                            h_prev: &tape.h[span(ps, n, r)],
                            h_rec: &h_rec_all[span(row0, n, r)],
                            c_prev: &tape.c[span(ps, n, ch)],
                            gates: if self.gates_are_h() {
                                &tape.h[span(cs, n, r)]
                            } else {
                                &tape.gates[span(row0, n, gh)]
                            },
                            aux: &tape.aux[span(row0, n, widths.aux)],
                            keep: &tape.keep[span(row0, n, widths.keep)],
                            mask: if mask.is_empty() {
                                mask
                            } else {
                                &mask[span(0, n, r)]
                            },
                            dh_rec: &mut dh_rec[..if mask.is_empty() { 0 } else { n * r }],
                            dh: &mut dh[..n * r],
                            dc: &mut dc[..n * ch],
                            dgates,
                            dalt,
                            scratch: &mut scratch[..n * widths.bwd_scratch],
                        },
                    );
                }
            });

            // After the loop: every weight gradient is one product over all steps (inside
            // the pair's scope, which splits them by columns at small batches).
            // SAFETY: the loop is over; no piece of either slab is held.
            let (dgates, dalt) = unsafe {
                (
                    dgates_p.piece(0..dgates_p.len()),
                    dalt_p.piece(0..dalt_p.len()),
                )
            };
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
            self.cell.weight_grads(
                &sw,
                &Slabs {
                    rows,
                    x,
                    input_size: self.input_size,
                    h_prev: h_rec_all,
                    c_prev: c_slab(prev0),
                    c: c_slab(cur0),
                    aux: &tape.aux,
                    m: &tape.m,
                    dgates,
                    dalt,
                },
                WeightGrads {
                    w_ih: dw_ih,
                    w_hh: dw_hh,
                    b_hh: db_hh,
                    w_hr: dw_hr,
                    p_i,
                    p_f,
                    p_o,
                },
            );
            let da = Mat::rows(dgates, rows, gh, gh);
            let n_in = self.input_size;
            // (1)ᵀ dX = da W_ih (W_ih read in place);  db_ih += Σ da
            matmul(dx, n_in, da, Mat::rows(self.w.w_ih, gh, n_in, n_in), dx_acc);
            if let Some(db) = db_ih {
                add_column_sums(db, dgates, rows, gh);
            }
        });
        ws.give(dgates);
        ws.give(dalt);
        (dh, dc)
    }
}

/// `b` packed for the panel kernel in `format`, where the type and CPU have one.
fn pack_panels<T: Float>(b: Mat<'_, T>, format: WeightFormat) -> Option<Panels> {
    match format {
        WeightFormat::F32 => T::pack_panels(b),
        WeightFormat::Bf16 => T::pack_panels_bf16(b),
    }
}

/// Multiply-adds of one step's recurrent product (batch × G·H × R) from which a batch that
/// is not split by rows has its products split by columns between a [`Pair`] of threads.
const PAIR_MIN_STEP_FMAS: usize = 1 << 16;

/// Whether a batch in one part whose step products run on the panel kernel (`panels`) and
/// are big enough has them split by a [`Pair`]: when rayon's pool has two threads or more.
fn pair_worth(parts: usize, panels: bool, step_fmas: usize) -> bool {
    parts == 1
        && panels
        && step_fmas >= PAIR_MIN_STEP_FMAS
        && !in_part()
        && rayon::current_num_threads() >= 2
}

/// A pair with its own helper thread, for a [`crate::Stepper`] (which lives across calls),
/// where [`pair_worth`] says so.
pub(crate) fn stepper_pair(panels: bool, step_fmas: usize) -> Option<Pair> {
    if pair_worth(1, panels, step_fmas) {
        Pair::new()
    } else {
        None
    }
}

/// Runs a call's products and time loop `f` with a pair installed when `paired`: the
/// process's own pair where it is free, else one hosted by rayon's threads (see
/// [`pair::with_process_pair`]).
fn with_pair_if<R: Send>(paired: bool, f: impl FnOnce() -> R + Send) -> R {
    if paired {
        pair::with_process_pair(f)
    } else {
        f()
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
