//! recur's models as ONNX graphs (opset 17, IR version 8): one `LSTM` / `GRU` / `RNN` node
//! per layer, its weights moved to ONNX's gate order, and the glue that gives the graph
//! recur's (and PyTorch's) inputs and outputs:
//!
//! | graph input / output | shape |
//! |---|---|
//! | `input` | `[seq_len, batch, input_size]` (batch-first: `[batch, seq_len, input_size]`) |
//! | `ids` (a [`SequenceModel`] with an embedding, in place of `input`) | INT64 `[seq_len, batch]` (or batch-first) |
//! | `sequence_lens` ([`ExportOptions::sequence_lens`]) | INT32 `[batch]` |
//! | `h0`, `c0` ([`ExportOptions::initial_state`]) | `[num_layers * D, batch, H]` |
//! | `output` | `[seq_len, batch, D * H]`, or the head's output for a [`SequenceModel`] |
//! | `h_n`, `c_n` | `[num_layers * D, batch, H]` |
//!
//! Per layer l: `h0` is sliced to `[D, batch, H]`, the node's `Y [T, D, B, H]` is transposed
//! to `[T, B, D, H]` and reshaped to `[T, B, D * H]` for the next layer, and the `Y_h` of the
//! layers are concatenated into `h_n`. A [`SequenceModel`]'s embedding is a `Gather`, its
//! head a `MatMul` + `Add` on every step (times a 0/1 mask built from `sequence_lens`, since
//! recur's outputs are zero past a sequence's end) or a `Gemm` on the top layer's final
//! states. A projection (`proj_size`), the leaky RNN, layer norm and zoneout have no ONNX form
//! and are refused.

use prost::Message;

use super::proto::{
    AttributeProto, DimValue, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
    ValueInfoProto, attribute_type, data_type,
};
use super::recurrent::Op;
use crate::cell::{CellKind, InputForget, Leak, ResetPlacement};
use crate::error::{Error, Result};
use crate::kernel::activation::Activation;
use crate::layer::{BatchLayout, Bias, Direction, ParamKind, Recurrent};
use crate::model::{Input, OutputForm, SequenceModel};

/// The opset the exporter writes.
pub const EXPORT_OPSET: i64 = 17;
/// The IR version the exporter writes (the one that goes with opset 17).
pub const EXPORT_IR_VERSION: i64 = 8;

/// Which optional inputs the exported graph has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// An INT32 `sequence_lens` input `[batch]`: per-sequence lengths, as recur's `lengths`.
    pub sequence_lens: bool,
    /// `h0` (and `c0` for an LSTM) inputs `[num_layers * D, batch, H]`.
    pub initial_state: bool,
}

fn a_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i,
        ..Default::default()
    }
}

fn a_ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints,
        ..Default::default()
    }
}

fn a_floats(name: &str, floats: Vec<f32>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOATS,
        floats,
        ..Default::default()
    }
}

fn a_str(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRING,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn a_strs(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRINGS,
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}

/// A symbolic (`Err`) or fixed (`Ok`) dim.
type Dim = std::result::Result<usize, &'static str>;

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Ok(n) => DimValue::DimValue(*n as i64),
                                Err(p) => DimValue::DimParam((*p).to_string()),
                            }),
                        })
                        .collect(),
                }),
            }),
        }),
        ..Default::default()
    }
}

/// Builds a graph node by node.
#[derive(Default)]
struct Builder {
    graph: GraphProto,
}

impl Builder {
    fn node(&mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) {
        let name = format!("{op}_{}", self.graph.node.len());
        let mut inputs: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        while inputs.last().is_some_and(String::is_empty) {
            inputs.pop();
        }
        self.graph.node.push(NodeProto {
            input: inputs,
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
    }

    fn f32_init(&mut self, name: &str, data: &[f32], dims: &[usize]) {
        self.graph.initializer.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.into(),
            raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        });
    }

    fn i64_init(&mut self, name: &str, data: &[i64]) {
        self.graph.initializer.push(TensorProto {
            dims: vec![data.len() as i64],
            data_type: data_type::INT64,
            name: name.into(),
            raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        });
    }

    fn finish(self) -> Vec<u8> {
        ModelProto {
            ir_version: EXPORT_IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: EXPORT_OPSET,
            }],
            producer_name: "recur".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.graph),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

