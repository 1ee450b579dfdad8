//! The configuration of a recurrent stack ([`RecurrentConfig`]) and its one JSON schema.
//!
//! Every file recur writes carries the configuration as this JSON (serde on
//! [`RecurrentConfig`]): model files and checkpoints under `"rnn"` in `recur.model`, PyTorch
//! state_dict exports as `recur.config` (see [`crate::io`]). Every key is required but
//! `clip`, `recurrent_dropout`, `layer_norm`, `zoneout_h` and `zoneout_c` (absent in files of
//! earlier versions: none, 0, false, 0 and 0; the last three are written only when set):
//!
//! ```json
//! {"cell": {"kind": "lstm", "proj_size": 0,
//!           "peepholes": {"input": false, "forget": false, "output": false},
//!           "input_forget": "separate", "activations": ["sigmoid", "tanh", "tanh"],
//!           "clip": null, "layer_norm": true},
//!  "input_size": 16, "hidden_size": 32, "num_layers": 2, "bias": true,
//!  "direction": "forward", "dropout": 0.5, "recurrent_dropout": 0.0, "batch_first": false}
//! ```
//! with `{"kind": "gru", "reset": "after" | "before", "activations": [gate, candidate],
//! "clip": …, "layer_norm": …}` and `{"kind": "rnn", "nonlinearity": "tanh" | "relu" | …, "leak": "none" |
//! {"uniform": α} | {"per_layer": [α, …]}, "clip": …}` for the other cells, and
//! `"direction": "reverse" | "bidirectional"`. An activation is its lowercase ONNX name, or
//! for one with parameters an object `{"name": "leakyrelu", "alpha": 0.01, "beta": null}`;
//! `clip` is the ONNX gate pre-activation clip or `null`.
//!
//! ```
//! use recur::{CellKind, RecurrentConfig};
//! let config = RecurrentConfig {
//!     cell: CellKind::lstm(),
//!     input_size: 16,
//!     hidden_size: 32,
//!     ..Default::default()
//! }
//! .with_proj_size(8)
//! .unwrap();
//! let json = config.to_json();
//! assert!(json.contains("\"proj_size\":8"));
//! assert_eq!(RecurrentConfig::from_json(&json).unwrap(), config);
//! ```

use serde::{Deserialize, Serialize};

use crate::cell::CellKind;
use crate::error::{Result, config_err};

/// Which way(s) a layer reads the sequence. In the JSON: `"forward"`, `"reverse"`,
/// `"bidirectional"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// t = 0 … T−1.
    #[default]
    Forward,
    /// t = T−1 … 0 only (ONNX `direction = reverse`); its parameters carry `_reverse` names.
    Reverse,
    /// Both, outputs concatenated `[forward, reverse]` on the last axis, as PyTorch does.
    Bidirectional,
}

impl Direction {
    /// 1 or 2.
    pub fn count(self) -> usize {
        match self {
            Direction::Bidirectional => 2,
            _ => 1,
        }
    }
}

/// Where the batch axis sits in inputs and outputs (never in states, as in PyTorch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchLayout {
    /// `[seq_len, batch, features]` (PyTorch's default).
    #[default]
    SeqFirst,
    /// `[batch, seq_len, features]` (PyTorch `batch_first = True`).
    BatchFirst,
}

/// Whether the layers have biases (PyTorch `bias`). Both `b_ih` and `b_hh`, or neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Bias {
    #[default]
    Enabled,
    Disabled,
}

/// Upper bound on the parameter count of one stack (2^34 values: 64 GiB in f32), so that
/// sizes read from an untrusted file cannot overflow the layout arithmetic.
pub const MAX_PARAMS: u128 = 1 << 34;

