//! A persistent pair of threads for the products of small batches.
//!
//! At batch 1…15 the batch is too small to split by rows ([`super::split`]), and a time
//! step's product is too short (a few µs) for a fork-join: waking a pool thread costs about
//! as much as the product. A [`Pair`] keeps one helper thread, spinning between steps (the
//! process's own for sequence calls, see [`with_process_pair`]; one per [`crate::Stepper`]),
//! and splits each panel product ([`super::panels`]) by column blocks: the calling thread
//! takes the first half, the helper the second, and they meet at a counter. Each thread
//! then reads the same half of the weights at every step, which stays in its own core's L2
//! cache. A call's products over all steps (the input projection, the weight gradients)
//! are split by rows instead, as rayon would split them.
//!
//! [`install`] makes a pair the current one of the calling thread for the duration of a
//! closure; the panel product splits its work through it (see
//! `panels::matmul_panels`), and so do the elementwise passes of small batches
//! ([`split_rows`]).

use std::cell::{Cell, UnsafeCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Spins before a waiting thread parks or yields (around a millisecond: longer than the gap
/// between two products of a running sequence, so that it never parks mid-sequence).
const SPINS_BEFORE_PARK: usize = 1 << 16;

/// A job: run part `p` (0 on the calling thread, 1 on the helper).
type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// jobs posted so far
    posted: AtomicUsize,
    /// jobs the helper has finished
    finished: AtomicUsize,
    /// the helper is parked or about to park
    sleeping: AtomicBool,
    stop: AtomicBool,
    /// the helper's part of the last job panicked
    panicked: AtomicBool,
    /// the helper has entered its loop (until then the owner runs both halves itself)
    started: AtomicBool,
    /// the helper's thread, to unpark it
    helper: OnceLock<thread::Thread>,
    /// the current job; written by the owner before `posted` is raised (Release), read by
    /// the helper after it sees the raise (Acquire), live until the owner saw `finished`
    job: UnsafeCell<Option<*const Job>>,
}

// SAFETY: `job` is only written by the owner while the helper is idle (it has finished
// every posted job) and only read by the helper between a post and its `finished` store;
// the atomics order the two (see `Pair::split`).
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// The helper thread of a pair and what it shares with its owner.
pub struct Pair {
    shared: Arc<Shared>,
    helper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair").finish_non_exhaustive()
    }
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            posted: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            started: AtomicBool::new(false),
            helper: OnceLock::new(),
            job: UnsafeCell::new(None),
        })
    }
}

/// Runs `f` with a pair installed whose helper is a thread of rayon's pool (no thread is
/// started): `rayon::join` runs `f` on one worker and the helper's loop on another, which
/// ends when `f` returns. Where no second worker picks the loop up in time, the owner runs
/// both halves of each product itself. For a sequence's time loop, where rayon's own
/// threads are the ones on the cores.
pub fn with_rayon_pair<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pair = Pair {
        shared: Shared::new(),
        helper: None,
    };
    let (r, ()) = rayon::join(
        || {
            let r = install(Some(&pair), f);
            pair.shared.stop.store(true, Ordering::SeqCst);
            if let Some(t) = pair.shared.helper.get() {
                t.unpark();
            }
            r
        },
        || helper_loop(&pair.shared),
    );
    r
}

/// The process's own pair, for the sequences of small batches: started on first use, its
/// helper then spins between calls as between steps (parking a millisecond after its last
/// job), so that a loop of calls finds it awake.
static PROCESS_PAIR: Mutex<Option<Pair>> = Mutex::new(None);

/// Runs `f` with a pair installed for a whole call (a sequence's input projection, time
/// loop and the products after it): called from outside rayon's pool, the process's own
/// pair where no other call holds it; else one hosted by rayon's threads
/// ([`with_rayon_pair`]: inside the pool, where the other workers may be busy with calls of
/// their own, that helper only starts on a worker that is free); just `f` where this
/// thread has a pair installed already.
///
/// A rayon worker that has gone to sleep between calls takes its time to wake on a shared
/// virtual machine: measured here, in some calls of a GRU B4 inference the rayon-hosted
/// helper never started before the call ended (the whole call then ran on one thread, 3.6
/// instead of 2.0 ms). The process's own helper is a thread of its own that does not sleep
/// between back-to-back calls.
pub fn with_process_pair<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if with_current(|p| p.is_some()) {
        return f();
    }
    if rayon::current_thread_index().is_some() {
        return with_rayon_pair(f);
    }
    let guard = match PROCESS_PAIR.try_lock() {
        Ok(guard) => Some(guard),
        // A panic in an earlier call's product: the pair itself is sound (`split` clears
        // the helper's panic flag), so take it back.
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    };
    match guard {
        Some(mut guard) => {
            if guard.is_none() {
                *guard = Pair::new();
            }
            match guard.as_ref() {
                Some(pair) => {
                    PROCESS_PAIR_CALLS.with(|c| c.set(c.get() + 1));
                    install(Some(pair), f)
                }
                None => with_rayon_pair(f),
            }
        }
        None => with_rayon_pair(f),
    }
}

