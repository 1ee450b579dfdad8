//! How much memory training or running a [`SequenceModel`](super::SequenceModel) takes,
//! estimated from its configuration alone, before anything is allocated: what a program
//! checks against the memory the machine has before it builds a model that would not fit.
//!
//! The estimate counts, in bytes of `T` (`size_of::<T>()` each):
//! - the weights, their gradients and the optimizer's state (`optimizer_buffers` values per
//!   weight: 0 for plain SGD, 1 for momentum, RMSprop and Adagrad, 2 for Adam), and the copy
//!   of all three a checkpoint is serialised from;
//! - the BPTT tape: per token (`batch × seq_len` of them), per layer and direction, the states
//!   before and after the step, the gate activations and what the cell keeps besides
//!   (`3·G·H + 4·H + H_out` values), and each layer's output;
//! - the inputs (or the embedding's output) and the head's logits and their gradient
//!   (per token for [`OutputForm::EveryStep`], per sequence for [`OutputForm::Last`]).
//!
//! It is an estimate: the library's workspaces and the allocator add a little to it, and it
//! is meant to catch a configuration that is off by orders of magnitude, not to predict the
//! resident size to the byte.

use super::sequence::{Input, OutputForm, SequenceModelConfig, TieWeights};
use crate::layer::Bias;
use crate::layer::params::ParamLayout;

/// What [`estimate_memory`] found, in bytes, by part. Every figure saturates at `u64::MAX`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// the parameters
    pub parameters: u64,
    /// the weights
    pub weights: u64,
    /// their gradients
    pub gradients: u64,
    /// the optimizer's state
    pub optimizer: u64,
    /// the serialised copy a checkpoint is written from
    pub checkpoint: u64,
    /// the BPTT tape of one batch: states, gates, layer outputs
    pub tape: u64,
    /// the inputs (or the embedding output) and the head's logits and their gradient
    pub activations: u64,
}

impl MemoryEstimate {
    /// The whole estimate, in bytes.
    pub fn total(&self) -> u64 {
        [
            self.weights,
            self.gradients,
            self.optimizer,
            self.checkpoint,
            self.tape,
            self.activations,
        ]
        .into_iter()
        .fold(0, u64::saturating_add)
    }

    /// The part that grows with the batch and the sequence length (what lowering
    /// `--batch-size`, `--bptt` or `--seq-len` shrinks).
    pub fn per_batch(&self) -> u64 {
        self.tape.saturating_add(self.activations)
    }
}