/// Configuration of a recurrent stack. The defaults are PyTorch's.
///
/// A PyTorch user's `nn.LSTM(input_size, hidden_size, num_layers, bias, batch_first, dropout,
/// bidirectional, proj_size)` is the fields of the same names (`bias` and `batch_first` as
/// [`Bias`] and [`BatchLayout`], `bidirectional` as [`Direction`]); `proj_size` belongs to the
/// LSTM cell ([`crate::cell::LstmCell::proj_size`]), read here with
/// [`RecurrentConfig::proj_size`] and set with [`RecurrentConfig::with_proj_size`]. Serialised
/// (serde) as the JSON of the [module docs](self).
///
/// ```
/// use recur::{CellKind, Direction, RecurrentConfig};
/// let config = RecurrentConfig {
///     cell: CellKind::lstm(),
///     input_size: 10,
///     hidden_size: 20,
///     num_layers: 2,
///     direction: Direction::Bidirectional,
///     ..Default::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "json::ConfigJson", try_from = "json::ConfigJson")]
pub struct RecurrentConfig {
    pub cell: CellKind,
    pub input_size: usize,
    pub hidden_size: usize,
    /// default 1
    pub num_layers: usize,
    pub bias: Bias,
    pub direction: Direction,
    /// Dropout probability on the output of every layer but the last, in training only.
    pub dropout: f64,
    /// Variational recurrent dropout (Gal & Ghahramani 2016; Keras `recurrent_dropout`), in
    /// [0, 1): in [`crate::Recurrent::forward_train`] only, each layer and direction draws one
    /// keep-mask per sequence and recurrent unit (scaled by 1/(1 − p)) from the call's seed
    /// and applies it to the state where it enters the recurrent product, W_hh (m ⊙ h_prev),
    /// at every step; one mask for all gates, on the projected state with `proj_size`. The
    /// carried state itself is not masked. Default 0.
    pub recurrent_dropout: f64,
    /// Zoneout on h (Krueger et al. 2017, as haste offers it), in [0, 1) (LSTM and GRU): in
    /// [`crate::Recurrent::forward_train`] each unit of each sequence keeps its previous
    /// value with probability `zoneout_h` at every step (h = h_prev + m ⊙ (h̃ − h_prev), one
    /// seeded mask m ∈ {0, 1} per step); at inference the expectation,
    /// h = z h_prev + (1 − z) h̃. On the projected h with `proj_size`. Default 0.
    pub zoneout_h: f64,
    /// Zoneout on the LSTM's cell state c, as `zoneout_h` on h (not with an output
    /// peephole, which reads the new c before its zoneout). Default 0.
    pub zoneout_c: f64,
    pub layout: BatchLayout,
}

impl Default for RecurrentConfig {
    fn default() -> Self {
        Self {
            cell: CellKind::lstm(),
            input_size: 0,
            hidden_size: 0,
            num_layers: 1,
            bias: Bias::Enabled,
            direction: Direction::Forward,
            dropout: 0.0,
            recurrent_dropout: 0.0,
            zoneout_h: 0.0,
            zoneout_c: 0.0,
            layout: BatchLayout::SeqFirst,
        }
    }
}