thread_local! {
    static PROCESS_PAIR_CALLS: Cell<usize> = const { Cell::new(0) };
}

/// How many calls of this thread have run on the process's own pair (see
/// [`with_process_pair`]; for tests).
#[cfg(any(test, feature = "internals"))]
pub fn process_pair_calls() -> usize {
    PROCESS_PAIR_CALLS.with(Cell::get)
}

impl Pair {
    /// Starts the helper thread; `None` when the system refuses a thread (the products then
    /// run on the calling thread alone).
    pub fn new() -> Option<Self> {
        let shared = Shared::new();
        let theirs = Arc::clone(&shared);
        let helper = thread::Builder::new()
            .name("recur-pair".into())
            .spawn(move || helper_loop(&theirs))
            .ok()?;
        Some(Self {
            shared,
            helper: Some(helper),
        })
    }

    /// Runs `f(0)` here and `f(1)` on the helper, and returns when both have finished.
    ///
    /// # Panics
    /// When either part panics.
    pub fn split(&self, f: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        if !s.started.load(Ordering::Acquire) {
            f(0);
            f(1);
            return;
        }
        // SAFETY: the helper has finished every posted job (checked below before returning
        // from the previous call), so it does not read `job` now. The pointer's lifetime is
        // erased; it is only used until `finished` reaches this job, before `split`
        // returns, while `f` is still borrowed.
        unsafe {
            let f: *const Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Job>(f);
            *s.job.get() = Some(f);
        }
        let ticket = s.posted.fetch_add(1, Ordering::SeqCst) + 1;
        if s.sleeping.load(Ordering::SeqCst)
            && let Some(t) = s.helper.get()
        {
            t.unpark();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| f(0)));
        let mut spins = 0usize;
        while s.finished.load(Ordering::Acquire) != ticket {
            spins += 1;
            if spins < SPINS_BEFORE_PARK {
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
        if let Err(payload) = mine {
            std::panic::resume_unwind(payload);
        }
        assert!(
            !s.panicked.swap(false, Ordering::AcqRel),
            "the pair's helper thread panicked"
        );
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.helper.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

fn helper_loop(s: &Shared) {
    if s.stop.load(Ordering::Acquire) {
        return;
    }
    let _ = s.helper.set(thread::current());
    s.started.store(true, Ordering::Release);
    let mut seen = 0usize;
    loop {
        let mut spins = 0usize;
        while s.posted.load(Ordering::Acquire) == seen {
            if s.stop.load(Ordering::Acquire) {
                return;
            }
            spins += 1;
            if spins < SPINS_BEFORE_PARK {
                std::hint::spin_loop();
            } else {
                // Announce the nap, then look once more: a post after this look sees
                // `sleeping` and unparks (both SeqCst, so one of the two sees the other).
                s.sleeping.store(true, Ordering::SeqCst);
                if s.posted.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                    thread::park_timeout(Duration::from_millis(10));
                }
                s.sleeping.store(false, Ordering::SeqCst);
                // Still nothing: nap again rather than spin again, so that an idle helper
                // costs a wake-up per nap and no spinning.
            }
        }
        seen += 1;
        // SAFETY: the owner wrote `job` before raising `posted` to `seen` (Acquire above
        // pairs with its SeqCst raise) and keeps the closure alive until `finished` is
        // `seen`.
        let job = unsafe { (*s.job.get()).expect("a posted job") };
        // SAFETY: as above.
        let ok = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(1) })).is_ok();
        if !ok {
            s.panicked.store(true, Ordering::Release);
        }
        s.finished.store(seen, Ordering::Release);
    }
}

thread_local! {
    static CURRENT: Cell<*const Pair> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with `pair` (if any) as this thread's current pair.
pub fn install<R>(pair: Option<&Pair>, f: impl FnOnce() -> R) -> R {
    let Some(pair) = pair else { return f() };
    struct Restore(*const Pair);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(pair)));
    f()
}

/// Runs `f` with this thread's current pair, if one is installed.
pub fn with_current<R>(f: impl FnOnce(Option<&Pair>) -> R) -> R {
    let p = CURRENT.with(Cell::get);
    // SAFETY: a non-null pointer was set by `install` from a reference that outlives the
    // closure `install` runs, during which alone it is set on this thread.
    f(unsafe { p.as_ref() })
}

/// Multiply-adds of one step's recurrent product (batch × G·H × R) from which a batch that
/// is not split by rows has its products split by columns between a [`Pair`] of threads.
const PAIR_MIN_STEP_FMAS: usize = 1 << 16;

/// Whether a batch in one part whose step products run on the panel kernel (`panels`) and
/// are big enough has them split by a [`Pair`]: when rayon's pool has two threads or more.
pub fn worth(parts: usize, panels: bool, step_fmas: usize) -> bool {
    parts == 1
        && panels
        && step_fmas >= PAIR_MIN_STEP_FMAS
        && !super::split::in_part()
        && rayon::current_num_threads() >= 2
}

