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
    let first = [
        "--steps",
        "9",
        "--checkpoint",
        p(&ck),
        "--log",
        p(&log),
    ];
    ok(&[&base[..], &first[..]].concat());
    // what a run killed after the checkpoint (step 9) would have added: a record of step 10
    // and half of step 11's
    let mut text = std::fs::read_to_string(&log).unwrap();
    let tenth = text.lines().last().unwrap().replace("\"step\":9", "\"step\":10");
    text.push_str(&format!("{tenth}\n{{\"step\":11,\"epo"));
    std::fs::write(&log, text).unwrap();
    // a temporary from a writer that is gone (process ids do not reach 2^31 on Linux)
    let stale = dir.join(".c.safetensors.2147483646-12345.tmp");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    let other = dir.join(".other.safetensors.2147483646-12345.tmp");
    std::fs::write(&other, b"someone else's").unwrap();
    ok(&["train", "--resume", p(&ck), "--epochs", "2", "--log", p(&log)]);
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