impl RecurrentConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the first setting that is out of range.
    pub fn validate(&self) -> Result<()> {
        if self.input_size == 0 {
            return Err(config_err("input_size", "must be at least 1"));
        }
        if self.hidden_size == 0 {
            return Err(config_err("hidden_size", "must be at least 1"));
        }
        if self.num_layers == 0 {
            return Err(config_err("num_layers", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(config_err(
                "dropout",
                format!("must lie in [0, 1), got {}", self.dropout),
            ));
        }
        if !(0.0..1.0).contains(&self.recurrent_dropout) {
            return Err(config_err(
                "recurrent_dropout",
                format!("must lie in [0, 1), got {}", self.recurrent_dropout),
            ));
        }
        for (what, z) in [("zoneout_h", self.zoneout_h), ("zoneout_c", self.zoneout_c)] {
            if !(0.0..1.0).contains(&z) {
                return Err(config_err(what, format!("must lie in [0, 1), got {z}")));
            }
        }
        if self.zoneout_h > 0.0 && matches!(self.cell, CellKind::Rnn(_)) {
            return Err(config_err(
                "zoneout_h",
                "zoneout is an LSTM and GRU option (an RNN's backward reads its states as its \
                 activations)",
            ));
        }
        if self.zoneout_c > 0.0 {
            match &self.cell {
                CellKind::Lstm(l) if l.peepholes.output => {
                    return Err(config_err(
                        "zoneout_c",
                        "the output peephole reads the new cell state before its zoneout; \
                         zoneout_c and peepholes.output do not go together",
                    ));
                }
                CellKind::Lstm(_) => {}
                _ => return Err(config_err("zoneout_c", "only an LSTM has a cell state")),
            }
        }
        self.cell.validate(self.hidden_size, self.num_layers)?;
        // Hostile sizes must give an error, not an overflow or a runaway allocation. Each size
        // is bounded first, so the u128 product below cannot overflow.
        for (what, v) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if v as u128 > MAX_PARAMS {
                return Err(config_err(
                    what,
                    format!("{v} exceeds the bound of {MAX_PARAMS} parameters"),
                ));
            }
        }
        let g = self.cell.gate_count() as u128;
        let (i, h, r) = (
            self.input_size as u128,
            self.hidden_size as u128,
            self.h_out() as u128,
        );
        let d = self.direction.count() as u128;
        let per_layer = g * h * (i.max(d * r) + r + 4) + r * h + 5 * h;
        if per_layer * d * self.num_layers as u128 > MAX_PARAMS {
            return Err(config_err(
                "sizes",
                format!("the model would have more than {MAX_PARAMS} parameters"),
            ));
        }
        Ok(())
    }

    /// H_out: `proj_size` with a projection, else `hidden_size`.
    pub fn h_out(&self) -> usize {
        match self.cell.proj_size() {
            0 => self.hidden_size,
            p => p,
        }
    }
}

impl RecurrentConfig {
    /// PyTorch's `proj_size`: an LSTM's projection width, 0 for none (and for GRU and RNN).
    pub fn proj_size(&self) -> usize {
        self.cell.proj_size()
    }

    /// This configuration with an LSTM projection of width `proj_size` (PyTorch's
    /// `nn.LSTM(..., proj_size=…)`; 0 removes it).
    ///
    /// # Errors
    /// [`crate::Error::Config`] when the cell is not an LSTM and `proj_size` is not 0.
    pub fn with_proj_size(mut self, proj_size: usize) -> Result<Self> {
        match &mut self.cell {
            CellKind::Lstm(l) => l.proj_size = proj_size,
            _ if proj_size == 0 => {}
            other => {
                return Err(config_err(
                    "proj_size",
                    format!("only an LSTM has a projection, not {}", other.name()),
                ));
            }
        }
        Ok(self)
    }

    /// The configuration as the JSON of the [module docs](self). A non-finite dropout rate
    /// (which no valid configuration has) is written `null`, which [`Self::from_json`]
    /// refuses.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the configuration always serialises")
    }

    /// Reads the JSON of [`Self::to_json`] and validates the configuration.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming what is malformed (an unknown or missing key, a value
    /// of the wrong type, an unknown activation) or out of range.
    pub fn from_json(json: &str) -> Result<Self> {
        let config: Self = serde_json::from_str(json)
            .map_err(|e| config_err("configuration JSON", crate::error::json_reason(&e, json)))?;
        config.validate()?;
        Ok(config)
    }
}

/// The JSON form of the module docs, and its conversion from and to [`RecurrentConfig`].
mod json {
    use serde::{Deserialize, Serialize};

