//! The one parameter layout table. Parameters, gradients (and later optimizer moments and
//! checkpoints) are flat buffers laid out by it; every tensor has its PyTorch state_dict name.
//!
//! [`TABLE`] has one row per [`ParamKind`]: its name stem, its shape rule and its presence
//! rule. Everything else that knows the kinds reads it: the layout of a configuration
//! ([`ParamLayout::for_config`]), the names a PyTorch file is parsed by (`io/pytorch.rs`), and
//! the error that says why a tensor is expected.
//!
//! A first-time user loading PyTorch tensors by name from memory needs no model for this:
//!
//! ```
//! use recur::{CellKind, ParamLayout, RecurrentConfig};
//! let config = RecurrentConfig {
//!     cell: CellKind::lstm(),
//!     input_size: 3,
//!     hidden_size: 4,
//!     ..Default::default()
//! };
//! let layout = ParamLayout::for_config(&config)?;
//! let mut params = vec![0.0f32; layout.len()];
//! // e.g. from a PyTorch state_dict: weight_ih_l0 is [4 * 4, 3]
//! layout.view_mut(&mut params)?.set("weight_ih_l0", &[0.5; 48], &[16, 3])?;
//! let (values, shape) = layout.view(&params)?.get("weight_ih_l0")?;
//! assert_eq!((values[0], shape), (0.5, &[16, 3][..]));
//! assert!(layout.view_mut(&mut params)?.set("bias_ih_l0", &[0.0; 4], &[4]).is_err());
//! # Ok::<(), recur::Error>(())
//! ```
//! A gradient buffer has the same layout, so the same views read and write gradients by name.

pub use crate::cell::ParamKind;
use crate::cell::{Block, CellKind};
use crate::error::{Error, Result, Shape, config_err};
use crate::kernel::scalar::Float;
use crate::layer::{Bias, Direction, RecurrentConfig};

/// How a kind's shape follows from the sizes of its (layer, direction): G gates, hidden size
/// H, projection P, H_out (P with a projection, else H) and the layer's input width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeRule {
    /// `[G * H, layer_input]`
    GatesByInput,
    /// `[G * H, H_out]`
    GatesByOutput,
    /// `[G * H]`
    Gates,
    /// `[P, H]`
    ProjectionByHidden,
    /// `[H]`
    Hidden,
}

/// When a kind is present in a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Every layer and direction has it.
    Always,
    /// With [`Bias::Enabled`] (both biases, or neither).
    Bias,
    /// With an LSTM projection (`proj_size > 0`).
    Projection,
    /// With this LSTM peephole: 0 input, 1 forget, 2 output.
    Peephole(usize),
    /// With a layer-normalised cell (the norms of the input and recurrent products).
    LayerNorm,
    /// With a layer-normalised LSTM (the norm of the cell state).
    CellNorm,
}

/// How [`crate::Recurrent::new`] initialises a kind: drawn from U(−1/√H, 1/√H) as PyTorch
/// does, or a layer norm's gain (ones) or bias (zeros), as `nn.LayerNorm` and haste do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    Uniform,
    Ones,
    Zeros,
}

/// One row of the layout table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindRow {
    pub kind: ParamKind,
    /// PyTorch's name stem (`weight_ih`), before `_l{layer}[_reverse]`.
    pub stem: &'static str,
    pub shape: ShapeRule,
    pub presence: Presence,
    pub init: Init,
}

