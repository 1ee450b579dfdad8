//! What recur promises when things go wrong (docs/reliability.md): a run killed at any moment
//! and resumed leaves the log an uninterrupted run would have; SIGTERM stops a run as Ctrl-C
//! does; a log that would overwrite another file of the run is refused.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, one_line_error, p, scratch, stdout};

/// Every JSONL record without its timing fields.
fn log_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("log")
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("a whole JSON line");
            let o = v.as_object_mut().expect("an object");
            o.remove("tokens_per_s");
            o.remove("elapsed_s");
            v
        })
        .collect()
}

/// A small labelled-sequence file: three classes of short integer sequences.
fn sequences(dir: &Path) -> std::path::PathBuf {
    sequences_of(dir, 50)
}

/// `n` labelled sequences.
fn sequences_of(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut lines = String::new();
    for i in 0..n {
        let len = 2 + i % 5;
        let steps: Vec<String> = (0..len).map(|t| format!("{}", (i * t) % 7)).collect();
        lines.push_str(&format!("c{}\t{}\n", i % 3, steps.join(" ")));
    }
    let file = dir.join("s.txt");
    std::fs::write(&file, lines).unwrap();
    file
}

/// Runs killed with SIGKILL at random moments (seeded), each resumed from its checkpoint
/// (or started again when the kill came before the first one), end with the log of the run
/// that was never killed, record for record, and no temporary file of the checkpoint left.
#[test]
fn log_after_sigkills_and_resumes_equals_the_uninterrupted_log() {
    let dir = scratch("sigkill");
    // 100 steps an epoch: the log's buffer is written out (a part of a line at its end)
    // several times between checkpoints, so a kill leaves records past the checkpoint and
    // half lines
    let file = sequences_of(&dir, 400);
    let (ck, full_log, log) = (
        dir.join("k.safetensors"),
        dir.join("full.jsonl"),
        dir.join("k.jsonl"),
    );
    let base = [
        "train",
        "--sequences",
        p(&file),
        "--hidden-size",
        "8",
        "--batch-size",
        "4",
        "--epochs",
        "20",
        "--quiet",
    ];
    let started = Instant::now();
    ok(&[&base[..], &["--log", p(&full_log)]].concat());
    let full_s = started.elapsed().as_secs_f64();
    let fresh = [&base[..], &["--save-every", "70", "--checkpoint", p(&ck)]].concat();
    let resume = ["train", "--resume", p(&ck)];

    let mut x: u64 = 0x5EED_0001;
    // kills of runs that had resumed from a checkpoint
    let mut kills = 0;
    for attempt in 0.. {
        assert!(attempt < 60, "the run never finished between kills");
        let resuming = ck.exists();
        let args = if resuming { &resume[..] } else { &fresh[..] };
        let mut child = Command::new(env!("CARGO_BIN_EXE_recur"))
            .args(args)
            .args(["--log", p(&log)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // runs are killed somewhere in the first 60% of a whole run's time until four
        // resumed ones have been
        if kills < 4 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let frac = 0.05 + 0.55 * ((x >> 11) as f64 / (1u64 << 53) as f64);
            std::thread::sleep(Duration::from_secs_f64(full_s * frac));
            if child.try_wait().expect("try_wait").is_none() {
                child.kill().expect("SIGKILL");
                child.wait().expect("wait");
                kills += usize::from(resuming);
                continue;
            }
        }
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        break;
    }
    assert_eq!(log_records(&full_log), log_records(&log));
    let left: Vec<_> = std::fs::read_dir(&*dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");
}

/// A resumed run's log is cut back to the checkpoint's step: a later record and a half line
/// (what a kill leaves) are dropped, and a temporary of the checkpoint left by a killed
/// writer is removed.
#[test]
fn resume_cuts_the_log_back_to_the_checkpoint_and_removes_stale_temporaries() {
    let dir = scratch("cutlog");
    let file = sequences(&dir);
    let (ck, full_log, log) = (
        dir.join("c.safetensors"),
        dir.join("full.jsonl"),
        dir.join("c.jsonl"),
    );
    let base = [
        "train",
        "--sequences",
        p(&file),
        "--hidden-size",
        "8",
        "--batch-size",
        "8",
        "--quiet",
    ];
    ok(&[&base[..], &["--epochs", "2", "--log", p(&full_log)]].concat());
    let first = ["--steps", "9", "--checkpoint", p(&ck), "--log", p(&log)];
    ok(&[&base[..], &first[..]].concat());
    // what a run killed after the checkpoint (step 9) would have added: a record of step 10
    // and half of step 11's
    let mut text = std::fs::read_to_string(&log).unwrap();
    let tenth = text
        .lines()
        .last()
        .unwrap()
        .replace("\"step\":9", "\"step\":10");
    text.push_str(&format!("{tenth}\n{{\"step\":11,\"epo"));
    std::fs::write(&log, text).unwrap();
    // a temporary from a writer that is gone (process ids do not reach 2^31 on Linux)
    let stale = dir.join(".c.safetensors.2147483646-12345.tmp");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    let other = dir.join(".other.safetensors.2147483646-12345.tmp");
    std::fs::write(&other, b"someone else's").unwrap();
    ok(&[
        "train",
        "--resume",
        p(&ck),
        "--epochs",
        "2",
        "--log",
        p(&log),
    ]);
    assert_eq!(log_records(&full_log), log_records(&log));
    if Path::new("/proc/self").exists() {
        assert!(!stale.exists(), "the stale temporary is still there");
    }
    assert!(other.exists(), "another file's temporary was removed");
}

/// SIGTERM (what `kill` and schedulers send) saves, evaluates and exits 0, like Ctrl-C.
#[test]
fn sigterm_saves_evaluates_and_exits_zero() {
    let dir = scratch("sigterm");
    let file = sequences(&dir);
    let (ck, log) = (dir.join("t.safetensors"), dir.join("t.jsonl"));
    let child = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args([
            "train",
            "--sequences",
            p(&file),
            "--hidden-size",
            "8",
            "--epochs",
            "1000000",
            "--checkpoint",
            p(&ck),
            "--log",
            p(&log),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while !std::fs::metadata(&log).is_ok_and(|m| m.len() > 0) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "training never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let stdout = stdout(&out);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("interrupted at epoch"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("test:")), "{stdout}");
    assert!(ck.exists());
}

/// `--log` naming the checkpoint, its best copy, the checkpoint resumed or a data file is
/// refused before anything is written, and the file is left as it was.
#[test]
fn a_log_that_would_overwrite_another_file_is_refused() {
    let dir = scratch("samelog");
    let file = sequences(&dir);
    let ck = dir.join("c.safetensors");
    let best = dir.join("c.best.safetensors");
    let base = ["train", "--sequences", p(&file), "--hidden-size", "8"];
    for (log, what) in [
        (&ck, "--checkpoint"),
        (&best, ".best"),
        (&file, "--sequences"),
    ] {
        let err = one_line_error(
            &[
                &base[..],
                &["--epochs", "1", "--checkpoint", p(&ck), "--log", p(log)],
            ]
            .concat(),
        );
        assert!(err.contains(what), "{err}");
    }
    // a relative spelling of the same file is the same file
    let rel = dir.join(".").join("c.safetensors");
    let err = one_line_error(
        &[
            &base[..],
            &["--epochs", "1", "--checkpoint", p(&ck), "--log", p(&rel)],
        ]
        .concat(),
    );
    assert!(err.contains("--checkpoint"), "{err}");
    assert!(!ck.exists());
    ok(&[&base[..], &["--epochs", "1", "--checkpoint", p(&ck)]].concat());
    let saved = std::fs::read(&ck).unwrap();
    let err = one_line_error(&["train", "--resume", p(&ck), "--log", p(&ck)]);
    assert!(err.contains("is also"), "{err}");
    assert_eq!(std::fs::read(&ck).unwrap(), saved, "the checkpoint changed");
    assert!(std::fs::read(&file).unwrap().starts_with(b"c0\t"));
}

/// Sizes that no machine here holds are refused before anything of their size is allocated,
/// in one line giving the estimate, the memory available and what to lower; a thread count
/// above the machine's is refused.
#[test]
fn sizes_beyond_the_memory_are_refused_with_their_estimate() {
    let dir = scratch("sizes");
    let seqs = sequences(&dir);
    let text = dir.join("t.txt");
    std::fs::write(&text, "the cat sat on the mat\n".repeat(40)).unwrap();
    let cases: [&[&str]; 5] = [
        &[
            "train",
            "--text",
            p(&text),
            "--level",
            "char",
            "--embedding-size",
            "100000000",
        ],
        &["train", "--hidden-size", "30000", "--steps", "1"],
        &["train", "--task", "copy", "--seq-len", "100000000"],
        &[
            "train",
            "--sequences",
            p(&seqs),
            "--batch-size",
            "100000000000",
        ],
        &[
            "train",
            "--sequences",
            p(&seqs),
            "--num-layers",
            "1000000",
            "--hidden-size",
            "8",
        ],
    ];
    for args in cases {
        let err = one_line_error(args);
        assert!(
            err.contains("training would need about")
                && err.contains("of memory are available")
                && err.contains("lower --"),
            "{args:?}: {err}"
        );
    }
    let err = one_line_error(&["train", "--sequences", p(&seqs), "--threads", "100000"]);
    assert!(err.contains("this machine runs"), "{err}");

    // --dry-run prints the parameters and the estimate, even of a run that would not fit,
    // and trains nothing
    let out = ok(&[
        "train",
        "--sequences",
        p(&seqs),
        "--hidden-size",
        "8",
        "--dry-run",
    ]);
    assert!(out.contains("model: lstm × 1 layer(s) of 8 units"), "{out}");
    assert!(
        out.contains("BPTT tape") && out.contains("available"),
        "{out}"
    );
    assert!(!out.contains("epoch"), "{out}");
    let out = ok(&["train", "--hidden-size", "30000", "--dry-run"]);
    let total = out
        .lines()
        .find(|l| l.trim_start().starts_with("total") && l.contains("GiB"));
    assert!(total.is_some(), "{out}");

    // sampling: the drawn text is held in memory
    let ck = dir.join("lm.safetensors");
    ok(&[
        "train",
        "--text",
        p(&text),
        "--level",
        "char",
        "--hidden-size",
        "8",
        "--embedding-size",
        "8",
        "--epochs",
        "1",
        "--checkpoint",
        p(&ck),
        "--quiet",
    ]);
    let err = one_line_error(&["sample", "--checkpoint", p(&ck), "--length", "100000000000"]);
    assert!(
        err.contains("sampling would need about") && err.contains("lower --length"),
        "{err}"
    );
    let out = ok(&["sample", "--checkpoint", p(&ck), "--length", "20"]);
    assert!(!out.is_empty());
}

/// Input files have a size limit: a regular file over it is refused before it is read, and a
/// stream that is not a regular file (/dev/zero) is read no further than the limit.
#[test]
fn input_files_are_read_within_a_limit() {
    let dir = scratch("filesize");
    let big = dir.join("big.txt");
    // a sparse file of 5 GiB: nothing is written, nothing may be read
    std::fs::File::create(&big)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    let err = one_line_error(&["train", "--text", p(&big), "--level", "char"]);
    assert!(
        err.contains("5368709120 bytes; an input file may have at most 4294967296 bytes")
            && err.contains("--max-file-size"),
        "{err}"
    );
    if Path::new("/dev/zero").exists() {
        let err = one_line_error(&[
            "train",
            "--text",
            "/dev/zero",
            "--level",
            "char",
            "--max-file-size",
            "1M",
        ]);
        assert!(
            err.contains("not a regular file, and longer than 1048576 bytes"),
            "{err}"
        );
        let err = one_line_error(&[
            "train",
            "--sequences",
            "/dev/zero",
            "--max-file-size",
            "64K",
        ]);
        assert!(err.contains("longer than 65536 bytes"), "{err}");
    }
    let err = one_line_error(&["train", "--text", p(&big), "--max-file-size", "12Q"]);
    assert!(err.contains("K, M, G or T"), "{err}");
}

/// A value that is not a finite number in a training, validation or test file is refused
/// as the file is read, with its file, line and column; bytes quoted from a file are escaped
/// and cut short.
#[test]
fn bad_values_are_refused_with_their_place_and_quoted_safely() {
    let dir = scratch("badvalues");
    let good = sequences(&dir);
    let write = |name: &str, body: &str| {
        let f = dir.join(name);
        std::fs::write(&f, body).unwrap();
        f
    };
    let nan = write("nan.txt", "a\t1 2\nb\t3 nan\n");
    let err = one_line_error(&["train", "--sequences", p(&nan)]);
    assert!(
        err.contains("nan.txt:2: column 5: `nan` (step 2, value 1) is not a finite number"),
        "{err}"
    );
    let missing = write("missing.txt", "c0\t1 2\nc1\t3 ?\n");
    for flag in ["--valid-sequences", "--test-sequences"] {
        let err = one_line_error(&[
            "train",
            "--sequences",
            p(&good),
            "--valid-sequences",
            p(if flag == "--valid-sequences" {
                &missing
            } else {
                &good
            }),
            "--test-sequences",
            p(if flag == "--test-sequences" {
                &missing
            } else {
                &good
            }),
        ]);
        assert!(
            err.contains("missing.txt:2: column 6: `?`"),
            "{flag}: {err}"
        );
    }
    let target = write("target.txt", "1.5\t1 2\ninf\t3 4\n");
    let err = one_line_error(&["train", "--sequences", p(&target), "--target", "regression"]);
    assert!(
        err.contains("target.txt:2: column 1: regression target `inf`"),
        "{err}"
    );
    let ts = write(
        "t.ts",
        "@problemName T\n@univariate true\n@classLabel true a b\n@data\n1,2,3:a\n1,NaN,3:b\n",
    );
    let err = one_line_error(&["train", "--sequences", p(&ts)]);
    assert!(err.contains("t.ts:6: column 3: `NaN`"), "{err}");

    // an escape sequence and a megabyte-long value
    let esc = write("esc.txt", "a\t1 \u{1b}[2J\u{1b}[31mboom\n");
    let long = write("long.txt", &format!("a\t1 {}\n", "x".repeat(1 << 20)));
    for f in [&esc, &long] {
        let out = common::recur(&["train", "--sequences", p(f)]);
        let err = common::check_one_line_error(&f, &out);
        assert!(!err.contains('\u{1b}'), "{err:?}");
        assert!(err.len() < 400, "{} bytes", err.len());
    }
    let err = one_line_error(&["train", "--sequences", p(&esc)]);
    assert!(err.contains("\\u{1b}[2J"), "{err}");
}

/// Resuming with a data flag of another kind of run, or a model flag the checkpoint's model
/// contradicts, says so in the user's terms; an error in a checkpoint's vocabulary names the
/// entry, not a line of the file.
#[test]
fn resume_contradictions_and_checkpoint_metadata_are_named() {
    let dir = scratch("resumewhat");
    let seqs = sequences(&dir);
    let text = dir.join("t.txt");
    std::fs::write(&text, "the cat sat on the mat\n".repeat(40)).unwrap();
    let (seq_ck, lm_ck) = (dir.join("seq.safetensors"), dir.join("lm.safetensors"));
    ok(&[
        "train",
        "--sequences",
        p(&seqs),
        "--hidden-size",
        "8",
        "--epochs",
        "1",
        "--checkpoint",
        p(&seq_ck),
        "--quiet",
    ]);
    ok(&[
        "train",
        "--text",
        p(&text),
        "--level",
        "char",
        "--hidden-size",
        "8",
        "--embedding-size",
        "8",
        "--epochs",
        "1",
        "--checkpoint",
        p(&lm_ck),
        "--quiet",
    ]);
    let err = one_line_error(&["train", "--resume", p(&seq_ck), "--text", p(&text)]);
    assert!(
        err.contains("the checkpoint is a run on labelled sequences (--sequences)")
            && err.contains("asks for a language model"),
        "{err}"
    );
    let err = one_line_error(&["train", "--resume", p(&lm_ck), "--cell", "gru"]);
    assert!(
        err.contains("the checkpoint's run has --cell lstm, the command line gives --cell gru"),
        "{err}"
    );
    let err = one_line_error(&["train", "--resume", p(&lm_ck), "--hidden-size", "9"]);
    assert!(
        err.contains("--hidden-size 8") && err.contains("--hidden-size 9"),
        "{err}"
    );
    // the same model flag as the checkpoint's is no contradiction
    ok(&[
        "train",
        "--resume",
        p(&lm_ck),
        "--cell",
        "lstm",
        "--epochs",
        "2",
    ]);

    // a damaged vocabulary header inside the checkpoint (same length: the file stays whole)
    let mut bytes = std::fs::read(&lm_ck).unwrap();
    let at = bytes
        .windows(23)
        .position(|w| w == b"recur-vocabulary 1 char")
        .expect("the vocabulary in the header");
    bytes[at + 22] = b'X';
    let bad = dir.join("badvocab.safetensors");
    std::fs::write(&bad, bytes).unwrap();
    let err = one_line_error(&["sample", "--checkpoint", p(&bad)]);
    assert!(
        err.contains("metadata `vocab`, entry 1") && !err.contains("badvocab.safetensors:1:"),
        "{err}"
    );
}

/// A loss that explodes stops the run by the documented rule (more than 10^4 times the first
/// step's), keeping the last checkpoint written before it; a loss that turns non-finite at
/// once says the inputs were finite (the settings are at fault).
#[test]
fn exploding_and_diverging_losses_are_stopped_and_explained() {
    let dir = scratch("explode");
    let reg = dir.join("r.txt");
    let lines: String = (0..60)
        .map(|i| format!("{}\t{} {} {}\n", i % 5, i % 3, i % 5, i % 7))
        .collect();
    std::fs::write(&reg, lines).unwrap();
    let ck = dir.join("x.safetensors");
    let out = common::recur(&[
        "train",
        "--sequences",
        p(&reg),
        "--hidden-size",
        "8",
        "--target",
        "regression",
        "--optimizer",
        "sgd",
        "--lr",
        "1e4",
        "--epochs",
        "50",
        "--save-every",
        "1",
        "--checkpoint",
        p(&ck),
        "--quiet",
    ]);
    let err = common::stderr(&out);
    assert!(!out.status.success(), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: training stopped at step 2: the loss")
            && last.contains("is more than 1e4 times the first step's")
            && last.contains("it is exploding; the last checkpoint is kept"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // the checkpoint kept is one of finite weights: it evaluates
    let eval = ok(&["eval", "--checkpoint", p(&ck)]);
    assert!(!eval.contains("NaN") && !eval.contains("inf"), "{eval}");

    let err = one_line_error(&[
        "train",
        "--sequences",
        p(&reg),
        "--target",
        "regression",
        "--hidden-size",
        "8",
        "--optimizer",
        "sgd",
        "--lr",
        "1e30",
        "--epochs",
        "5",
    ]);
    assert!(
        err.contains("training diverged at step") && err.contains("finite inputs gave"),
        "{err}"
    );
}

/// The exploding-loss rule of docs/reliability.md, end to end: with a huge learning rate and
/// no clipping the loss grows step by step; once past `WARN_LOSS_RATIO` (100) times the first
/// step's, one warning line; once past `EXPLODED_LOSS_RATIO` (10^4) times, the run stops with
/// one error line and exit status 1. The checkpoint kept is the last one written before the
/// stop (`--save-every 1`: the step before it), it loads, and its weights are finite.
#[test]
fn an_exploding_loss_is_warned_about_then_stops_the_run_keeping_the_last_checkpoint() {
    let dir = scratch("explode-warn");
    let reg = dir.join("r.txt");
    let lines: String = (0..64)
        .map(|i| format!("{}\t{} {} {}\n", i % 5, i % 3, i % 5, i % 7))
        .collect();
    std::fs::write(&reg, lines).unwrap();
    let ck = dir.join("x.safetensors");
    let out = common::recur(&[
        "train",
        "--sequences",
        p(&reg),
        "--hidden-size",
        "8",
        "--target",
        "regression",
        "--optimizer",
        "sgd",
        "--lr",
        EXPLODING_LR,
        "--clip-norm",
        "0",
        "--batch-size",
        "4",
        "--epochs",
        "50",
        "--save-every",
        "1",
        "--checkpoint",
        p(&ck),
        "--quiet",
    ]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "a warning, then the error:\n{err}");
    let step_of = |line: &str, key: &str| -> u64 {
        let rest = &line[line
            .find(key)
            .unwrap_or_else(|| panic!("{key:?} in {line:?}"))
            + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a step in {line:?}"))
    };
    assert!(
        lines[0].starts_with("warning: step ")
            && lines[0].contains("'s loss ")
            && lines[0].contains("is more than 1e2 times the first step's")
            && lines[0].contains("the run stops if the loss passes 1e4 times the first"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("error: training stopped at step ")
            && lines[1].contains("is more than 1e4 times the first step's")
            && lines[1].contains("the last checkpoint is kept"),
        "{err}"
    );
    let (warned, stopped) = (
        step_of(lines[0], "step "),
        step_of(lines[1], "stopped at step "),
    );
    assert!(1 < warned && warned < stopped, "{err}");
    // the checkpoint: written at the step before the stop, loadable, finite
    let kept = recur::io::load_checkpoint::<f32>(&ck, None).expect("the checkpoint loads");
    assert_eq!(kept.progress.step, stopped - 1);
    assert!(kept.model.params().iter().all(|v| v.is_finite()));
    let eval = ok(&["eval", "--checkpoint", p(&ck)]);
    assert!(!eval.contains("NaN") && !eval.contains("inf"), "{eval}");
}

/// A learning rate at which the test's regression grows over several steps before it
/// explodes (found by trying; the test checks the order of warning and stop, so a rate that
/// jumped straight past both thresholds would fail it).
const EXPLODING_LR: &str = "1";

/// `--missing` at training and at `recur predict`: the policy is applied per series before
/// windowing and remembered by the checkpoint, so that a history with missing values is
/// forecast as the same history filled by hand; `drop` refuses a row whose leaving out would
/// be a gap in the time column, and the default names the missing cell.
#[test]
fn the_missing_value_policy_is_applied_at_training_and_remembered_by_predict() {
    let dir = scratch("missing-policy");
    // integers whose interpolations below are integers too, exact in binary
    let value = |t: usize| 100 + 2 * t + 10 * (t % 2) + 4 * (t % 12);
    let csv = |n: usize, holes: &[usize]| -> String {
        let mut s = String::from("month,sales\n");
        for t in 0..n {
            let v = if holes.contains(&t) {
                "NA".to_string()
            } else {
                value(t).to_string()
            };
            s.push_str(&format!("{}-{:02},{v}\n", 2000 + t / 12, t % 12 + 1));
        }
        s
    };
    let write = |name: &str, text: String| {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f
    };
    let train = write("train.csv", csv(72, &[10, 11, 30]));
    let ck = dir.join("m.safetensors");
    let base = |file: &Path| -> Vec<String> {
        [
            "train",
            "--csv",
            p(file),
            "--target",
            "sales",
            "--time-column",
            "month",
            "--window",
            "6",
            "--horizon",
            "2",
            "--hidden-size",
            "4",
            "--epochs",
            "1",
            "--quiet",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |extra: &[&str]| {
        let mut a = base(&train);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    fn as_strs(a: &[String]) -> Vec<&str> {
        a.iter().map(String::as_str).collect()
    }
    // the default: the first missing cell, named (month 10 is file row 12)
    let e = one_line_error(&as_strs(&run(&[])));
    assert!(
        e.contains("train.csv: row 12, column 2 (`sales`): missing value"),
        "{e}"
    );
    // drop: the rows are inside the series, a gap in the months
    let e = one_line_error(&as_strs(&run(&["--missing", "drop"])));
    assert!(
        e.contains("row 12, column 2 (`sales`)")
            && e.contains(
                "gap in the time column `month` between `2000-10` (row 11) and `2001-01` (row 14)"
            ),
        "{e}"
    );
    ok(&as_strs(&run(&[
        "--missing",
        "interpolate",
        "--checkpoint",
        p(&ck),
    ])));
    // a history with a run of three missing values inside the model's last window …
    let gappy = write("gappy.csv", csv(40, &[36, 37, 38]));
    // … and the same filled by hand: a straight line from month 35 to month 39
    let step = (value(39) as f64 - value(35) as f64) / 4.0;
    let mut filled = csv(40, &[]);
    for t in [36usize, 37, 38] {
        let by_hand = value(35) as f64 + step * (t - 35) as f64;
        assert_eq!(
            by_hand.fract(),
            0.0,
            "choose values that interpolate exactly"
        );
        filled = filled.replace(
            &format!("{}-{:02},{}\n", 2000 + t / 12, t % 12 + 1, value(t)),
            &format!("{}-{:02},{}\n", 2000 + t / 12, t % 12 + 1, by_hand),
        );
    }
    let filled = write("filled.csv", filled);
    let predict = |history: &Path, name: &str| {
        let o = dir.join(name);
        ok(&[
            "predict",
            "--checkpoint",
            p(&ck),
            "--csv",
            p(history),
            "-o",
            p(&o),
        ]);
        std::fs::read_to_string(o).unwrap()
    };
    let (a, b) = (predict(&gappy, "a.csv"), predict(&filled, "b.csv"));
    assert_eq!(a, b);
    assert_eq!(a.lines().count(), 3, "{a}");
}

/// Runs `recur args…` with a standard output whose reader is gone before anything is
/// written (`recur … | true`).
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

/// `recur train … | head`: a reader that closes the pipe ends the command quietly, exit 0,
/// nothing on standard error, no panic. A training run stops as Ctrl-C stops it, with its
/// checkpoint saved; every other command does its work (the files it writes) without
/// printing. A standard output that cannot be written for another reason (a full disk) is
/// an error, exit 1.
#[test]
fn a_closed_standard_output_ends_every_command_quietly() {
    let dir = scratch("pipe");
    let file = sequences_of(&dir, 400);
    let ck = dir.join("p.safetensors");
    let quiet = |args: &[&str], out: &std::process::Output| {
        let err = common::stderr(out);
        assert!(out.status.success(), "{args:?}: {:?}\n{err}", out.status);
        assert!(err.is_empty(), "{args:?}: {err}");
    };
    // `| head -n 1`: the first line read, then the pipe closed while the run prints on
    let args = [
        "train",
        "--sequences",
        p(&file),
        "--hidden-size",
        "8",
        "--epochs",
        "1000000",
        "--checkpoint",
        p(&ck),
        "--quiet",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut first,
    )
    .expect("a first line");
    assert!(!first.is_empty());
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the run went on after its standard output was closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("wait");
    quiet(&args, &out);
    let kept = recur::io::load_checkpoint::<f32>(&ck, None).expect("the checkpoint loads");
    assert!(kept.progress.step > 0);
    ok(&["eval", "--checkpoint", p(&ck)]);

    // closed before the first line: the run stops after its first step, saved
    std::fs::remove_file(&ck).unwrap();
    quiet(&args, &with_closed_stdout(&args));
    assert_eq!(
        recur::io::load_checkpoint::<f32>(&ck, None)
            .expect("the checkpoint loads")
            .progress
            .step,
        1
    );
    let (model, predictions) = (dir.join("m.safetensors"), dir.join("p.csv"));
    for args in [
        &["--help"][..],
        &["summary", p(&ck)],
        &["eval", "--checkpoint", p(&ck)],
        &["convert", p(&ck), p(&model)],
        &[
            "predict",
            "--checkpoint",
            p(&ck),
            "--sequences",
            p(&file),
            "-o",
            p(&predictions),
        ],
    ] {
        quiet(args, &with_closed_stdout(args));
    }
    assert!(model.exists() && predictions.exists());

    #[cfg(target_os = "linux")]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_recur"))
            .args(["summary", p(&ck)])
            .stdout(std::fs::File::create("/dev/full").expect("/dev/full"))
            .output()
            .expect("run");
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.starts_with("error: writing to standard output: No space left"),
            "{err}"
        );
    }
}
