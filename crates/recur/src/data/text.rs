//! Text corpora: a [`Vocabulary`] built from the training part, and the train/valid/test
//! parts as token ids ([`Corpus`]).
//!
//! Two levels of tokens ([`TokenLevel`]):
//! - **character**: every Unicode scalar value is a token, the line ends included (as in
//!   char-rnn); no `<eos>` is added.
//! - **word**: each line is split at (Unicode) whitespace and `<eos>` is appended at its end,
//!   as PyTorch's word_language_model example does (`line.split() + ['<eos>']`).
//!
//! Ids are given in order of first appearance in the training text, as the example's
//! `Dictionary` does; `<eos>` (word level) and `<unk>` come next when the training text does
//! not already hold them. Tokens of the valid and test parts that training never saw map to
//! `<unk>`, and a literal `<unk>` in the text (Penn Treebank has them) is that same id. The
//! example adds the words of all three files to its dictionary; recur, as the training part
//! alone must decide the vocabulary, does not. On Penn Treebank, whose valid and test words
//! all occur in training, the ids are the example's.
//!
//! Files are read whole and must be UTF-8; a leading byte-order mark is dropped.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result, config_err};

/// The token of words (or characters) the vocabulary does not hold.
pub const UNK: &str = "<unk>";
/// The token appended at each line end at word level.
pub const EOS: &str = "<eos>";

/// What a token is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenLevel {
    /// One Unicode scalar value per token, line ends included.
    #[default]
    Char,
    /// Whitespace-separated words, with [`EOS`] at each line end.
    Word,
}

impl TokenLevel {
    fn name(self) -> &'static str {
        match self {
            TokenLevel::Char => "char",
            TokenLevel::Word => "word",
        }
    }

    /// Calls `f` on each token of `text`, in order.
    fn for_each_token<'t>(self, text: &'t str, mut f: impl FnMut(&'t str)) {
        match self {
            TokenLevel::Char => {
                for (i, c) in text.char_indices() {
                    f(&text[i..i + c.len_utf8()]);
                }
            }
            TokenLevel::Word => {
                for line in text.lines() {
                    line.split_whitespace().for_each(&mut f);
                    f(EOS);
                }
            }
        }
    }

    /// The number of units [`Corpus::from_split`] divides: characters, or lines.
    fn count_units(self, text: &str) -> usize {
        match self {
            TokenLevel::Char => text.chars().count(),
            TokenLevel::Word => text.lines().count(),
        }
    }

    /// The byte offset where unit `k` starts (`text.len()` for `k` = the unit count).
    fn unit_offset(self, text: &str, k: usize) -> usize {
        if k == 0 {
            return 0;
        }
        match self {
            TokenLevel::Char => text.char_indices().nth(k).map_or(text.len(), |(i, _)| i),
            TokenLevel::Word => text
                .match_indices('\n')
                .nth(k - 1)
                .map_or(text.len(), |(i, _)| i + 1),
        }
    }
}

/// Tokens and their ids, `0..len()`.
///
/// ```
/// use recur::data::{TokenLevel, Vocabulary};
/// let vocab = Vocabulary::build("the cat\nthe dog\n", TokenLevel::Word);
/// // first appearance: the, cat, <eos>, dog; then <unk>
/// assert_eq!(vocab.encode("the cow"), [0, 4, 2]);
/// assert_eq!(vocab.decode(&[0, 1, 2, 3])?, "the cat\ndog");
/// assert_eq!(vocab.len(), 5);
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    level: TokenLevel,
    tokens: Vec<String>,
    ids: HashMap<String, usize>,
}

impl Vocabulary {
    /// The first line of a saved vocabulary, followed by its level.
    const HEADER: &'static str = "recur-vocabulary 1";

    /// The vocabulary of `text`: its tokens by first appearance, then [`EOS`] (word level) and
    /// [`UNK`] where the text lacks them.
    pub fn build(text: &str, level: TokenLevel) -> Self {
        let mut vocab = Self {
            level,
            tokens: Vec::new(),
            ids: HashMap::new(),
        };
        level.for_each_token(text, |t| vocab.insert(t));
        if level == TokenLevel::Word {
            vocab.insert(EOS);
        }
        vocab.insert(UNK);
        vocab
    }

    fn insert(&mut self, token: &str) {
        if !self.ids.contains_key(token) {
            self.ids.insert(token.to_owned(), self.tokens.len());
            self.tokens.push(token.to_owned());
        }
    }

    /// The token level the vocabulary was built at.
    pub fn level(&self) -> TokenLevel {
        self.level
    }

