//! A UCR/UEA `.ts` file; every value read is finite.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::data::{Labels, SequenceDataset};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = SequenceDataset::parse_ts(text, "fuzz.ts", None) {
        assert!(d.inputs.iter().flatten().all(|v| v.is_finite()));
        if let Labels::Regression(t) = &d.labels {
            assert!(t.iter().all(|v| v.is_finite()));
        }
        let _ = d.padded_batch::<f32>(&[0]);
    }
});