fn op_of(cell: &CellKind) -> Op {
    match cell {
        CellKind::Lstm(_) => Op::Lstm,
        CellKind::Gru(_) => Op::Gru,
        CellKind::Rnn(_) => Op::Rnn,
    }
}

/// ONNX's activations (f, g, h) of one direction.
fn onnx_activations(cell: &CellKind) -> Vec<Activation> {
    match cell {
        CellKind::Lstm(c) => vec![c.activations.gate, c.activations.cell, c.activations.hidden],
        CellKind::Gru(c) => vec![c.activations.gate, c.activations.candidate],
        CellKind::Rnn(c) => vec![c.nonlinearity],
    }
}

/// Refuses what ONNX cannot express.
fn check_exportable(model: &Recurrent<f32>) -> Result<()> {
    match &model.config().cell {
        CellKind::Lstm(c) if c.proj_size > 0 => Err(Error::Unsupported(
            "onnx export: an LSTM with a projection (proj_size) has no ONNX form".into(),
        )),
        CellKind::Rnn(r) if r.leak != Leak::None => Err(Error::Unsupported(
            "onnx export: a leaky RNN has no ONNX form".into(),
        )),
        _ if model.config().zoneout_h > 0.0 || model.config().zoneout_c > 0.0 => {
            Err(Error::Unsupported(
                "onnx export: zoneout (its expectation at inference, h = z h_prev + (1 − z) h̃) \
                 has no form in ONNX's LSTM and GRU operators"
                    .into(),
            ))
        }
        cell if cell.layer_norm() => Err(Error::Unsupported(
            "onnx export: a layer-normalised cell has no form in ONNX's LSTM and GRU operators"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// The names of the stack's outputs inside the graph.
struct StackOut {
    y: String,
    h_n: String,
    c_n: Option<String>,
    /// `Y_h` of the top layer, `[D, batch, H]`
    top_h: String,
}

/// Emits the recurrent stack reading `x` (`[T, B, I]`).
fn emit_stack(
    b: &mut Builder,
    model: &Recurrent<f32>,
    x: &str,
    lens: Option<&str>,
    h0: Option<(&str, Option<&str>)>,
) -> StackOut {
    let cfg = model.config();
    let op = op_of(&cfg.cell);
    let (nl, d, h, g) = (
        cfg.num_layers,
        cfg.direction.count(),
        cfg.hidden_size,
        cfg.cell.gate_count(),
    );
    let perm = op.onnx_block_of();
    let lstm = match &cfg.cell {
        CellKind::Lstm(c) => Some(c),
        _ => None,
    };
    let peepholes = lstm.is_some_and(|c| c.peepholes.any());
    let direction = match cfg.direction {
        Direction::Forward => "forward",
        Direction::Reverse => "reverse",
        Direction::Bidirectional => "bidirectional",
    };
    let funcs = onnx_activations(&cfg.cell).repeat(d);
    let acts: Vec<&str> = funcs.iter().map(|a| a.onnx_name()).collect();
    // activation_alpha / _beta: one value per function that takes it, in order
    let alphas: Vec<f32> = funcs
        .iter()
        .filter_map(|a| a.onnx_params().0)
        .map(|v| v as f32)
        .collect();
    let betas: Vec<f32> = funcs
        .iter()
        .filter_map(|a| a.onnx_params().1)
        .map(|v| v as f32)
        .collect();
    let clip = match &cfg.cell {
        CellKind::Lstm(c) => c.clip,
        CellKind::Gru(c) => c.clip,
        CellKind::Rnn(c) => c.clip,
    };
    let mut x = x.to_string();
    let (mut hs, mut cs) = (Vec::new(), Vec::new());
    let mut top_h = String::new();
    for l in 0..nl {
        let layer_in = if l == 0 { cfg.input_size } else { d * h };
        let (mut w, mut r, mut bias, mut p) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for dir in 0..d {
            let get = |kind: ParamKind| -> Option<&[f32]> {
                let e = model
                    .layout()
                    .entries()
                    .iter()
                    .find(|e| e.layer == l && e.direction == dir && e.kind == kind)?;
                Some(&model.params()[e.offset..e.offset + e.len])
            };
            // ONNX block perm[k] is recur's block k
            let to_onnx = |src: &[f32], cols: usize, out: &mut Vec<f32>| {
                let mut blocks = vec![&src[0..0]; g];
                for (k, &o) in perm.iter().enumerate() {
                    blocks[o] = &src[k * h * cols..(k + 1) * h * cols];
                }
                blocks.iter().for_each(|blk| out.extend_from_slice(blk));
            };
            to_onnx(
                get(ParamKind::WeightIh).expect("weight_ih"),
                layer_in,
                &mut w,
            );
            to_onnx(get(ParamKind::WeightHh).expect("weight_hh"), h, &mut r);
            if cfg.bias == Bias::Enabled {
                to_onnx(get(ParamKind::BiasIh).expect("bias_ih"), 1, &mut bias);
                to_onnx(get(ParamKind::BiasHh).expect("bias_hh"), 1, &mut bias);
            }
            if peepholes {
                let zeros = vec![0.0f32; h];
                for kind in [
                    ParamKind::PeepholeI,
                    ParamKind::PeepholeO,
                    ParamKind::PeepholeF,
                ] {
                    p.extend_from_slice(get(kind).unwrap_or(&zeros));
                }
            }
        }
        let (wn, rn, bn, pn) = (
            format!("W_l{l}"),
            format!("R_l{l}"),
            format!("B_l{l}"),
            format!("P_l{l}"),
        );
        b.f32_init(&wn, &w, &[d, g * h, layer_in]);
        b.f32_init(&rn, &r, &[d, g * h, h]);
        if !bias.is_empty() {
            b.f32_init(&bn, &bias, &[d, 2 * g * h]);
        }
        if peepholes {
            b.f32_init(&pn, &p, &[d, 3 * h]);
        }
        let (mut h0_l, mut c0_l) = (String::new(), String::new());
        if let Some((h0, c0)) = h0 {
            let (starts, ends, axes) = (
                format!("slice_starts_l{l}"),
                format!("slice_ends_l{l}"),
                "slice_axes_0".to_string(),
            );
            b.i64_init(&starts, &[(l * d) as i64]);
            b.i64_init(&ends, &[((l + 1) * d) as i64]);
            if l == 0 {
                b.i64_init(&axes, &[0]);
            }
            h0_l = format!("h0_l{l}");
            b.node("Slice", &[h0, &starts, &ends, &axes], &[&h0_l], vec![]);
            if let Some(c0) = c0 {
                c0_l = format!("c0_l{l}");
                b.node("Slice", &[c0, &starts, &ends, &axes], &[&c0_l], vec![]);
            }
        }
        let mut attrs = vec![
            a_int("hidden_size", h as i64),
            a_str("direction", direction),
            a_strs("activations", &acts),
        ];
        if !alphas.is_empty() {
            attrs.push(a_floats("activation_alpha", alphas.clone()));
        }
        if !betas.is_empty() {
            attrs.push(a_floats("activation_beta", betas.clone()));
        }
        if let Some(c) = clip {
            attrs.push(AttributeProto {
                name: "clip".into(),
                r#type: attribute_type::FLOAT,
                f: c as f32,
                ..Default::default()
            });
        }
        match &cfg.cell {
            CellKind::Lstm(c) if c.input_forget == InputForget::Coupled => {
                attrs.push(a_int("input_forget", 1));
            }
            CellKind::Gru(c) => attrs.push(a_int(
                "linear_before_reset",
                i64::from(c.reset == ResetPlacement::AfterMatmul),
            )),
            _ => {}
        }
        let (y, yh, yc) = (format!("Y_l{l}"), format!("Y_h_l{l}"), format!("Y_c_l{l}"));
        let op_name = match op {
            Op::Lstm => "LSTM",
            Op::Gru => "GRU",
            Op::Rnn => "RNN",
        };
        let mut outputs = vec![y.as_str(), yh.as_str()];
        let mut inputs = vec![
            x.as_str(),
            wn.as_str(),
            rn.as_str(),
            if bias.is_empty() { "" } else { bn.as_str() },
            lens.unwrap_or(""),
            h0_l.as_str(),
        ];
        if op == Op::Lstm {
            outputs.push(yc.as_str());
            inputs.push(c0_l.as_str());
            inputs.push(if peepholes { pn.as_str() } else { "" });
        }
        b.node(op_name, &inputs, &outputs, attrs);
        // [T, D, B, H] → [T, B, D, H] → [T, B, D * H]
        let (yt, next) = (format!("Y_l{l}_tbdh"), format!("out_l{l}"));
        b.node(
            "Transpose",
            &[&y],
            &[&yt],
            vec![a_ints("perm", vec![0, 2, 1, 3])],
        );
        if l == 0 {
            b.i64_init("shape_tb_flat", &[0, 0, -1]);
        }
        b.node("Reshape", &[&yt, "shape_tb_flat"], &[&next], vec![]);
        x = next;
        hs.push(yh.clone());
        cs.push(yc);
        top_h = yh;
    }
    let h_n = "stack_h_n".to_string();
    let h_refs: Vec<&str> = hs.iter().map(String::as_str).collect();
    b.node("Concat", &h_refs, &[&h_n], vec![a_int("axis", 0)]);
    let c_n = (op == Op::Lstm).then(|| {
        let c_n = "stack_c_n".to_string();
        let c_refs: Vec<&str> = cs.iter().map(String::as_str).collect();
        b.node("Concat", &c_refs, &[&c_n], vec![a_int("axis", 0)]);
        c_n
    });
    StackOut {
        y: x,
        h_n,
        c_n,
        top_h,
    }
}

/// The graph inputs for the stack's options; returns `(lens, h0/c0)` names.
fn declare_options(
    b: &mut Builder,
    model: &Recurrent<f32>,
    options: &ExportOptions,
) -> (
    Option<&'static str>,
    Option<(&'static str, Option<&'static str>)>,
) {
    let cfg = model.config();
    let ld = cfg.num_layers * cfg.direction.count();
    let h = cfg.hidden_size;
    let lens = options.sequence_lens.then(|| {
        b.graph.input.push(value_info(
            "sequence_lens",
            data_type::INT32,
            &[Err("batch")],
        ));
        "sequence_lens"
    });
    let state = options.initial_state.then(|| {
        b.graph.input.push(value_info(
            "h0",
            data_type::FLOAT,
            &[Ok(ld), Err("batch"), Ok(h)],
        ));
        let c0 = cfg.cell.has_cell_state().then(|| {
            b.graph.input.push(value_info(
                "c0",
                data_type::FLOAT,
                &[Ok(ld), Err("batch"), Ok(h)],
            ));
            "c0"
        });
        ("h0", c0)
    });
    (lens, state)
}

fn declare_states(b: &mut Builder, model: &Recurrent<f32>, s: &StackOut) {
    let cfg = model.config();
    let ld = cfg.num_layers * cfg.direction.count();
    let dims = [Ok(ld), Err("batch"), Ok(cfg.hidden_size)];
    b.node("Identity", &[&s.h_n], &["h_n"], vec![]);
    b.graph
        .output
        .push(value_info("h_n", data_type::FLOAT, &dims));
    if let Some(c_n) = &s.c_n {
        b.node("Identity", &[c_n], &["c_n"], vec![]);
        b.graph
            .output
            .push(value_info("c_n", data_type::FLOAT, &dims));
    }
}

/// `[T, B, ·]` ↔ `[B, T, ·]`.
fn swap_tb(b: &mut Builder, from: &str, to: &str) {
    b.node(
        "Transpose",
        &[from],
        &[to],
        vec![a_ints("perm", vec![1, 0, 2])],
    );
}

/// A recurrent stack as an ONNX model (serialized `ModelProto`). Graph inputs `input` and,
/// as `options` say, `sequence_lens`, `h0`, `c0`; outputs `output`, `h_n` (and `c_n`), laid
/// out as [`Recurrent::forward`] lays them out (batch-first when the stack is).
///
/// # Errors
/// [`Error::Unsupported`] for a projection or a leaky RNN, which ONNX cannot express.
pub fn export_recurrent(model: &Recurrent<f32>, options: &ExportOptions) -> Result<Vec<u8>> {
    check_exportable(model)?;
    let cfg = model.config();
    let mut b = Builder::default();
    b.graph.name = "recur_recurrent".into();
    let batch_first = cfg.layout == BatchLayout::BatchFirst;
    let in_dims = if batch_first {
        [Err("batch"), Err("seq_len"), Ok(cfg.input_size)]
    } else {
        [Err("seq_len"), Err("batch"), Ok(cfg.input_size)]
    };
    b.graph
        .input
        .push(value_info("input", data_type::FLOAT, &in_dims));
    let (lens, state) = declare_options(&mut b, model, options);
    let x = if batch_first {
        swap_tb(&mut b, "input", "input_tbi");
        "input_tbi"
    } else {
        "input"
    };
    let s = emit_stack(&mut b, model, x, lens, state);
    let dh = cfg.direction.count() * cfg.hidden_size;
    if batch_first {
        swap_tb(&mut b, &s.y, "output");
    } else {
        b.node("Identity", &[&s.y], &["output"], vec![]);
    }
    let out_dims = if batch_first {
        [Err("batch"), Err("seq_len"), Ok(dh)]
    } else {
        [Err("seq_len"), Err("batch"), Ok(dh)]
    };
    b.graph
        .output
        .push(value_info("output", data_type::FLOAT, &out_dims));
    declare_states(&mut b, model, &s);
    Ok(b.finish())
}

/// A whole [`SequenceModel`] (embedding → stack → head) as an ONNX model. Graph inputs `ids`
/// (INT64, for an embedding model) or `input`, and the options' `sequence_lens`, `h0`, `c0`;
/// outputs `output` (the head's, as [`SequenceModel::forward`] gives it, zero past each
/// sequence's end for [`OutputForm::EveryStep`]), `h_n` (and `c_n`). Initializers keep the
/// state_dict names `embedding.weight`, `head.weight`, `head.bias`.
///
/// # Errors
/// As [`export_recurrent`].
pub fn export_sequence_model(
    model: &SequenceModel<f32>,
    options: &ExportOptions,
) -> Result<Vec<u8>> {
    let rnn = model.rnn();
    check_exportable(rnn)?;
    let cfg = model.config();
    let batch_first = cfg.rnn.layout == BatchLayout::BatchFirst;
    let tb = |f: Dim| -> [Dim; 3] {
        if batch_first {
            [Err("batch"), Err("seq_len"), f]
        } else {
            [Err("seq_len"), Err("batch"), f]
        }
    };
    let mut b = Builder::default();
    b.graph.name = "recur_sequence_model".into();
    // (1) x = E[ids] or input, seq-first
    let x = match (&cfg.input, model.embedding()) {
        (Input::Embedding(e), Some(emb)) => {
            let dims = tb(Ok(0));
            b.graph
                .input
                .push(value_info("ids", data_type::INT64, &dims[..2]));
            b.f32_init(
                "embedding.weight",
                emb.weight(),
                &[e.num_embeddings, e.embedding_dim],
            );
            b.node(
                "Gather",
                &["embedding.weight", "ids"],
                &["embedded"],
                vec![a_int("axis", 0)],
            );
            "embedded"
        }
        _ => {
            b.graph.input.push(value_info(
                "input",
                data_type::FLOAT,
                &tb(Ok(cfg.rnn.input_size)),
            ));
            "input"
        }
    };
    let (lens, state) = declare_options(&mut b, rnn, options);
    let x = if batch_first {
        swap_tb(&mut b, x, "x_tbi");
        "x_tbi"
    } else {
        x
    };
    // (2) the stack
    let s = emit_stack(&mut b, rnn, x, lens, state);
    // (3) the head
    // by state_dict name: a head tied to the embedding reads the table as `head.weight`
    let hc = cfg.head_config();
    let head_weight = model
        .param("head.weight")
        .expect("every model has a head weight");
    let head_bias = model.param("head.bias");
    b.f32_init(
        "head.weight",
        head_weight,
        &[hc.out_features, hc.in_features],
    );
    if let Some(bias) = head_bias {
        b.f32_init("head.bias", bias, &[hc.out_features]);
    }
    match cfg.output {
        OutputForm::EveryStep => {
            b.node(
                "Transpose",
                &["head.weight"],
                &["head_weight_t"],
                vec![a_ints("perm", vec![1, 0])],
            );
            b.node("MatMul", &[&s.y, "head_weight_t"], &["head_mm"], vec![]);
            let mut z = "head_mm".to_string();
            if head_bias.is_some() {
                b.node("Add", &[&z, "head.bias"], &["head_out"], vec![]);
                z = "head_out".into();
            }
            if let Some(lens) = lens {
                // mask[t, b] = min(relu(len_b − t), 1): 1 for t < len_b, else 0
                b.node(
                    "Cast",
                    &[lens],
                    &["lens_f"],
                    vec![a_int("to", i64::from(data_type::FLOAT))],
                );
                b.node("Shape", &[&s.y], &["y_shape"], vec![]);
                b.i64_init("index_0", &[0]);
                b.node(
                    "Gather",
                    &["y_shape", "index_0"],
                    &["seq_len_1"],
                    vec![a_int("axis", 0)],
                );
                b.node(
                    "Cast",
                    &["seq_len_1"],
                    &["seq_len_f"],
                    vec![a_int("to", i64::from(data_type::FLOAT))],
                );
                b.f32_init("zero_f", &[0.0], &[]);
                b.f32_init("one_f", &[1.0], &[]);
                b.node("Squeeze", &["seq_len_f", "index_0"], &["seq_len_s"], vec![]);
                b.node(
                    "Range",
                    &["zero_f", "seq_len_s", "one_f"],
                    &["steps"],
                    vec![],
                );
                b.i64_init("index_1", &[1]);
                b.node("Unsqueeze", &["steps", "index_1"], &["steps_t1"], vec![]);
                b.node("Sub", &["lens_f", "steps_t1"], &["left"], vec![]);
                b.node("Relu", &["left"], &["left_pos"], vec![]);
                b.node("Min", &["left_pos", "one_f"], &["mask_tb"], vec![]);
                b.i64_init("index_2", &[2]);
                b.node("Unsqueeze", &["mask_tb", "index_2"], &["mask"], vec![]);
                b.node("Mul", &[&z, "mask"], &["head_masked"], vec![]);
                z = "head_masked".into();
            }
            if batch_first {
                swap_tb(&mut b, &z, "output");
            } else {
                b.node("Identity", &[&z], &["output"], vec![]);
            }
            b.graph.output.push(value_info(
                "output",
                data_type::FLOAT,
                &tb(Ok(hc.out_features)),
            ));
        }
        OutputForm::Last => {
            // [D, B, H] → [B, D, H] → [B, D * H]
            b.node(
                "Transpose",
                &[&s.top_h],
                &["top_bdh"],
                vec![a_ints("perm", vec![1, 0, 2])],
            );
            b.i64_init("shape_b_flat", &[0, -1]);
            b.node(
                "Reshape",
                &["top_bdh", "shape_b_flat"],
                &["top_flat"],
                vec![],
            );
            let mut inputs = vec!["top_flat", "head.weight"];
            if head_bias.is_some() {
                inputs.push("head.bias");
            }
            b.node("Gemm", &inputs, &["output"], vec![a_int("transB", 1)]);
            b.graph.output.push(value_info(
                "output",
                data_type::FLOAT,
                &[Err("batch"), Ok(hc.out_features)],
            ));
        }
    }
    declare_states(&mut b, rnn, &s);
    Ok(b.finish())
}

/// `model` (a serialized `ModelProto`, e.g. from [`export_sequence_model`]) with the entries
/// `props` added to its `metadata_props`: what a model needs besides its graph (class names,
/// a forecaster's window and scaling), which [`super::OnnxModel::metadata`] reads back.
///
/// # Errors
/// [`Error::OnnxFormat`] when `model` is not a `ModelProto`.
pub fn with_metadata(model: &[u8], props: &[(&str, &str)]) -> Result<Vec<u8>> {
    let mut m = ModelProto::decode(model).map_err(|e| Error::OnnxFormat {
        file: "<memory>".into(),
        reason: format!("not a ModelProto: {e}"),
    })?;
    for (k, v) in props {
        m.metadata_props.retain(|e| e.key != *k);
        m.metadata_props.push(StringStringEntryProto {
            key: (*k).to_string(),
            value: (*v).to_string(),
        });
    }
    Ok(m.encode_to_vec())
}
