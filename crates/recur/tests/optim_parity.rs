//! Optimizers and the fused cross-entropy against PyTorch: the fixtures in
//! `tests/fixtures/optim/`, made by `scripts/gen_optim_fixtures.py`, hold ten steps of each
//! `torch.optim` optimizer (float64, a fixed sequence of gradients) and `F.cross_entropy`
//! with ignored rows, and every learning-rate schedule of `torch.optim.lr_scheduler` recur
//! has, read before every step; recur replays them.

mod common;

use std::collections::HashMap;

use recur::Tensor;
use recur::model::{CrossEntropyConfig, Reduction, cross_entropy, cross_entropy_loss};
use recur::optim::{
    Adagrad, AdagradConfig, Adam, AdamConfig, AmsGrad, Centered, LrScheduler, Optimizer, Rmsprop,
    RmspropConfig, ScheduleConfig, Sgd, SgdConfig, WeightDecay,
};

/// Both sides compute in f64 with the same operation order and the same f64 scalars (PyTorch
/// computes its bias corrections and decayed learning rates in Python floats); the only
/// differences left are libm's `pow`/`sqrt` versus Rust's, a few ulps that ten steps can
/// amplify through Adam's division by √v (observed ≤ 1.3e-15 relative); 1e-12 leaves three
/// digits of room and still catches any wrong term, default or bias correction.
const PARITY_TOL: f64 = 1e-12;

/// Below this magnitude the comparison is absolute (a parameter passing through zero).
const PARITY_FLOOR: f64 = 1e-12;

fn close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(PARITY_FLOOR);
        assert!(
            err <= PARITY_TOL,
            "{what}[{k}]: recur {g:e}, PyTorch {w:e}, rel err {err:e}"
        );
    }
}

fn optim_fixtures() -> Vec<common::Fixture> {
    let fixtures: Vec<_> = common::load_all("optim")
        .into_iter()
        .filter(|f| f.meta.contains_key("optimizer"))
        .collect();
    assert!(
        fixtures.len() >= 8,
        "only {} optimizer fixtures",
        fixtures.len()
    );
    fixtures
}

fn float(meta: &HashMap<String, String>, key: &str) -> f64 {
    meta[key]
        .parse()
        .unwrap_or_else(|e| panic!("metadata {key}: {e}"))
}

fn flag(meta: &HashMap<String, String>, key: &str) -> bool {
    match meta[key].as_str() {
        "true" => true,
        "false" => false,
        v => panic!("metadata {key}: {v}"),
    }
}

/// The optimizer a fixture describes, built from its metadata (every hyperparameter PyTorch
/// ran with is written there).
fn build(f: &common::Fixture, len: usize) -> Box<dyn Optimizer<f64>> {
    let m = &f.meta;
    match m["optimizer"].as_str() {
        name @ ("adam" | "adamw") => Box::new(
            Adam::new(
                AdamConfig {
                    lr: float(m, "lr"),
                    betas: (float(m, "beta1"), float(m, "beta2")),
                    eps: float(m, "eps"),
                    weight_decay: float(m, "weight_decay"),
                    weight_decay_kind: if name == "adamw" {
                        WeightDecay::Decoupled
                    } else {
                        WeightDecay::L2
                    },
                    amsgrad: if flag(m, "amsgrad") {
                        AmsGrad::Enabled
                    } else {
                        AmsGrad::Disabled
                    },
                },
                len,
            )
            .unwrap(),
        ),
        "rmsprop" => Box::new(
            Rmsprop::new(
                RmspropConfig {
                    lr: float(m, "lr"),
                    alpha: float(m, "alpha"),
                    eps: float(m, "eps"),
                    weight_decay: float(m, "weight_decay"),
                    momentum: float(m, "momentum"),
                    centered: if flag(m, "centered") {
                        Centered::Enabled
                    } else {
                        Centered::Disabled
                    },
                },
                len,
            )
            .unwrap(),
        ),
        "adagrad" => Box::new(
            Adagrad::new(
                AdagradConfig {
                    lr: float(m, "lr"),
                    lr_decay: float(m, "lr_decay"),
                    weight_decay: float(m, "weight_decay"),
                    initial_accumulator_value: float(m, "initial_accumulator_value"),
                    eps: float(m, "eps"),
                },
                len,
            )
            .unwrap(),
        ),
        other => panic!("{}: unknown optimizer {other}", f.name),
    }
}