/// The layout table: one row per kind, in the order within one (layer, direction) block.
/// PyTorch's `_flat_weights` order for the first five; recur's peepholes after them.
pub const TABLE: [KindRow; ParamKind::COUNT] = [
    row(
        ParamKind::WeightIh,
        "weight_ih",
        ShapeRule::GatesByInput,
        Presence::Always,
    ),
    row(
        ParamKind::WeightHh,
        "weight_hh",
        ShapeRule::GatesByOutput,
        Presence::Always,
    ),
    row(
        ParamKind::BiasIh,
        "bias_ih",
        ShapeRule::Gates,
        Presence::Bias,
    ),
    row(
        ParamKind::BiasHh,
        "bias_hh",
        ShapeRule::Gates,
        Presence::Bias,
    ),
    row(
        ParamKind::WeightHr,
        "weight_hr",
        ShapeRule::ProjectionByHidden,
        Presence::Projection,
    ),
    row(
        ParamKind::PeepholeI,
        "peephole_i",
        ShapeRule::Hidden,
        Presence::Peephole(0),
    ),
    row(
        ParamKind::PeepholeF,
        "peephole_f",
        ShapeRule::Hidden,
        Presence::Peephole(1),
    ),
    row(
        ParamKind::PeepholeO,
        "peephole_o",
        ShapeRule::Hidden,
        Presence::Peephole(2),
    ),
    KindRow {
        init: Init::Ones,
        ..row(
            ParamKind::GammaIh,
            "gamma_ih",
            ShapeRule::Gates,
            Presence::LayerNorm,
        )
    },
    KindRow {
        init: Init::Ones,
        ..row(
            ParamKind::GammaHh,
            "gamma_hh",
            ShapeRule::Gates,
            Presence::LayerNorm,
        )
    },
    KindRow {
        init: Init::Ones,
        ..row(
            ParamKind::GammaC,
            "gamma_c",
            ShapeRule::Hidden,
            Presence::CellNorm,
        )
    },
    KindRow {
        init: Init::Zeros,
        ..row(
            ParamKind::BetaC,
            "beta_c",
            ShapeRule::Hidden,
            Presence::CellNorm,
        )
    },
];

const fn row(kind: ParamKind, stem: &'static str, shape: ShapeRule, presence: Presence) -> KindRow {
    KindRow {
        kind,
        stem,
        shape,
        presence,
        init: Init::Uniform,
    }
}

impl ParamKind {
    /// This kind's row of [`TABLE`].
    pub fn row(self) -> &'static KindRow {
        TABLE
            .iter()
            .find(|r| r.kind == self)
            .expect("every kind has a row")
    }

    /// PyTorch's name stem, e.g. `weight_hh`.
    pub fn stem(self) -> &'static str {
        self.row().stem
    }
}

impl ShapeRule {
    /// The shape, given G, H, P, H_out and the layer's input width.
    fn shape(self, g: usize, h: usize, p: usize, h_out: usize, layer_in: usize) -> Vec<usize> {
        match self {
            ShapeRule::GatesByInput => vec![g * h, layer_in],
            ShapeRule::GatesByOutput => vec![g * h, h_out],
            ShapeRule::Gates => vec![g * h],
            ShapeRule::ProjectionByHidden => vec![p, h],
            ShapeRule::Hidden => vec![h],
        }
    }
}

impl Presence {
    /// Whether a stack of `config` has the kind.
    pub fn holds(self, config: &RecurrentConfig) -> bool {
        match self {
            Presence::Always => true,
            Presence::Bias => config.bias == Bias::Enabled,
            Presence::Projection => config.proj_size() > 0,
            Presence::Peephole(which) => match &config.cell {
                CellKind::Lstm(c) => [c.peepholes.input, c.peepholes.forget, c.peepholes.output]
                    .get(which)
                    .copied()
                    .unwrap_or(false),
                _ => false,
            },
            Presence::LayerNorm => config.cell.layer_norm(),
            Presence::CellNorm => config.cell.layer_norm() && config.cell.has_cell_state(),
        }
    }

    /// Why a stack that has the kind somewhere has it in every layer and direction (for the
    /// error about a missing one).
    pub fn reason(self) -> &'static str {
        match self {
            Presence::Always => "every layer and direction has weight_ih and weight_hh",
            Presence::Bias => {
                "other tensors are biases, and every layer and direction has both bias_ih and \
                 bias_hh"
            }
            Presence::Projection => "other layers or directions have a projection (weight_hr)",
            Presence::Peephole(_) => "other layers or directions have this peephole",
            Presence::LayerNorm | Presence::CellNorm => {
                "the cell is layer-normalised (other tensors are layer-norm gains)"
            }
        }
    }
}

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

