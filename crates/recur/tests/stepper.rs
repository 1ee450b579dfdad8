//! The streaming session, [`recur::layer::Stepper`]:
//!
//! - its outputs and states equal [`Recurrent::forward`] over the whole sequence, for every
//!   cell kind and option, 1–3 layers, batch 1 and 3, f64 and f32 (to the kernel-dispatch
//!   tolerance of `tests/common/cases.rs`, whose reasoning applies unchanged), and equal
//!   `forward` on each one-step sequence: bit for bit at batch 1 (the same products, of the
//!   same shapes and operand layouts), to the same tolerance at batch > 1 (where the stepper
//!   reads a packed `W_ihᵀ`, see `DISPATCH_TOL_F64`);
//! - `set_state`, `state` and `reset` round-trip bit for bit;
//! - a step allocates nothing (counted by this binary's global allocator);
//! - wrong shapes are typed errors that leave the state untouched; reverse and bidirectional
//!   stacks are refused.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mod common;

use common::cases::*;
use recur::{
    BatchLayout, Call, CellKind, Direction, Error, LstmCell, Recurrent, RecurrentConfig, State,
    Tensor,
};

const SEQ_LEN: usize = 7;
/// Batch 1 reads the stored recurrent weights through a transposed view; larger batches read
/// a packed copy. Both paths are covered.
const BATCHES: [usize; 2] = [1, 3];

// The tolerance against the whole sequence: `DISPATCH_TOL_F64` / `DISPATCH_TOL_F32`
// (tests/common/cases.rs), for the reason given there: stepping runs the input projection
// on `batch` rows per step where the whole sequence runs it on `seq_len · batch` rows in
// one product, and the `gemm` crate picks its kernel by size; a real bug (a wrong state
// carried, a step lost or repeated, a layer fed the wrong input) moves values by
// O(0.01–1).
//
// Against `forward` on a one-step sequence the products have the same shapes, and at batch
// 1 the same operands too: bitwise. At batch > 1 the stepper reads `W_ihᵀ` packed row-major
// once (the strided view is ~7× slower for a few rows) where `forward` hands the `gemm`
// crate the strided view of the stored `W_ih`; the crate then takes another path and rounds
// the input product differently in the last bits (observed at batch 3: 1–2 ulp, e.g. 7e-9
// relative in f32, 1.1e-16 in f64): the same tolerance.

// ---------------------------------------------------------------------------------------------
// Allocation counting

/// The system allocator, counting the allocations each thread makes (tests run in parallel
/// threads, so a per-thread count sees only its own test).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the thread-local may already be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches only a
// const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract is passed on to `System`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Step `t` of a seq-first `[seq_len, batch, f]` tensor: `[batch, f]`, flat.
fn step_of<T: Real>(x: &Tensor<T>, t: usize) -> &[T] {
    let row = x.shape()[1] * x.shape()[2];
    &x.data()[t * row..(t + 1) * row]
}

// ---------------------------------------------------------------------------------------------
// Stepper ≡ forward