    use super::{BatchLayout, Bias, Direction, RecurrentConfig};
    use crate::cell::{
        CellKind, GruActivations, GruCell, InputForget, Leak, LstmActivations, LstmCell, Peepholes,
        ResetPlacement, RnnCell,
    };
    use crate::kernel::activation::Activation;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct ConfigJson {
        cell: CellJson,
        input_size: usize,
        hidden_size: usize,
        num_layers: usize,
        bias: bool,
        direction: Direction,
        dropout: f64,
        /// absent in files of recur versions without recurrent dropout: 0
        #[serde(default)]
        recurrent_dropout: f64,
        /// absent in files of earlier versions (and written only when > 0): 0
        #[serde(default, skip_serializing_if = "is_zero")]
        zoneout_h: f64,
        #[serde(default, skip_serializing_if = "is_zero")]
        zoneout_c: f64,
        batch_first: bool,
    }

    fn is_zero(v: &f64) -> bool {
        *v == 0.0
    }

    #[derive(Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    enum CellJson {
        Lstm {
            proj_size: usize,
            peepholes: PeepholesJson,
            input_forget: InputForgetJson,
            /// gate, cell, hidden
            activations: [ActivationJson; 3],
            /// ONNX gate pre-activation clip (absent: none)
            clip: Option<f64>,
            /// layer normalisation (absent in files of earlier versions, and written only
            /// when on: false)
            #[serde(default, skip_serializing_if = "is_false")]
            layer_norm: bool,
        },
        Gru {
            reset: ResetJson,
            /// gate, candidate
            activations: [ActivationJson; 2],
            clip: Option<f64>,
            #[serde(default, skip_serializing_if = "is_false")]
            layer_norm: bool,
        },
        Rnn {
            nonlinearity: ActivationJson,
            leak: LeakJson,
            clip: Option<f64>,
        },
    }

    /// An activation: its lowercase ONNX name (`"tanh"`), or, for one with parameters, the
    /// name with ONNX's `alpha` / `beta` (`{"name": "leakyrelu", "alpha": 0.01, "beta": null}`).
    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum ActivationJson {
        Name(String),
        Params(ActivationParams),
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ActivationParams {
        name: String,
        alpha: Option<f64>,
        beta: Option<f64>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PeepholesJson {
        input: bool,
        forget: bool,
        output: bool,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum InputForgetJson {
        Separate,
        Coupled,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum ResetJson {
        After,
        Before,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum LeakJson {
        None,
        Uniform(f64),
        PerLayer(Vec<f64>),
    }

    fn is_false(b: &bool) -> bool {
        !*b
    }

    fn activation_json(a: Activation) -> ActivationJson {
        let name = a.onnx_name().to_ascii_lowercase();
        match a.onnx_params() {
            (None, None) => ActivationJson::Name(name),
            (alpha, beta) => ActivationJson::Params(ActivationParams { name, alpha, beta }),
        }
    }

    fn activation(a: &ActivationJson) -> Result<Activation, String> {
        let (name, alpha, beta) = match a {
            ActivationJson::Name(n) => (n, None, None),
            ActivationJson::Params(p) => (&p.name, p.alpha, p.beta),
        };
        Activation::from_onnx(name, alpha, beta).map_err(|e| e.to_string())
    }

    impl From<RecurrentConfig> for ConfigJson {
        fn from(c: RecurrentConfig) -> Self {
            // Destructured without `..`, so that a field added to the configuration is a
            // compile error here until it is written to (and read from) the JSON.
            let RecurrentConfig {
                cell,
                input_size,
                hidden_size,
                num_layers,
                bias,
                direction,
                dropout,
                recurrent_dropout,
                zoneout_h,
                zoneout_c,
                layout,
            } = c;
            let cell = match cell {
                CellKind::Lstm(l) => CellJson::Lstm {
                    proj_size: l.proj_size,
                    peepholes: PeepholesJson {
                        input: l.peepholes.input,
                        forget: l.peepholes.forget,
                        output: l.peepholes.output,
                    },
                    input_forget: match l.input_forget {
                        InputForget::Separate => InputForgetJson::Separate,
                        InputForget::Coupled => InputForgetJson::Coupled,
                    },
                    activations: [l.activations.gate, l.activations.cell, l.activations.hidden]
                        .map(activation_json),
                    clip: l.clip,
                    layer_norm: l.layer_norm,
                },
                CellKind::Gru(g) => CellJson::Gru {
                    reset: match g.reset {
                        ResetPlacement::AfterMatmul => ResetJson::After,
                        ResetPlacement::BeforeMatmul => ResetJson::Before,
                    },
                    activations: [g.activations.gate, g.activations.candidate].map(activation_json),
                    clip: g.clip,
                    layer_norm: g.layer_norm,
                },
                CellKind::Rnn(r) => CellJson::Rnn {
                    nonlinearity: activation_json(r.nonlinearity),
                    leak: match r.leak {
                        Leak::None => LeakJson::None,
                        Leak::Uniform(a) => LeakJson::Uniform(a),
                        Leak::PerLayer(v) => LeakJson::PerLayer(v),
                    },
                    clip: r.clip,
                },
            };
            ConfigJson {
                cell,
                input_size,
                hidden_size,
                num_layers,
                bias: bias == Bias::Enabled,
                direction,
                dropout,
                recurrent_dropout,
                zoneout_h,
                zoneout_c,
                batch_first: layout == BatchLayout::BatchFirst,
            }
        }
    }

    impl TryFrom<ConfigJson> for RecurrentConfig {
        type Error = String;

        fn try_from(r: ConfigJson) -> Result<Self, String> {
            let cell = match r.cell {
                CellJson::Lstm {
                    proj_size,
                    peepholes,
                    input_forget,
                    activations: [gate, cell, hidden],
                    clip,
                    layer_norm,
                } => CellKind::Lstm(LstmCell {
                    peepholes: Peepholes {
                        input: peepholes.input,
                        forget: peepholes.forget,
                        output: peepholes.output,
                    },
                    proj_size,
                    input_forget: match input_forget {
                        InputForgetJson::Separate => InputForget::Separate,
                        InputForgetJson::Coupled => InputForget::Coupled,
                    },
                    activations: LstmActivations {
                        gate: activation(&gate)?,
                        cell: activation(&cell)?,
                        hidden: activation(&hidden)?,
                    },
                    clip,
                    layer_norm,
                }),
                CellJson::Gru {
                    reset,
                    activations: [gate, candidate],
                    clip,
                    layer_norm,
                } => CellKind::Gru(GruCell {
                    reset: match reset {
                        ResetJson::After => ResetPlacement::AfterMatmul,
                        ResetJson::Before => ResetPlacement::BeforeMatmul,
                    },
                    activations: GruActivations {
                        gate: activation(&gate)?,
                        candidate: activation(&candidate)?,
                    },
                    clip,
                    layer_norm,
                }),
                CellJson::Rnn {
                    nonlinearity,
                    leak,
                    clip,
                } => CellKind::Rnn(RnnCell {
                    nonlinearity: activation(&nonlinearity)?,
                    leak: match leak {
                        LeakJson::None => Leak::None,
                        LeakJson::Uniform(a) => Leak::Uniform(a),
                        LeakJson::PerLayer(v) => Leak::PerLayer(v),
                    },
                    clip,
                }),
            };
            Ok(RecurrentConfig {
                cell,
                input_size: r.input_size,
                hidden_size: r.hidden_size,
                num_layers: r.num_layers,
                bias: if r.bias {
                    Bias::Enabled
                } else {
                    Bias::Disabled
                },
                direction: r.direction,
                dropout: r.dropout,
                recurrent_dropout: r.recurrent_dropout,
                zoneout_h: r.zoneout_h,
                zoneout_c: r.zoneout_c,
                layout: if r.batch_first {
                    BatchLayout::BatchFirst
                } else {
                    BatchLayout::SeqFirst
                },
            })
        }
    }
}
