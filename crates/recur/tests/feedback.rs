//! The output-to-hidden network (`model/feedback.rs`, form ii): f64 central-difference checks
//! of every parameter's and every input's gradient under teacher forcing, free running and
//! scheduled sampling; the stepper against the whole free-running sequence; teacher forcing
//! against an independent per-step computation; seeds; typed errors.

use recur::Tensor;
use recur::io::{feedback_bytes, load_feedback_bytes};
use recur::model::{Feed, Feedback, FeedbackConfig};

/// Relative error allowed between the analytic and the central-difference gradient (the
/// criterion of `tests/gradcheck.rs`): central differences with step [`EPS`] on these smooth
/// unit-scale f64 functions are accurate to ~1e-9, and a wrong or missing term is off by
/// order 1.
const GRADCHECK_TOL: f64 = 1e-6;
/// Below this |analytic| + |numeric| the comparison becomes absolute.
const GRADCHECK_FLOOR: f64 = 1e-7;
/// Step of the central difference.
const EPS: f64 = 1e-6;
/// Teacher forcing against the per-step computation written out here: the same products
/// summed in another order, so a few ulps apart.
const PER_STEP_TOL: f64 = 1e-13;

const T: usize = 7;
const B: usize = 3;
const K: usize = 2;
const H: usize = 5;
const M: usize = 2;

fn config(activation: &str) -> FeedbackConfig {
    FeedbackConfig {
        input_size: K,
        hidden_size: H,
        output_size: M,
        activation: activation.into(),
    }
}

/// Deterministic values in (−1, 1), distinct for each `salt`.
fn values(n: usize, salt: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as f64 + 1.0) * 0.7919 + salt).sin())
        .collect()
}

fn data() -> (Tensor<f64>, Tensor<f64>) {
    let x = Tensor::new(values(T * B * K, 0.3), &[T, B, K]).unwrap();
    let y = Tensor::new(values(T * B * M, 1.7), &[T, B, M]).unwrap();
    (x, y)
}

/// L = ½ Σ (y − y*)² / N and its ∂L/∂y.
fn loss(y: &Tensor<f64>, target: &Tensor<f64>) -> (f64, Tensor<f64>) {
    let n = y.data().len() as f64;
    let diff: Vec<f64> = y
        .data()
        .iter()
        .zip(target.data())
        .map(|(a, b)| a - b)
        .collect();
    let l = diff.iter().map(|d| 0.5 * d * d).sum::<f64>() / n;
    let g = diff.iter().map(|d| d / n).collect();
    (l, Tensor::new(g, y.shape()).unwrap())
}

fn rel_err(a: f64, n: f64) -> f64 {
    (a - n).abs() / (a.abs() + n.abs()).max(GRADCHECK_FLOOR)
}

fn numeric(f: &dyn Fn(&[f64]) -> f64, at: &[f64], k: usize) -> f64 {
    let mut v = at.to_vec();
    v[k] = at[k] + EPS;
    let up = f(&v);
    v[k] = at[k] - EPS;
    let down = f(&v);
    (up - down) / (2.0 * EPS)
}

fn gradcheck(feed: Feed, activation: &str) {
    let net = Feedback::<f64>::new(config(activation), 5).unwrap();
    let (x, target) = data();
    let run = |params: &[f64], x: &Tensor<f64>| -> f64 {
        let net = Feedback::from_params(config(activation), params.to_vec()).unwrap();
        let (y, _) = net.forward(x, Some(&target), feed).unwrap();
        loss(&y, &target).0
    };
    let (y, tape) = net.forward(&x, Some(&target), feed).unwrap();
    let (_, g) = loss(&y, &target);
    let mut grads = vec![0.0; net.params().len()];
    let dx = net.backward(&tape, &g, &mut grads).unwrap();

    let names = net.config().layout();
    let mut offset = 0;
    let mut checked = 0;
    for (name, shape) in names {
        let n: usize = shape.iter().product();
        for (i, &analytic) in grads[offset..offset + n].iter().enumerate() {
            let num = numeric(&|p| run(p, &x), net.params(), offset + i);
            let e = rel_err(analytic, num);
            assert!(
                e <= GRADCHECK_TOL,
                "{feed:?} {name}[{i}]: analytic {analytic:e}, numeric {num:e}, rel err {e:e}"
            );
            checked += 1;
        }
        offset += n;
    }
    assert_eq!(checked, net.params().len());
    let f = |xs: &[f64]| run(net.params(), &Tensor::new(xs.to_vec(), &[T, B, K]).unwrap());
    for k in 0..x.data().len() {
        let num = numeric(&f, x.data(), k);
        let e = rel_err(dx.data()[k], num);
        assert!(
            e <= GRADCHECK_TOL,
            "{feed:?} input[{k}]: analytic {:e}, numeric {num:e}, rel err {e:e}",
            dx.data()[k]
        );
    }
}

