//! `Recurrent::backward_with_norms`: the ‖∂L/∂h_t‖ and ‖∂L/∂c_t‖ it records are the norms of
//! the gradients that an independent computation gives, and recording changes nothing else.
//!
//! - for every cell kind and option: at each t, a forward over steps [0, t] and then a
//!   backward over (t, T) started from its final state returns ∂L/∂h_t (with the output's own
//!   gradient at t added) and ∂L/∂c_t (h_t held fixed) as its initial-state gradients; the
//!   whole sequence's recorded norms are their norms;
//! - a ragged batch through two bidirectional layers: each sequence's record is that sequence
//!   alone's, and zero past its end;
//! - the parameter, input and initial-state gradients are `backward`'s, bit for bit.

mod common;

use common::cases::*;
use recur::{Call, Direction, OutputGrad, Recurrent, State, StateGradNorms, Tensor};

const SEQ_LEN: usize = 6;
const BATCH: usize = 3;

/// Steps `t0..t1` of a seq-first `[T, B, f]` tensor, and of sequence `b` only when given.
fn steps(x: &Tensor<f64>, t0: usize, t1: usize, b: Option<usize>) -> Tensor<f64> {
    let &[_, nb, f] = x.shape() else {
        panic!("three axes")
    };
    let rows: Vec<usize> = b.map_or_else(|| (0..nb).collect(), |b| vec![b]);
    let mut v = Vec::new();
    for t in t0..t1 {
        for &r in &rows {
            v.extend_from_slice(&x.data()[(t * nb + r) * f..][..f]);
        }
    }
    Tensor::new(v, &[t1 - t0, rows.len(), f]).unwrap()
}

/// The L2 norm of each `f`-wide row.
fn row_norms(v: &[f64], f: usize) -> Vec<f64> {
    v.chunks_exact(f)
        .map(|r| r.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect()
}

/// Loss gradients: every output, the final h and (LSTM) c.
struct Upstream {
    dy: Tensor<f64>,
    dh_n: Tensor<f64>,
    dc_n: Option<Tensor<f64>>,
}

impl Upstream {
    fn draw(model: &Recurrent<f64>, seq_len: usize, rng: &mut SplitMix64) -> Self {
        let cfg = model.config();
        let width = cfg.direction.count() * cfg.h_out();
        let state = rng.state(model, BATCH);
        Self {
            dy: rng.tensor(&[seq_len, BATCH, width]),
            dh_n: state.h,
            dc_n: state.c,
        }
    }

    fn grad(&self) -> OutputGrad<'_, f64> {
        OutputGrad {
            output: Some(self.dy.view()),
            h: Some(self.dh_n.view()),
            c: self.dc_n.as_ref().map(Tensor::view),
        }
    }
}

#[test]
fn norms_are_those_of_the_gradients_a_split_backward_returns() {
    for (name, cell) in cells(1) {
        let model = model::<f64>(config(cell, 1, Direction::Forward));
        let has_c = model.config().cell.has_cell_state();
        let mut rng = SplitMix64(seed_of(name));
        let x = rng.tensor::<f64>(&[SEQ_LEN, BATCH, INPUT]);
        let up = Upstream::draw(&model, SEQ_LEN, &mut rng);
        let (_, tape) = model.forward_train(&x, Call::new()).unwrap();
        let mut g = vec![0.0; model.params().len()];
        let (dx, norms) = model.backward_with_norms(&tape, up.grad(), &mut g).unwrap();
        assert_eq!(norms.h.shape(), &[1, SEQ_LEN, BATCH], "{name}");
        assert_eq!(norms.c.is_some(), has_c, "{name}");

        // recording changes nothing
        let mut g_plain = vec![0.0; model.params().len()];
        let dx_plain = model.backward(&tape, up.grad(), &mut g_plain).unwrap();
        assert_same(name, &g, &g_plain, Tol::Bitwise);
        assert_same(name, dx.input.data(), dx_plain.input.data(), Tol::Bitwise);
        assert_state_same(name, &dx.state, &dx_plain.state, Tol::Bitwise);

        let r = model.config().h_out();
        for t in 0..SEQ_LEN {
            // ∂L/∂h_t and ∂L/∂c_t: the output's gradient at t plus what (t, T) sends back
            let (mut want_h, want_c) = if t + 1 == SEQ_LEN {
                (
                    up.dh_n.data().to_vec(),
                    up.dc_n.as_ref().map(|c| c.data().to_vec()),
                )
            } else {
                let head = model
                    .forward(&steps(&x, 0, t + 1, None), Call::new())
                    .unwrap();
                let rest = steps(&x, t + 1, SEQ_LEN, None);
                let (_, tape) = model
                    .forward_train(&rest, Call::new().state(&head.state))
                    .unwrap();
                let dy_rest = steps(&up.dy, t + 1, SEQ_LEN, None);
                let grad = OutputGrad {
                    output: Some(dy_rest.view()),
                    ..up.grad()
                };
                let mut g = vec![0.0; model.params().len()];
                let back = model.backward(&tape, grad, &mut g).unwrap();
                (
                    back.state.h.data().to_vec(),
                    back.state.c.map(|c| c.data().to_vec()),
                )
            };
            for (w, d) in want_h.iter_mut().zip(steps(&up.dy, t, t + 1, None).data()) {
                *w += d;
            }
            let at = |v: &Tensor<f64>| v.data()[t * BATCH..(t + 1) * BATCH].to_vec();
            let what = format!("{name} t = {t}");
            let tol = Tol::Rel(DISPATCH_TOL_F64);
            assert_same(&what, &at(&norms.h), &row_norms(&want_h, r), tol);
            if let (Some(c), Some(want_c)) = (&norms.c, want_c) {
                let h = model.config().hidden_size;
                assert_same(&format!("{what} c"), &at(c), &row_norms(&want_c, h), tol);
            }
        }
    }
}

