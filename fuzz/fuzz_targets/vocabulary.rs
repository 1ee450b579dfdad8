//! A saved vocabulary (`Vocabulary::from_text`, what checkpoints record).
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::data::Vocabulary;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = Vocabulary::from_text(text, "fuzz.vocab") {
        let back = Vocabulary::from_text(&v.to_text(), "again").expect("reads back");
        assert_eq!(back, v);
    }
});