#[test]
fn gradcheck_teacher_forcing() {
    gradcheck(Feed::TeacherForcing, "tanh");
}

#[test]
fn gradcheck_free_running() {
    gradcheck(Feed::FreeRunning, "tanh");
    gradcheck(Feed::FreeRunning, "relu");
}

#[test]
fn gradcheck_scheduled_sampling() {
    let feed = Feed::Scheduled {
        epsilon: 0.5,
        seed: 11,
    };
    // the check only means something if both kinds of step occur
    let net = Feedback::<f64>::new(config("tanh"), 5).unwrap();
    let (x, target) = data();
    let (_, tape) = net.forward(&x, Some(&target), feed).unwrap();
    let own = tape.mask().iter().filter(|&&m| m).count();
    assert!(
        own > 3 && own < (T - 1) * B - 3,
        "{own} of {} steps fed back",
        (T - 1) * B
    );
    gradcheck(feed, "tanh");
}

#[test]
fn teacher_forcing_is_per_step() {
    let net = Feedback::<f64>::new(config("tanh"), 9).unwrap();
    let (x, target) = data();
    let (y, _) = net
        .forward(&x, Some(&target), Feed::TeacherForcing)
        .unwrap();
    let (l, _) = loss(&y, &target);

    // every step on its own, from the layout's slices, with the previous target fed back
    let p = net.params();
    let (w_xh, rest) = p.split_at(H * K);
    let (w_yh, rest) = rest.split_at(H * M);
    let (b_h, rest) = rest.split_at(H);
    let (w_hy, b_y) = rest.split_at(M * H);
    let mut sum = 0.0;
    for t in 0..T {
        for b in 0..B {
            let xt = &x.data()[(t * B + b) * K..][..K];
            let prev: Vec<f64> = if t == 0 {
                vec![0.0; M]
            } else {
                target.data()[((t - 1) * B + b) * M..][..M].to_vec()
            };
            let h: Vec<f64> = (0..H)
                .map(|j| {
                    let mut a = b_h[j];
                    for i in 0..K {
                        a += w_xh[j * K + i] * xt[i];
                    }
                    for i in 0..M {
                        a += w_yh[j * M + i] * prev[i];
                    }
                    a.tanh()
                })
                .collect();
            for i in 0..M {
                let yi = b_y[i] + (0..H).map(|j| w_hy[i * H + j] * h[j]).sum::<f64>();
                let d = yi - target.data()[(t * B + b) * M + i];
                sum += 0.5 * d * d;
            }
        }
    }
    let want = sum / (T * B * M) as f64;
    assert!(
        (l - want).abs() <= PER_STEP_TOL * want.abs(),
        "{l} vs {want}"
    );
}

#[test]
fn stepper_equals_free_running_sequence() {
    let net = Feedback::<f64>::new(config("tanh"), 2).unwrap();
    let (x, _) = data();
    let (y, _) = net.forward(&x, None, Feed::FreeRunning).unwrap();
    let mut stepper = net.stepper(B).unwrap();
    for t in 0..T {
        let yt = stepper.step(&net, &x.data()[t * B * K..][..B * K]).unwrap();
        // the same operations in the same order: equal to the last bit
        assert_eq!(yt, &y.data()[t * B * M..][..B * M], "step {t}");
    }
}