    /// The number of tokens, special ones included (the model's `num_embeddings`).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false: a vocabulary holds at least [`UNK`].
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of [`UNK`].
    pub fn unk_id(&self) -> usize {
        self.ids[UNK]
    }

    /// The id of [`EOS`] (word level only).
    pub fn eos_id(&self) -> Option<usize> {
        self.ids.get(EOS).copied()
    }

    /// The id of `token`, [`Vocabulary::unk_id`] when the vocabulary does not hold it.
    pub fn id(&self, token: &str) -> usize {
        self.ids
            .get(token)
            .copied()
            .unwrap_or_else(|| self.unk_id())
    }

    /// The token of `id`, `None` when `id` ≥ [`Vocabulary::len`].
    pub fn token(&self, id: usize) -> Option<&str> {
        self.tokens.get(id).map(String::as_str)
    }

    /// All tokens, in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The ids of the tokens of `text` (at word level, each line ends with [`EOS`]).
    pub fn encode(&self, text: &str) -> Vec<usize> {
        let mut ids = Vec::new();
        self.level.for_each_token(text, |t| ids.push(self.id(t)));
        ids
    }

    /// The text of `ids`: at character level the tokens one after the other; at word level
    /// the words separated by one space, each [`EOS`] written as a line end. So
    /// `decode(encode(s)) == s` at character level for text of known characters, and at word
    /// level for text whose lines are words separated by single spaces, each line ending in
    /// `\n`.
    ///
    /// # Errors
    /// [`Error::Index`] naming the first id ≥ [`Vocabulary::len`].
    pub fn decode(&self, ids: &[usize]) -> Result<String> {
        let mut text = String::new();
        let mut line_start = true;
        for (position, &id) in ids.iter().enumerate() {
            let token = self.token(id).ok_or_else(|| Error::Index {
                what: "ids".into(),
                position,
                value: id,
                bound_name: "vocabulary size".into(),
                bound: self.len(),
            })?;
            match self.level {
                TokenLevel::Char => text.push_str(token),
                TokenLevel::Word if token == EOS => {
                    text.push('\n');
                    line_start = true;
                }
                TokenLevel::Word => {
                    if !line_start {
                        text.push(' ');
                    }
                    text.push_str(token);
                    line_start = false;
                }
            }
        }
        Ok(text)
    }

    /// The vocabulary as plain text: the line `recur-vocabulary 1 <level>` (level `char` or
    /// `word`), then one token per line in id order, each ending in `\n`, with `\` written
    /// `\\`, a line feed `\n`, a carriage return `\r` and a tab `\t`.
    pub fn to_text(&self) -> String {
        let mut text = format!("{} {}\n", Self::HEADER, self.level.name());
        for token in &self.tokens {
            for c in token.chars() {
                match c {
                    '\\' => text.push_str("\\\\"),
                    '\n' => text.push_str("\\n"),
                    '\r' => text.push_str("\\r"),
                    '\t' => text.push_str("\\t"),
                    c => text.push(c),
                }
            }
            text.push('\n');
        }
        text
    }

    /// Reads what [`Vocabulary::to_text`] writes; `file` names the source in errors.
    ///
    /// # Errors
    /// [`Error::Parse`] naming the line of a bad header, an unknown escape, an empty or
    /// repeated token, or (character level) a token of more than one character other than
    /// [`UNK`]; and naming line 1 when [`UNK`] (or, at word level, [`EOS`]) is missing.
    pub fn from_text(text: &str, file: &str) -> Result<Self> {
        let parse_err = |line: usize, reason: String| Error::Parse {
            file: file.to_owned(),
            line,
            reason,
        };
        let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
        let header = lines.next().unwrap_or("").trim_end_matches('\r');
        let level = match header.strip_prefix(Self::HEADER).map(str::trim) {
            Some("char") => TokenLevel::Char,
            Some("word") => TokenLevel::Word,
            _ => {
                return Err(parse_err(
                    1,
                    format!(
                        "expected the header `{} char` or `{} word`, got `{}`",
                        Self::HEADER,
                        Self::HEADER,
                        crate::error::excerpt(header)
                    ),
                ));
            }
        };
        let mut vocab = Self {
            level,
            tokens: Vec::new(),
            ids: HashMap::new(),
        };
        for (i, raw) in lines.enumerate() {
            let line = i + 2;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let token = unescape(raw).map_err(|reason| parse_err(line, reason))?;
            if token.is_empty() {
                return Err(parse_err(line, "empty token".into()));
            }
            if level == TokenLevel::Char && token != UNK && token.chars().count() != 1 {
                return Err(parse_err(
                    line,
                    format!(
                        "`{}` is not one character (the vocabulary is char level)",
                        crate::error::excerpt(raw)
                    ),
                ));
            }
            if let Some(&first) = vocab.ids.get(&token) {
                return Err(parse_err(
                    line,
                    format!(
                        "`{}` repeats the token of line {}",
                        crate::error::excerpt(raw),
                        first + 2
                    ),
                ));
            }
            vocab.insert(&token);
        }
        let required: &[&str] = match level {
            TokenLevel::Char => &[UNK],
            TokenLevel::Word => &[UNK, EOS],
        };
        for &token in required {
            if !vocab.ids.contains_key(token) {
                return Err(parse_err(1, format!("the vocabulary has no `{token}`")));
            }
        }
        Ok(vocab)
    }

