//! The configuration JSON every file carries: the stack's and the whole model's.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = recur::RecurrentConfig::from_json(text);
    if let Ok(c) = recur::io::model_config_from_json(text) {
        // the layout is built only for what the memory estimate says is small
        let est = recur::estimate_memory(&c, 1, 1, 0, 4);
        if est.weights < 64 << 20 {
            let _ = c.param_layout();
        }
    }
});