#[test]
fn every_optimizer_matches_pytorch_step_by_step() {
    for f in optim_fixtures() {
        let mut params = f.tensor("params0").into_data();
        let p = params.len();
        let grads = f.tensor("grads");
        let want = f.tensor("params");
        let steps = f.usize("steps");
        assert_eq!(grads.shape(), &[steps, p], "{}", f.name);
        assert_eq!(want.shape(), &[steps, p], "{}", f.name);
        let mut opt = build(&f, p);
        for t in 0..steps {
            opt.step(&mut params, &grads.data()[t * p..(t + 1) * p])
                .unwrap();
            close(
                &format!("{} step {}", f.name, t + 1),
                &params,
                &want.data()[t * p..(t + 1) * p],
            );
        }
    }
}

/// The AMSGrad fixture is only a test of AMSGrad if its running maximum differs from v by
/// the end; the gradients shrink late so that it does.
#[test]
fn amsgrad_fixture_exercises_the_maximum() {
    let f = optim_fixtures()
        .into_iter()
        .find(|f| f.name == "adam_amsgrad")
        .expect("adam_amsgrad fixture");
    let mut params = f.tensor("params0").into_data();
    let p = params.len();
    let grads = f.tensor("grads");
    let config = AdamConfig {
        lr: float(&f.meta, "lr"),
        betas: (float(&f.meta, "beta1"), float(&f.meta, "beta2")),
        amsgrad: AmsGrad::Enabled,
        ..Default::default()
    };
    let mut opt = Adam::new(config, p).unwrap();
    for g in grads.data().chunks_exact(p) {
        opt.step(&mut params, g).unwrap();
    }
    let state = opt.state_buffers();
    let (v, vmax) = (state[1].1, state[2].1);
    assert_eq!((state[1].0, state[2].0), ("exp_avg_sq", "max_exp_avg_sq"));
    assert!(vmax.iter().zip(v).any(|(a, b)| a > b), "v̂ = v everywhere");
    assert_eq!(opt.step_count(), 10);
}

#[test]
fn cross_entropy_matches_pytorch_with_ignored_rows() {
    let f = common::load(&common::fixture_dir().join("optim/cross_entropy.safetensors"));
    let logits = f.tensor("logits");
    let targets: Vec<usize> = f
        .tensor("targets")
        .data()
        .iter()
        .map(|&t| t as usize)
        .collect();
    let ignore_index = Some(f.usize("ignore_index"));
    assert!(targets.iter().any(|&t| Some(t) == ignore_index));
    for (reduction, name) in [(Reduction::Mean, "mean"), (Reduction::Sum, "sum")] {
        let config = CrossEntropyConfig {
            ignore_index,
            reduction,
        };
        let out = cross_entropy(&logits, &targets, &config, 1.0).unwrap();
        let want_loss = f.tensor(&format!("loss_{name}"));
        close(&format!("loss_{name}"), &[out.loss], want_loss.data());
        close(
            &format!("grad_{name}"),
            out.grad.data(),
            f.tensor(&format!("grad_{name}")).data(),
        );
        let (loss, count, _) = cross_entropy_loss(&logits, &targets, &config).unwrap();
        assert_eq!(loss, out.loss);
        assert_eq!(count, targets.iter().filter(|&&t| t != 0).count());
    }
    // The fixture's logits are [N, C]; the same rows as [2, N/2, C] must give the same.
    let n = targets.len();
    let c = logits.shape()[1];
    let x3 = Tensor::new(logits.data().to_vec(), &[2, n / 2, c]).unwrap();
    let config = CrossEntropyConfig {
        ignore_index,
        reduction: Reduction::Mean,
    };
    let a = cross_entropy(&x3, &targets, &config, 1.0).unwrap();
    close(
        "loss_mean [2, N/2, C]",
        &[a.loss],
        f.tensor("loss_mean").data(),
    );
}

