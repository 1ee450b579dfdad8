//! Standard output and standard error that a closed pipe does not break
//! (`recur train … | head`).
//!
//! The standard library's `print!` family panics when a write fails, which it does when
//! standard output is a pipe whose reader has gone (EPIPE: Rust ignores SIGPIPE). This
//! module's `print!`, `println!`, `eprint!` and `eprintln!` take their place in the whole
//! crate (`#[macro_use] mod out` comes first in main.rs, so they shadow the standard ones in
//! every module declared after it): the same arguments, but a failed write never panics.
//!
//! - A write to standard output that fails marks it closed ([`stdout_closed`]); it and
//!   everything printed after it are dropped. A training run then stops as Ctrl-C stops it
//!   (checkpoint, test, exit 0; its lines go nowhere), and every command ends quietly: exit 0
//!   for a reader that closed the pipe, the same as when the output was read to its end.
//!   Any other failure (a full disk behind `> file`) is reported when the command ends, as
//!   an error (exit 1): [`failure`].
//! - A write to standard error that fails is dropped (`recur train 2>&1 | head`).

use std::fmt;
use std::io::{self, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to standard output has failed.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// The first failure to write standard output that was not a closed pipe.
static FAILURE: OnceLock<String> = OnceLock::new();

/// `print!` for the whole crate: writes to standard output unless it has been closed.
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::out::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` for the whole crate.
macro_rules! println {
    () => {
        $crate::out::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` for the whole crate: a write to a closed standard error is dropped.
#[allow(unused_macros)]
macro_rules! eprint {
    ($($arg:tt)*) => {
        $crate::out::write_stderr(format_args!($($arg)*))
    };
}

/// `eprintln!` for the whole crate.
macro_rules! eprintln {
    () => {
        $crate::out::write_stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to standard output; a failure marks it closed.
pub fn write_stdout(args: fmt::Arguments<'_>) {
    if stdout_closed() {
        return;
    }
    if let Err(e) = io::stdout().lock().write_fmt(args) {
        close(&e);
    }
}

/// Writes to standard error, dropping a failure.
pub fn write_stderr(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Writes out what standard output holds (a `print!` without a newline), so that a failure
/// is seen before the command's exit status is chosen.
pub fn flush_stdout() {
    if !stdout_closed()
        && let Err(e) = io::stdout().lock().flush()
    {
        close(&e);
    }
}

/// Whether a write to standard output has failed (its reader closed the pipe, or worse).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::SeqCst)
}

/// The failure to write standard output that was not a closed pipe, if there was one.
pub fn failure() -> Option<&'static str> {
    FAILURE.get().map(String::as_str)
}

fn close(e: &io::Error) {
    STDOUT_CLOSED.store(true, Ordering::SeqCst);
    if e.kind() != io::ErrorKind::BrokenPipe {
        let _ = FAILURE.set(format!("writing to standard output: {e}"));
    }
}
