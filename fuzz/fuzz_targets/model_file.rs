//! A whole-model file: `recur::io::load_model_bytes`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = recur::io::load_model_bytes::<f32>(data);
});
