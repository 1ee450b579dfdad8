//! Reading data files: text corpora and their vocabularies, truncated-BPTT batching, and
//! labelled sequences in recur's line format and the UCR/UEA `.ts` format. Every bad file is
//! a typed error whose one-line message names the file and the place.
//!
//! The inputs are small files written to a fresh folder under the system's temp dir.

use std::path::{Path, PathBuf};

use recur::Error;
use recur::data::{
    Corpus, EOS, Labels, SequenceDataset, SplitFractions, TargetKind, TokenLevel, UNK, Vocabulary,
    batchify,
};

/// A fresh folder for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("recur-data-files-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes `bytes` to `name` in the folder and returns its path.
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The line and reason of an [`Error::Parse`] of `path`; its message is
/// `<path>:<line>: <reason>` on one line.
fn parse_error<T: std::fmt::Debug>(result: recur::Result<T>, path: &Path) -> (usize, String) {
    let err = result.unwrap_err();
    let message = err.to_string();
    match err {
        Error::Parse { file, line, reason } => {
            assert_eq!(file, path.display().to_string());
            assert_eq!(message, format!("{file}:{line}: {reason}"));
            assert!(!message.contains('\n'), "one line: {message}");
            (line, reason)
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Text corpora and vocabularies

#[test]
fn char_vocabulary_round_trips_multibyte_text() {
    let dir = TempDir::new("char-vocab");
    // 1-, 2-, 3- and 4-byte characters, and the characters the saved form escapes.
    let text = "héllo, wörld → 🌍\n\ttab \\ back\r\nzß\n";
    let vocab = Vocabulary::build(text, TokenLevel::Char);
    let ids = vocab.encode(text);
    assert_eq!(ids.len(), text.chars().count());
    assert_eq!(vocab.decode(&ids).unwrap(), text);
    assert_eq!(vocab.token(ids[1]), Some("é"));
    assert_eq!(vocab.token(vocab.len() - 1), Some(UNK), "<unk> comes last");
    assert_eq!(vocab.eos_id(), None);
    // An unseen character is <unk>.
    assert_eq!(vocab.encode("hq"), [ids[0], vocab.unk_id()]);

    let path = dir.0.join("vocab.txt");
    vocab.save(&path).unwrap();
    assert_eq!(Vocabulary::load(&path).unwrap(), vocab);
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(saved.starts_with("recur-vocabulary 1 char\nh\né\n"));
    assert!(saved.contains("\n\\t\n") && saved.contains("\n\\\\\n") && saved.contains("\n\\r\n"));
}

#[test]
fn word_vocabulary_uses_unk_and_eos_like_pytorch() {
    let dir = TempDir::new("word-vocab");
    let train = dir.file("train.txt", " the cat <unk> sat \n on the mat\n");
    let valid = dir.file("valid.txt", "the dog sat\n");
    let test = dir.file("test.txt", "a cat");
    let corpus = Corpus::from_files(&train, &valid, &test, TokenLevel::Word).unwrap();
    let vocab = &corpus.vocab;
    // First appearance, as PyTorch's Dictionary gives them.
    assert_eq!(
        vocab.tokens(),
        strings(&["the", "cat", UNK, "sat", EOS, "on", "mat"])
    );
    assert_eq!(corpus.train, [0, 1, 2, 3, 4, 5, 0, 6, 4]);
    // "dog" and "a" are unseen: the id of the file's own <unk>.
    assert_eq!(corpus.valid, [0, 2, 3, 4]);
    assert_eq!(
        corpus.test,
        [2, 1, 4],
        "the last line has no line end and still gets <eos>"
    );
    assert_eq!(
        vocab.decode(&corpus.train).unwrap(),
        "the cat <unk> sat\non the mat\n"
    );
    assert_eq!(
        vocab.encode("the cat <unk> sat\non the mat\n"),
        corpus.train
    );

    // Deterministic: the same text gives the same ids, every time.
    for _ in 0..3 {
        assert_eq!(
            Corpus::from_files(&train, &valid, &test, TokenLevel::Word).unwrap(),
            corpus
        );
    }

    let path = dir.0.join("vocab.txt");
    vocab.save(&path).unwrap();
    let loaded = Vocabulary::load(&path).unwrap();
    assert_eq!(&loaded, vocab);
    assert_eq!(loaded.level(), TokenLevel::Word);
    assert!(matches!(
        vocab.decode(&[0, 7]),
        Err(Error::Index {
            position: 1,
            value: 7,
            bound: 7,
            ..
        })
    ));
}

#[test]
fn non_utf8_text_names_line_and_byte_offset() {
    let dir = TempDir::new("non-utf8");
    let good = dir.file("good.txt", "fine\n");
    // "ok line\n" is 8 bytes, "second " 7 more: the bad byte is at offset 15, on line 2.
    let bad = dir.file("bad.txt", b"ok line\nsecond \xff bad\n");
    let err = Corpus::from_files(&good, &bad, &good, TokenLevel::Char).unwrap_err();
    let message = err.to_string();
    match err {
        Error::NotUtf8 { file, line, offset } => {
            assert_eq!(file, bad.display().to_string());
            assert_eq!((line, offset), (2, 15));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        message,
        format!(
            "{}:2: not valid UTF-8 (first bad byte at byte offset 15)",
            bad.display()
        )
    );
    // A truncated multi-byte character at the very end.
    let cut = dir.file("cut.txt", b"a\nb\n\xc3");
    assert!(matches!(
        Corpus::from_split(&cut, SplitFractions::default(), TokenLevel::Char),
        Err(Error::NotUtf8 {
            line: 3,
            offset: 4,
            ..
        })
    ));
}

#[test]
fn missing_and_empty_files_are_named() {
    let dir = TempDir::new("missing-empty");
    let good = dir.file("good.txt", "fine\n");
    let empty = dir.file("empty.txt", "");
    let bom_only = dir.file("bom.txt", "\u{feff}");
    let missing = dir.0.join("missing.txt");
    for path in [&empty, &bom_only] {
        match Corpus::from_files(&good, &good, path, TokenLevel::Word) {
            Err(Error::EmptyFile { file }) => assert_eq!(file, path.display().to_string()),
            other => panic!("{other:?}"),
        }
    }
    let err = Corpus::from_files(&missing, &good, &good, TokenLevel::Word).unwrap_err();
    // the display names the file; the OS reason is the source, printed once by a chain
    assert_eq!(
        err.to_string(),
        format!("cannot access {}", missing.display())
    );
    match err {
        Error::Io { file, source } => {
            assert_eq!(file, missing.display().to_string());
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(Vocabulary::load(&missing), Err(Error::Io { .. })));
    assert!(matches!(
        SequenceDataset::read_ts(&empty, None),
        Err(Error::EmptyFile { .. })
    ));
    let comments = dir.file("comments.txt", "# nothing here\n\n");
    assert!(matches!(
        SequenceDataset::read_lines(&comments, TargetKind::Class, None),
        Err(Error::EmptyFile { .. })
    ));
}

#[test]
fn split_fractions_cut_characters_or_lines() {
    let dir = TempDir::new("split");
    let chars = dir.file("chars.txt", "abcdefgh\u{e9}j");
    let split = |train, valid, test| SplitFractions { train, valid, test };
    let c = Corpus::from_split(&chars, split(0.8, 0.1, 0.1), TokenLevel::Char).unwrap();
    assert_eq!(c.vocab.decode(&c.train).unwrap(), "abcdefgh");
    // Unseen in training: é and j are <unk>.
    assert_eq!((c.valid.clone(), c.test.clone()), (vec![8], vec![8]));

    // Word level cuts whole lines: 4 lines → 2 / 1 / 1.
    let words = dir.file("words.txt", "a b\nc\nd a\nb\n");
    let w = Corpus::from_split(&words, split(0.5, 0.25, 0.25), TokenLevel::Word).unwrap();
    assert_eq!(w.vocab.tokens(), strings(&["a", "b", EOS, "c", UNK]));
    assert_eq!(w.train, [0, 1, 2, 3, 2]);
    assert_eq!(w.valid, [4, 0, 2]);
    assert_eq!(w.test, [1, 2]);
    // The default 0.9 / 0.05 / 0.05 sums to 1 within the tolerance.
    let twenty = dir.file("twenty.txt", "abcdefghijklmnopqrst");
    let d = Corpus::from_split(&twenty, SplitFractions::default(), TokenLevel::Char).unwrap();
    assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (18, 1, 1));

    let config_reason =
        |fractions, path: &Path, level| match Corpus::from_split(path, fractions, level) {
            Err(Error::Config { what, reason }) => {
                assert_eq!(what, "split fractions");
                reason
            }
            other => panic!("{other:?}"),
        };
    assert!(config_reason(split(0.8, 0.1, 0.2), &chars, TokenLevel::Char).contains("expected 1"));
    assert!(config_reason(split(1.2, -0.1, -0.1), &chars, TokenLevel::Char).contains("0..=1"));
    assert!(config_reason(split(f64::NAN, 0.5, 0.5), &chars, TokenLevel::Char).contains("0..=1"));
    // 10 characters: round(0.2) = 0 characters left for valid.
    let reason = config_reason(split(0.96, 0.02, 0.02), &chars, TokenLevel::Char);
    assert!(
        reason.contains("valid part empty") && reason.contains("chars.txt"),
        "{reason}"
    );
    let reason = config_reason(split(0.75, 0.25, 0.0), &words, TokenLevel::Word);
    assert!(
        reason.contains("test part empty") && reason.contains("4 lines"),
        "{reason}"
    );
}

// ---------------------------------------------------------------------------------------------
// Truncated-BPTT batching

/// Hand-computed from PyTorch's word_language_model:
/// ```python
/// data = torch.arange(13)
/// nbatch = data.size(0) // 3                       # 4
/// data = data[:nbatch * 3].view(3, -1).t()         # [[0,4,8],[1,5,9],[2,6,10],[3,7,11]]
/// for i in range(0, data.size(0) - 1, 2):          # i = 0, 2
///     seq_len = min(2, len(data) - 1 - i)
///     x, y = data[i:i+seq_len], data[i+1:i+1+seq_len]
/// # i = 0: x = [[0,4,8],[1,5,9]], y = [[1,5,9],[2,6,10]]
/// # i = 2: x = [[2,6,10]],        y = [[3,7,11]]
/// ```
#[test]
fn batchify_and_chunks_match_pytorch() {
    let ids: Vec<usize> = (0..13).collect();
    let streams = batchify(&ids, 3).unwrap();
    assert_eq!((streams.n_steps(), streams.batch()), (4, 3));
    assert_eq!(streams.data(), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    assert_eq!(streams.num_chunks(2), 2);
    let chunks: Vec<_> = streams.chunks(2).unwrap().collect();
    assert_eq!(chunks.len(), 2);
    assert_eq!((chunks[0].start, chunks[0].seq_len), (0, 2));
    assert_eq!(chunks[0].input, [0, 4, 8, 1, 5, 9]);
    assert_eq!(chunks[0].target, [1, 5, 9, 2, 6, 10]);
    assert_eq!((chunks[1].start, chunks[1].seq_len), (2, 1));
    assert_eq!(chunks[1].input, [2, 6, 10]);
    assert_eq!(chunks[1].target, [3, 7, 11]);
    // Resuming at a chunk's start gives the same chunks from there.
    let resumed: Vec<_> = streams.chunks_from(2, 2).unwrap().collect();
    assert_eq!(resumed, chunks[1..]);

    // Column b of consecutive chunks is one stream read in order, and each target is the
    // token after its input in the original stream: carrying the state is correct.
    for bptt in 1..=5 {
        let mut per_stream = vec![Vec::new(); 3];
        for chunk in streams.chunks(bptt).unwrap() {
            for t in 0..chunk.seq_len {
                for (b, stream) in per_stream.iter_mut().enumerate() {
                    let (x, y) = (chunk.input[t * 3 + b], chunk.target[t * 3 + b]);
                    assert_eq!(y, x + 1);
                    stream.push(x);
                }
            }
        }
        for (b, stream) in per_stream.iter().enumerate() {
            assert_eq!(
                *stream,
                (4 * b..4 * b + 3).collect::<Vec<_>>(),
                "bptt {bptt}"
            );
        }
    }

    // From a text file to chunks.
    let corpus = Corpus::from_texts("a b c d e f\n", "a\n", "b\n", TokenLevel::Word);
    let streams = batchify(&corpus.train, 2).unwrap();
    let first = streams.chunks(35).unwrap().next().unwrap();
    assert_eq!(corpus.vocab.decode(first.input).unwrap(), "a d b e");
    assert_eq!(corpus.vocab.decode(first.target).unwrap(), "b e c f");
    assert!(matches!(
        batchify(&corpus.valid, 2),
        Err(Error::TooFewTokens {
            tokens: 2,
            batch: 2
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// Labelled sequences

const UNIVARIATE_TS: &str = "\
# A univariate toy problem
@problemName Toy
@timeStamps false
@missing true
@univariate true
@equalLength false
@classLabel true up down

@data
1,2,3:down
4,5,5.5,6:up
";

#[test]
fn ts_univariate_classification() {
    let dir = TempDir::new("ts-uni");
    let path = dir.file("toy.ts", UNIVARIATE_TS);
    let d = SequenceDataset::read_ts(&path, None).unwrap();
    assert_eq!((d.len(), d.input_size), (2, 1));
    assert_eq!(d.lengths, [3, 4]);
    assert_eq!(d.inputs[0], [1.0, 2.0, 3.0]);
    assert_eq!(d.inputs[1], [4.0, 5.0, 5.5, 6.0]);
    assert_eq!(
        d.labels,
        Labels::Class {
            ids: vec![1, 0],
            classes: strings(&["up", "down"])
        },
        "class ids in @classLabel order"
    );
    // A test file mapped to the training file's classes.
    let given = strings(&["down", "up"]);
    let t = SequenceDataset::read_ts(&path, Some(&given)).unwrap();
    assert_eq!(
        t.labels,
        Labels::Class {
            ids: vec![0, 1],
            classes: given
        }
    );
    let (x, lengths) = d.padded_batch::<f32>(&[0, 1]).unwrap();
    assert_eq!(x.shape(), &[4, 2, 1]);
    assert_eq!(lengths, [3, 4]);
    assert_eq!(x.data()[6], 0.0, "zero past the end of sequence 0");
}

#[test]
fn ts_multivariate_classification() {
    let dir = TempDir::new("ts-multi");
    let path = dir.file(
        "multi.ts",
        "@problemName Multi\n@univariate false\n@dimensions 2\n@equalLength true\n\
         @seriesLength 3\n@classLabel true 1 2\n@data\n1,2,3:4,5,6:2\n7,8,9:10,11,12:1\n",
    );
    let d = SequenceDataset::read_ts(&path, None).unwrap();
    assert_eq!((d.len(), d.input_size), (2, 2));
    assert_eq!(d.lengths, [3, 3]);
    // [len, features], step-major.
    assert_eq!(d.inputs[0], [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(d.inputs[1], [7.0, 10.0, 8.0, 11.0, 9.0, 12.0]);
    assert_eq!(
        d.labels,
        Labels::Class {
            ids: vec![1, 0],
            classes: strings(&["1", "2"])
        }
    );
    // Without @dimensions the first case decides; cases may differ in length.
    let free = dir.file(
        "free.ts",
        "@univariate false\n@classLabel true a b\n@data\n1,2:3,4:a\n5:6:b\n",
    );
    let d = SequenceDataset::read_ts(&free, None).unwrap();
    assert_eq!((d.input_size, d.lengths.clone()), (2, vec![2, 1]));
}

#[test]
fn ts_regression() {
    let dir = TempDir::new("ts-reg");
    let path = dir.file(
        "reg.ts",
        "@problemName Reg\n@univariate true\n@targetLabel true\n@data\n1,2:0.5\n3:-1.25\n",
    );
    let d = SequenceDataset::read_ts(&path, None).unwrap();
    assert_eq!(d.lengths, [2, 1]);
    assert_eq!(d.labels, Labels::Regression(vec![0.5, -1.25]));
    assert_eq!(d.classes(), None);
}

#[test]
fn malformed_ts_lines_name_file_line_and_problem() {
    let dir = TempDir::new("ts-bad");
    let head = "@problemName Bad\n@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n";
    let cases: &[(&str, String, usize, &str)] = &[
        (
            "dims",
            format!("{head}1,2:3,4:a\n1,2:b\n"),
            7,
            "1 dimensions, expected 2",
        ),
        (
            "nan",
            format!("{head}1,x,3:4,5,6:a\n"),
            6,
            "column 3: `x` (dimension 1, value 2) is not a number",
        ),
        (
            "missing",
            format!("{head}1,2,3:4,?,6:a\n"),
            6,
            "column 9: `?` (dimension 2, value 2) is a missing value",
        ),
        (
            "not-finite",
            format!("{head}1,2,3:4,5,6:a\n1,2,3:4,5,inf:b\n"),
            7,
            "column 11: `inf` (dimension 2, value 3) is not a finite number",
        ),
        (
            "overflow",
            format!("{head}1e39,2:4,5:a\n"),
            6,
            "column 1: `1e39` (dimension 1, value 1) is not a finite number",
        ),
        (
            "label",
            format!("{head}1:2:left\n"),
            6,
            "unknown class label `left`",
        ),
        (
            "unequal",
            format!("{head}1,2:3:a\n"),
            6,
            "dimension 2 has 1 values, dimension 1 has 2",
        ),
        (
            "no-label",
            format!("{head}1,2\n"),
            6,
            "no `:` before its label",
        ),
        (
            "after",
            format!("{head}1:2:a\n@univariate true\n"),
            7,
            "after @data",
        ),
        (
            "before",
            "@problemName Bad\n1,2:a\n@data\n".into(),
            2,
            "data before @data",
        ),
        (
            "unknown",
            "@problemName Bad\n@colour blue\n@data\n".into(),
            2,
            "unknown header `@colour`",
        ),
        (
            "bool",
            "@univariate maybe\n@data\n".into(),
            1,
            "takes true or false",
        ),
        (
            "stamps",
            "@timeStamps true\n@data\n".into(),
            1,
            "not supported",
        ),
        (
            "neither",
            "@univariate true\n@classLabel false\n@data\n1:2\n".into(),
            3,
            "neither",
        ),
        (
            "both",
            "@classLabel true a\n@targetLabel true\n@data\n".into(),
            3,
            "both",
        ),
        (
            "no-data",
            "@problemName Bad\n@univariate true\n".into(),
            2,
            "no @data line",
        ),
        (
            "uni-dims",
            "@univariate true\n@dimensions 2\n@targetLabel true\n@data\n".into(),
            4,
            "contradicts",
        ),
        (
            "length",
            "@equalLength true\n@seriesLength 3\n@targetLabel true\n@data\n1,2,3:0\n1,2:0\n".into(),
            6,
            "2 values per dimension, expected 3",
        ),
        (
            "target",
            "@targetLabel true\n@data\n1,2:big\n".into(),
            3,
            "regression target `big`",
        ),
    ];
    for (name, text, line, reason) in cases {
        let path = dir.file(&format!("{name}.ts"), text);
        let (got_line, got_reason) = parse_error(SequenceDataset::read_ts(&path, None), &path);
        assert_eq!(got_line, *line, "{name}: {got_reason}");
        assert!(got_reason.contains(reason), "{name}: {got_reason}");
    }
    // A label of the file's own list that the given (training) classes lack.
    let path = dir.file("given.ts", format!("{head}1:2:b\n"));
    let given = strings(&["a"]);
    let (line, reason) = parse_error(SequenceDataset::read_ts(&path, Some(&given)), &path);
    assert_eq!(line, 6);
    assert!(reason.contains("not among the given classes"), "{reason}");
}

/// A bad line-format file: name, text, target kind, given classes, the line and a part of
/// the reason its error gives.
type LineCase<'a> = (
    &'a str,
    &'a str,
    TargetKind,
    Option<&'a [String]>,
    usize,
    &'a str,
);

#[test]
fn line_format_reads_and_rejects() {
    let dir = TempDir::new("lines");
    let path = dir.file(
        "seqs.txt",
        "# label<TAB>steps, features by commas\nwalk\t0.1,2 0.3,4 0.5,6\nrun\t1,-3 \n",
    );
    let d = SequenceDataset::read_lines(&path, TargetKind::Class, None).unwrap();
    assert_eq!((d.input_size, d.lengths.clone()), (2, vec![3, 1]));
    assert_eq!(d.inputs[0], [0.1, 2.0, 0.3, 4.0, 0.5, 6.0]);
    assert_eq!(d.inputs[1], [1.0, -3.0]);
    assert_eq!(d.classes(), Some(&strings(&["run", "walk"])[..]));
    let reg = dir.file("reg.txt", "7.5\t1 2 3 4\n-2\t5\n");
    let r = SequenceDataset::read_lines(&reg, TargetKind::Regression, None).unwrap();
    assert_eq!(r.labels, Labels::Regression(vec![7.5, -2.0]));
    assert_eq!((r.input_size, r.lengths), (1, vec![4, 1]));

    let given = strings(&["walk"]);
    let cases: &[LineCase] = &[
        (
            "tab",
            "a\t1 2\nb 1 2\n",
            TargetKind::Class,
            None,
            2,
            "no tab",
        ),
        (
            "number",
            "a\t1 2,x\n",
            TargetKind::Class,
            None,
            1,
            "column 7: `x` (step 2, value 2) is not a number",
        ),
        (
            "nan",
            "a\t1,2 3,4\nb\t1,2 NaN,4\n",
            TargetKind::Class,
            None,
            2,
            "column 7: `NaN` (step 2, value 1) is not a finite number",
        ),
        (
            "missing",
            "a\t1 ?\n",
            TargetKind::Class,
            None,
            1,
            "column 5: `?` (step 2, value 1) is a missing value",
        ),
        (
            "control",
            "a\t1 \u{1b}[2J\n",
            TargetKind::Class,
            None,
            1,
            "`\\u{1b}[2J` (step 2, value 1) is not a number",
        ),
        (
            "target-nan",
            "1.5\t1\nnan\t2\n",
            TargetKind::Regression,
            None,
            2,
            "column 1: regression target `nan` is not a finite number",
        ),
        (
            "features",
            "a\t1,2 3,4\nb\t1,2 3\n",
            TargetKind::Class,
            None,
            2,
            "step 2 has 1 values, expected 2",
        ),
        (
            "empty-label",
            "\t1 2\n",
            TargetKind::Class,
            None,
            1,
            "empty label",
        ),
        (
            "no-values",
            "# c\na\t  \n",
            TargetKind::Class,
            None,
            2,
            "no values",
        ),
        (
            "unknown",
            "walk\t1\nrun\t2\n",
            TargetKind::Class,
            Some(&given),
            2,
            "unknown class label `run`",
        ),
        (
            "target",
            "1.5\t1\nfast\t2\n",
            TargetKind::Regression,
            None,
            2,
            "regression target `fast`",
        ),
    ];
    for &(name, text, target, classes, line, reason) in cases {
        let path = dir.file(&format!("{name}.txt"), text);
        let (got_line, got_reason) =
            parse_error(SequenceDataset::read_lines(&path, target, classes), &path);
        assert_eq!(got_line, line, "{name}: {got_reason}");
        assert!(got_reason.contains(reason), "{name}: {got_reason}");
    }
}