#[test]
fn same_seed_same_run() {
    let (x, target) = data();
    let a = Feedback::<f64>::new(config("tanh"), 4).unwrap();
    let b = Feedback::<f64>::new(config("tanh"), 4).unwrap();
    let c = Feedback::<f64>::new(config("tanh"), 5).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.params(), c.params());
    let feed = |seed| Feed::Scheduled { epsilon: 0.5, seed };
    let (ya, ta) = a.forward(&x, Some(&target), feed(1)).unwrap();
    let (yb, tb) = b.forward(&x, Some(&target), feed(1)).unwrap();
    let (_, tc) = a.forward(&x, Some(&target), feed(2)).unwrap();
    assert_eq!(ya, yb);
    assert_eq!(ta.mask(), tb.mask());
    assert_ne!(ta.mask(), tc.mask());
    // ε = 0 and ε = 1 are teacher forcing and free running
    let (y0, _) = a
        .forward(
            &x,
            Some(&target),
            Feed::Scheduled {
                epsilon: 0.0,
                seed: 3,
            },
        )
        .unwrap();
    let (yt, _) = a.forward(&x, Some(&target), Feed::TeacherForcing).unwrap();
    assert_eq!(y0, yt);
    let (y1, _) = a
        .forward(
            &x,
            Some(&target),
            Feed::Scheduled {
                epsilon: 1.0,
                seed: 3,
            },
        )
        .unwrap();
    let (yf, _) = a.forward(&x, None, Feed::FreeRunning).unwrap();
    assert_eq!(y1, yf);
}

#[test]
fn bad_input_is_an_error() {
    let net = Feedback::<f64>::new(config("tanh"), 1).unwrap();
    let (x, target) = data();
    assert!(net.forward(&x, None, Feed::TeacherForcing).is_err());
    let bad = Feed::Scheduled {
        epsilon: 1.5,
        seed: 0,
    };
    assert!(net.forward(&x, Some(&target), bad).is_err());
    let wrong = Tensor::new(vec![0.0; T * B * 3], &[T, B, 3]).unwrap();
    assert!(net.forward(&wrong, None, Feed::FreeRunning).is_err());
    assert!(net.forward(&x, Some(&wrong), Feed::TeacherForcing).is_err());
    let (y, tape) = net.forward(&x, None, Feed::FreeRunning).unwrap();
    assert!(net.backward(&tape, &y, &mut [0.0; 3]).is_err());
    assert!(net.stepper(B).unwrap().step(&net, &[0.0; 1]).is_err());
    let zero = FeedbackConfig {
        hidden_size: 0,
        ..config("tanh")
    };
    assert!(Feedback::<f64>::new(zero, 0).is_err());
    assert!(Feedback::<f64>::new(config("gelu"), 0).is_err());
    assert!(Feedback::<f64>::from_params(config("tanh"), vec![0.0; 3]).is_err());
}

#[test]
fn saved_and_loaded() {
    let net = Feedback::<f64>::new(config("relu"), 8).unwrap();
    let bytes = feedback_bytes(&net, &[("note", "x")]).unwrap();
    let (back, extra) = load_feedback_bytes::<f64>(&bytes).unwrap();
    assert_eq!(back, net);
    assert_eq!(extra.get("note").map(String::as_str), Some("x"));
    // the same network gives the same bytes
    assert_eq!(feedback_bytes(&back, &[("note", "x")]).unwrap(), bytes);
    assert!(feedback_bytes(&net, &[("recur.format", "x")]).is_err());
    // another configuration's file is refused by its shapes
    let other = Feedback::<f64>::new(
        FeedbackConfig {
            hidden_size: H + 1,
            ..config("tanh")
        },
        8,
    )
    .unwrap();
    let bytes6 = feedback_bytes(&other, &[]).unwrap();
    let len = u64::from_le_bytes(bytes6[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes6[8..8 + len]).unwrap();
    let meta = &mut header["__metadata__"]["recur.feedback"];
    let patched = meta
        .as_str()
        .unwrap()
        .replace("\"hidden_size\":6", "\"hidden_size\":5");
    assert_ne!(
        meta.as_str().unwrap(),
        patched,
        "the configuration is in the header"
    );
    *meta = serde_json::Value::String(patched);
    let header = serde_json::to_vec(&header).unwrap();
    let mut swapped = (header.len() as u64).to_le_bytes().to_vec();
    swapped.extend_from_slice(&header);
    swapped.extend_from_slice(&bytes6[8 + len..]);
    let err = load_feedback_bytes::<f64>(&swapped)
        .unwrap_err()
        .to_string();
    assert!(err.contains("weight_xh"), "{err}");
    // sizes too large for memory are refused before anything is allocated
    let huge = FeedbackConfig {
        hidden_size: 1 << 16,
        input_size: 1 << 16,
        ..config("tanh")
    };
    assert!(Feedback::<f64>::new(huge, 0).is_err());
    assert!(load_feedback_bytes::<f64>(&bytes[..bytes.len() - 1]).is_err());
}
