//! Data: text corpora and their truncated-BPTT batches, labelled sequences from files,
//! batches of variable-length sequences, time series from CSV files and their forecasting
//! windows, scaling, metrics and baselines, and generated tasks.
//!
//! Every generator draws from an explicit seed (ChaCha8), so a run is reproducible; the
//! [`Split`] picks an independent stream of the same seed, so a held-out set never shares
//! draws with the training stream.

pub mod adding;
pub mod copy;
pub mod forecast;
pub mod labelled;
pub mod mackey_glass;
pub mod reber;
pub mod series;
pub mod sines;
pub mod tbptt;
pub mod temporal_order;
pub mod text;
pub mod timing;

pub use adding::{AddingProblem, Operation};
pub use copy::{CopyBatch, CopyTask};
pub use labelled::{Labels, SequenceDataset, TargetKind};
pub use mackey_glass::MackeyGlass;
pub use reber::{EmbeddedReber, ReberBatch};
pub use sines::{NoisySines, SinesBatch};
pub use tbptt::{Chunk, Chunks, Streams, batchify};
pub use temporal_order::TemporalOrder;
pub use text::{Corpus, EOS, SplitFractions, TokenLevel, UNK, Vocabulary};
pub use timing::TimingTask;

use crate::tensor::Tensor;

/// A batch of sequences with one target per sequence (output form "read the whole sequence,
/// emit one prediction").
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceBatch<T> {
    /// `[seq_len, batch, input_size]`, `seq_len` the longest sequence of the batch; zero past
    /// each sequence's end.
    pub input: Tensor<T>,
    /// Each sequence's length, in batch order (what [`crate::Recurrent::forward`] takes).
    pub lengths: Vec<usize>,
    /// `[batch, target_size]`
    pub target: Tensor<T>,
}

/// A batch of sequences with one class per sequence (a generated classification task).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassBatch<T> {
    /// `[seq_len, batch, input_size]`, `seq_len` the longest sequence of the batch; zero past
    /// each sequence's end.
    pub input: Tensor<T>,
    /// Each sequence's length, in batch order.
    pub lengths: Vec<usize>,
    /// Each sequence's class.
    pub class: Vec<usize>,
}

/// Which part of a generated task's data a generator draws.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Split {
    #[default]
    Train,
    Valid,
    Test,
}

impl Split {
    /// The ChaCha stream of this split.
    fn stream(self) -> u64 {
        match self {
            Split::Train => 0,
            Split::Valid => 1,
            Split::Test => 2,
        }
    }
}
