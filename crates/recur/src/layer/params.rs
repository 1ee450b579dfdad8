//! The one parameter layout table. Parameters, gradients (and later optimizer moments and
//! checkpoints) are flat buffers laid out by it; every tensor has its PyTorch state_dict name.

use crate::Float;
use crate::cell::{CellKind, LstmCell};

/// What a parameter tensor is, independent of its layer and direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// `weight_ih`: `[G * hidden_size, layer_input_size]`
    WeightIh,
    /// `weight_hh`: `[G * hidden_size, H_out]`
    WeightHh,
    /// `bias_ih`: `[G * hidden_size]`
    BiasIh,
    /// `bias_hh`: `[G * hidden_size]`
    BiasHh,
    /// `weight_hr` (LSTM projection): `[proj_size, hidden_size]`
    WeightHr,
    /// `peephole_i` (LSTM): `[hidden_size]`
    PeepholeI,
    /// `peephole_f` (LSTM): `[hidden_size]`
    PeepholeF,
    /// `peephole_o` (LSTM): `[hidden_size]`
    PeepholeO,
}

/// The layout table: order within one (layer, direction) block and name stem. PyTorch's
/// `_flat_weights` order for the first five; recur's peepholes after them.
const TABLE: [(ParamKind, &str); 8] = [
    (ParamKind::WeightIh, "weight_ih"),
    (ParamKind::WeightHh, "weight_hh"),
    (ParamKind::BiasIh, "bias_ih"),
    (ParamKind::BiasHh, "bias_hh"),
    (ParamKind::WeightHr, "weight_hr"),
    (ParamKind::PeepholeI, "peephole_i"),
    (ParamKind::PeepholeF, "peephole_f"),
    (ParamKind::PeepholeO, "peephole_o"),
];

/// One tensor of the flat parameter buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    /// PyTorch state_dict name, e.g. `weight_hh_l1_reverse`.
    pub name: String,
    pub kind: ParamKind,
    pub layer: usize,
    /// 0 forward, 1 reverse (of a bidirectional layer, or of a reverse-only layer).
    pub direction: usize,
    pub shape: Vec<usize>,
    /// Start in the flat buffer.
    pub offset: usize,
    pub len: usize,
}

/// Where every parameter lives in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    entries: Vec<ParamInfo>,
    /// `[start, end)` of each (layer, direction) block, index `layer * D + direction`.
    blocks: Vec<(usize, usize)>,
    total: usize,
}

/// Sizes a layout needs.
pub(crate) struct Dims {
    pub input_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_directions: usize,
    /// The reverse-only configuration names its single direction `_reverse`.
    pub reverse_only: bool,
    pub bias: bool,
}

impl ParamLayout {
    pub(crate) fn new(cell: &CellKind, d: &Dims) -> Self {
        let g = cell.gate_count();
        let h = d.hidden_size;
        let p = cell.proj_size();
        let h_out = if p > 0 { p } else { h };
        let lstm = match cell {
            CellKind::Lstm(c) => Some(c),
            _ => None,
        };
        let mut entries = Vec::new();
        let mut blocks = Vec::new();
        let mut offset = 0;
        for layer in 0..d.num_layers {
            let layer_in = if layer == 0 {
                d.input_size
            } else {
                d.num_directions * h_out
            };
            for dir in 0..d.num_directions {
                let start = offset;
                let suffix = if dir == 1 || d.reverse_only {
                    "_reverse"
                } else {
                    ""
                };
                for (kind, stem) in TABLE {
                    let shape = match kind {
                        ParamKind::WeightIh => vec![g * h, layer_in],
                        ParamKind::WeightHh => vec![g * h, h_out],
                        ParamKind::BiasIh | ParamKind::BiasHh => vec![g * h],
                        ParamKind::WeightHr => vec![p, h],
                        ParamKind::PeepholeI | ParamKind::PeepholeF | ParamKind::PeepholeO => {
                            vec![h]
                        }
                    };
                    if !present(kind, d.bias, p, lstm) {
                        continue;
                    }
                    let len = shape.iter().product();
                    entries.push(ParamInfo {
                        name: format!("{stem}_l{layer}{suffix}"),
                        kind,
                        layer,
                        direction: dir,
                        shape,
                        offset,
                        len,
                    });
                    offset += len;
                }
                blocks.push((start, offset));
            }
        }
        Self {
            entries,
            blocks,
            total: offset,
        }
    }