    /// Writes [`Vocabulary::to_text`] to `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_text()).map_err(|source| Error::Io {
            file: path.display().to_string(),
            source,
        })
    }

    /// Reads a vocabulary [`Vocabulary::save`] wrote.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::NotUtf8`], [`Error::EmptyFile`] for a file that cannot be
    /// read, and those of [`Vocabulary::from_text`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_text(&read_text(path)?, &path.display().to_string())
    }
}

/// The inverse of the escaping of [`Vocabulary::to_text`].
fn unescape(raw: &str) -> std::result::Result<String, String> {
    let mut token = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            token.push(c);
            continue;
        }
        token.push(match chars.next() {
            Some('\\') => '\\',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some(other) => {
                return Err(format!(
                    "unknown escape `\\{}` in `{}`",
                    crate::error::excerpt(&other.to_string()),
                    crate::error::excerpt(raw)
                ));
            }
            None => {
                return Err(format!(
                    "`{}` ends in a lone `\\`",
                    crate::error::excerpt(raw)
                ));
            }
        });
    }
    Ok(token)
}

/// The fractions of a single text that [`Corpus::from_split`] gives each part.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplitFractions {
    pub train: f64,
    pub valid: f64,
    pub test: f64,
}

impl Default for SplitFractions {
    /// 0.9 / 0.05 / 0.05.
    fn default() -> Self {
        Self {
            train: 0.9,
            valid: 0.05,
            test: 0.05,
        }
    }
}

impl SplitFractions {
    /// How far from 1 the sum of the fractions may be (decimal fractions such as 0.9 + 0.05
    /// + 0.05 do not sum to 1 exactly in binary).
    pub const SUM_TOLERANCE: f64 = 1e-6;
}

/// A vocabulary and the three parts of a text as its ids (each a 1-D stream, ready for
/// [`super::batchify`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corpus {
    /// Built from the training part alone.
    pub vocab: Vocabulary,
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

impl Corpus {
    /// The corpus of three texts, the vocabulary built from `train`.
    pub fn from_texts(train: &str, valid: &str, test: &str, level: TokenLevel) -> Self {
        let vocab = Vocabulary::build(train, level);
        Self {
            train: vocab.encode(train),
            valid: vocab.encode(valid),
            test: vocab.encode(test),
            vocab,
        }
    }

    /// The corpus of three files (e.g. Penn Treebank's `ptb.train.txt`, `ptb.valid.txt`,
    /// `ptb.test.txt`).
    ///
    /// # Errors
    /// Naming the file: [`Error::Io`] for one that cannot be read (missing: kind
    /// `NotFound`), [`Error::EmptyFile`], [`Error::NotUtf8`] with the line and byte offset of
    /// the first bad byte.
    pub fn from_files(
        train: impl AsRef<Path>,
        valid: impl AsRef<Path>,
        test: impl AsRef<Path>,
        level: TokenLevel,
    ) -> Result<Self> {
        let train = read_text(train.as_ref())?;
        let valid = read_text(valid.as_ref())?;
        let test = read_text(test.as_ref())?;
        Ok(Self::from_texts(&train, &valid, &test, level))
    }

