//! The one error type of the library.

use std::fmt;

/// A tensor shape written as PyTorch prints it, e.g. `[5, 3, 10]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Shape(pub Vec<usize>);

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Everything that can go wrong at recur's public API.
///
/// Messages are lowercase and name the tensor or setting, what was expected and what was
/// given, so that they can be shown to a user as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor's shape does not match the configuration.
    #[error("{what}: expected shape {expected}, got {got}")]
    Shape {
        what: String,
        expected: Shape,
        got: Shape,
    },
    /// A tensor has the wrong number of dimensions.
    #[error("{what}: expected {expected_rank} dimensions {expected}, got shape {got}")]
    Rank {
        what: String,
        expected_rank: usize,
        /// the dimension names, e.g. `[seq_len, batch, input_size]`
        expected: String,
        got: Shape,
    },
    /// A buffer's length does not match the shape it is said to have.
    #[error("{what}: {len} values do not fill shape {shape}")]
    Length {
        what: String,
        shape: Shape,
        len: usize,
    },
    /// A configuration value is out of range or contradicts another one.
    #[error("invalid configuration: {what}: {reason}")]
    Config { what: String, reason: String },
    /// A token id or class index is outside its range.
    #[error("{what}[{position}] = {value} is not below {bound_name} = {bound}")]
    Index {
        what: String,
        position: usize,
        value: usize,
        bound_name: String,
        bound: usize,
    },
    /// A per-sequence length is zero or longer than the batch's `seq_len`.
    #[error("lengths[{index}] = {length} is outside 1..={seq_len}")]
    SequenceLength {
        index: usize,
        length: usize,
        seq_len: usize,
    },
    /// There is nothing to compute on (no steps, no sequences, no data).
    #[error("empty input: {0}")]
    Empty(String),
    /// The call does not make sense for this model (e.g. streaming a bidirectional layer).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A file could not be read or written. The display names the file; the operating
    /// system's reason is the error's `source()` (so a `{:#}` chain prints it once).
    #[error("cannot access {file}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A file is not a well-formed safetensors file (truncated, a header length or data
    /// offsets that lie, declared sizes the file does not hold, not safetensors at all).
    #[error("{file}: not a valid safetensors file: {reason}")]
    Format { file: String, reason: String },
    /// An ONNX file (a model or a `TensorProto` / `.npy` tensor file) is malformed: not
    /// protobuf or truncated, a tensor whose data disagrees with its dims, negative or
    /// oversized dims, data kept outside the file, a graph that uses a value nothing produces
    /// or whose nodes are not in topological order (a cycle).
    #[error("{file}: not a valid ONNX file: {reason}")]
    OnnxFormat { file: String, reason: String },
    /// A NumPy `.npy` file is malformed (no magic string, a header that is not NumPy's, a
    /// big-endian or Fortran-order array, data that disagrees with the shape).
    #[error("{file}: not a valid NumPy .npy file: {reason}")]
    NpyFormat { file: String, reason: String },
    /// An input file (or a stream of bytes that is not a regular file) is larger than the
    /// limit set with [`crate::io::set_max_file_bytes`]; nothing was read (of a stream: no
    /// more than the limit).
    #[error(
        "{file}: {size}; an input file may have at most {limit} bytes (raise the limit: \
         --max-file-size on the command line, recur::io::set_max_file_bytes in the library)"
    )]
    FileTooLarge {
        file: String,
        /// `N bytes`, or `not a regular file, and longer than N bytes` for a stream
        size: String,
        limit: u64,
    },
    /// A node of an ONNX graph cannot run on the values it was given (wrong rank, dtype or
    /// shape, an attribute out of range).
    #[error("onnx node `{node}` ({op_type}): {reason}")]
    OnnxNode {
        node: String,
        op_type: String,
        reason: String,
    },
    /// A tensor the (inferred) configuration needs is not in the file.
    #[error("{file}: missing tensor `{name}`: {reason}")]
    MissingTensor {
        file: String,
        name: String,
        reason: String,
    },
    /// A tensor in the file that the (inferred) configuration has no place for.
    #[error("{file}: unexpected tensor `{name}`: {reason}")]
    UnexpectedTensor {
        file: String,
        name: String,
        reason: String,
    },
    /// A tensor in a file has a shape that contradicts the configuration.
    #[error("{file}: tensor `{name}`: expected shape {expected}, got {got}")]
    TensorShape {
        file: String,
        name: String,
        /// a shape, e.g. `[16, 3]`, or its description, e.g. `[G * hidden_size, input_size]`
        expected: String,
        got: Shape,
    },
    /// A tensor in a file has an element type recur does not read.
    #[error("{file}: tensor `{name}`: dtype {dtype} is not one recur reads ({expected})")]
    TensorDtype {
        file: String,
        name: String,
        dtype: String,
        expected: String,
    },
    /// A metadata entry of a file is malformed or contradicts the caller's options.
    #[error("{file}: metadata `{key}`: {reason}")]
    Metadata {
        file: String,
        key: String,
        reason: String,
    },
    /// Something a file cannot say (e.g. an RNN's nonlinearity) must come from an option.
    #[error(
        "{file}: {what} cannot be inferred from the tensors and the file carries no recur metadata; set {option}"
    )]
    MissingOption {
        file: String,
        what: String,
        /// the option to set, e.g. `LoadOptions::rnn_nonlinearity`
        option: String,
    },
    /// A data file holds nothing (no bytes, or no sequences).
    #[error("{file}: the file is empty")]
    EmptyFile { file: String },
    /// A text file is not valid UTF-8; `offset` is the first bad byte's offset from the start
    /// of the file (0-based) and `line` its line (1-based).
    #[error("{file}:{line}: not valid UTF-8 (first bad byte at byte offset {offset})")]
    NotUtf8 {
        file: String,
        line: usize,
        offset: usize,
    },
    /// A line of a data or vocabulary file is malformed; `line` is 1-based.
    #[error("{file}:{line}: {reason}")]
    Parse {
        file: String,
        line: usize,
        reason: String,
    },
    /// A cell of a CSV file is not what its column needs (not a number, missing, a time out
    /// of step); `row` and `column` count from 1 as a spreadsheet shows them (the header is
    /// row 1), `name` is the column's header.
    #[error("{file}: row {row}, column {column} (`{name}`): {reason}")]
    Cell {
        file: String,
        row: usize,
        column: usize,
        name: String,
        reason: String,
    },
    /// A token stream is too short to be cut into `batch` streams of at least two tokens (an
    /// input and its target) each.
    #[error(
        "{tokens} tokens are too few for {batch} streams: each needs at least 2 tokens (an input and its target), so at least {} tokens",
        2 * .batch
    )]
    TooFewTokens { tokens: usize, batch: usize },
}

