//! Next-value prediction end to end: the output-to-hidden network (`--cell feedback`, form ii)
//! and an RNN with an output every step (form i) on `--task sines` and on a CSV series; the
//! network file read back by `recur eval` (the same test line), `recur predict` (a free-running
//! forecast) and `recur summary`; scheduled sampling and its schedules; seeds; the messages
//! of what does not fit.

mod common;

use std::path::Path;

use common::{number_after, ok, one_line_error, p, scratch};

/// Lines starting with `prefix`.
fn lines<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn test_line(out: &str) -> String {
    let t = lines(out, "test:");
    assert_eq!(t.len(), 1, "{out}");
    t[0].to_string()
}

const SMALL: [&str; 10] = [
    "--hidden-size",
    "8",
    "--batch-size",
    "8",
    "--window",
    "10",
    "--horizon",
    "5",
    "--eval-every",
    "20",
];

fn sines(extra: &[&str]) -> String {
    let mut args = vec!["train", "--task", "sines", "--steps", "40"];
    args.extend(SMALL);
    args.extend(extra);
    ok(&args)
}

/// A monthly series with a season of 12 and a trend: `n` rows from 2000-01.
fn monthly_csv(n: usize) -> String {
    let mut s = String::from("month,sales\n");
    for t in 0..n {
        let season = (2.0 * std::f64::consts::PI * t as f64 / 12.0).sin();
        let y = 1_000.0 + 2.0 * t as f64 + 200.0 * season;
        s.push_str(&format!("{}-{:02},{y:.1}\n", 2000 + t / 12, t % 12 + 1));
    }
    s
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    p(&path).to_string()
}

#[test]
fn form_ii_trains_on_sines_saves_and_eval_repeats_its_test() {
    let dir = scratch("feedback-sines");
    let file = dir.join("fb.safetensors");
    let out = sines(&["--cell", "feedback", "--checkpoint", p(&file)]);
    assert!(out.contains("output-to-hidden network (form ii)"), "{out}");
    // validations at steps 20 and 40, each with both errors
    let steps = lines(&out, "step");
    assert_eq!(steps.len(), 2, "{out}");
    for l in &steps {
        assert!(number_after(l, "one step") > 0.0, "{l}");
        assert!(number_after(l, "free running") > 0.0, "{l}");
    }
    let test = test_line(&out);
    assert!(number_after(&test, "ahead") > 0.0, "{test}");
    assert!(number_after(&test, "free running") > 0.0, "{test}");
    assert!(file.exists());

    // eval scores the same test set with the same network: the same line
    let eval = ok(&["eval", "--checkpoint", p(&file)]);
    assert_eq!(eval.trim(), test, "{eval}");

    let summary = ok(&["summary", p(&file)]);
    assert!(summary.contains("output-to-hidden network"), "{summary}");
    for name in ["weight_xh", "weight_yh", "bias_h", "weight_hy", "bias_y"] {
        assert!(summary.contains(name), "{summary}");
    }
    assert!(summary.contains("\"hidden_size\": 8"), "{summary}");
    // the table groups the tensors by layer: the hidden units', the output layer's
    let layer = |first: &str| summary.lines().find(|l| l.contains(first)).unwrap_or("");
    assert!(layer("weight_xh").starts_with("hidden"), "{summary}");
    assert!(layer("weight_hy").starts_with("output"), "{summary}");

    // a network of the generated task has no history to continue
    let e = one_line_error(&[
        "predict",
        "--checkpoint",
        p(&file),
        "--csv",
        p(&file),
        "-o",
        p(&dir.join("o.csv")),
    ]);
    assert!(e.contains("generated task"), "{e}");
}

/// Teacher forcing learns the one-step map: its validation error falls well below the
/// untrained network's.
#[test]
fn form_ii_one_step_error_falls() {
    let out = ok(&[
        "train",
        "--task",
        "sines",
        "--cell",
        "feedback",
        "--steps",
        "300",
        "--eval-every",
        "300",
        "--hidden-size",
        "16",
        "--window",
        "10",
        "--horizon",
        "5",
        "--lr",
        "0.01",
    ]);
    let before = number_after(lines(&out, "untrained")[0], "one step");
    let after = number_after(lines(&out, "step")[0], "one step");
    assert!(after < 0.5 * before, "{before} → {after}\n{out}");
}

#[test]
fn scheduled_sampling_changes_the_run_and_the_seed_repeats_it() {
    let dir = scratch("feedback-ss");
    let files: Vec<_> = (0..3)
        .map(|i| dir.join(format!("{i}.safetensors")))
        .collect();
    let tf = sines(&["--cell", "feedback", "--checkpoint", p(&files[0])]);
    let ss = |f: &Path| {
        sines(&[
            "--cell",
            "feedback",
            "--scheduled-sampling",
            "0.5",
            "--checkpoint",
            p(f),
        ])
    };
    let (a, b) = (ss(&files[1]), ss(&files[2]));
    assert!(a.contains("scheduled sampling ε = 0.5"), "{a}");
    assert_eq!(test_line(&a), test_line(&b));
    assert_eq!(
        std::fs::read(&files[1]).unwrap(),
        std::fs::read(&files[2]).unwrap()
    );
    assert_ne!(test_line(&a), test_line(&tf));
    assert_ne!(
        std::fs::read(&files[0]).unwrap(),
        std::fs::read(&files[1]).unwrap()
    );
    // another seed, another run
    let c = sines(&[
        "--cell",
        "feedback",
        "--scheduled-sampling",
        "0.5",
        "--seed",
        "1",
    ]);
    assert_ne!(test_line(&a), test_line(&c));
}