fn check_stepper_equals_forward<T: Real>() {
    let mut rng = SplitMix64(1);
    for num_layers in 1..=3 {
        for (name, cell) in cells(num_layers) {
            let m = model::<T>(config(cell, num_layers, Direction::Forward));
            let r = m.config().h_out();
            for batch in BATCHES {
                let x = rng.tensor::<T>(&[SEQ_LEN, batch, INPUT]);
                for s0 in [None, Some(rng.state(&m, batch))] {
                    let ctx = format!(
                        "{} {name} layers={num_layers} batch={batch} s0={}",
                        T::NAME,
                        if s0.is_some() { "random" } else { "zero" }
                    );
                    let full = m
                        .forward(&x, Call::new().state(s0.as_ref().map(State::view)))
                        .unwrap();
                    let mut stepper = m.stepper(batch).unwrap();
                    assert_eq!(stepper.batch(), batch);
                    if let Some(s) = &s0 {
                        stepper.set_state(s).unwrap();
                    }
                    let mut one_state = s0.clone().unwrap_or_else(|| m.zero_state(batch));
                    let mut y = vec![T::zero(); batch * r];
                    for t in 0..SEQ_LEN {
                        let xt = step_of(&x, t);
                        stepper.step(xt, &mut y).unwrap();
                        // The whole sequence: the same arithmetic through products of other
                        // sizes.
                        assert_same(
                            &format!("{ctx} step {t} output"),
                            &y,
                            step_of(&full.output, t),
                            Tol::Rel(dispatch_tol::<T>()),
                        );
                        // A one-step sequence: the same products of the same shapes (and at
                        // batch 1 the same operand layouts).
                        let one_tol = if batch == 1 {
                            Tol::Bitwise
                        } else {
                            Tol::Rel(dispatch_tol::<T>())
                        };
                        let xt = Tensor::new(xt.to_vec(), &[1, batch, INPUT]).unwrap();
                        let one = m.forward(&xt, Call::new().state(&one_state)).unwrap();
                        assert_same(
                            &format!("{ctx} step {t} output vs one-step forward"),
                            &y,
                            one.output.data(),
                            one_tol,
                        );
                        assert_state_same(
                            &format!("{ctx} step {t} state vs one-step forward"),
                            &stepper.state(),
                            &one.state,
                            one_tol,
                        );
                        one_state = one.state;
                    }
                    assert_state_same(
                        &format!("{ctx} final state"),
                        &stepper.state(),
                        &full.state,
                        Tol::Rel(dispatch_tol::<T>()),
                    );
                }
            }
        }
    }
}

in_f64_and_f32!(check_stepper_equals_forward => stepper_equals_whole_sequence_f64, stepper_equals_whole_sequence_f32);

