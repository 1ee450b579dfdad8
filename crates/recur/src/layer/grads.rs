//! (1)ᵀ of every cell, after the backward time loop of [`super::driver`]: each weight
//! gradient, both biases and the input gradient as one product over all steps.

use crate::cell::ParamKind::{BiasHh, BiasIh, WeightHh, WeightIh};
use crate::cell::{Block, RecurrentGrad, Slabs, StepWeights, add_column_sums_ld};
use crate::kernel::scalar::Float;
use crate::kernel::{Accumulate, Mat, matmul, matmul_two};
use crate::layer::driver::DirSpec;

impl<T: Float> DirSpec<'_, T> {
    /// (1)ᵀ of every cell, after the loop, from da (`slabs.dgates`, the gradients of the
    /// gate pre-activations of all steps): dX (=|+=) da W_ih (W_ih read in place),
    /// dW_ih += daᵀ x, db_ih += Σ da, and the recurrent part dW_hh += dqᵀ h_rec,
    /// db_hh += Σ dq (see [`RecurrentGrad`]: dq is da where the recurrent product is part of
    /// (1), and dW_ih and dW_hh then share one pass over da). Then the cell's own weight
    /// gradients (projection, peepholes).
    pub(super) fn param_grads(
        &self,
        s: &Slabs<'_, T>,
        mut g: Block<&mut [T]>,
        dx: &mut [T],
        dx_acc: Accumulate,
        sw: &StepWeights<'_, T>,
    ) {
        let (rows, gh, n_in, r) = (s.rows, self.gh(), self.input_size, self.h_out);
        let da = Mat::rows(s.dgates, rows, gh, gh);
        let xs = Mat::rows(s.x, rows, n_in, n_in);
        let hs = Mat::rows(s.h_prev, rows, r, r);
        let dw_ih = g.take(WeightIh).expect("dW_ih");
        let dw_hh = g.take(WeightHh).expect("dW_hh");
        let rec = self.cell.recurrent_grad(self.hidden, s);
        let (dq, dq_ld) = rec.dq.unwrap_or((s.dgates, gh));
        if let RecurrentGrad {
            dq: None,
            other: None,
            ..
        } = rec
        {
            matmul_two(da.t(), (dw_ih, n_in, xs), (dw_hh, r, hs), Accumulate::Add);
        } else {
            matmul(dw_ih, n_in, da.t(), xs, Accumulate::Add);
            // gate rows 0..split read h_rec, the rest `other`
            let split = rec.other.map_or(gh, |(row, _)| row);
            let (dw_h, dw_other) = dw_hh.split_at_mut(split * r);
            let dq_h = Mat::rows(dq, rows, split, dq_ld).t();
            matmul(dw_h, r, dq_h, hs, Accumulate::Add);
            if let Some((row, u)) = rec.other {
                let dq_u = Mat::rows(&dq[row..], rows, gh - row, dq_ld).t();
                let us = Mat::rows(u, rows, r, r);
                matmul(dw_other, r, dq_u, us, Accumulate::Add);
            }
        }
        matmul(
            dx,
            n_in,
            da,
            Mat::rows(self.w[WeightIh], gh, n_in, n_in),
            dx_acc,
        );
        // the biases read da and dq, or with layer norm what the cell says
        let [(db_i, ld_i), (db_h, ld_h)] = rec.bias.unwrap_or([(s.dgates, gh), (dq, dq_ld)]);
        if let Some(db) = g.take(BiasIh) {
            add_column_sums_ld(db, db_i, rows, ld_i);
        }
        if let Some(db) = g.take(BiasHh) {
            add_column_sums_ld(db, db_h, rows, ld_h);
        }
        self.cell.weight_grads(sw, s, g);
    }
}
