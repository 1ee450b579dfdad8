//! The working buffers a [`crate::Recurrent`] reuses from one call to the next.
//!
//! A training call at T = 100, B = 64, H = 256 fills some 80 MB of slabs (the gate slab
//! alone is 26 MB, forward and backward each). Fresh memory for them costs more than
//! writing them: the allocator returns freed pages to the system, and the next call's
//! first write to each page faults and has the kernel zero it first (6–8% of such a call
//! was `clear_page`). The slabs of the tape and of the backward are therefore taken from,
//! and handed back to, a pool that lives as long as the model.
//!
//! A buffer taken from the pool holds whatever its last user left in it. Every user writes
//! every element before reading it, or asks for [`Workspace::take_zeroed`]. Debug builds
//! fill each taken buffer with NaN, so that a value read before it is written shows up in
//! every test's results.

use std::sync::{Arc, Mutex, PoisonError};

use crate::kernel::scalar::Float;

/// Spare buffers kept at most: more than the slabs of one training call of a 4-layer
/// bidirectional stack. The pool only grows past what the calls hold at once when buffers
/// come from elsewhere (a cloned tape's); then the smallest go.
const MAX_SPARE: usize = 64;

/// A pool of spare buffers, shared by a model and the tapes it records. A clone is another
/// handle on the same pool.
pub(crate) struct Workspace<T> {
    spare: Arc<Mutex<Vec<Vec<T>>>>,
}

impl<T> std::fmt::Debug for Workspace<T> {
    /// The spare buffers' count and size, not their (stale) contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (count, bytes) = self.sizes();
        f.debug_struct("Workspace")
            .field("spare", &count)
            .field("bytes", &bytes)
            .finish()
    }
}

impl<T> Clone for Workspace<T> {
    fn clone(&self) -> Self {
        Self {
            spare: Arc::clone(&self.spare),
        }
    }
}

impl<T> Default for Workspace<T> {
    fn default() -> Self {
        Self {
            spare: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T> Workspace<T> {
    /// Keeps `v` for a later [`Workspace::take`] (the smallest spare goes beyond
    /// [`MAX_SPARE`]).
    pub fn give(&self, v: Vec<T>) {
        if v.capacity() == 0 {
            return;
        }
        let mut spare = self.lock();
        spare.push(v);
        if spare.len() > MAX_SPARE
            && let Some(i) = (0..spare.len()).min_by_key(|&i| spare[i].capacity())
        {
            spare.swap_remove(i);
        }
    }

    /// Drops every spare buffer.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Bytes held by the spare buffers.
    pub fn bytes(&self) -> usize {
        self.sizes().1
    }

    /// The spare buffers' count and bytes, under one lock.
    fn sizes(&self) -> (usize, usize) {
        let spare = self.lock();
        let values = spare.iter().map(Vec::capacity).sum::<usize>();
        (spare.len(), values * std::mem::size_of::<T>())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<T>>> {
        // A panic while the lock was held cannot leave the list half-changed.
        self.spare.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Float> Workspace<T> {
    /// A buffer of `len` values, each of which the caller must write before it reads it:
    /// the smallest spare buffer that holds `len` values, or a new one. Debug builds fill
    /// it with NaN.
    pub fn take(&self, len: usize) -> Vec<T> {
        if len == 0 {
            return Vec::new();
        }
        let found = {
            let mut spare = self.lock();
            let best = spare
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            best.map(|i| spare.swap_remove(i))
        };
        let Some(mut v) = found else {
            return vec![T::zero(); len];
        };
        if v.len() > len {
            v.truncate(len);
        } else {
            v.resize(len, T::zero());
        }
        if cfg!(debug_assertions) {
            v.fill(T::nan());
        }
        v
    }

    /// As [`Workspace::take`], every value zero.
    pub fn take_zeroed(&self, len: usize) -> Vec<T> {
        let mut v = self.take(len);
        v.fill(T::zero());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_smallest_buffer_that_fits_and_keeps_the_rest() {
        let ws = Workspace::<f32>::default();
        ws.give(vec![1.0; 10]);
        ws.give(vec![2.0; 100]);
        ws.give(vec![3.0; 50]);
        let v = ws.take(40);
        assert_eq!((v.len(), v.capacity()), (40, 50));
        let w = ws.take(101);
        assert!(w.iter().all(|&x| x == 0.0), "a new buffer is zeroed");
        assert_eq!(ws.bytes(), 110 * 4);
        let shared = ws.clone();
        shared.give(v);
        assert_eq!(ws.bytes(), 160 * 4);
        assert_eq!(format!("{ws:?}"), "Workspace { spare: 3, bytes: 640 }");
        ws.clear();
        assert_eq!(shared.bytes(), 0);
        assert!(ws.take(0).is_empty());
    }

    #[test]
    fn keeps_the_largest_spares_up_to_the_cap() {
        let ws = Workspace::<f32>::default();
        for n in 1..=MAX_SPARE + 3 {
            ws.give(vec![0.0; n]);
        }
        let n = MAX_SPARE + 3;
        assert_eq!(ws.bytes(), (4..=n).sum::<usize>() * 4);
    }

    #[test]
    fn a_taken_buffer_is_poisoned_in_debug_builds_and_zeroed_on_request() {
        let ws = Workspace::<f64>::default();
        ws.give(vec![7.0; 8]);
        let v = ws.take(8);
        if cfg!(debug_assertions) {
            assert!(v.iter().all(|x| x.is_nan()));
        }
        ws.give(v);
        assert_eq!(ws.take_zeroed(6), vec![0.0; 6]);
    }
}