    /// All tensors in buffer order.
    pub fn entries(&self) -> &[ParamInfo] {
        &self.entries
    }

    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether the layout holds no parameter at all.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The tensor named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&ParamInfo> {
        self.entries.iter().find(|e| e.name == name)
    }

    fn block_entries(&self, block: usize) -> impl Iterator<Item = &ParamInfo> {
        let (start, end) = self.blocks[block];
        self.entries
            .iter()
            .filter(move |e| e.offset >= start && e.offset < end)
    }

    /// Named views of one (layer, direction) block of a flat buffer.
    pub(crate) fn block<'a, T: Float>(&self, buf: &'a [T], block: usize) -> Block<&'a [T]> {
        let (start, end) = self.blocks[block];
        let mut rest = &buf[start..end];
        let mut out = Block::default();
        for e in self.block_entries(block) {
            let (head, tail) = rest.split_at(e.len);
            rest = tail;
            out.set(e.kind, head);
        }
        out
    }

    /// Named mutable views of one (layer, direction) block of a flat buffer.
    pub(crate) fn block_mut<'a, T: Float>(
        &self,
        buf: &'a mut [T],
        block: usize,
    ) -> Block<&'a mut [T]> {
        let (start, end) = self.blocks[block];
        let mut rest = &mut buf[start..end];
        let mut out = Block::default();
        for e in self.block_entries(block) {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(e.len);
            rest = tail;
            out.set(e.kind, head);
        }
        out
    }
}

fn present(kind: ParamKind, bias: bool, proj_size: usize, lstm: Option<&LstmCell>) -> bool {
    match kind {
        ParamKind::WeightIh | ParamKind::WeightHh => true,
        ParamKind::BiasIh | ParamKind::BiasHh => bias,
        ParamKind::WeightHr => proj_size > 0,
        ParamKind::PeepholeI => lstm.is_some_and(|c| c.peepholes.input),
        ParamKind::PeepholeF => lstm.is_some_and(|c| c.peepholes.forget),
        ParamKind::PeepholeO => lstm.is_some_and(|c| c.peepholes.output),
    }
}

/// The tensors of one (layer, direction), as views `S` (`&[T]` or `&mut [T]`).
#[derive(Debug)]
pub(crate) struct Block<S> {
    pub w_ih: S,
    pub w_hh: S,
    pub b_ih: Option<S>,
    pub b_hh: Option<S>,
    pub w_hr: Option<S>,
    pub p_i: Option<S>,
    pub p_f: Option<S>,
    pub p_o: Option<S>,
}

impl<S: Default> Default for Block<S> {
    fn default() -> Self {
        Self {
            w_ih: S::default(),
            w_hh: S::default(),
            b_ih: None,
            b_hh: None,
            w_hr: None,
            p_i: None,
            p_f: None,
            p_o: None,
        }
    }
}

impl<S> Block<S> {
    fn set(&mut self, kind: ParamKind, s: S) {
        match kind {
            ParamKind::WeightIh => self.w_ih = s,
            ParamKind::WeightHh => self.w_hh = s,
            ParamKind::BiasIh => self.b_ih = Some(s),
            ParamKind::BiasHh => self.b_hh = Some(s),
            ParamKind::WeightHr => self.w_hr = Some(s),
            ParamKind::PeepholeI => self.p_i = Some(s),
            ParamKind::PeepholeF => self.p_f = Some(s),
            ParamKind::PeepholeO => self.p_o = Some(s),
        }
    }
}