    /// The corpus of one file cut in three, in order: the first `fractions.train` of its
    /// units, the next `fractions.valid`, the rest. The units are characters at character
    /// level and lines at word level (so no line is cut); with `n` units the cuts fall after
    /// `round(n · train)` and `round(n · (train + valid))` units.
    ///
    /// # Errors
    /// Those of [`Corpus::from_files`] for the file; [`Error::Config`] (`split fractions`)
    /// when a fraction is negative or not finite, when they do not sum to 1 (within
    /// [`SplitFractions::SUM_TOLERANCE`]), or when a part would be empty (naming the file).
    pub fn from_split(
        file: impl AsRef<Path>,
        fractions: SplitFractions,
        level: TokenLevel,
    ) -> Result<Self> {
        let SplitFractions { train, valid, test } = fractions;
        let listed = format!("train {train} + valid {valid} + test {test}");
        if [train, valid, test]
            .iter()
            .any(|f| !f.is_finite() || *f < 0.0)
        {
            return Err(config_err(
                "split fractions",
                format!("{listed}: each must be a number in 0..=1"),
            ));
        }
        let sum = train + valid + test;
        if (sum - 1.0).abs() > SplitFractions::SUM_TOLERANCE {
            return Err(config_err(
                "split fractions",
                format!("{listed} = {sum}, expected 1"),
            ));
        }
        let path = file.as_ref();
        let text = read_text(path)?;
        let n = level.count_units(&text);
        let cut = |f: f64| ((n as f64 * f).round() as usize).min(n);
        let (k1, k2) = (cut(train), cut(train + valid).max(cut(train)));
        let sizes = [("train", k1), ("valid", k2 - k1), ("test", n - k2)];
        if let Some((part, _)) = sizes.iter().find(|(_, size)| *size == 0) {
            let unit = match level {
                TokenLevel::Char => "characters",
                TokenLevel::Word => "lines",
            };
            return Err(config_err(
                "split fractions",
                format!(
                    "{}: {listed} of its {n} {unit} leaves the {part} part empty",
                    path.display()
                ),
            ));
        }
        let (o1, o2) = (level.unit_offset(&text, k1), level.unit_offset(&text, k2));
        Ok(Self::from_texts(
            &text[..o1],
            &text[o1..o2],
            &text[o2..],
            level,
        ))
    }
}

/// The whole of a UTF-8 file, a leading byte-order mark dropped.
///
/// # Errors
/// [`Error::Io`] when it cannot be read, [`Error::NotUtf8`] naming the first bad byte,
/// [`Error::EmptyFile`] when nothing is left.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let file = path.display().to_string();
    let bytes = crate::io::read_limited(path)?;
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Error::NotUtf8 {
            file: file.clone(),
            line,
            offset,
        }
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    if text.is_empty() {
        return Err(Error::EmptyFile { file });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_ids_follow_first_appearance_like_pytorch() {
        // PyTorch: Dictionary over `line.split() + ['<eos>']` for each line.
        let text = " a b <unk> a\n\nc b\n";
        let vocab = Vocabulary::build(text, TokenLevel::Word);
        assert_eq!(vocab.tokens(), ["a", "b", UNK, EOS, "c"]);
        assert_eq!(vocab.encode(text), [0, 1, 2, 0, 3, 3, 4, 1, 3]);
        assert_eq!(vocab.unk_id(), 2, "the text's <unk> is the unknown id");
        assert_eq!(vocab.encode("zebra a"), [2, 0, 3]);
        assert_eq!(vocab.eos_id(), Some(3));
    }

    #[test]
    fn char_level_has_unk_and_no_eos() {
        let vocab = Vocabulary::build("héé\n", TokenLevel::Char);
        assert_eq!(vocab.tokens(), ["h", "é", "\n", UNK]);
        assert_eq!(vocab.eos_id(), None);
        assert_eq!(vocab.encode("xé"), [3, 1]);
    }

    #[test]
    fn split_offsets_follow_units() {
        let text = "ab\ncd\ne";
        assert_eq!(TokenLevel::Word.count_units(text), 3);
        assert_eq!(TokenLevel::Word.unit_offset(text, 1), 3);
        assert_eq!(TokenLevel::Word.unit_offset(text, 3), text.len());
        assert_eq!(TokenLevel::Char.unit_offset("aé b", 2), 3);
        assert_eq!(TokenLevel::Char.unit_offset("aé b", 4), 5);
    }

    #[test]
    fn bad_vocabulary_text_names_the_line() {
        let bad = |text: &str| match Vocabulary::from_text(text, "v.txt") {
            Err(Error::Parse { line, .. }) => line,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad("nonsense\n"), 1);
        assert_eq!(bad("recur-vocabulary 1 char\na\nab\n<unk>\n"), 3);
        assert_eq!(bad("recur-vocabulary 1 char\na\na\n<unk>\n"), 3);
        assert_eq!(bad("recur-vocabulary 1 word\na\\x\n"), 2);
        assert_eq!(bad("recur-vocabulary 1 word\na\n<unk>\n"), 1, "no <eos>");
    }
}
