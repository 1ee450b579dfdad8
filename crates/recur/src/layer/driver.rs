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
//! [`DirSpec::forward`] and [`DirSpec::backward`] below are the time loops, mirrored:
//! ```text
//! forward:  (1) project all steps;  for t: cell step (its recurrent product, its pass);  carry
//! backward: for t (reversed): add dy;  cell step ((8)ᵀ…(2)ᵀ, (1)ᵀ's dh_prev);  after the loop
//!           (1)ᵀ and every weight gradient, one product each over all steps ([`super::grads`])
//! ```
//! Around them: the weights packed for the products and the folded bias ([`super::pack`]),
//! the batch's rows split between threads for the whole loop with each part's rows of every
//! slab handed out as plain slices ([`crate::kernel::split::run_parts_on`]), and a pair of
//! threads for the products of a batch too small to split ([`crate::kernel::pair`]), which
//! also takes half of the rows of each of the cell's row passes ([`DirSpec::cell_forward`]).
//! Streaming, one step at a time over buffers sized once, is [`super::stepper`]'s.
//!
//! Recurrent dropout ([`DirSpec::rec_mask`], [`super::dropout`]): before each step the live
//! rows of h_prev are multiplied by the mask into one buffer sized before the loop, which the
//! cell's product reads; the backward builds the masked states of all steps once, for the
//! steps and for the weight-gradient products after the loop.

use std::borrow::Cow;

use crate::cell::{Block, BwdStep, CellKind, FwdStep, Slabs, StepWeights, Zoneout};
use crate::kernel::pair;
use crate::kernel::scalar::Float;
use crate::kernel::split::{row_parts, run_parts_on};
use crate::kernel::{Accumulate, Mat, matmul_bias};
use crate::layer::WeightFormat;
use crate::layer::dropout::{masked_states, rec_input};
use crate::layer::pack::ForwardPanels;
use crate::layer::tape::DirTape;
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
    /// the format of the products' weights: the forward's, and in training the backward's
    /// step products and input gradient (see [`crate::Recurrent::set_precision`])
    pub format: WeightFormat,
    /// zoneout's masks (training) or expectation (inference), or `None`
    pub zoneout: Option<Zoneout<'a, T>>,
}

