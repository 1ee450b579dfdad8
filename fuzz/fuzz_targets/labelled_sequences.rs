//! Labelled sequences in recur's line format, as classes and as regression targets; every
//! value read is finite.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::data::{Labels, SequenceDataset, TargetKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for target in [TargetKind::Class, TargetKind::Regression] {
        if let Ok(d) = SequenceDataset::parse_lines(text, "fuzz.txt", target, None) {
            assert!(d.inputs.iter().flatten().all(|v| v.is_finite()));
            if let Labels::Regression(t) = &d.labels {
                assert!(t.iter().all(|v| v.is_finite()));
            }
            let _ = d.padded_batch::<f32>(&[0]);
        }
    }
});
