//! A PyTorch state_dict as safetensors: `recur::io::load_state_dict_bytes`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::io::{LoadOptions, load_state_dict_bytes};

fuzz_target!(|data: &[u8]| {
    let _ = load_state_dict_bytes::<f32>(data, &LoadOptions::default());
});