/// Estimates the memory a model of `config` needs to train on batches of `batch` sequences of
/// `seq_len` steps with an optimizer keeping `optimizer_buffers` values per weight, in values
/// of `elem_bytes` bytes (4 for `f32`). See the [module docs](self) for what is counted.
/// Nothing is allocated and no configuration overflows: every product is taken in `u128`
/// and the figures saturate.
pub fn estimate_memory(
    config: &SequenceModelConfig,
    batch: usize,
    seq_len: usize,
    optimizer_buffers: usize,
    elem_bytes: usize,
) -> MemoryEstimate {
    let w = |n: usize| n as u128;
    let m = |a: u128, b: u128| a.saturating_mul(b);
    let r = &config.rnn;
    let (embedding, input_width) = match &config.input {
        Input::Embedding(e) => (
            m(w(e.num_embeddings), w(e.embedding_dim)),
            w(e.embedding_dim),
        ),
        Input::Dense => (0, w(r.input_size)),
    };
    let d = w(r.direction.count());
    let (g, h, h_out, layers) = (
        w(r.cell.gate_count()),
        w(r.hidden_size),
        w(r.h_out()),
        w(r.num_layers),
    );
    let head_in = m(d, h_out);
    let out = w(config.out_features);
    let head_weight = match config.tie_weights {
        TieWeights::Untied => m(out, head_in),
        TieWeights::Tied => 0,
    };
    let head = head_weight.saturating_add(match config.head_bias {
        Bias::Enabled => out,
        Bias::Disabled => 0,
    });
    let params = ParamLayout::param_count(r)
        .saturating_add(embedding)
        .saturating_add(head);
    let tokens = m(w(batch), w(seq_len));
    let mut per_token = m(3, m(g, h)).saturating_add(m(4, h)).saturating_add(h_out);
    if r.cell.layer_norm() {
        // the normalised products and their gradients, ĉ, dy_c and three inverse deviations
        per_token = per_token
            .saturating_add(m(4, m(g, h)))
            .saturating_add(m(2, h))
            .saturating_add(3);
    }
    let tape = m(m(tokens, m(layers, d)), per_token.saturating_add(h_out));
    let head_rows = match config.output {
        OutputForm::EveryStep => tokens,
        OutputForm::Last => w(batch),
    };
    let activations = m(tokens, input_width).saturating_add(m(m(2, head_rows), out));
    let bytes = |values: u128| u64::try_from(m(values, w(elem_bytes))).unwrap_or(u64::MAX);
    let optimizer = m(params, w(optimizer_buffers));
    MemoryEstimate {
        parameters: u64::try_from(params).unwrap_or(u64::MAX),
        weights: bytes(params),
        gradients: bytes(params),
        optimizer: bytes(optimizer),
        checkpoint: bytes(params.saturating_add(optimizer)),
        tape: bytes(tape),
        activations: bytes(activations),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EmbeddingConfig, SequenceModel};
    use crate::{CellKind, Direction, RecurrentConfig};

    fn lm(vocab: usize, e: usize, h: usize, layers: usize) -> SequenceModelConfig {
        SequenceModelConfig {
            input: Input::Embedding(EmbeddingConfig {
                num_embeddings: vocab,
                embedding_dim: e,
                padding_idx: None,
            }),
            rnn: RecurrentConfig {
                cell: CellKind::lstm(),
                input_size: e,
                hidden_size: h,
                num_layers: layers,
                direction: Direction::Bidirectional,
                ..Default::default()
            },
            out_features: vocab,
            ..Default::default()
        }
    }

    #[test]
    fn parameters_are_counted_as_the_model_has_them() {
        for (layers, proj) in [(1, 0), (3, 0), (2, 5)] {
            let mut c = lm(37, 6, 11, layers);
            c.rnn = c.rnn.with_proj_size(proj).unwrap();
            let model = SequenceModel::<f32>::new(c.clone(), 0).unwrap();
            let est = estimate_memory(&c, 4, 9, 2, 4);
            assert_eq!(
                est.parameters as usize,
                model.param_len(),
                "{layers} {proj}"
            );
            assert_eq!(est.weights, 4 * model.param_len() as u64);
            assert_eq!(est.optimizer, 2 * est.weights);
        }
    }

    #[test]
    fn the_tape_grows_with_batch_and_length_and_nothing_overflows() {
        let c = lm(100, 8, 16, 2);
        let a = estimate_memory(&c, 4, 10, 2, 4);
        let b = estimate_memory(&c, 8, 20, 2, 4);
        assert_eq!(b.tape, 4 * a.tape);
        assert_eq!(b.weights, a.weights);
        assert!(b.per_batch() > a.per_batch());
        let huge = lm(usize::MAX, usize::MAX, usize::MAX, usize::MAX);
        let e = estimate_memory(&huge, usize::MAX, usize::MAX, 2, 8);
        assert_eq!(e.total(), u64::MAX);
        // 10^8 steps of the copy task's size, or an embedding of 10^8 columns: far beyond
        // any machine, and said so without allocating
        assert!(estimate_memory(&lm(64, 8, 64, 1), 32, 100_000_000, 2, 4).total() > 1 << 40);
        assert!(estimate_memory(&lm(10_000, 100_000_000, 200, 2), 20, 35, 0, 4).total() > 1 << 40);
    }
}