/// `Result` with recur's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn shape_err(what: impl Into<String>, expected: &[usize], got: &[usize]) -> Error {
    Error::Shape {
        what: what.into(),
        expected: Shape(expected.to_vec()),
        got: Shape(got.to_vec()),
    }
}

pub(crate) fn config_err(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Config {
        what: what.into(),
        reason: reason.into(),
    }
}

/// The most characters of input an error message quotes.
pub const EXCERPT_CHARS: usize = 40;

/// Text from a file, made safe to put in an error message: control characters (an ANSI
/// escape sequence's ESC, a carriage return, a NUL) are written as escapes (`\u{1b}`, `\r`,
/// `\0`), and past [`EXCERPT_CHARS`] characters it is cut, with `…` and the length it had.
/// Every message that quotes a file's bytes quotes them through this.
pub fn excerpt(text: &str) -> String {
    excerpt_of(text, EXCERPT_CHARS)
}

/// [`excerpt`] cut at `max` characters (for a whole message that quotes input).
pub fn excerpt_of(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (chars, c) in text.chars().enumerate() {
        if chars == max {
            let total = text.chars().count();
            out.push_str(&format!("… ({total} characters)"));
            return out;
        }
        if c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A JSON error in the user's terms, for JSON read from `json` (a file's metadata): the key
/// it was found at instead of serde's "at line 1 column 18", and what was expected in words
/// instead of recur's internal type names (`struct PartJson`, `usize`); quoted input escaped
/// and cut short.
pub(crate) fn json_reason(e: &serde_json::Error, json: &str) -> String {
    let mut msg = e.to_string();
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    for (internal, plain) in [
        ("expected usize", "expected a whole number ≥ 0"),
        ("expected u64", "expected a whole number ≥ 0"),
        ("expected u32", "expected a whole number ≥ 0"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
    ] {
        if let Some(rest) = msg.strip_suffix(internal.trim_start_matches("expected "))
            && rest.ends_with("expected ")
        {
            msg = format!("{rest}{}", plain.trim_start_matches("expected "));
        }
    }
    for (word, plain) in [
        ("struct ", "a JSON object"),
        ("enum ", "one of the names recur knows"),
    ] {
        while let Some(i) = msg.find(word) {
            let name_end = msg[i + word.len()..]
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .map_or(msg.len(), |j| i + word.len() + j);
            msg.replace_range(i..name_end, plain);
        }
    }
    let offset = json
        .split_inclusive('\n')
        .take(e.line().saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + e.column().saturating_sub(1);
    let msg = excerpt_of(&msg, 160);
    match key_before(json, offset) {
        Some(key) => format!("at `{}`: {msg}", excerpt(key)),
        None => msg,
    }
}

/// The last object key that begins before byte `offset` of `json`.
fn key_before(json: &str, offset: usize) -> Option<&str> {
    let mut end = offset.min(json.len());
    while !json.is_char_boundary(end) {
        end -= 1;
    }
    let head = &json[..end];
    let colon = head.rfind("\":")?;
    let open = head[..colon].rfind('"')?;
    Some(&head[open + 1..colon])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_key_and_no_internal_type() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct PartJson {
            hidden_size: usize,
        }
        let json = r#"{"hidden_size": "6"}"#;
        let e = serde_json::from_str::<PartJson>(json).unwrap_err();
        let r = json_reason(&e, json);
        assert_eq!(
            r,
            "at `hidden_size`: invalid type: string \"6\", expected a whole number ≥ 0"
        );
        let json = "\"x\"";
        let e = serde_json::from_str::<PartJson>(json).unwrap_err();
        let r = json_reason(&e, json);
        assert!(!r.contains("PartJson") && !r.contains("line 1"), "{r}");
        assert!(r.contains("a JSON object"), "{r}");
    }

    #[test]
    fn excerpts_escape_control_characters_and_are_cut() {
        assert_eq!(excerpt("plain"), "plain");
        assert_eq!(excerpt("a\u{1b}[31mred\r\0"), "a\\u{1b}[31mred\\r\\u{0}");
        let long = "x".repeat(1_000_000);
        let e = excerpt(&long);
        assert!(e.starts_with(&"x".repeat(EXCERPT_CHARS)));
        assert!(e.ends_with("… (1000000 characters)"), "{e}");
        assert!(e.chars().count() < 80);
    }
}
