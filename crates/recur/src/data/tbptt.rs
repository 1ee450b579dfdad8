//! Truncated-BPTT batching of a token stream into B contiguous streams (Zaremba et al. 2014,
//! "Recurrent neural network regularization"; PyTorch's word_language_model `batchify` and
//! `get_batch`).
//!
//! ```text
//! ids: N tokens, batch B        n_steps = ⌊N / B⌋, the last N − B·n_steps tokens dropped
//! stream b = ids[b·n_steps .. (b+1)·n_steps]          (b = 0..B)
//! data[t, b] = ids[b·n_steps + t]                     time-major [n_steps, batch]
//! chunk k: s = k·bptt, seq_len = min(bptt, n_steps − 1 − s)
//!   input  = data[s     .. s + seq_len]              [seq_len, batch]
//!   target = data[s + 1 .. s + 1 + seq_len]          [seq_len, batch]
//! ```
//! The chunks of an epoch take steps `0 .. n_steps − 1` as inputs once each, in order, and
//! only the last one may be shorter than `bptt`. Column b of chunk k + 1 continues column b of
//! chunk k, so the recurrent state a chunk ends with is the right initial state of the next
//! one (carry it, cut from the graph: that is truncated BPTT).

use crate::error::{Error, Result, config_err};

/// A token stream cut into `batch` contiguous streams, time-major `[n_steps, batch]`.
///
/// ```
/// use recur::data::batchify;
/// // PyTorch: batchify(torch.arange(10), 2) → [[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]]
/// let streams = batchify(&(0..10).collect::<Vec<_>>(), 2)?;
/// assert_eq!(streams.data(), [0, 5, 1, 6, 2, 7, 3, 8, 4, 9]);
/// let chunks: Vec<_> = streams.chunks(3)?.collect();
/// assert_eq!((chunks[0].input, chunks[0].target), (&[0, 5, 1, 6, 2, 7][..], &[1, 6, 2, 7, 3, 8][..]));
/// assert_eq!((chunks[1].input, chunks[1].target), (&[3, 8][..], &[4, 9][..]));
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Streams {
    data: Vec<usize>,
    n_steps: usize,
    batch: usize,
}

/// The `batch` contiguous streams of `ids` (PyTorch's `batchify(data, bsz)`).
///
/// # Errors
/// [`Error::Config`] when `batch` is 0; [`Error::TooFewTokens`] when `ids` has fewer than
/// `2 · batch` tokens, so that a stream would not hold an input and its target.
pub fn batchify(ids: &[usize], batch: usize) -> Result<Streams> {
    if batch == 0 {
        return Err(config_err("batch", "must be at least 1, got 0"));
    }
    let n_steps = ids.len() / batch;
    if n_steps < 2 {
        return Err(Error::TooFewTokens {
            tokens: ids.len(),
            batch,
        });
    }
    let mut data = vec![0; n_steps * batch];
    for (b, stream) in ids.chunks_exact(n_steps).take(batch).enumerate() {
        for (t, &id) in stream.iter().enumerate() {
            data[t * batch + b] = id;
        }
    }
    Ok(Streams {
        data,
        n_steps,
        batch,
    })
}

impl Streams {
    /// The steps of each stream (`⌊N / batch⌋`).
    pub fn n_steps(&self) -> usize {
        self.n_steps
    }

    /// The number of streams.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// `[n_steps, batch]`, time-major: `data()[t * batch + b]` is step t of stream b.
    pub fn data(&self) -> &[usize] {
        &self.data
    }

    /// The number of chunks of an epoch, `⌈(n_steps − 1) / bptt⌉` (0 for `bptt` = 0).
    pub fn num_chunks(&self, bptt: usize) -> usize {
        if bptt == 0 {
            0
        } else {
            (self.n_steps - 1).div_ceil(bptt)
        }
    }

    /// The chunks of an epoch, in order (PyTorch's `get_batch(source, i)` for
    /// `i in range(0, n_steps - 1, bptt)`).
    ///
    /// # Errors
    /// [`Error::Config`] when `bptt` is 0.
    pub fn chunks(&self, bptt: usize) -> Result<Chunks<'_>> {
        self.chunks_from(0, bptt)
    }

    /// The chunks of an epoch from step `start` on (to resume at a chunk's
    /// [`Chunk::start`]); `start` = `n_steps − 1` gives none.
    ///
    /// # Errors
    /// [`Error::Config`] when `bptt` is 0 or `start` > `n_steps − 1`.
    pub fn chunks_from(&self, start: usize, bptt: usize) -> Result<Chunks<'_>> {
        if bptt == 0 {
            return Err(config_err("bptt", "must be at least 1, got 0"));
        }
        if start > self.n_steps - 1 {
            return Err(config_err(
                "start step",
                format!(
                    "{start} is past step {}, where the chunks of these streams end",
                    self.n_steps - 1
                ),
            ));
        }
        Ok(Chunks {
            streams: self,
            next: start,
            bptt,
        })
    }
}

/// One truncated-BPTT chunk: inputs and their next tokens, both `[seq_len, batch]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The step of the streams the chunk starts at.
    pub start: usize,
    /// Its steps, `bptt` except perhaps for the last chunk.
    pub seq_len: usize,
    /// `[seq_len, batch]`: steps `start .. start + seq_len`.
    pub input: &'a [usize],
    /// `[seq_len, batch]`: steps `start + 1 .. start + 1 + seq_len`.
    pub target: &'a [usize],
}

/// The chunks of [`Streams::chunks`].
#[derive(Clone, Debug)]
pub struct Chunks<'a> {
    streams: &'a Streams,
    next: usize,
    bptt: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Chunk<'a>;

    fn next(&mut self) -> Option<Chunk<'a>> {
        let Streams {
            data,
            n_steps,
            batch,
        } = self.streams;
        let start = self.next;
        let seq_len = self.bptt.min(n_steps - 1 - start);
        if seq_len == 0 {
            return None;
        }
        self.next += seq_len;
        Some(Chunk {
            start,
            seq_len,
            input: &data[start * batch..(start + seq_len) * batch],
            target: &data[(start + 1) * batch..(start + 1 + seq_len) * batch],
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.streams.n_steps - 1 - self.next).div_ceil(self.bptt);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Chunks<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_short_and_zero_settings_are_errors() {
        assert!(matches!(
            batchify(&[1, 2, 3], 2),
            Err(Error::TooFewTokens {
                tokens: 3,
                batch: 2
            })
        ));
        assert!(matches!(batchify(&[1, 2, 3], 0), Err(Error::Config { .. })));
        let s = batchify(&[1, 2, 3, 4], 2).unwrap();
        assert!(matches!(s.chunks(0), Err(Error::Config { .. })));
        assert!(matches!(s.chunks_from(2, 1), Err(Error::Config { .. })));
        assert_eq!(s.chunks_from(1, 1).unwrap().count(), 0);
        assert_eq!(s.chunks(5).unwrap().len(), 1);
    }
}