/// recur's closed forms against PyTorch's recursive updates (each `scheduler.step()`
/// multiplies the current rate by a ratio): they differ only by the rounding of those
/// products, which grows with the number of steps (observed ≤ 5.1e-16 relative over the
/// fixtures' ≤ 60 epochs); 1e-13 leaves two digits of room and still catches an
/// off-by-one epoch, a wrong default or a missed reduction.
const SCHEDULE_TOL: f64 = 1e-13;

#[test]
fn every_schedule_matches_pytorch_step_by_step() {
    let fixtures: Vec<_> = common::load_all("optim")
        .into_iter()
        .filter(|f| f.meta.contains_key("schedule"))
        .collect();
    assert!(
        fixtures.len() >= 9,
        "only {} schedule fixtures",
        fixtures.len()
    );
    let mut worst = 0.0f64;
    let mut reductions = 0;
    for f in fixtures {
        let config: ScheduleConfig = serde_json::from_str(&f.meta["schedule"])
            .unwrap_or_else(|e| panic!("{}: schedule: {e}", f.name));
        let base_lr = float(&f.meta, "base_lr");
        let (epochs, batches) = (f.usize("epochs"), f.usize("batches"));
        let want = f.tensor("lr");
        assert_eq!(want.shape(), &[epochs * batches], "{}", f.name);
        let metrics = f.has("metrics").then(|| f.tensor("metrics"));
        let mut scheduler = LrScheduler::new(config, base_lr).unwrap();
        let mut sgd = Sgd::<f64>::new(SgdConfig::default(), 1).unwrap();
        for e in 0..epochs {
            for b in 0..batches {
                let step = (e * batches + b) as u64;
                let lr = scheduler.apply(&mut sgd, step, e as u64).unwrap();
                assert_eq!(sgd.lr(), lr);
                let w = want.data()[e * batches + b];
                let err = (lr - w).abs() / w.abs().max(PARITY_FLOOR);
                worst = worst.max(err);
                assert!(
                    err <= SCHEDULE_TOL,
                    "{} epoch {e} batch {b}: recur {lr:e}, PyTorch {w:e}, rel err {err:e}",
                    f.name
                );
            }
            if let Some(m) = &metrics {
                reductions += usize::from(scheduler.on_epoch_end(m.data()[e]));
            }
        }
    }
    assert!(
        reductions >= 8,
        "the plateau fixtures reduce only {reductions} times"
    );
    eprintln!("schedules: worst rel err {worst:e}");
}

/// A plateau scheduler saved mid-run and restored into a fresh one continues exactly.
#[test]
fn plateau_state_survives_a_checkpoint() {
    let f =
        common::load(&common::fixture_dir().join("optim/schedule_plateau_cooldown.safetensors"));
    let config: ScheduleConfig = serde_json::from_str(&f.meta["schedule"]).unwrap();
    let metrics = f.tensor("metrics");
    let mut straight = LrScheduler::new(config.clone(), 0.1).unwrap();
    let mut first = LrScheduler::new(config.clone(), 0.1).unwrap();
    let half = metrics.data().len() / 2;
    for &m in &metrics.data()[..half] {
        straight.on_epoch_end(m);
        first.on_epoch_end(m);
    }
    let json = serde_json::to_string(first.state()).unwrap();
    let mut resumed = LrScheduler::new(config, 0.1).unwrap();
    resumed
        .set_state(serde_json::from_str(&json).unwrap())
        .unwrap();
    for &m in &metrics.data()[half..] {
        assert_eq!(straight.on_epoch_end(m), resumed.on_epoch_end(m));
        assert_eq!(straight.lr_at(1000, 0), resumed.lr_at(1000, 0));
    }
}
