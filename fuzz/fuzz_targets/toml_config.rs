//! `recur train --config FILE`: the TOML settings file, with the command line's own reader.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/recur-cli/src/train/args.rs"]
mod args;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = args::parse_config(text, "fuzz.toml");
});