#[test]
fn a_ragged_batch_records_each_sequence_as_if_alone() {
    let lengths = [6, 3, 5];
    for name in ["lstm", "lstm_peepholes", "gru_reset_after", "rnn_tanh"] {
        let cell = cells(2).into_iter().find(|(n, _)| *n == name).unwrap().1;
        let model = model::<f64>(config(cell, 2, Direction::Bidirectional));
        let mut rng = SplitMix64(seed_of(name) ^ 1);
        let x = rng.tensor::<f64>(&[SEQ_LEN, BATCH, INPUT]);
        let up = Upstream::draw(&model, SEQ_LEN, &mut rng);
        let (_, tape) = model
            .forward_train(&x, Call::new().lengths(&lengths))
            .unwrap();
        let mut g = vec![0.0; model.params().len()];
        let (_, norms) = model.backward_with_norms(&tape, up.grad(), &mut g).unwrap();
        let ld = 4;
        assert_eq!(norms.h.shape(), &[ld, SEQ_LEN, BATCH], "{name}");
        for (b, &len) in lengths.iter().enumerate() {
            // the sequence alone: its steps, its upstream gradients
            let state_of = |v: &Tensor<f64>| {
                let f = v.shape()[2];
                let mut out = Vec::new();
                for l in 0..ld {
                    out.extend_from_slice(&v.data()[(l * BATCH + b) * f..][..f]);
                }
                Tensor::new(out, &[ld, 1, f]).unwrap()
            };
            let alone_up = State {
                h: state_of(&up.dh_n),
                c: up.dc_n.as_ref().map(state_of),
            };
            let dy = steps(&up.dy, 0, len, Some(b));
            let xb = steps(&x, 0, len, Some(b));
            let (_, tape) = model.forward_train(&xb, Call::new()).unwrap();
            let grad = OutputGrad {
                output: Some(dy.view()),
                h: Some(alone_up.h.view()),
                c: alone_up.c.as_ref().map(Tensor::view),
            };
            let mut g = vec![0.0; model.params().len()];
            let (_, alone) = model.backward_with_norms(&tape, grad, &mut g).unwrap();
            let pick = |n: &StateGradNorms<f64>, c: bool, nb: usize, b: usize, t1: usize| {
                let v = if c { n.c.as_ref().unwrap() } else { &n.h };
                let tl = v.shape()[1];
                let mut out = Vec::new();
                for l in 0..ld {
                    for t in 0..t1 {
                        out.push(v.data()[(l * tl + t) * nb + b]);
                    }
                }
                out
            };
            for c in [false, true] {
                if c && norms.c.is_none() {
                    continue;
                }
                let what = format!("{name} sequence {b} {}", if c { "c" } else { "h" });
                let got = pick(&norms, c, BATCH, b, SEQ_LEN);
                let want = pick(&alone, c, 1, 0, len);
                for l in 0..ld {
                    let row = &got[l * SEQ_LEN..(l + 1) * SEQ_LEN];
                    let tol = Tol::Rel(DISPATCH_TOL_F64);
                    assert_same(&what, &row[..len], &want[l * len..(l + 1) * len], tol);
                    assert!(row[..len].iter().all(|&v| v > 0.0), "{what}: {row:?}");
                    assert!(row[len..].iter().all(|&v| v == 0.0), "{what}: {row:?}");
                }
            }
        }
    }
}
