//! The long-time-lag tasks (multiplication, temporal order, embedded Reber grammar, timing)
//! and the echo state network (`--cell esn`) end to end: each task trains on the one trainer
//! and prints its validation and test lines; the ESN fits, reports, saves, and `recur eval`
//! scores its file again with the same figure.

mod common;

use common::{number_after, ok, one_line_error, p, scratch};

/// Lines starting with `prefix`.
fn lines<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn each_long_lag_task_trains_on_the_one_trainer() {
    let small = [
        "--steps",
        "60",
        "--eval-every",
        "30",
        "--hidden-size",
        "16",
        "--batch-size",
        "8",
    ];
    for (task, seq_len, figure) in [
        ("multiplication", Some("12"), "solved"),
        ("temporal-order", Some("12"), "correct"),
        ("temporal-order-3", Some("12"), "correct"),
        ("timing", Some("6"), "correct"),
        ("reber", None, "strings correct"),
    ] {
        let mut args = vec!["train", "--task", task];
        if let Some(t) = seq_len {
            args.extend(["--seq-len", t]);
        }
        args.extend(small);
        let out = ok(&args);
        assert!(out.starts_with("recur train: "), "{task}: {out}");
        // step 0, 30 and 60
        assert_eq!(lines(&out, "step").len(), 3, "{task}: {out}");
        let test = lines(&out, "test:");
        assert_eq!(test.len(), 1, "{task}: {out}");
        let v = number_after(test[0], figure);
        assert!((0.0..=100.0).contains(&v), "{task}: {out}");
    }
}

/// The embedded Reber grammar is learnt step by step quickly (most steps have one or two
/// locally predictable successors): the share of correct steps must rise well above its
/// value before training.
#[test]
fn reber_prediction_improves() {
    let out = ok(&[
        "train",
        "--task",
        "reber",
        "--steps",
        "300",
        "--eval-every",
        "300",
        "--hidden-size",
        "24",
        "--lr",
        "0.01",
    ]);
    let steps = lines(&out, "step");
    let before = number_after(steps[0], "steps correct");
    let after = number_after(steps[steps.len() - 1], "steps correct");
    assert!(after > before + 20.0 && after > 70.0, "{out}");
}

/// The ESN fits a readout on every kind of generated task, prints each λ it tried, and
/// beats chance where the task is short enough for its fading memory.
#[test]
fn esn_fits_every_generated_task() {
    let base = [
        "--cell",
        "esn",
        "--hidden-size",
        "60",
        "--esn-sequences",
        "300",
    ];
    for (task, seq_len, figure) in [
        ("adding", "8", "solved"),
        ("multiplication", "8", "solved"),
        ("temporal-order", "10", "correct"),
        ("timing", "4", "correct"),
        ("reber", "", "strings correct"),
        ("copy", "2", "recalled"),
    ] {
        let mut args = vec!["train", "--task", task];
        if !seq_len.is_empty() {
            args.extend(["--seq-len", seq_len]);
        }
        args.extend(base);
        let out = ok(&args);
        assert!(out.contains("echo state network"), "{task}: {out}");
        assert_eq!(
            lines(&out, "  λ = ").len(),
            5,
            "{task}: the default grid: {out}"
        );
        let test = lines(&out, "test:");
        assert_eq!(test.len(), 1, "{task}: {out}");
        assert!(number_after(test[0], "mse") < 1.0, "{task}: {out}");
        let _ = number_after(test[0], figure);
    }
    // temporal order at T = 10: two symbols within the reservoir's memory, far above 25%
    let out = ok(&[
        "train",
        "--task",
        "temporal-order",
        "--seq-len",
        "10",
        "--cell",
        "esn",
        "--hidden-size",
        "200",
        "--esn-sequences",
        "1000",
    ]);
    let acc = number_after(lines(&out, "test:")[0], "correct");
    assert!(acc > 60.0, "{out}");
}

/// A saved ESN scores the same figures under `recur eval`, on its generated test set and on a
/// labelled file.
#[test]
fn esn_saves_and_eval_reproduces_the_test() {
    let dir = scratch("esn_eval");
    let file = dir.join("esn.safetensors");
    let out = ok(&[
        "train",
        "--task",
        "timing",
        "--seq-len",
        "4",
        "--cell",
        "esn",
        "--hidden-size",
        "50",
        "--esn-sequences",
        "200",
        "--checkpoint",
        p(&file),
    ]);
    let test = lines(&out, "test:")[0];
    let eval = ok(&["eval", "--checkpoint", p(&file)]);
    assert_eq!(
        number_after(test, "correct"),
        number_after(&eval, "correct"),
        "{out}\n{eval}"
    );
    assert_eq!(number_after(test, "mse"), number_after(&eval, "mse"));

    // labelled sequences: the class is whether the sum of the steps is positive
    let mut text = String::new();
    for i in 0..240u32 {
        let steps: Vec<f64> = (0..5)
            .map(|t| (((i * 7 + t * 13) % 11) as f64 - 5.0) / 5.0)
            .collect();
        let label = if steps.iter().sum::<f64>() > 0.0 {
            "up"
        } else {
            "down"
        };
        let s: Vec<String> = steps.iter().map(|v| v.to_string()).collect();
        text.push_str(&format!("{label}\t{}\n", s.join(" ")));
    }
    let seqs = dir.join("s.txt");
    std::fs::write(&seqs, text).unwrap();
    let model = dir.join("seq.safetensors");
    let out = ok(&[
        "train",
        "--sequences",
        p(&seqs),
        "--cell",
        "esn",
        "--hidden-size",
        "80",
        "--split",
        "0.6,0.2,0.2",
        "--checkpoint",
        p(&model),
        "--input-scaling",
        "0.5",
    ]);
    let acc = number_after(lines(&out, "test:")[0], "correct");
    assert!(acc > 70.0, "{out}");
    let eval = ok(&["eval", "--checkpoint", p(&model)]);
    assert_eq!(acc, number_after(&eval, "correct"), "{eval}");
    let all = ok(&["eval", "--checkpoint", p(&model), "--sequences", p(&seqs)]);
    assert!(all.contains("240 sequences"), "{all}");
}

#[test]
fn bad_settings_are_one_line_errors() {
    for args in [
        &["train", "--task", "reber", "--seq-len", "20"][..],
        &["train", "--task", "temporal-order", "--seq-len", "5"],
        &["train", "--task", "timing", "--seq-len", "1"],
        &["train", "--task", "timing", "--epochs", "2"],
        &["train", "--task", "reber", "--checkpoint", "x.safetensors"],
        &["train", "--spectral-radius", "0.5"],
        &["train", "--cell", "esn", "--num-layers", "2"],
        &["train", "--cell", "esn", "--ridge", "-1"],
        &["train", "--cell", "esn", "--ridge", "a,b"],
        &["train", "--cell", "esn", "--leak-rate", "0"],
        &["train", "--cell", "esn", "--sparsity", "1"],
        &["train", "--cell", "esn", "--hidden-size", "100000"],
    ] {
        one_line_error(args);
    }
}
