//! The table of a model's tensors by layer: name, shape, element type, parameter count and
//! bytes, with each layer's and the model's totals. `recur summary FILE` prints it for a
//! checkpoint, model file, state_dict or ONNX model; `recur train` prints it for the model
//! it is about to train.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use recur::model::SequenceModel;

/// One tensor of a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub shape: Vec<usize>,
    /// the element type's name (`f32`, `f64`, `bf16`, ...)
    pub dtype: String,
    /// bytes per element
    pub width: usize,
}

impl Row {
    pub fn new(name: impl Into<String>, shape: &[usize], dtype: &str, width: usize) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            dtype: dtype.into(),
            width,
        }
    }

    /// Values in the tensor (saturating: a table never overflows).
    pub fn params(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }

    pub fn bytes(&self) -> usize {
        self.params().saturating_mul(self.width)
    }
}

/// The rows of a model's parameters, each with the element type and width `stored` gives
/// for its name (a file's, also under `model.`), else `f32`, as a model in memory is.
pub fn model_rows(
    model: &SequenceModel<f32>,
    stored: &BTreeMap<String, (String, usize)>,
) -> Vec<Row> {
    model
        .param_layout()
        .iter()
        .map(|p| {
            let (dtype, width) = stored
                .get(&p.name)
                .or_else(|| stored.get(&format!("model.{}", p.name)))
                .cloned()
                .unwrap_or_else(|| ("f32".into(), 4));
            Row::new(p.name.clone(), &p.shape, &dtype, width)
        })
        .collect()
}

/// The layer a tensor belongs to, from its name: `rnn layer 1` for the recurrent stack's
/// `…_l1` and `…_l1_reverse` tensors, else the name's first part (`embedding`, `head`), or
/// `graph` for a name without parts (ONNX initializers).
pub fn layer_of(name: &str) -> String {
    let name = name.strip_prefix("model.").unwrap_or(name);
    let last = name.rsplit('.').next().unwrap_or(name);
    let base = last.strip_suffix("_reverse").unwrap_or(last);
    if let Some(i) = base.rfind("_l") {
        let digits = &base[i + 2..];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let stack = name
                .split('.')
                .next()
                .filter(|s| *s != last)
                .unwrap_or("rnn");
            return format!("{stack} layer {digits}");
        }
    }
    match name.split_once('.') {
        Some((first, _)) => first.to_string(),
        None => "graph".into(),
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in B, KiB, MiB or GiB.
pub fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The table: one line per tensor in the given order, grouped by [`layer_of`] (a layer's
/// name on its first line, its total after its last when it has several tensors), then the
/// model's total.
pub fn table(rows: &[Row]) -> String {
    let mut lines: Vec<[String; 6]> = vec![[
        "layer".into(),
        "tensor".into(),
        "shape".into(),
        "dtype".into(),
        "params".into(),
        "bytes".into(),
    ]];
    let mut i = 0;
    while i < rows.len() {
        let layer = layer_of(&rows[i].name);
        let mut j = i;
        while j < rows.len() && layer_of(&rows[j].name) == layer {
            j += 1;
        }
        for (k, r) in rows[i..j].iter().enumerate() {
            let shape = r
                .shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" × ");
            lines.push([
                if k == 0 { layer.clone() } else { String::new() },
                r.name.clone(),
                if shape.is_empty() {
                    "scalar".into()
                } else {
                    shape
                },
                r.dtype.clone(),
                thousands(r.params()),
                human_bytes(r.bytes()),
            ]);
        }
        if j - i > 1 {
            let group = &rows[i..j];
            lines.push([
                String::new(),
                format!("({layer})"),
                String::new(),
                String::new(),
                thousands(group.iter().map(Row::params).sum()),
                human_bytes(group.iter().map(Row::bytes).sum()),
            ]);
        }
        i = j;
    }
    lines.push([
        "total".into(),
        format!("{} tensor(s)", rows.len()),
        String::new(),
        String::new(),
        thousands(rows.iter().map(Row::params).sum()),
        human_bytes(rows.iter().map(Row::bytes).sum()),
    ]);
    let widths: Vec<usize> = (0..6)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let mut line = String::new();
        for (c, cell) in l.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            // numbers right-aligned, text left-aligned
            if c >= 4 {
                let _ = write!(line, "  {}{cell}", " ".repeat(pad));
            } else {
                let _ = write!(
                    line,
                    "{}{cell}{}",
                    if c > 0 { "  " } else { "" },
                    " ".repeat(pad)
                );
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_from_names() {
        assert_eq!(layer_of("rnn.weight_ih_l0"), "rnn layer 0");
        assert_eq!(layer_of("model.rnn.bias_hh_l12_reverse"), "rnn layer 12");
        assert_eq!(layer_of("weight_hh_l1"), "rnn layer 1");
        assert_eq!(layer_of("embedding.weight"), "embedding");
        assert_eq!(layer_of("head.bias"), "head");
        assert_eq!(layer_of("val_40"), "graph");
    }

    #[test]
    fn table_totals() {
        let rows = [
            Row::new("embedding.weight", &[18, 24], "f32", 4),
            Row::new("rnn.weight_ih_l0", &[96, 24], "f32", 4),
            Row::new("rnn.bias_ih_l0", &[96], "f32", 4),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6, "{t}");
        assert!(
            lines[1].starts_with("embedding") && lines[1].contains(" 432 "),
            "{t}"
        );
        assert!(lines[1].ends_with("1.7 KiB"), "{t}");
        assert!(
            lines[2].starts_with("rnn layer 0") && lines[2].contains("96 × 24"),
            "{t}"
        );
        assert!(
            lines[4].contains("(rnn layer 0)") && lines[4].contains("2,400"),
            "{t}"
        );
        assert!(
            lines[5].starts_with("total") && lines[5].contains("2,832"),
            "{t}"
        );
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
