//! Shared test helpers: loading the committed fixtures (see fixtures/README.md).

#![allow(dead_code)]

pub mod cases;

use std::collections::HashMap;
use std::path::PathBuf;

use recur::cell::{GruActivations, LstmActivations};
use recur::{
    Activation, BatchLayout, Bias, Call, CellKind, Direction, GruCell, InputForget, Leak, LstmCell,
    Output, Peepholes, Recurrent, RecurrentConfig, ResetPlacement, RnnCell, State, Tensor,
};

/// One fixture file: its metadata and its float64 tensors.
pub struct Fixture {
    pub name: String,
    pub meta: HashMap<String, String>,
    pub tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
}

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// All fixtures of a folder (`pytorch` or `reference`), sorted by name.
pub fn load_all(folder: &str) -> Vec<Fixture> {
    let dir = fixture_dir().join(folder);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures in {}", dir.display());
    names.iter().map(|p| load(p)).collect()
}

pub fn load(path: &std::path::Path) -> Fixture {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta: HashMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F64, "{name}");
        let data: Vec<f64> = view
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        tensors.insert(name.to_string(), (view.shape().to_vec(), data));
    }
    Fixture {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        meta,
        tensors,
    }
}

impl Fixture {
    pub fn usize(&self, key: &str) -> usize {
        self.meta[key].parse().unwrap()
    }

    pub fn flag(&self, key: &str) -> bool {
        self.meta.get(key).is_some_and(|v| v == "true")
    }

    pub fn tensor(&self, name: &str) -> Tensor<f64> {
        let (shape, data) = self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("{}: no tensor {name}", self.name));
        Tensor::new(data.clone(), shape).unwrap()
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The initial state: `h0`, and `c0` where the fixture has one (an LSTM).
    pub fn state(&self) -> State<f64> {
        State {
            h: self.tensor("h0"),
            c: self.has("c0").then(|| self.tensor("c0")),
        }
    }

    /// `model`'s inference over the fixture's input from its initial state, with its lengths.
    pub fn forward(&self, model: &Recurrent<f64>) -> Output<f64> {
        let lengths = self.lengths();
        let call = Call {
            lengths: lengths.as_deref(),
            ..Call::new()
        };
        model
            .forward(&self.tensor("input"), call.state(&self.state()))
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    pub fn lengths(&self) -> Option<Vec<usize>> {
        self.meta
            .get("lengths")
            .map(|s| s.split(',').map(|v| v.trim().parse().unwrap()).collect())
    }

    /// The activations the fixture names (`activations`: ONNX names in ONNX's order, each
    /// with its alpha and beta after colons, e.g. `HardSigmoid:0.3:0.45,Softsign,Elu:0.7`),
    /// read with the constructor an ONNX loader uses; `None` without the key.
    pub fn activations(&self) -> Option<Vec<Activation>> {
        let list = self.meta.get("activations")?;
        Some(
            list.split(',')
                .map(|a| {
                    let mut parts = a.split(':');
                    let name = parts.next().unwrap();
                    let mut num = || parts.next().map(|v| v.parse::<f64>().unwrap());
                    let (alpha, beta) = (num(), num());
                    Activation::from_onnx(name, alpha, beta)
                        .unwrap_or_else(|e| panic!("{}: {a}: {e}", self.name))
                })
                .collect(),
        )
    }

    /// The recur configuration the fixture describes.
    pub fn config(&self) -> RecurrentConfig {
        let hidden_size = self.usize("hidden_size");
        let num_layers = self.usize("num_layers");
        let leak = match self.meta.get("leak") {
            Some(a) => Leak::Uniform(a.parse().unwrap()),
            None => Leak::None,
        };
        let clip = self.meta.get("clip").map(|c| c.parse::<f64>().unwrap());
        let acts = self.activations();
        let cell = match self.meta["cell"].as_str() {
            "lstm" => {
                let p = self.meta.get("peepholes").cloned().unwrap_or_default();
                CellKind::Lstm(LstmCell {
                    peepholes: Peepholes {
                        input: p.contains('i'),
                        forget: p.contains('f'),
                        output: p.contains('o'),
                    },
                    proj_size: self.usize("proj_size"),
                    input_forget: if self.flag("coupled_input_forget") {
                        InputForget::Coupled
                    } else {
                        InputForget::Separate
                    },
                    activations: match acts.as_deref() {
                        Some(&[gate, cell, hidden]) => LstmActivations { gate, cell, hidden },
                        None => LstmActivations::default(),
                        Some(v) => panic!("{}: an lstm has 3 activations, got {v:?}", self.name),
                    },
                    clip,
                    layer_norm: self.flag("layer_norm"),
                })
            }
            "gru" => CellKind::Gru(GruCell {
                reset: match self.meta.get("gru_reset").map(String::as_str) {
                    Some("before") => ResetPlacement::BeforeMatmul,
                    _ => ResetPlacement::AfterMatmul,
                },
                activations: match acts.as_deref() {
                    Some(&[gate, candidate]) => GruActivations { gate, candidate },
                    None => GruActivations::default(),
                    Some(v) => panic!("{}: a gru has 2 activations, got {v:?}", self.name),
                },
                clip,
                layer_norm: self.flag("layer_norm"),
            }),
            // an `activations` key overrides the name's tanh / relu
            "rnn_tanh" | "rnn_relu" => CellKind::Rnn(RnnCell {
                nonlinearity: match acts.as_deref() {
                    Some(&[a]) => a,
                    None if self.meta["cell"] == "rnn_relu" => Activation::Relu,
                    None => Activation::Tanh,
                    Some(v) => panic!("{}: an rnn has 1 activation, got {v:?}", self.name),
                },
                leak,
                clip,
            }),
            other => panic!("unknown cell {other}"),
        };
        RecurrentConfig {
            cell,
            input_size: self.usize("input_size"),
            hidden_size,
            num_layers,
            bias: if self.flag("bias") {
                Bias::Enabled
            } else {
                Bias::Disabled
            },
            direction: if self.flag("bidirectional") {
                Direction::Bidirectional
            } else {
                Direction::Forward
            },
            dropout: 0.0,
            recurrent_dropout: 0.0,
            zoneout_h: 0.0,
            zoneout_c: 0.0,
            layout: if self.flag("batch_first") {
                BatchLayout::BatchFirst
            } else {
                BatchLayout::SeqFirst
            },
        }
    }

    /// The model with the fixture's weights, every tensor placed by its name.
    pub fn model(&self) -> Recurrent<f64> {
        let mut m = Recurrent::<f64>::new(self.config(), 0).unwrap();
        let entries = m.layout().entries().to_vec();
        for e in &entries {
            let t = self.tensor(&e.name);
            assert_eq!(t.shape(), &e.shape[..], "{}: {}", self.name, e.name);
            m.param_mut(&e.name).unwrap().copy_from_slice(t.data());
        }
        // every parameter tensor of the fixture is used
        let n_params = self
            .tensors
            .keys()
            .filter(|k| !k.contains('.') && is_param(k))
            .count();
        assert_eq!(
            n_params,
            entries.len(),
            "{}: fixture has parameters recur does not",
            self.name
        );
        m
    }
}

fn is_param(name: &str) -> bool {
    ["weight_", "bias_", "peephole_", "gamma_", "beta_"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Largest |a − b| / (1 + |b|).
pub fn max_rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f64::max)
}