/// The stepper reads `[batch, input_size]` whatever the model's layout, and `Recurrent::step`
/// (a one-call stepper) gives its numbers bit for bit.
#[test]
fn stepper_ignores_the_batch_layout_and_matches_recurrent_step() {
    let mut rng = SplitMix64(2);
    for (name, cell) in cells(2) {
        let sf = model::<f64>(config(cell, 2, Direction::Forward));
        let bf = Recurrent::from_params(
            RecurrentConfig {
                layout: BatchLayout::BatchFirst,
                ..sf.config().clone()
            },
            sf.params().to_vec(),
        )
        .unwrap();
        let batch = 3;
        let r = sf.config().h_out();
        let s0 = rng.state(&sf, batch);
        let (mut a, mut b) = (sf.stepper(batch).unwrap(), bf.stepper(batch).unwrap());
        a.set_state(&s0).unwrap();
        b.set_state(&s0).unwrap();
        let mut s = s0.clone();
        let (mut ya, mut yb) = (vec![0.0; batch * r], vec![0.0; batch * r]);
        for t in 0..SEQ_LEN {
            let ctx = format!("{name} step {t}");
            let xt = rng.vec::<f64>(batch * INPUT);
            a.step(&xt, &mut ya).unwrap();
            b.step(&xt, &mut yb).unwrap();
            let y = bf
                .step(&Tensor::new(xt, &[batch, INPUT]).unwrap(), &mut s)
                .unwrap();
            assert_same(&format!("{ctx} batch-first"), &yb, &ya, Tol::Bitwise);
            assert_same(
                &format!("{ctx} Recurrent::step"),
                y.data(),
                &ya,
                Tol::Bitwise,
            );
            assert_state_same(&ctx, &a.state(), &s, Tol::Bitwise);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State accessors

#[test]
fn set_state_and_reset_round_trip() {
    let mut rng = SplitMix64(3);
    for num_layers in [1, 3] {
        for (name, cell) in cells(num_layers) {
            let m = model::<f64>(config(cell, num_layers, Direction::Forward));
            let r = m.config().h_out();
            for batch in BATCHES {
                let ctx = format!("{name} layers={num_layers} batch={batch}");
                let xs: Vec<Vec<f64>> = (0..SEQ_LEN).map(|_| rng.vec(batch * INPUT)).collect();
                let mut y = vec![0.0; batch * r];
                let mut a = m.stepper(batch).unwrap();
                assert_eq!(a.state(), m.zero_state(batch), "{ctx}: a new stepper");
                // A state handed over mid-stream continues it exactly.
                for x in &xs[..3] {
                    a.step(x, &mut y).unwrap();
                }
                let mid = a.state();
                let mut b = m.stepper(batch).unwrap();
                b.set_state(&mid).unwrap();
                assert_eq!(b.state(), mid, "{ctx}: set_state then state");
                let mut yb = vec![0.0; batch * r];
                for x in &xs[3..] {
                    a.step(x, &mut y).unwrap();
                    b.step(x, &mut yb).unwrap();
                    assert_same(&format!("{ctx} continued"), &yb, &y, Tol::Bitwise);
                }
                assert_eq!(b.state(), a.state(), "{ctx}: continued state");
                // reset: back to zero, then the numbers of a fresh stepper.
                a.reset();
                assert_eq!(a.state(), m.zero_state(batch), "{ctx}: reset");
                let mut fresh = m.stepper(batch).unwrap();
                for x in &xs {
                    a.step(x, &mut y).unwrap();
                    fresh.step(x, &mut yb).unwrap();
                    assert_same(&format!("{ctx} after reset"), &y, &yb, Tol::Bitwise);
                }
                assert_eq!(a.state(), fresh.state(), "{ctx}: state after reset");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// No allocation

/// Every cell kind at batch 1 (streaming's case), both scalar types, small sizes and sizes
/// large enough for the `gemm` crate's blocked kernels: after the first step, stepping
/// allocates nothing.
///
/// Batch > 1 is not checked: there the `gemm` crate (0.19) runs its packed microkernel, which
/// allocates its own bookkeeping on every call (`gemm-common` `gemm.rs`: `did_pack_lhs =
/// vec![false; mc / MR]`, and a `MemBuffer` when it packs an operand), outside recur's reach
/// until the step product has its own small-M kernel in `kernel/`.
fn check_step_allocates_nothing<T: Real>() {
    let mut rng = SplitMix64(4);
    for (input_size, hidden_size) in [(INPUT, HIDDEN), (48, 96), (128, 256)] {
        for (name, cell) in cells(2) {
            let cell = match cell {
                CellKind::Lstm(c) if c.proj_size > 0 => CellKind::Lstm(LstmCell {
                    proj_size: hidden_size / 2,
                    ..c
                }),
                c => c,
            };
            let m = model::<T>(RecurrentConfig {
                input_size,
                hidden_size,
                ..config(cell, 2, Direction::Forward)
            });
            // batch 1 everywhere; batch 3 where the panel kernel runs (f32, AVX-512F), except
            // the reset-before GRU when its two column ranges of W_hhᵀ are not whole blocks
            // of 64 columns (2H not a multiple of 64): those go to the gemm crate
            let reset_before = matches!(
                &m.config().cell,
                CellKind::Gru(g) if g.reset == recur::ResetPlacement::BeforeMatmul
            );
            let ranges_on_panels = (2 * hidden_size).is_multiple_of(64);
            let batches: &[usize] = if T::NAME == "f32"
                && recur::kernel::Panels::available()
                && (!reset_before || ranges_on_panels)
            {
                &[1, 3]
            } else {
                &[1]
            };
            for &batch in batches {
                let ctx = format!(
                    "{} {name} I={input_size} H={hidden_size} batch={batch}",
                    T::NAME
                );
                let x = rng.vec::<T>(batch * input_size);
                let mut y = vec![T::zero(); batch * m.config().h_out()];
                let mut stepper = m.stepper(batch).unwrap();
                // The first step may set up lazily created per-thread state outside recur.
                stepper.step(&x, &mut y).unwrap();
                let before = allocations();
                for _ in 0..5 {
                    stepper.step(&x, &mut y).unwrap();
                }
                let n = allocations() - before;
                assert_eq!(n, 0, "{ctx}: 5 steps made {n} allocations");
            }
        }
    }
}

in_f64_and_f32!(check_step_allocates_nothing => step_allocates_nothing_f64, step_allocates_nothing_f32);

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn reverse_and_bidirectional_stacks_are_unsupported() {
    for direction in [Direction::Reverse, Direction::Bidirectional] {
        for (name, cell) in cells(2) {
            let m = model::<f64>(config(cell, 2, direction));
            match m.stepper(1) {
                Err(Error::Unsupported(msg)) => {
                    assert!(msg.starts_with("stepper: "), "{name} {direction:?}: {msg}");
                }
                other => panic!("{name} {direction:?}: {other:?}"),
            }
        }
    }
}

#[test]
fn an_empty_batch_is_an_empty_error() {
    let m = model::<f64>(config(CellKind::lstm(), 1, Direction::Forward));
    assert!(matches!(m.stepper(0), Err(Error::Empty(_))));
}

#[test]
fn buffers_of_the_wrong_length_are_length_errors_and_leave_the_state() {
    let mut rng = SplitMix64(5);
    for (name, cell) in cells(2) {
        let m = model::<f64>(config(cell, 2, Direction::Forward));
        let (batch, r) = (3, m.config().h_out());
        let mut stepper = m.stepper(batch).unwrap();
        stepper.set_state(&rng.state(&m, batch)).unwrap();
        let before = stepper.state();
        let mut y = vec![0.0; batch * r];
        for (what, x_len, y_len, shape) in [
            ("x", batch * INPUT - 1, batch * r, [batch, INPUT]),
            ("x", batch * INPUT + INPUT, batch * r, [batch, INPUT]),
            ("x", 0, batch * r, [batch, INPUT]),
            ("out", batch * INPUT, batch * r + 1, [batch, r]),
            ("out", batch * INPUT, 0, [batch, r]),
        ] {
            let ctx = format!("{name} {what} x_len={x_len} out_len={y_len}");
            let x = vec![0.5; x_len];
            y.resize(y_len, 0.0);
            match stepper.step(&x, &mut y) {
                Err(
                    ref e @ Error::Length {
                        what: ref w,
                        shape: ref s,
                        len,
                    },
                ) => {
                    assert_eq!((w.as_str(), &s.0[..]), (what, &shape[..]), "{ctx}: {e}");
                    assert_eq!(len, if what == "x" { x_len } else { y_len }, "{ctx}");
                    assert!(e.to_string().starts_with(&format!("{what}: ")), "{e}");
                }
                other => panic!("{ctx}: {other:?}"),
            }
            assert_eq!(
                stepper.state(),
                before,
                "{ctx}: a failed step changed the state"
            );
        }
    }
}

#[test]
fn set_state_of_the_wrong_shape_is_an_error_and_leaves_the_state() {
    let mut rng = SplitMix64(6);
    let lstm = model::<f64>(config(CellKind::lstm(), 2, Direction::Forward));
    let batch = 3;
    let mut stepper = lstm.stepper(batch).unwrap();
    stepper.set_state(&rng.state(&lstm, batch)).unwrap();
    let before = stepper.state();
    // A state for another batch size.
    let other = rng.state(&lstm, batch + 1);
    match stepper.set_state(&other) {
        Err(Error::Shape {
            what,
            expected,
            got,
        }) => {
            assert_eq!(what, "h0");
            assert_eq!(expected.0, [2, batch, HIDDEN]);
            assert_eq!(got.0, [2, batch + 1, HIDDEN]);
        }
        other => panic!("{other:?}"),
    }
    // A c of the wrong shape.
    let bad_c = State {
        h: before.h.clone(),
        c: Some(rng.tensor(&[1, batch, HIDDEN])),
    };
    assert!(matches!(stepper.set_state(&bad_c), Err(Error::Shape { what, .. }) if what == "c0"));
    // An LSTM state without c.
    let no_c = State {
        h: before.h.clone(),
        c: None,
    };
    assert!(matches!(
        stepper.set_state(&no_c),
        Err(Error::Unsupported(_))
    ));
    assert_eq!(
        stepper.state(),
        before,
        "a failed set_state changed the state"
    );
    // A GRU state with c.
    let gru = model::<f64>(config(CellKind::gru(), 1, Direction::Forward));
    let mut stepper = gru.stepper(batch).unwrap();
    let with_c = State {
        h: rng.tensor(&[1, batch, HIDDEN]),
        c: Some(rng.tensor(&[1, batch, HIDDEN])),
    };
    assert!(matches!(
        stepper.set_state(&with_c),
        Err(Error::Unsupported(_))
    ));
    assert_eq!(stepper.state(), gru.zero_state(batch));
}

/// bf16 weights (`WeightFormat::Bf16`): against f32 streaming with the same model over
/// `BF16_STEPS` steps of random input, the outputs stay within `BF16_STREAM_TOL`
/// (absolute; the states are in [−1, 1]). bf16 keeps 8 significant bits, so each weight and
/// each input or state value moves by up to 2⁻⁹ relative; a dot product of a few hundred
/// such terms moves by ~1e-3, and the recurrence carries it on without growing (contractive
/// cells). Observed here: see the printed figure (a few 1e-3). A step also allocates
/// nothing, and where the CPU has no AVX-512 BF16 (or the model is f64) the stepper is
/// refused with a typed error.
const BF16_STREAM_TOL: f64 = 1e-2;
const BF16_STEPS: usize = 200;

#[test]
fn bf16_streaming_stays_close_to_f32() {
    let mut rng = SplitMix64(8);
    for (name, cell) in [("lstm", CellKind::lstm()), ("gru", CellKind::gru())] {
        for hidden in [256, 512] {
            let m = Recurrent::<f32>::new(
                RecurrentConfig {
                    cell: cell.clone(),
                    input_size: hidden,
                    hidden_size: hidden,
                    ..Default::default()
                },
                3,
            )
            .unwrap();
            let Ok(mut bf) = m.stepper_with(1, recur::WeightFormat::Bf16) else {
                assert!(!recur::kernel::Panels::bf16_available());
                return;
            };
            let mut f32s = m.stepper(1).unwrap();
            let (mut y, mut z) = (vec![0f32; hidden], vec![0f32; hidden]);
            let mut worst = 0f64;
            let mut before = 0;
            let xs: Vec<Vec<f32>> = (0..BF16_STEPS).map(|_| rng.vec::<f32>(hidden)).collect();
            for (t, x) in xs.iter().enumerate() {
                if t == BF16_STEPS - 5 {
                    before = allocations();
                }
                bf.step(x, &mut y).unwrap();
                f32s.step(x, &mut z).unwrap();
                for (a, b) in y.iter().zip(&z) {
                    worst = worst.max(f64::from((a - b).abs()));
                }
            }
            // the f32 stepper ran in between: count both, neither may allocate
            assert_eq!(
                allocations() - before,
                0,
                "{name} H={hidden}: steps allocated"
            );
            println!("bf16 vs f32 streaming, {name} H={hidden}: max |Δh| = {worst:.2e}");
            assert!(worst <= BF16_STREAM_TOL, "{name} H={hidden}: {worst:e}");
            assert!(
                worst > 0.0,
                "{name} H={hidden}: bf16 did not change anything"
            );
        }
    }
}

#[test]
fn bf16_streaming_is_refused_for_f64() {
    let m = model::<f64>(config(CellKind::lstm(), 1, Direction::Forward));
    assert!(matches!(
        m.stepper_with(1, recur::WeightFormat::Bf16),
        Err(Error::Unsupported(_))
    ));
}

/// bf16 sequence inference (`Recurrent::forward_with`): at batch 1 it equals a bf16
/// `Stepper` step by step, bit for bit (every cell and option, two layers), as f32 inference
/// equals f32 streaming; over a ragged bidirectional batch of 37 (rows split between
/// threads, each step's input projected inside the loop) it stays within `BF16_STREAM_TOL`
/// of f32 inference, and differs from it. Where the CPU has no AVX-512 BF16 it is refused
/// with a typed error.
#[test]
fn bf16_sequence_inference_equals_bf16_streaming_and_stays_close_to_f32() {
    let bf16 = recur::WeightFormat::Bf16;
    let mut rng = SplitMix64(21);
    let t = 30;
    if !recur::kernel::Panels::bf16_available() {
        let m = model::<f32>(config(CellKind::lstm(), 1, Direction::Forward));
        let x = rng.tensor::<f32>(&[t, 1, INPUT]);
        assert!(matches!(
            m.forward_with(&x, Call::new(), bf16),
            Err(Error::Unsupported(_))
        ));
        return;
    }
    for (name, cell) in cells(2) {
        let m = model::<f32>(config(cell.clone(), 2, Direction::Forward));
        let r = m.config().h_out();
        if cell.layer_norm() {
            // not offered for layer norm: refused with a typed error (before any draw, so
            // that the other cells see the data they always saw)
            let x = Tensor::new(vec![0.5f32; t * INPUT], &[t, 1, INPUT]).unwrap();
            assert!(matches!(
                m.forward_with(&x, Call::new(), bf16),
                Err(Error::Unsupported(_))
            ));
            assert!(m.stepper_with(1, bf16).is_err());
            continue;
        }
        let x = rng.tensor::<f32>(&[t, 1, INPUT]);
        let out = m.forward_with(&x, Call::new(), bf16).unwrap();
        let mut stepper = m.stepper_with(1, bf16).unwrap();
        let mut y = vec![0f32; r];
        for s in 0..t {
            stepper.step(step_of(&x, s), &mut y).unwrap();
            let want = &out.output.data()[s * r..(s + 1) * r];
            assert!(
                want.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name} step {s}: {want:?} vs {y:?}"
            );
        }

        let m = model::<f32>(config(cell, 2, Direction::Bidirectional));
        let batch = 37;
        let x = rng.tensor::<f32>(&[t, batch, INPUT]);
        let lengths: Vec<usize> = (0..batch).map(|b| 1 + (b * 7) % t).collect();
        let low = m
            .forward_with(&x, Call::new().lengths(&lengths), bf16)
            .unwrap();
        let full = m.forward(&x, Call::new().lengths(&lengths)).unwrap();
        let mut worst = 0f64;
        for (a, b) in [
            (low.output.data(), full.output.data()),
            (low.state.h.data(), full.state.h.data()),
        ] {
            for (p, q) in a.iter().zip(b) {
                worst = worst.max(f64::from((p - q).abs()));
            }
        }
        println!("bf16 vs f32 inference, {name}, ragged bidirectional: max |Δ| = {worst:.2e}");
        assert!(worst <= BF16_STREAM_TOL, "{name}: {worst:e}");
        assert!(worst > 0.0, "{name}: bf16 did not change anything");
    }
}

#[test]
fn bf16_sequence_inference_is_refused_for_f64() {
    let m = model::<f64>(config(CellKind::lstm(), 1, Direction::Forward));
    let x = SplitMix64(2).tensor::<f64>(&[3, 1, INPUT]);
    assert!(matches!(
        m.forward_with(&x, Call::new(), recur::WeightFormat::Bf16),
        Err(Error::Unsupported(_))
    ));
}