/// The schedules' ε at the validations (steps 20 and 40): a linear ramp over 40 steps, and
/// the inverse-sigmoid curve with K = 10.
#[test]
fn scheduled_sampling_schedules() {
    let out = sines(&[
        "--cell",
        "feedback",
        "--scheduled-sampling",
        "linear:0.4:40",
    ]);
    let eps: Vec<f64> = lines(&out, "step")
        .iter()
        .map(|l| number_after(l, "ε"))
        .collect();
    assert_eq!(eps, [0.2, 0.4], "{out}");
    let out = sines(&["--cell", "feedback", "--scheduled-sampling", "sigmoid:1:10"]);
    let eps: Vec<f64> = lines(&out, "step")
        .iter()
        .map(|l| number_after(l, "ε"))
        .collect();
    let want = |i: f64| 1.0 - 10.0 / (10.0 + (i / 10.0f64).exp());
    for (got, i) in eps.iter().zip([20.0, 40.0]) {
        assert!((got - want(i)).abs() < 1e-3, "{got} vs {}: {out}", want(i));
    }
}

#[test]
fn form_i_trains_on_the_same_task() {
    for cell in ["rnn", "lstm"] {
        let out = sines(&["--cell", cell]);
        assert!(out.contains("with an output every step (form i)"), "{out}");
        let test = test_line(&out);
        assert!(number_after(&test, "free running") > 0.0, "{test}");
    }
}

#[test]
fn a_csv_series_trains_and_the_network_forecasts_it() {
    let dir = scratch("feedback-csv");
    let csv = write(&dir, "sales.csv", &monthly_csv(120));
    let file = dir.join("fb.safetensors");
    let common = [
        "train",
        "--csv",
        &csv,
        "--target",
        "sales",
        "--time-column",
        "month",
        "--window",
        "12",
        "--horizon",
        "6",
        "--epochs",
        "3",
        "--hidden-size",
        "8",
    ];
    let mut args = common.to_vec();
    args.extend(["--cell", "feedback", "--checkpoint", p(&file)]);
    let out = ok(&args);
    assert_eq!(lines(&out, "epoch").len(), 3, "{out}");
    let test = test_line(&out);
    // in the data's units (a level of 1,000 and a season of ±200): the naive error is large
    assert!(number_after(&test, "value held)") > 10.0, "{test}");

    let eval = ok(&["eval", "--checkpoint", p(&file)]);
    assert_eq!(eval.trim(), test, "{eval}");

    let pred = dir.join("p.csv");
    let said = ok(&[
        "predict",
        "--checkpoint",
        p(&file),
        "--csv",
        &csv,
        "-o",
        p(&pred),
    ]);
    assert!(said.contains("6 prediction row(s)"), "{said}");
    let text = std::fs::read_to_string(&pred).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "month,sales", "{text}");
    assert_eq!(rows.len(), 7, "{text}");
    assert!(rows[1].starts_with("2010-01,"), "{text}");
    for r in &rows[1..] {
        let v: f64 = r.split(',').nth(1).unwrap().parse().unwrap();
        assert!(v.is_finite(), "{text}");
    }
    let held = ok(&[
        "predict",
        "--checkpoint",
        p(&file),
        "--csv",
        &csv,
        "--holdout",
        "-o",
        p(&pred),
    ]);
    assert!(number_after(&held, "MAE") > 0.0, "{held}");

    // form i on the same series
    let mut args = common.to_vec();
    args.extend(["--cell", "gru", "--next-value"]);
    let out = ok(&args);
    assert!(out.contains("(form i)"), "{out}");
    test_line(&out);
}

#[test]
fn what_does_not_fit_is_refused() {
    let dir = scratch("feedback-bad");
    let text = write(&dir, "t.txt", "hello world\n");
    let x = p(&dir.join("x.safetensors")).to_string();
    for (args, want) in [
        (
            vec!["train", "--cell", "feedback", "--task", "adding"],
            "runs on --task sines or --csv",
        ),
        (
            vec!["train", "--cell", "feedback", "--text", &text],
            "runs on --task sines or --csv",
        ),
        (
            vec!["train", "--task", "sines", "--scheduled-sampling", "0.3"],
            "an option of --cell feedback",
        ),
        (
            vec![
                "train",
                "--task",
                "sines",
                "--cell",
                "feedback",
                "--scheduled-sampling",
                "1.5",
            ],
            "expected EPS, linear:EPS:K or sigmoid:EPS:K",
        ),
        (
            vec![
                "train",
                "--task",
                "sines",
                "--cell",
                "feedback",
                "--scheduled-sampling",
                "cosine:0.5:10",
            ],
            "expected EPS, linear:EPS:K or sigmoid:EPS:K",
        ),
        (
            vec![
                "train",
                "--task",
                "sines",
                "--cell",
                "rnn",
                "--checkpoint",
                &x,
            ],
            "writes no file",
        ),
        (
            vec!["train", "--task", "adding", "--next-value"],
            "give --csv or --task sines",
        ),
        (
            vec!["train", "--task", "sines", "--cell", "esn"],
            "not offered",
        ),
        (
            vec!["train", "--task", "sines", "--seq-len", "20"],
            "--seq-len",
        ),
        (
            vec![
                "train",
                "--task",
                "sines",
                "--cell",
                "feedback",
                "--num-layers",
                "2",
            ],
            "one layer",
        ),
        (
            vec!["train", "--task", "sines", "--window", "0"],
            "at least 1",
        ),
        (
            vec!["train", "--task", "sines", "--window", "20000"],
            "at most",
        ),
    ] {
        let e = one_line_error(&args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
}
