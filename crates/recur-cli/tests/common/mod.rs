//! What the `recur` binary's end-to-end tests share: running it, reading its output, scratch
//! folders and the check of a one-line error.

// Each test file uses a part of these.
#![allow(dead_code)]

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `recur args…` to the end.
pub fn recur(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .output()
        .expect("the recur binary runs")
}

/// A run's standard output.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A run's standard error.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The standard output of a run that must succeed.
pub fn ok(args: &[&str]) -> String {
    let out = recur(args);
    assert!(
        out.status.success(),
        "{args:?}\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// The number after `key` in `line` (e.g. `test mse 0.00030`), without a trailing `%` or `,`.
pub fn number_after(line: &str, key: &str) -> f64 {
    let i = line
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {line:?}"));
    line[i + key.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.trim_end_matches(['%', ',']).parse().ok())
        .unwrap_or_else(|| panic!("no number after {key:?} in {line:?}"))
}

/// A fresh folder for one test, removed when dropped.
pub struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

/// A fresh scratch folder named after the test and this process.
pub fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("recur-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    Scratch(dir)
}

/// A path as a command-line argument.
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// The error of a failed run: non-zero exit, no panic, one line starting `error: `.
pub fn check_one_line_error(args: &impl Debug, out: &Output) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "{args:?} succeeded: {}", stdout(out));
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    err
}

/// Runs a command that must fail with a one-line error; returns the error.
pub fn one_line_error(args: &[&str]) -> String {
    check_one_line_error(&args, &recur(args))
}

/// Each command fails with a one-line error before printing anything.
pub fn assert_silent_one_line_errors(cases: &[&[&str]]) {
    for args in cases {
        let out = recur(args);
        check_one_line_error(args, &out);
        assert!(out.stdout.is_empty(), "{args:?} printed before failing");
    }
}

/// A run's standard output and standard error.
pub fn outputs(out: &Output) -> (String, String) {
    (stdout(out), stderr(out))
}