impl<T: Float> DirSpec<'_, T> {
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
        let (gh, n_in, rows) = (self.gh(), self.input_size, tl * bs);
        let widths = self.cell.slab_widths(h);
        // The weights as the products read them (see `layer::pack`): the panels kept by the
        // model, or made for this call.
        let fp = (self.panels.map(Cow::Borrowed))
            .unwrap_or_else(|| Cow::Owned(self.forward_panels(self.format)));
        let packed = self.pack_with(self.format, Some(&fp));
        let sw = self.forward_weights(&packed);
        let (w_ih_t, bias) = (self.w_ih_t(fp.w_ih.as_deref()), self.input_bias());

        // The batch's rows split between threads for the whole loop (see `kernel::split`).
        // Inference with panels projects per step when the rows are split: a small batch's
        // slab is small, and projecting per step would read W_ih again at every step, which
        // is what bounds a small batch's step.
        let parts = row_parts(bs);
        let per_step = !keep && fp.w_ih.is_some() && parts.len() > 1;
        // Every slab below is written before it is read: the projection writes every row of
        // `gates`, each step writes (or carries) every row of its state slot, and the rows
        // of the kept slabs that a step does not run are zeroed at that step.
        let slab_rows = if keep { rows } else { 0 };
        let mut gates = ws.take(if per_step { 0 } else { rows * gh });
        let (mut hs, mut cs) = self.state_slabs(h0, c0, ws);
        let mut aux = ws.take(slab_rows * widths.aux);
        let mut clamp = ws.take(slab_rows * widths.keep);
        let mut m = ws.take(slab_rows * widths.m);
        let ch = if self.has_c() { h } else { 0 };

        // The projection runs inside the pair's scope too: a small batch's pair splits it
        // by columns, and its helper is then awake when the loop starts.
        let paired = pair::worth(parts.len(), packed.on_panels(), bs * gh * r);
        pair::with_pair_if(paired, || {
            // (1) the input projection of every step: one GEMM, biases folded in.
            if !per_step {
                matmul_bias(
                    &mut gates,
                    gh,
                    Mat::rows(x, rows, n_in, n_in),
                    w_ih_t,
                    &bias,
                );
            }
            let slabs = [
                (&mut hs[..], r),
                (&mut cs[..], ch),
                (&mut gates[..], gh),
                (&mut aux[..], widths.aux),
                (&mut clamp[..], widths.keep),
                (&mut m[..], widths.m),
            ];
            run_parts_on(&parts, bs, slabs, |part, views| {
                let [mut hs, mut cs, mut gates, mut aux, mut clamp, mut m] = views;
                let np = part.len();
                let mut scratch = vec![T::zero(); np * widths.fwd_scratch];
                // inference: one step's gates and saved quantities, reused at every step
                let step_rows = if keep { 0 } else { np };
                let mut gates_step = vec![T::zero(); if per_step { np * gh } else { 0 }];
                let mut aux_step = vec![T::zero(); step_rows * widths.aux];
                let mut keep_step = vec![T::zero(); step_rows * widths.keep];
                let mut m_step = vec![T::zero(); step_rows * widths.m];
                // recurrent dropout: each step's masked state m ⊙ h_prev, the product's operand
                let mut h_rec = vec![T::zero(); if self.rec_mask.is_some() { np * r } else { 0 }];
                for k in 0..tl {
                    let t = self.time_of(k);
                    // rows of this part still running at t
                    let n = self.active[t].clamp(part.start, part.end) - part.start;
                    let (prev, cur) = (self.prev_slot(t), self.cur_slot(t));
                    let (h_prev, h_cur) = hs.read_write(prev, cur);
                    let (c_prev, c_cur) = cs.read_write(prev, cur);
                    // A step where none of the part's sequences is running only carries.
                    if n > 0 {
                        let mask = self.rec_mask.map(|m| &m[part.start * r..]);
                        let h_rec = rec_input(&h_prev[..n * r], mask, &mut h_rec);
                        let gates = if per_step {
                            let g = &mut gates_step[..n * gh];
                            let xs = Mat::rows(&x[(t * bs + part.start) * n_in..], n, n_in, n_in);
                            matmul_bias(g, gh, xs, w_ih_t, &bias);
                            g
                        } else {
                            gates.rows_mut(t, 0, n)
                        };
                        let (aux, clamp, m) = if keep {
                            (
                                aux.rows_mut(t, 0, n),
                                clamp.rows_mut(t, 0, n),
                                m.rows_mut(t, 0, n),
                            )
                        } else {
                            (
                                &mut aux_step[..n * widths.aux],
                                &mut keep_step[..n * widths.keep],
                                &mut m_step[..n * widths.m],
                            )
                        };
                        // the cell's step: its recurrent product, its pass over the rows
                        self.cell_forward(
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
                        if let Some(z) = &self.zoneout {
                            let (h, c) = (&mut h_cur[..n * r], &mut c_cur[..n * ch]);
                            z.forward(
                                (t, part.start, n),
                                (&h_prev[..n * r], h),
                                (&c_prev[..n * ch], c),
                            );
                        }
                    }
                    // Sequences that have ended (or, in reverse, not yet begun) carry their
                    // state and keep zeros in the slabs the weight gradients read whole.
                    h_cur[n * r..].copy_from_slice(&h_prev[n * r..]);
                    c_cur[n * ch..].copy_from_slice(&c_prev[n * ch..]);
                    if keep && n < np {
                        aux.rows_mut(t, n, np - n).fill(T::zero());
                        clamp.rows_mut(t, n, np - n).fill(T::zero());
                        m.rows_mut(t, n, np - n).fill(T::zero());
                    }
                }
            });
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

    /// BPTT through the direction. `dy` is the gradient of the layer output (`[rows, ld]`,
    /// this direction's columns at `off`); `dh_n`, `dc_n` those of the final states. Adds the
    /// parameter gradients into `g`, writes (or adds, per `dx_acc`) the input gradient into
    /// `dx` (`[rows, input_size]`) and returns the initial-state gradients. `norms`, empty or
    /// `[rows, 1 or 2]`, records each running row's ‖dh‖ (and ‖dc‖) as step t begins
    /// ([`super::gradnorms`]).
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
        norms: &mut [T],
        ws: &Workspace<T>,
    ) -> (Vec<T>, Vec<T>) {
        let (tl, bs, h, r) = (self.seq_len, self.batch, self.hidden, self.h_out);
        let (gh, rows) = (self.gh(), tl * bs);
        let widths = self.cell.slab_widths(h);
        let packed = self.pack_backward();
        let sw = self.backward_weights(&packed);
        let nw = norms.len() / rows.max(1); // values recorded per row: 0 (none), 1 or 2

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
        let (prev0, cur0) = (self.prev_slot(0), self.cur_slot(0));
        let h_prev_all = &tape.h[prev0 * bs * r..(prev0 + tl) * bs * r];
        // Recurrent dropout: the states as the recurrent product read them, m ⊙ h_prev for
        // every step (one pass before the loop).
        let mask = self.rec_mask.unwrap_or(&[]);
        let h_rec_all = &*masked_states(h_prev_all, mask, bs * r);
        let ch = if self.has_c() { h } else { 0 };

        // The batch's rows split between threads for the whole loop, as in the forward.
        let parts = row_parts(bs);
        let paired = pair::worth(parts.len(), packed.on_panels(), bs * gh * r);
        pair::with_pair_if(paired, || {
            let slabs = [
                (&mut dh[..], r),
                (&mut dc[..], ch),
                (&mut dgates[..], gh),
                (&mut dalt[..], widths.dalt),
                (&mut norms[..], nw),
            ];
            run_parts_on(&parts, bs, slabs, |part, views| {
                let [mut dh, mut dc, mut dgates, mut dalt, mut norms] = views;
                let np = part.len();
                let (dh, dc) = (dh.rows_mut(0, 0, np), dc.rows_mut(0, 0, np));
                let mut scratch = vec![T::zero(); np * widths.bwd_scratch];
                // recurrent dropout: the gradient that reaches m ⊙ h_prev
                let mut dh_rec = vec![T::zero(); if mask.is_empty() { 0 } else { np * r }];
                // zoneout: the gradient that goes straight to the state before the step
                let zw = if self.zoneout.is_some() { np } else { 0 };
                let (mut carry_h, mut carry_c) =
                    (vec![T::zero(); zw * r], vec![T::zero(); zw * ch]);
                // Rows `[row0 + part.start, … + n)` of a tape slab `w` values wide.
                let span = |row0: usize, n: usize, w: usize| {
                    (row0 + part.start) * w..(row0 + part.start + n) * w
                };
                for k in (0..tl).rev() {
                    let t = self.time_of(k);
                    let n = self.active[t].clamp(part.start, part.end) - part.start;
                    let row0 = t * bs;
                    // ∂L/∂h of this step: from the output at t and from step t + 1
                    for (b, dh) in dh.chunks_exact_mut(r).take(n).enumerate() {
                        let src = &dy[(row0 + part.start + b) * ld + off..][..r];
                        for (d, &s) in dh.iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                    if n < np {
                        dgates.rows_mut(t, n, np - n).fill(T::zero());
                        dalt.rows_mut(t, n, np - n).fill(T::zero());
                    }
                    if n == 0 {
                        continue;
                    }
                    if nw > 0 {
                        let (dh, dc) = (&dh[..n * r], &dc[..n * ch]);
                        super::gradnorms::record(norms.rows_mut(t, 0, n), n, dh, dc);
                    }
                    let z = self.zoneout.map(|z| (z, (t, part.start, n)));
                    let (kh, kc) = (
                        &mut carry_h[..zw.min(n) * r],
                        &mut carry_c[..zw.min(n) * ch],
                    );
                    if let Some((z, at)) = z {
                        z.split(
                            at,
                            (&mut dh[..n * r], &mut *kh),
                            (&mut dc[..n * ch], &mut *kc),
                        );
                    }
                    let (ps, cs) = (self.prev_slot(t) * bs, self.cur_slot(t) * bs);
                    // the cell's step backward: its pass over the rows, its product for dh_prev
                    self.cell_backward(
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
                            mask: &mask[if mask.is_empty() { 0..0 } else { span(0, n, r) }],
                            dh_rec: &mut dh_rec[..if mask.is_empty() { 0 } else { n * r }],
                            dh: &mut dh[..n * r],
                            dc: &mut dc[..n * ch],
                            dgates: dgates.rows_mut(t, 0, n),
                            dalt: dalt.rows_mut(t, 0, n),
                            scratch: &mut scratch[..n * widths.bwd_scratch],
                        },
                    );
                    if let Some((z, _)) = z {
                        z.add_carry((&mut dh[..n * r], kh), (&mut dc[..n * ch], kc));
                    }
                }
            });

            // After the loop: every weight gradient is one product over all steps (inside
            // the pair's scope, which splits them by columns at small batches).
            let c_slab = |slot: usize| &tape.c[slot * bs * ch..(slot + tl) * bs * ch];
            let slabs = Slabs {
                rows,
                x,
                h_prev: h_rec_all,
                c_prev: c_slab(prev0),
                c: c_slab(cur0),
                aux: &tape.aux,
                m: &tape.m,
                dgates: &dgates,
                dalt: &dalt,
            };
            self.param_grads(&slabs, g, dx, dx_acc, &sw, packed.w_ih(), ws);
        });
        ws.give(dgates);
        ws.give(dalt);
        (dh, dc)
    }

    /// The cell's step over the `s.n` rows of `s`: its products over all of them, and each of
    /// its row passes split between the current pair's threads where that is worth it
    /// (see [`crate::cell`]'s "A step in pieces").
    pub fn cell_forward(&self, w: &StepWeights<'_, T>, mut s: FwdStep<'_, T>) {
        let passes = self.cell.row_passes();
        for k in 0..=passes {
            self.cell.forward_product(k, w, &mut s);
            if k < passes {
                let rows = |part| self.cell.forward_rows(k, w, part);
                pair::split_rows(s.n, self.gh(), s.reborrow(), FwdStep::split_at, rows);
            }
        }
    }

    /// [`Self::cell_forward`]'s mirror: the cell's backward step over the rows of `s`.
    fn cell_backward(&self, w: &StepWeights<'_, T>, mut s: BwdStep<'_, T>) {
        let passes = self.cell.row_passes();
        for k in 0..=passes {
            self.cell.backward_product(k, w, &mut s);
            if k < passes {
                let rows = |part| self.cell.backward_rows(k, w, part);
                pair::split_rows(s.n, self.gh(), s.reborrow(), BwdStep::split_at, rows);
            }
        }
    }
}
