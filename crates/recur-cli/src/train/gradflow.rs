//! `recur gradflow`'s record: ‖∂L/∂h_t‖ (and ‖∂L/∂c_t‖) against t at chosen training steps,
//! taken from the training batch's own backward ([`recur::Recurrent::backward_with_norms`]).
//!
//! At a recorded step, for each t the record holds the mean, over the batch's sequences still
//! running at t, of each sequence's L2 norm of ∂L/∂h_t (its top layer's), L the batch's mean
//! loss; t counts from each sequence's first step.

use std::path::Path;

use anyhow::{Context, Result};
use recur::StateGradNorms;

/// The norms at one training step.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRow {
    /// updates made before the recorded batch (0: the initial weights)
    pub train_step: usize,
    /// by t: the mean norm of ∂L/∂h_t over the sequences running at t
    pub h: Vec<f64>,
    /// the same of ∂L/∂c_t (cells with a cell state; else empty)
    pub c: Vec<f64>,
}

/// The record of a run.
#[derive(Clone, Debug)]
pub struct FlowRecord {
    /// record every this many updates, from the first batch
    pub every: usize,
    pub rows: Vec<FlowRow>,
}

impl FlowRecord {
    pub fn new(every: usize) -> Self {
        Self {
            every: every.max(1),
            rows: Vec::new(),
        }
    }

    /// Whether the batch after `updates` updates is recorded.
    pub fn wants(&self, updates: usize) -> bool {
        updates.is_multiple_of(self.every)
    }

    /// Adds the record of one backward: layer-direction `ld` of `norms`, the batch's
    /// sequences of `lengths`.
    pub fn add(
        &mut self,
        train_step: usize,
        norms: &StateGradNorms<f32>,
        ld: usize,
        lengths: &[usize],
    ) {
        let mean = |v: &recur::Tensor<f32>| {
            let (tl, bs) = (v.shape()[1], v.shape()[2]);
            (0..tl)
                .map(|t| {
                    let row = &v.data()[(ld * tl + t) * bs..][..bs];
                    let live: Vec<f64> = (row.iter().zip(lengths))
                        .filter(|&(_, &len)| t < len)
                        .map(|(&x, _)| f64::from(x))
                        .collect();
                    live.iter().sum::<f64>() / live.len().max(1) as f64
                })
                .collect()
        };
        self.rows.push(FlowRow {
            train_step,
            h: mean(&norms.h),
            c: norms.c.as_ref().map(mean).unwrap_or_default(),
        });
    }

    /// Whether the record has ∂L/∂c_t.
    pub fn has_c(&self) -> bool {
        self.rows.first().is_some_and(|r| !r.c.is_empty())
    }

    /// Writes `train_step,t,grad_h_norm[,grad_c_norm]`, one line per recorded step and t.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let name = path.display();
        let mut w = csv::Writer::from_path(path).with_context(|| format!("{name}"))?;
        let mut header = vec!["train_step", "t", "grad_h_norm"];
        if self.has_c() {
            header.push("grad_c_norm");
        }
        w.write_record(&header).with_context(|| format!("{name}"))?;
        for row in &self.rows {
            for (t, h) in row.h.iter().enumerate() {
                let mut rec = vec![row.train_step.to_string(), t.to_string(), format!("{h:e}")];
                if let Some(c) = row.c.get(t) {
                    rec.push(format!("{c:e}"));
                }
                w.write_record(&rec).with_context(|| format!("{name}"))?;
            }
        }
        w.flush().with_context(|| format!("{name}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recur::Tensor;

    #[test]
    fn means_count_only_the_sequences_running_at_t() {
        // one layer, 3 steps, 2 sequences of lengths 3 and 1
        let h = Tensor::new(vec![1.0f32, 3.0, 2.0, 0.0, 4.0, 0.0], &[1, 3, 2]).unwrap();
        let norms = StateGradNorms { h, c: None };
        let mut rec = FlowRecord::new(10);
        assert!(rec.wants(0) && rec.wants(20) && !rec.wants(5));
        rec.add(20, &norms, 0, &[3, 1]);
        assert_eq!(rec.rows[0].h, vec![2.0, 2.0, 4.0]);
        assert!(!rec.has_c());
    }
}
