//! A training checkpoint: `recur::io::load_checkpoint_bytes`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = recur::io::load_checkpoint_bytes::<f32>(data, None);
});
