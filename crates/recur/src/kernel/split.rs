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
//! part's rows are not one contiguous piece of memory: [`run_parts_on`] hands each part a
//! [`PartRows`] per slab, which gives out that part's rows of any block as plain slices.
//! That is safe: the one `unsafe` of the row split, a slab's pointer shared by threads that
//! touch disjoint rows of it, is here ([`SharedRows`]). (Inside a step, a small batch's
//! elementwise pass is split between the current [`super::pair`]'s two threads by
//! [`super::pair::split_rows`], on pieces that are plain slices cut in two.)

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

/// Runs `f(rows, views)` for every part `rows` as [`run_parts`], where `views[k]` is the
/// part's view of `slabs[k]`: a slab `(values, width)` laid out in blocks of `batch` rows of
/// `width` values each (`[block][b][width]`, time-major), of which the part reads and writes
/// only the rows `rows` of every block. `parts` must be ascending disjoint ranges inside
/// `0..batch` (as [`row_parts`] gives them).
///
/// # Panics
/// When `parts` are not ascending disjoint ranges inside `0..batch`.
pub fn run_parts_on<'s, const K: usize, T: Send + Sync>(
    parts: &[Range<usize>],
    batch: usize,
    slabs: [(&'s mut [T], usize); K],
    f: impl Fn(Range<usize>, [PartRows<'s, T>; K]) + Sync,
) {
    let mut end = 0;
    for p in parts {
        assert!(
            end <= p.start && p.start <= p.end && p.end <= batch,
            "parts {parts:?}"
        );
        end = p.end;
    }
    if parts.is_empty() {
        return;
    }
    let shared = slabs.map(|(s, w)| (SharedRows::new(s), w));
    run_parts(parts.len(), |p| {
        let rows = parts[p].clone();
        let views = std::array::from_fn(|k| PartRows {
            slab: shared[k].0.clone_view(),
            batch,
            width: shared[k].1,
            rows: rows.clone(),
        });
        f(rows, views)
    });
}

/// One part's rows of a slab laid out in blocks of `batch` rows (see [`run_parts_on`]).
pub struct PartRows<'a, T> {
    slab: SharedRows<'a, T>,
    batch: usize,
    width: usize,
    rows: Range<usize>,
}

impl<T> PartRows<'_, T> {
    /// The values of the part's rows `from..from + n` (counted from its first row) in
    /// `block`.
    fn range(&self, block: usize, from: usize, n: usize) -> Range<usize> {
        assert!(from + n <= self.rows.len(), "rows past the part");
        let row = block * self.batch + self.rows.start + from;
        row * self.width..(row + n) * self.width
    }

    /// The part's rows `from..from + n` of `block`, to write.
    pub fn rows_mut(&mut self, block: usize, from: usize, n: usize) -> &mut [T] {
        let range = self.range(block, from, n);
        // SAFETY: the rows lie in this part's rows of the slab, which no other part touches
        // (`run_parts_on`), and `&mut self` holds every other piece of this view off.
        unsafe { self.slab.piece_mut(range) }
    }

    /// All the part's rows of `read`, to read, and of `write`, to write (two distinct
    /// blocks).
    ///
    /// # Panics
    /// When `read == write`.
    pub fn read_write(&mut self, read: usize, write: usize) -> (&[T], &mut [T]) {
        assert_ne!(read, write, "one block read and written");
        let n = self.rows.len();
        let (r, w) = (self.range(read, 0, n), self.range(write, 0, n));
        // SAFETY: as `rows_mut`; the two blocks are distinct, so the pieces are disjoint.
        unsafe { (self.slab.piece(r), self.slab.piece_mut(w)) }
    }
}

/// A slab whose disjoint pieces several threads read and write at once.
struct SharedRows<'a, T> {
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
    fn new(slab: &'a mut [T]) -> Self {
        Self {
            ptr: slab.as_mut_ptr(),
            len: slab.len(),
            _slab: PhantomData,
        }
    }

    /// The same slab, for another thread that touches other rows of it.
    fn clone_view(&self) -> Self {
        Self {
            ptr: self.ptr,
            len: self.len,
            _slab: PhantomData,
        }
    }

    /// The piece `range`, to write.
    ///
    /// # Safety
    /// While the piece lives, no other piece handed out by this slab may overlap it.
    ///
    /// # Panics
    /// When `range` does not lie inside the slab.
    #[allow(clippy::mut_from_ref)]
    unsafe fn piece_mut(&self, range: Range<usize>) -> &'a mut [T] {
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
    unsafe fn piece(&self, range: Range<usize>) -> &'a [T] {
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
    fn every_part_gets_its_rows_of_every_block() {
        let (batch, blocks, w) = (20, 3, 2);
        let mut slab = vec![usize::MAX; blocks * batch * w];
        run_parts_on(
            &[0..7, 7..20],
            batch,
            [(&mut slab[..], w)],
            |rows, [mut v]| {
                for b in 1..blocks {
                    let (before, cur) = v.read_write(b - 1, b);
                    assert_eq!(before.len(), rows.len() * w);
                    for (i, x) in cur.iter_mut().enumerate() {
                        *x = (b * batch + rows.start) * w + i;
                    }
                }
                for (i, x) in v.rows_mut(0, 0, rows.len()).iter_mut().enumerate() {
                    *x = rows.start * w + i;
                }
            },
        );
        assert!(slab.iter().enumerate().all(|(i, &x)| i == x));
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
