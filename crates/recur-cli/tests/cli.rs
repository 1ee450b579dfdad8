//! The `recur` binary end to end: a short `recur train` really learns, is deterministic, and
//! every bad flag value is a one-line error with a non-zero exit, never a panic.

mod common;

use std::process::Output;

use common::{assert_silent_one_line_errors, number_after, recur, stdout};

/// An LSTM on the adding problem at T = 10 (where 1,500 steps suffice, ~1 s in release)
/// must go from the initial test MSE to nearly solving it. Predicting the mean would give
/// ~0.04 and solve ~15%; the thresholds leave a wide margin over the measured 0.0003 / 98%.
#[test]
fn short_training_run_learns_the_adding_problem() {
    let out = recur(&[
        "train",
        "--optimizer",
        "sgd",
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
    let first = number_after(lines[0], "valid mse");
    let done = text
        .lines()
        .find(|l| l.starts_with("done:"))
        .expect("a summary line");
    let last = number_after(done, "valid mse");
    let solved = number_after(done, "solved");
    assert!(first > 0.03, "{text}");
    assert!(last < 0.002, "valid mse {first} → {last}\n{text}");
    assert!(solved >= 90.0, "solved {solved}%\n{text}");
    // the fresh test set, scored once at the end
    let test = text
        .lines()
        .find(|l| l.starts_with("test: 2560 fresh sequences"))
        .expect("a test line");
    assert!(number_after(test, "mse") < 0.002, "{text}");
    assert!(number_after(test, "solved") >= 90.0, "{text}");
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
    assert_silent_one_line_errors(&[
        &["train", "--hidden-size", "0"][..],
        &["train", "--lr", "-1"],
        &["train", "--lr", "nan"],
        &["train", "--seq-len", "3"],
        &["train", "--batch-size", "0"],
        &["train", "--steps", "0"],
        &["train", "--eval-every", "0"],
        &["train", "--clip-norm", "-1"],
        &["train", "--momentum", "1"],
        &["train", "--num-layers", "0"],
        &["train", "--cell", "transformer"],
        &["train", "--steps", "many"],
        &["train", "--no-such-flag"],
        &["frobnicate"],
    ]);
}

#[test]
fn a_diverging_run_stops_with_an_error() {
    let out = recur(&[
        "train",
        "--optimizer",
        "sgd",
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
    // the loss passes 10^4 times the first step's before it overflows (docs/reliability.md)
    assert!(
        err.starts_with("error: training stopped at step") && err.contains("it is exploding"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `recur bench` with a tiny configuration and `--json`: the objects parse and carry the keys.
fn bench_json(extra: &[&str]) -> Vec<serde_json::Value> {
    let tiny = [
        "bench",
        "--seq-len",
        "5",
        "--batch",
        "2",
        "--input-size",
        "3",
        "--hidden-size",
        "4",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--json",
    ];
    let out = recur(&[&tiny[..], extra].concat());
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{extra:?}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

const BENCH_KEYS: [&str; 17] = [
    "mode",
    "cell",
    "seq_len",
    "batch",
    "input_size",
    "hidden_size",
    "num_layers",
    "bidirectional",
    "proj_size",
    "ragged",
    "threads",
    "iters",
    "warmup",
    "tokens_per_iter",
    "ms_per_iter",
    "tokens_per_s",
    "gflops",
];

#[test]
fn bench_prints_one_json_object_per_mode() {
    for cell in ["lstm", "gru", "rnn"] {
        let objs = bench_json(&["--cell", cell, "--threads", "1"]);
        let modes: Vec<&str> = objs.iter().map(|o| o["mode"].as_str().unwrap()).collect();
        assert_eq!(modes, ["train", "infer"], "{cell}");
        for o in &objs {
            for key in BENCH_KEYS {
                assert!(o.get(key).is_some(), "{cell}: no {key:?} in {o}");
            }
            assert_eq!(o["cell"], cell);
            assert_eq!(o["seq_len"], 5);
            assert_eq!(o["batch"], 2);
            assert_eq!(o["input_size"], 3);
            assert_eq!(o["hidden_size"], 4);
            assert_eq!(o["num_layers"], 1);
            assert_eq!(o["bidirectional"], false);
            assert_eq!(o["proj_size"], 0);
            assert_eq!(o["ragged"], false);
            assert_eq!(o["threads"], 1);
            assert_eq!(o["tokens_per_iter"], 10);
            for key in ["ms_per_iter", "tokens_per_s", "gflops"] {
                let v = o[key].as_f64().unwrap_or_else(|| panic!("{key} in {o}"));
                assert!(v.is_finite() && v > 0.0, "{key} = {v} in {o}");
            }
            // tokens/s = tokens / time, and the FLOPs of 2·N·G·H·(I+H) (×3 for train).
            let secs = o["ms_per_iter"].as_f64().unwrap() / 1e3;
            let tps = o["tokens_per_s"].as_f64().unwrap();
            assert!((tps * secs / 10.0 - 1.0).abs() < 1e-9, "{o}");
            let g = match cell {
                "lstm" => 4.0,
                "gru" => 3.0,
                _ => 1.0,
            };
            let times = if o["mode"] == "train" { 3.0 } else { 1.0 };
            let flops = times * 2.0 * 10.0 * g * 4.0 * (3.0 + 4.0);
            let gflops = o["gflops"].as_f64().unwrap();
            assert!((gflops * secs * 1e9 / flops - 1.0).abs() < 1e-9, "{o}");
            if o["mode"] == "train" {
                // the model keeps the tape's slabs (and the backward's) for the next call
                let tape = o["tape_bytes"].as_u64().unwrap();
                let kept = o["workspace_bytes"].as_u64().unwrap();
                assert!(tape > 0 && kept >= tape, "{o}");
            } else {
                assert!(o.get("workspace_bytes").is_none(), "{o}");
            }
        }
    }
}

/// `--bf16` times bf16 products in training, inference and streaming (where the CPU has
/// AVX-512 BF16; elsewhere a one-line error).
#[test]
fn bench_bf16_times_every_mode() {
    for mode in ["train", "infer", "stream"] {
        let out = recur(&[
            "bench",
            "--seq-len",
            "4",
            "--batch",
            "2",
            "--hidden-size",
            "8",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--mode",
            mode,
            "--bf16",
            "--json",
        ]);
        let text = stdout(&out);
        if out.status.success() {
            let o: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
            assert_eq!(o["mode"], mode);
            assert_eq!(o["bf16"], true, "{o}");
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.starts_with("error: ") && err.contains("AVX-512 BF16"),
                "{err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn bench_runs_stacked_ragged_projected_and_streaming_configurations() {
    let objs = bench_json(&[
        "--num-layers",
        "2",
        "--bidirectional",
        "--proj-size",
        "2",
        "--ragged",
        "--mode",
        "train",
    ]);
    assert_eq!(objs.len(), 1);
    let o = &objs[0];
    assert_eq!(o["mode"], "train");
    assert_eq!(o["bidirectional"], true);
    assert_eq!(o["proj_size"], 2);
    assert_eq!(o["ragged"], true);
    // lengths in [2, 5] for 2 sequences
    let tokens = o["tokens_per_iter"].as_u64().unwrap();
    assert!((4..=10).contains(&tokens), "{o}");

    for cell in ["lstm", "gru", "rnn"] {
        let objs = bench_json(&["--cell", cell, "--mode", "stream", "--num-layers", "2"]);
        assert_eq!(objs.len(), 1);
        let o = &objs[0];
        assert_eq!(o["mode"], "stream");
        assert_eq!(o["tokens_per_iter"], 2, "one step of each sequence: {o}");
        let us = o["us_per_step"].as_f64().expect("us_per_step");
        let ms = o["ms_per_iter"].as_f64().unwrap();
        assert!(us > 0.0 && (us / (ms * 1e3) - 1.0).abs() < 1e-9, "{o}");
    }

    // Without --json: one line per mode.
    let out = recur(&[
        "bench",
        "--seq-len",
        "3",
        "--batch",
        "1",
        "--hidden-size",
        "2",
    ]);
    assert!(out.status.success());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("recur train") && lines[1].starts_with("recur infer"));
    assert!(lines.iter().all(|l| l.contains("GFLOP/s")), "{text}");
}

#[test]
fn bad_bench_flags_are_one_line_errors() {
    assert_silent_one_line_errors(&[
        &["bench", "--seq-len", "0"][..],
        &["bench", "--batch", "0"],
        &["bench", "--batch-size", "0"],
        &["bench", "--input-size", "0"],
        &["bench", "--hidden-size", "0"],
        &["bench", "--num-layers", "0"],
        &["bench", "--iters", "0"],
        &["bench", "--threads", "0"],
        &["bench", "--proj-size", "256"],
        &["bench", "--hidden-size", "8", "--proj-size", "9"],
        &["bench", "--cell", "gru", "--proj-size", "2"],
        &["bench", "--mode", "stream", "--bidirectional"],
        &["bench", "--mode", "stream", "--ragged"],
        &["bench", "--mode", "fly"],
        &["bench", "--cell", "transformer"],
        &["bench", "--seq-len", "100000000", "--batch", "100000"],
        &["bench", "--seq-len", "-1"],
    ]);
}

/// Ctrl-C stops the built-in demonstration after the current batch, as it stops every other
/// run: it validates, says where it stopped, tests and exits 0.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_demonstration() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args([
            "train",
            "--seq-len",
            "10",
            "--hidden-size",
            "8",
            "--steps",
            "100000000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen = String::new();
    // the line before training starts
    while !seen.contains("step      0") {
        assert_ne!(out.read_line(&mut seen).expect("read"), 0, "{seen}");
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    out.read_to_string(&mut seen).expect("read");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{seen}");
    assert!(seen.contains("interrupted at step"), "{seen}");
    assert!(seen.lines().any(|l| l.starts_with("test:")), "{seen}");
}
