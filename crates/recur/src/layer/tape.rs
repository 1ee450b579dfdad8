//! The tape of one direction: the slabs its forward writes, time-major as the driver lays
//! them out (see [`super::driver`]): which slot holds the state before and after step t,
//! which time step comes k-th, and what the layer reads off the tape (outputs, final
//! states).

use super::driver::DirSpec;
use super::workspace::Workspace;
use crate::cell::CellKind;
use crate::kernel::scalar::Float;

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

impl<T: Float> DirSpec<'_, T> {
    pub(super) fn gh(&self) -> usize {
        self.cell.gate_count() * self.hidden
    }

    pub(super) fn prev_slot(&self, t: usize) -> usize {
        t + usize::from(self.reverse)
    }

    pub(super) fn cur_slot(&self, t: usize) -> usize {
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
    pub(super) fn time_of(&self, k: usize) -> usize {
        if self.reverse {
            self.seq_len - 1 - k
        } else {
            k
        }
    }

    pub(super) fn has_c(&self) -> bool {
        self.cell.has_cell_state()
    }

    /// Whether the gate activations are the new state itself (a plain RNN without leak:
    /// h = act(a)): then the tape keeps them once, in its states.
    pub(super) fn gates_are_h(&self) -> bool {
        matches!(self.cell, CellKind::Rnn(_)) && self.leak == T::one()
    }

    /// The state slabs `[seq_len + 1, batch, ·]` of a forward, with `h0` and `c0` (LSTM) in
    /// the first slot.
    pub(super) fn state_slabs(&self, h0: &[T], c0: &[T], ws: &Workspace<T>) -> (Vec<T>, Vec<T>) {
        let (bs, first) = (self.batch, self.first_slot());
        let slab = |v: &[T], w: usize| {
            let mut s = ws.take((self.seq_len + 1) * bs * w);
            s[first * bs * w..(first + 1) * bs * w].copy_from_slice(v);
            s
        };
        let cs = if self.has_c() {
            slab(c0, self.hidden)
        } else {
            Vec::new()
        };
        (slab(h0, self.h_out), cs)
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
}
