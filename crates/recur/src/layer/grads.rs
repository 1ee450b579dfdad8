//! (1)ᵀ of every cell, after the backward time loop of [`super::driver`]: each weight
//! gradient, both biases and the input gradient as one product over all steps.

use crate::cell::ParamKind::{BiasHh, BiasIh, WeightHh, WeightIh};
use crate::cell::{Block, RecurrentGrad, Slabs, StepWeights, add_column_sums_ld};
use crate::kernel::scalar::Float;
use crate::kernel::{Accumulate, Mat, Panels, matmul, matmul_two};
use crate::layer::WeightFormat;
use crate::layer::driver::DirSpec;
use crate::layer::pack::pack_panels;
use crate::layer::workspace::Workspace;
use rayon::prelude::*;

impl<T: Float> DirSpec<'_, T> {
    /// (1)ᵀ of every cell, after the loop, from da (`slabs.dgates`, the gradients of the
    /// gate pre-activations of all steps): dX (=|+=) da W_ih (W_ih read in place, or from
    /// `w_ih_panels`: bf16 training),
    /// dW_ih += daᵀ x, db_ih += Σ da, and the recurrent part dW_hh += dqᵀ h_rec,
    /// db_hh += Σ dq (see [`RecurrentGrad`]: dq is da where the recurrent product is part of
    /// (1), and dW_ih and dW_hh then share one pass over da). Then the cell's own weight
    /// gradients (projection, peepholes).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn param_grads(
        &self,
        s: &Slabs<'_, T>,
        mut g: Block<&mut [T]>,
        dx: &mut [T],
        dx_acc: Accumulate,
        sw: &StepWeights<'_, T>,
        w_ih_panels: Option<&Panels>,
        ws: &Workspace<T>,
    ) {
        let (rows, gh, n_in, r) = (s.rows, self.gh(), self.input_size, self.h_out);
        let da = Mat::rows(s.dgates, rows, gh, gh);
        let xs = Mat::rows(s.x, rows, n_in, n_in);
        let hs = Mat::rows(s.h_prev, rows, r, r);
        let dw_ih = g.take(WeightIh).expect("dW_ih");
        let dw_hh = g.take(WeightHh).expect("dW_hh");
        let rec = self.cell.recurrent_grad(self.hidden, s);
        let (dq, dq_ld) = rec.dq.unwrap_or((s.dgates, gh));
        // bf16 training: daᵀ and dqᵀ copied row-major (the bf16 kernel reads its left
        // operand's rows) into buffers of the workspace, X and H packed in bf16 pairs
        let bf16 = match self.format {
            WeightFormat::Bf16 => pack_panels::<T>(xs, WeightFormat::Bf16)
                .zip(pack_panels::<T>(hs, WeightFormat::Bf16)),
            WeightFormat::F32 => None,
        };
        if let Some((xp, hp)) = bf16 {
            let mut da_t = ws.take(rows * gh);
            transpose_ld(&mut da_t, s.dgates, rows, gh, gh);
            let da_tm = Mat::rows(&da_t, gh, rows, rows);
            matmul(
                dw_ih,
                n_in,
                da_tm,
                xs.with_panels(Some(&xp)),
                Accumulate::Add,
            );
            let split = rec.other.map_or(gh, |(row, _)| row);
            let (dw_h, dw_other) = dw_hh.split_at_mut(split * r);
            let hs_p = hs.with_panels(Some(&hp));
            if rec.dq.is_none() {
                let da_h = Mat::rows(&da_t, split, rows, rows);
                matmul(dw_h, r, da_h, hs_p, Accumulate::Add);
            } else {
                let mut dq_t = ws.take(rows * split);
                transpose_ld(&mut dq_t, dq, rows, split, dq_ld);
                matmul(
                    dw_h,
                    r,
                    Mat::rows(&dq_t, split, rows, rows),
                    hs_p,
                    Accumulate::Add,
                );
                ws.give(dq_t);
            }
            if let Some((row, u)) = rec.other {
                let dq_u = Mat::rows(&dq[row..], rows, gh - row, dq_ld).t();
                let us = Mat::rows(u, rows, r, r);
                matmul(dw_other, r, dq_u, us, Accumulate::Add);
            }
            ws.give(da_t);
        } else if let RecurrentGrad {
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
            Mat::rows(self.w[WeightIh], gh, n_in, n_in).with_panels(w_ih_panels),
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

/// Rows of the transpose written by one task of [`transpose_ld`].
const TILE: usize = 32;

/// `a` `[rows, cols]` (rows `ld` apart) transposed into `out`, row-major `[cols, rows]`:
/// blocks of [`TILE`] of `out`'s rows on rayon's threads.
fn transpose_ld<T: Float>(out: &mut [T], a: &[T], rows: usize, cols: usize, ld: usize) {
    if rows == 0 {
        return;
    }
    out[..rows * cols]
        .par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(block, out)| {
            let j0 = block * TILE;
            let width = out.len() / rows;
            // row by row: each of the `width` output rows takes one value per input row
            for i in 0..rows {
                let src = &a[i * ld + j0..i * ld + j0 + width];
                for (j, &v) in src.iter().enumerate() {
                    out[j * rows + i] = v;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    #[test]
    fn transpose_ld_over_awkward_sizes() {
        for (rows, cols, ld) in [
            (1, 1, 1),
            (1, 70, 70),
            (33, 1, 4),
            (31, 65, 67),
            (100, 37, 37),
        ] {
            let a: Vec<f64> = (0..rows * ld).map(|v| v as f64).collect();
            let mut t = vec![f64::NAN; rows * cols + 3];
            super::transpose_ld(&mut t, &a, rows, cols, ld);
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(t[j * rows + i], a[i * ld + j]);
                }
            }
            assert!(t[rows * cols..].iter().all(|v| v.is_nan()));
        }
    }
}
