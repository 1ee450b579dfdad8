//! A text corpus: UTF-8 check, the vocabulary at both levels, encoding, batching, decoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::data::{Corpus, TokenLevel, batchify};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for level in [TokenLevel::Char, TokenLevel::Word] {
        let corpus = Corpus::from_texts(text, text, text, level);
        let _ = batchify(&corpus.train, 3);
        let _ = corpus.vocab.decode(&corpus.test);
        let saved = corpus.vocab.to_text();
        assert_eq!(
            recur::data::Vocabulary::from_text(&saved, "saved")
                .ok()
                .as_ref(),
            Some(&corpus.vocab),
            "a vocabulary reads back what it wrote"
        );
    }
});
