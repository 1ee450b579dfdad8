//! The `recur` binary end to end: a short `recur train` really learns, is deterministic, and
//! every bad flag value is a one-line error with a non-zero exit, never a panic.

use std::process::{Command, Output};

fn recur(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .output()
        .expect("the recur binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number after `key` in `line` (e.g. `test mse 0.00030`).
fn number_after(line: &str, key: &str) -> f64 {
    let rest = &line[line
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {line:?}"))
        + key.len()..];
    rest.split_whitespace()
        .next()
        .and_then(|w| w.trim_end_matches(['%', ',']).parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in {line:?}"))
}

/// An LSTM on the adding problem at T = 10 (where 1,500 steps suffice, ~1 s in release)
/// must go from the initial test MSE to nearly solving it. Predicting the mean would give
/// ~0.04 and solve ~15%; the thresholds leave a wide margin over the measured 0.0003 / 98%.
#[test]
fn short_training_run_learns_the_adding_problem() {
    let out = recur(&[
        "train",
        "--seq-len",
        "10",
        "--hidden-size",
        "16",
        "--steps",
        "1500",
        "--eval-every",
        "500",
    ]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("step")).collect();
    assert_eq!(lines.len(), 4, "steps 0, 500, 1000, 1500:\n{text}");
    let first = number_after(lines[0], "test mse");
    let done = text
        .lines()
        .find(|l| l.starts_with("done:"))
        .expect("a summary line");
    let last = number_after(done, "test mse");
    let solved = number_after(done, "solved");
    assert!(first > 0.03, "{text}");
    assert!(last < 0.002, "test mse {first} → {last}\n{text}");
    assert!(solved >= 90.0, "solved {solved}%\n{text}");
}

/// Same seed, same numbers: every printed figure but the elapsed time.
#[test]
fn training_is_deterministic() {
    let args = [
        "train",
        "--cell",
        "gru",
        "--seq-len",
        "8",
        "--hidden-size",
        "8",
        "--steps",
        "30",
        "--eval-every",
        "10",
        "--seed",
        "5",
    ];
    let strip = |out: &Output| -> Vec<String> {
        stdout(out)
            .lines()
            .map(|l| match l.rfind("  ") {
                Some(i) if l.starts_with("step") => l[..i].to_string(),
                _ => l.split(" in ").next().unwrap_or(l).to_string(),
            })
            .collect()
    };
    let (a, b) = (recur(&args), recur(&args));
    assert!(a.status.success() && b.status.success());
    assert_eq!(strip(&a), strip(&b));
    let c = recur(&[&args[..args.len() - 1], &["6"]].concat());
    assert_ne!(strip(&a), strip(&c), "another seed gives other numbers");
}

#[test]
fn bad_flag_values_are_one_line_errors() {
    for args in [
        &["train", "--hidden-size", "0"][..],
        &["train", "--lr", "-1"],
        &["train", "--lr", "nan"],
        &["train", "--seq-len", "3"],
        &["train", "--batch-size", "0"],
        &["train", "--steps", "0"],
        &["train", "--eval-every", "0"],
        &["train", "--clip", "0"],
        &["train", "--momentum", "1"],
        &["train", "--num-layers", "0"],
        &["train", "--cell", "transformer"],
        &["train", "--steps", "many"],
        &["train", "--no-such-flag"],
        &["frobnicate"],
    ] {
        let out = recur(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed before failing");
    }
}

#[test]
fn a_diverging_run_stops_with_an_error() {
    let out = recur(&[
        "train",
        "--lr",
        "1e6",
        "--clip",
        "1e30",
        "--steps",
        "50",
        "--seq-len",
        "8",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.starts_with("error: training diverged at step"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