impl ParamLayout {
    /// The layout of a stack of `config`, from the configuration alone (what
    /// [`crate::Recurrent::layout`] holds): no model needs to be built.
    ///
    /// # Errors
    /// [`Error::Config`] when the configuration is invalid.
    pub fn for_config(config: &RecurrentConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::of_valid(config))
    }

    /// How many tensors a stack of `config` has, counted without building its layout (which
    /// holds one entry per tensor): what a loader compares with the tensors a file holds
    /// before it builds anything sized by a configuration read from that file. Saturates at
    /// `usize::MAX`.
    pub fn tensor_count(config: &RecurrentConfig) -> usize {
        let kinds = TABLE.iter().filter(|r| r.presence.holds(config)).count();
        kinds
            .saturating_mul(config.direction.count())
            .saturating_mul(config.num_layers)
    }

    /// How many parameters a stack of `config` has, computed without building its layout
    /// (layer 0, then the other layers, which all read `D * H_out` features), in `u128` so
    /// that no configuration overflows.
    pub fn param_count(config: &RecurrentConfig) -> u128 {
        let w = |n: usize| n as u128;
        let g = w(config.cell.gate_count());
        let (h, p, h_out) = (
            w(config.hidden_size),
            w(config.proj_size()),
            w(config.h_out()),
        );
        let d = w(config.direction.count());
        let layer = |layer_in: u128| -> u128 {
            TABLE
                .iter()
                .filter(|r| r.presence.holds(config))
                .map(|r| match r.shape {
                    ShapeRule::GatesByInput => (g * h).saturating_mul(layer_in),
                    ShapeRule::GatesByOutput => (g * h).saturating_mul(h_out),
                    ShapeRule::Gates => g * h,
                    ShapeRule::ProjectionByHidden => p * h,
                    ShapeRule::Hidden => h,
                })
                .fold(0u128, u128::saturating_add)
        };
        let Some(rest) = config.num_layers.checked_sub(1) else {
            return 0;
        };
        let others = w(rest).saturating_mul(layer(d.saturating_mul(h_out)));
        d.saturating_mul(layer(w(config.input_size)).saturating_add(others))
    }

    /// [`Self::for_config`] of a configuration already validated (its sizes cannot overflow).
    pub(crate) fn of_valid(config: &RecurrentConfig) -> Self {
        let g = config.cell.gate_count();
        let h = config.hidden_size;
        let p = config.proj_size();
        let h_out = config.h_out();
        let d = config.direction.count();
        let reverse_only = config.direction == Direction::Reverse;
        let rows: Vec<&KindRow> = TABLE.iter().filter(|r| r.presence.holds(config)).collect();
        let mut entries = Vec::new();
        let mut blocks = Vec::new();
        let mut offset = 0;
        for layer in 0..config.num_layers {
            let layer_in = if layer == 0 {
                config.input_size
            } else {
                d * h_out
            };
            for dir in 0..d {
                let start = offset;
                let suffix = if dir == 1 || reverse_only {
                    "_reverse"
                } else {
                    ""
                };
                for r in &rows {
                    let shape = r.shape.shape(g, h, p, h_out, layer_in);
                    let len = shape.iter().product();
                    entries.push(ParamInfo {
                        name: format!("{}_l{layer}{suffix}", r.stem),
                        kind: r.kind,
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

    /// The tensor named `name`, or an error listing a few names the layout has.
    fn entry(&self, name: &str) -> Result<&ParamInfo> {
        self.get(name).ok_or_else(|| {
            let some: Vec<&str> = self
                .entries
                .iter()
                .take(4)
                .map(|e| e.name.as_str())
                .collect();
            config_err(
                format!("parameter `{name}`"),
                format!(
                    "the layout has no such tensor (it has {}{})",
                    some.join(", "),
                    if self.entries.len() > some.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
            )
        })
    }

    fn check_len(&self, what: &str, len: usize) -> Result<()> {
        if len != self.total {
            return Err(Error::Length {
                what: what.into(),
                shape: Shape(vec![self.total]),
                len,
            });
        }
        Ok(())
    }

    /// Reads a flat buffer laid out by this layout (parameters, or their gradients) by
    /// PyTorch name.
    ///
    /// # Errors
    /// [`Error::Length`] when `buf` is not [`Self::len`] long.
    pub fn view<'a, T>(&'a self, buf: &'a [T]) -> Result<ParamView<'a, T>> {
        self.check_len("parameter buffer", buf.len())?;
        Ok(ParamView { layout: self, buf })
    }

    /// Reads and writes a flat buffer laid out by this layout (parameters, or their
    /// gradients) by PyTorch name, with a shape check.
    ///
    /// # Errors
    /// [`Error::Length`] when `buf` is not [`Self::len`] long.
    pub fn view_mut<'a, T>(&'a self, buf: &'a mut [T]) -> Result<ParamViewMut<'a, T>> {
        self.check_len("parameter buffer", buf.len())?;
        Ok(ParamViewMut { layout: self, buf })
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

/// A flat buffer (parameters or gradients) read by PyTorch name ([`ParamLayout::view`]).
#[derive(Clone, Copy, Debug)]
pub struct ParamView<'a, T> {
    layout: &'a ParamLayout,
    buf: &'a [T],
}

impl<'a, T> ParamView<'a, T> {
    /// The values of tensor `name` (row-major) and its shape.
    ///
    /// # Errors
    /// [`Error::Config`] when the layout has no tensor of that name.
    pub fn get(&self, name: &str) -> Result<(&'a [T], &'a [usize])> {
        let e = self.layout.entry(name)?;
        Ok((&self.buf[e.offset..e.offset + e.len], &e.shape))
    }

    /// Every tensor in buffer order, with its values.
    pub fn iter(&self) -> impl Iterator<Item = (&'a ParamInfo, &'a [T])> + '_ {
        let buf = self.buf;
        self.layout
            .entries
            .iter()
            .map(move |e| (e, &buf[e.offset..e.offset + e.len]))
    }
}

/// A flat buffer (parameters or gradients) read and written by PyTorch name
/// ([`ParamLayout::view_mut`]).
#[derive(Debug)]
pub struct ParamViewMut<'a, T> {
    layout: &'a ParamLayout,
    buf: &'a mut [T],
}

impl<T: Copy> ParamViewMut<'_, T> {
    /// The values of tensor `name` and its shape.
    ///
    /// # Errors
    /// [`Error::Config`] when the layout has no tensor of that name.
    pub fn get(&self, name: &str) -> Result<(&[T], &[usize])> {
        let e = self.layout.entry(name)?;
        Ok((&self.buf[e.offset..e.offset + e.len], &e.shape))
    }

    /// The values of tensor `name`, to write in place, and its shape.
    ///
    /// # Errors
    /// [`Error::Config`] when the layout has no tensor of that name.
    pub fn get_mut(&mut self, name: &str) -> Result<(&mut [T], &[usize])> {
        let e = self.layout.entry(name)?;
        Ok((&mut self.buf[e.offset..e.offset + e.len], &e.shape))
    }

    /// Copies `values` of shape `shape` (row-major, e.g. a PyTorch tensor's) into tensor
    /// `name`.
    ///
    /// # Errors
    /// [`Error::Config`] when the layout has no tensor of that name; [`Error::Shape`] when
    /// `shape` is not the tensor's; [`Error::Length`] when `values` does not hold `shape`'s
    /// element count.
    pub fn set(&mut self, name: &str, values: &[T], shape: &[usize]) -> Result<()> {
        let e = self.layout.entry(name)?;
        if shape != e.shape.as_slice() {
            return Err(Error::Shape {
                what: format!("parameter `{name}`"),
                expected: Shape(e.shape.clone()),
                got: Shape(shape.to_vec()),
            });
        }
        if values.len() != e.len {
            return Err(Error::Length {
                what: format!("parameter `{name}`"),
                shape: Shape(e.shape.clone()),
                len: values.len(),
            });
        }
        self.buf[e.offset..e.offset + e.len].copy_from_slice(values);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recurrent;
    use crate::cell::{LstmCell, Peepholes};

    fn every_kind() -> RecurrentConfig {
        RecurrentConfig {
            cell: CellKind::Lstm(LstmCell {
                peepholes: Peepholes::ALL,
                proj_size: 2,
                ..Default::default()
            }),
            input_size: 3,
            hidden_size: 4,
            num_layers: 2,
            direction: Direction::Bidirectional,
            ..Default::default()
        }
    }

    #[test]
    fn the_layout_of_a_configuration_is_the_models() {
        let mut configs = vec![every_kind()];
        for cell in [CellKind::gru(), CellKind::rnn_tanh()] {
            configs.push(RecurrentConfig {
                cell,
                bias: Bias::Disabled,
                direction: Direction::Reverse,
                ..every_kind()
            });
        }
        for c in configs {
            let model = Recurrent::<f64>::new(c.clone(), 1).unwrap();
            assert_eq!(&ParamLayout::for_config(&c).unwrap(), model.layout());
        }
        // a block holds its kinds in the table's order (every kind but the norms', which a
        // projected LSTM cannot have, and then the norms' in a layer-normalised LSTM)
        let ln = RecurrentConfig {
            cell: CellKind::Lstm(LstmCell {
                peepholes: Peepholes::ALL,
                layer_norm: true,
                ..Default::default()
            }),
            ..every_kind()
        };
        for c in [every_kind(), ln] {
            let all = ParamLayout::for_config(&c).unwrap();
            let stems: Vec<String> = TABLE
                .iter()
                .filter(|r| r.presence.holds(&c))
                .map(|r| format!("{}_l0", r.stem))
                .collect();
            let block: Vec<&str> = all.entries()[..stems.len()]
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            assert_eq!(block, stems);
        }
        assert!(
            ParamLayout::for_config(&RecurrentConfig {
                hidden_size: 0,
                ..every_kind()
            })
            .is_err()
        );
    }

    #[test]
    fn the_table_has_one_row_per_kind() {
        // so that a `Block`, indexed by kind, has a slot for every row
        let mut seen = [false; ParamKind::COUNT];
        for r in &TABLE {
            assert!(!std::mem::replace(&mut seen[r.kind as usize], true));
        }
    }

    #[test]
    fn views_check_names_shapes_and_lengths() {
        let layout = ParamLayout::for_config(&every_kind()).unwrap();
        let mut buf: Vec<f64> = (0..layout.len()).map(|i| i as f64).collect();
        let e = layout.get("peephole_f_l1_reverse").unwrap().clone();
        let (v, shape) = layout.view(&buf).unwrap().get(&e.name).unwrap();
        assert_eq!((v[0], shape), (e.offset as f64, &[4][..]));
        let mut view = layout.view_mut(&mut buf).unwrap();
        view.set(&e.name, &[-1.0; 4], &[4]).unwrap();
        assert!(matches!(
            view.set(&e.name, &[-1.0; 4], &[2, 2]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            view.set(&e.name, &[-1.0; 3], &[4]),
            Err(Error::Length { .. })
        ));
        assert!(matches!(
            view.set("weight_ih_l2", &[], &[0]),
            Err(Error::Config { .. })
        ));
        view.get_mut(&e.name).unwrap().0[1] = 7.0;
        assert_eq!(buf[e.offset..e.offset + 4], [-1.0, 7.0, -1.0, -1.0]);
        assert!(matches!(layout.view(&buf[1..]), Err(Error::Length { .. })));
        let names: Vec<&str> = layout
            .view(&buf)
            .unwrap()
            .iter()
            .map(|(e, _)| e.name.as_str())
            .collect();
        assert_eq!(names.len(), layout.entries().len());
    }
}
