//! Splitting a batch between threads for a whole sequence.
//!
//! The rows of a batch are independent sequences: row b at step t reads only row b of the
//! states before it, forward and backward. So the sequence driver gives each thread a
//! contiguous range of rows for all T steps ([`row_parts`], [`run_parts`]): no thread waits
//! for another inside the time loop, every cell and option stays on the same code, and the
//! elementwise passes run in parallel with the products. Inside a part the products run on
//! the part's own thread ([`in_part`] tells [`super::matmul`] and the panel kernel).
//!
//! The parts write disjoint rows of slabs that are laid out time-major (`[t][b][·]`), so a
//! part's rows are not one contiguous piece of memory; [`SharedRows`] hands out the pieces.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Range;

/// Fewest rows worth a thread of their own: below this the per-row work of a step is too
/// small to pay for a thread, and a single thread runs the batch.
pub const MIN_PART_ROWS: usize = 8;

thread_local! {
    static IN_PART: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running one part of a split batch (its products then stay on it).
pub fn in_part() -> bool {
    IN_PART.with(Cell::get)
}

/// The row ranges of a `batch` split over rayon's threads: one part per
/// [`MIN_PART_ROWS`] rows at most, as even as possible.
pub fn row_parts(batch: usize) -> Vec<Range<usize>> {
    let threads = if in_part() {
        1
    } else {
        rayon::current_num_threads()
    };
    let parts = threads.min(batch / MIN_PART_ROWS).max(1);
    (0..parts)
        .map(|p| batch * p / parts..batch * (p + 1) / parts)
        .collect()
}

/// Runs `f(p)` for every part `p < parts`, each on its own thread of rayon's pool (the
/// calling thread takes part 0), and returns when all have finished.
pub fn run_parts(parts: usize, f: impl Fn(usize) + Sync) {
    let in_part = |p: usize| {
        let before = IN_PART.with(|c| c.replace(true));
        f(p);
        IN_PART.with(|c| c.set(before));
    };
    if parts <= 1 {
        f(0);
        return;
    }
    rayon::scope(|s| {
        for p in 1..parts {
            let in_part = &in_part;
            s.spawn(move |_| in_part(p));
        }
        in_part(0);
    });
}

/// A slab whose disjoint pieces several threads read and write at once.
pub struct SharedRows<'a, T> {
    ptr: *mut T,
    len: usize,
    _slab: PhantomData<&'a mut [T]>,
}

// SAFETY: a `SharedRows` only hands out pieces through `unsafe` methods whose callers
// guarantee that no two threads hold overlapping pieces.
unsafe impl<T: Send> Send for SharedRows<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for SharedRows<'_, T> {}

impl<'a, T> SharedRows<'a, T> {
    pub fn new(slab: &'a mut [T]) -> Self {
        Self {
            ptr: slab.as_mut_ptr(),
            len: slab.len(),
            _slab: PhantomData,
        }
    }

    /// Values in the slab.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slab is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The piece `range`, to write.
    ///
    /// # Safety
    /// While the piece lives, no other piece handed out by this slab may overlap it.
    ///
    /// # Panics
    /// When `range` does not lie inside the slab.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn piece_mut(&self, range: Range<usize>) -> &'a mut [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: inside the slab (asserted); no overlap (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }

    /// The piece `range`, to read.
    ///
    /// # Safety
    /// While the piece lives, no piece handed out by [`Self::piece_mut`] may overlap it.
    ///
    /// # Panics
    /// When `range` does not lie inside the slab.
    pub unsafe fn piece(&self, range: Range<usize>) -> &'a [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: as `piece_mut`.
        unsafe { std::slice::from_raw_parts(self.ptr.add(range.start), range.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_batch_in_order() {
        for batch in [0, 1, 7, 8, 15, 16, 17, 64, 100] {
            let parts = row_parts(batch);
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts.last().unwrap().end, batch);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            if parts.len() > 1 {
                assert!(parts.iter().all(|p| p.len() >= MIN_PART_ROWS));
            }
        }
    }

    #[test]
    fn every_part_runs_once_and_knows_it_is_a_part() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let seen = AtomicUsize::new(0);
        run_parts(3, |p| {
            assert!(in_part());
            seen.fetch_add(1 << (8 * p), Ordering::Relaxed);
        });
        assert_eq!(seen.into_inner(), 0x01_01_01);
        assert!(!in_part());
    }
}