/// A pair with its own helper thread, for a [`crate::Stepper`] (which lives across calls),
/// where [`worth`] says so.
pub fn for_stepper(panels: bool, step_fmas: usize) -> Option<Pair> {
    if worth(1, panels, step_fmas) {
        Pair::new()
    } else {
        None
    }
}

/// Runs a call's products and time loop `f` with a pair installed when `paired`: the
/// process's own pair where it is free, else one hosted by rayon's threads (see
/// [`with_process_pair`]).
pub fn with_pair_if<R: Send>(paired: bool, f: impl FnOnce() -> R + Send) -> R {
    if paired { with_process_pair(f) } else { f() }
}

/// Values of an elementwise pass (rows × width) from which [`split_rows`] splits it: about
/// a µs of activations, a few times the cost of meeting the helper.
const SPLIT_ROWS_MIN_VALUES: usize = 2048;

/// Runs `f` over an elementwise pass of `n` rows `width` values wide, `whole`: split in two
/// halves between the current pair's threads where a pair is installed and the pass is big
/// enough (`f` then runs on `split_at(whole, n / 2)`, the rows `0..n / 2` and `n / 2..n`,
/// one half on each thread), else `f(whole)` on this thread. Each row's arithmetic must be
/// the same on either thread.
pub fn split_rows<P: Send>(
    n: usize,
    width: usize,
    whole: P,
    split_at: impl FnOnce(P, usize) -> (P, P),
    f: impl Fn(P) + Sync,
) {
    let half = n / 2;
    with_current(|pair| match pair {
        Some(pair) if half > 0 && n * width >= SPLIT_ROWS_MIN_VALUES => {
            let (a, b) = split_at(whole, half);
            // each half taken once, by the thread that runs it
            let halves = [Mutex::new(Some(a)), Mutex::new(Some(b))];
            pair.split(&|part| {
                let piece = halves[part].lock().map(|mut h| h.take());
                f(piece.ok().flatten().expect("each half runs once"))
            });
        }
        _ => f(whole),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_run_every_time() {
        let pair = Pair::new().unwrap();
        for round in 0..2000usize {
            let hits = [AtomicUsize::new(0), AtomicUsize::new(0)];
            pair.split(&|p| {
                hits[p].fetch_add(round + 1, Ordering::Relaxed);
            });
            assert_eq!(hits[0].load(Ordering::Relaxed), round + 1);
            assert_eq!(hits[1].load(Ordering::Relaxed), round + 1);
            if round == 1000 {
                // long enough for the helper to park; the next job must wake it
                thread::sleep(Duration::from_millis(30));
            }
        }
    }

    #[test]
    fn a_panic_in_the_helper_reaches_the_owner() {
        let pair = Pair::new().unwrap();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            pair.split(&|p| assert_ne!(p, 1, "helper fails"));
        }));
        assert!(caught.is_err());
        // and the pair still works afterwards
        let hits = AtomicUsize::new(0);
        pair.split(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.into_inner(), 2);
    }

    #[test]
    fn a_rayon_pair_runs_both_halves_and_ends() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let total = pool.install(|| {
            with_rayon_pair(|| {
                let hits = AtomicUsize::new(0);
                for _ in 0..500 {
                    with_current(|p| {
                        p.unwrap().split(&|_| {
                            hits.fetch_add(1, Ordering::Relaxed);
                        })
                    });
                }
                hits.into_inner()
            })
        });
        assert_eq!(total, 1000);
        // one thread: the helper never starts, the owner runs both halves
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let total = one.install(|| {
            with_rayon_pair(|| {
                let hits = AtomicUsize::new(0);
                with_current(|p| {
                    p.unwrap().split(&|_| {
                        hits.fetch_add(1, Ordering::Relaxed);
                    })
                });
                hits.into_inner()
            })
        });
        assert_eq!(total, 2);
    }

    #[test]
    fn split_rows_covers_every_row_once() {
        let pair = Pair::new().unwrap();
        // until its helper runs, a pair runs both halves on the owner
        while !pair.shared.started.load(Ordering::Acquire) {
            thread::yield_now();
        }
        for (n, width) in [(1, 4096), (2, 1024), (5, 1024), (9, 4096), (8, 16)] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            let threads = std::sync::Mutex::new(std::collections::HashSet::new());
            install(Some(&pair), || {
                let cut = |r: std::ops::Range<usize>, mid| (r.start..mid, mid..r.end);
                split_rows(n, width, 0..n, cut, |rows| {
                    threads.lock().unwrap().insert(thread::current().id());
                    for b in rows {
                        hits[b].fetch_add(1, Ordering::Relaxed);
                    }
                });
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "n = {n}"
            );
            // split only from two rows and SPLIT_ROWS_MIN_VALUES values up
            let split = n >= 2 && n * width >= SPLIT_ROWS_MIN_VALUES;
            assert_eq!(
                threads.into_inner().unwrap().len(),
                1 + split as usize,
                "n = {n}"
            );
        }
    }

    #[test]
    fn install_is_scoped() {
        let pair = Pair::new().unwrap();
        assert!(with_current(|p| p.is_none()));
        install(Some(&pair), || assert!(with_current(|p| p.is_some())));
        assert!(with_current(|p| p.is_none()));
    }
}
