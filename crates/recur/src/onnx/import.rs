//! An ONNX graph that is a recurrent stack, as a [`Recurrent`]: the way from an exported
//! `nn.LSTM` / `nn.GRU` / `nn.RNN` (or recur's own export) back to PyTorch state_dict
//! safetensors.
//!
//! The recurrent nodes are read in graph order as the layers; their weights must be
//! constants (initializers or `Constant` nodes) and their options the same in every layer.
//! Whether the glue around them is a plain stack (each layer reading the previous one's
//! output, sequence- or batch-first) is not guessed from the node pattern: the graph and the
//! stack are both run on a seeded probe input, and the import is refused unless they agree.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::graph::OnnxModel;
use super::node::{Attr, Node};
use super::proto::data_type;
use super::recurrent::{Op, cells, fill_params};
use super::value::{Data, Value};
use crate::error::{Error, Result};
use crate::layer::{BatchLayout, Bias, Call, Direction, Recurrent, RecurrentConfig};

/// Largest difference allowed between the graph's output and the imported stack's on the
/// probe. Both run recur's own kernels, so an honest stack agrees to rounding; a wrong
/// reading of the glue differs by O(0.1).
pub const PROBE_TOL: f32 = 1e-5;

fn unsupported(reason: impl Into<String>) -> Error {
    Error::Unsupported(format!("onnx import: {}", reason.into()))
}

/// The constant value named `name`: an initializer or a `Constant` node's output.
fn constant<'a>(model: &'a OnnxModel, name: &str) -> Option<&'a Value> {
    if let Some(v) = model.initializers.get(name) {
        return Some(v);
    }
    model
        .nodes
        .iter()
        .find(|n| n.op_type == "Constant" && n.outputs.first().is_some_and(|o| o == name))
        .and_then(|n| match n.attrs.get("value") {
            Some(Attr::Tensor(t)) => Some(t),
            _ => None,
        })
}

/// Input `k` of `node` as a constant `f32` tensor, if the node has that input.
fn weight<'a>(
    model: &'a OnnxModel,
    node: &Node,
    k: usize,
    what: &str,
) -> Result<Option<&'a Value>> {
    let Some(Some(name)) = node.inputs.get(k) else {
        return Ok(None);
    };
    let v = constant(model, name).ok_or_else(|| {
        unsupported(format!(
            "{what} of node `{}` (`{name}`) is computed, not a constant",
            node.name
        ))
    })?;
    if v.as_f32().is_none() {
        return Err(unsupported(format!(
            "{what} of node `{}` is not FLOAT",
            node.name
        )));
    }
    Ok(Some(v))
}

/// The recurrent stack `model` computes.
///
/// # Errors
/// [`Error::Unsupported`] when the graph has no recurrent node, mixes ops or options across
/// layers, computes its weights, chains the layers in a way that is not a plain stack (the
/// probe disagrees), or has inputs besides the sequence, `sequence_lens` and the initial
/// states; errors of [`OnnxModel::run`] from the probe.
pub fn import_recurrent(model: &OnnxModel) -> Result<Recurrent<f32>> {
    let rec: Vec<&Node> = model
        .nodes
        .iter()
        .filter(|n| Op::of(&n.op_type).is_some())
        .collect();
    let first = *rec
        .first()
        .ok_or_else(|| unsupported("the graph has no LSTM, GRU or RNN node"))?;
    let op = Op::of(&first.op_type).expect("filtered");
    let direction_attr = first.string("direction")?.unwrap_or("forward");
    let direction = match direction_attr {
        "forward" => Direction::Forward,
        "reverse" => Direction::Reverse,
        "bidirectional" => Direction::Bidirectional,
        other => return Err(first.err(format!("direction `{other}` is not valid"))),
    };
    let d = direction.count();
    let mut weights = Vec::with_capacity(rec.len());
    let mut any_p = false;
    let mut any_b = false;
    for n in &rec {
        if n.op_type != first.op_type
            || n.string("direction")?.unwrap_or("forward") != direction_attr
        {
            return Err(unsupported(format!(
                "node `{}` ({}, {}) differs from the first recurrent node ({}, {direction_attr}): not one stack",
                n.name,
                n.op_type,
                n.string("direction")?.unwrap_or("forward"),
                first.op_type
            )));
        }
        let w = weight(model, n, 1, "W")?.ok_or_else(|| n.err("needs W"))?;
        let r = weight(model, n, 2, "R")?.ok_or_else(|| n.err("needs R"))?;
        let b = weight(model, n, 3, "B")?;
        let p = if op == Op::Lstm {
            weight(model, n, 7, "P")?
        } else {
            None
        };
        any_b |= b.is_some();
        any_p |= p.is_some();
        weights.push((w, r, b, p));
    }
    let g = op.gates();
    let w0 = weights[0].0;
    if w0.shape().len() != 3 || w0.shape()[0] != d || !w0.shape()[1].is_multiple_of(g) {
        return Err(first.err(format!("W has shape {:?}", w0.shape())));
    }
    let h = w0.shape()[1] / g;
    let input_size = w0.shape()[2];
    let cell = cells(first, op, d, any_p)?[0].clone();
    for n in &rec {
        let c = cells(n, op, d, any_p)?;
        if c.iter().any(|c| *c != cell) {
            return Err(unsupported(format!(
                "node `{}` has other options (activations, reset placement, input_forget) than node `{}`; recur's stack has one cell for every layer and direction",
                n.name, first.name
            )));
        }
    }
    let mut config = RecurrentConfig {
        cell,
        input_size,
        hidden_size: h,
        num_layers: rec.len(),
        bias: if any_b { Bias::Enabled } else { Bias::Disabled },
        direction,
        dropout: 0.0,
        layout: BatchLayout::SeqFirst,
        ..Default::default()
    };
    config.validate()?;
    let mut stack = Recurrent::<f32>::new(config.clone(), 0)?;
    for (l, (n, (w, r, b, p))) in rec.iter().zip(&weights).enumerate() {
        let layer_in = if l == 0 { input_size } else { d * h };
        let shapes_ok = w.shape() == [d, g * h, layer_in]
            && r.shape() == [d, g * h, h]
            && b.is_none_or(|b| b.shape() == [d, 2 * g * h])
            && p.is_none_or(|p| p.shape() == [d, 3 * h]);
        if !shapes_ok {
            return Err(unsupported(format!(
                "node `{}` (layer {l}): W {:?}, R {:?} do not continue a stack of hidden_size {h} and {d} direction(s) (expected W [{d}, {}, {layer_in}])",
                n.name,
                w.shape(),
                r.shape(),
                g * h
            )));
        }
        let f = |v: &Value| v.as_f32().expect("checked FLOAT").to_vec();
        let (w, r) = (f(w), f(r));
        let (b, p) = (b.map(f), p.map(f));
        for dir in 0..d {
            fill_params(
                &mut stack,
                (l, dir),
                op,
                h,
                layer_in,
                dir,
                &w,
                &r,
                b.as_deref(),
                p.as_deref(),
            );
        }
    }
    // The probe: sequence-first, then batch-first.
    let mut last = String::new();
    for layout in [BatchLayout::SeqFirst, BatchLayout::BatchFirst] {
        config.layout = layout;
        let candidate = Recurrent::from_params(config.clone(), stack.params().to_vec())?;
        match probe(model, &candidate)? {
            None => return Ok(candidate),
            Some(why) => last = why,
        }
    }
    Err(unsupported(format!(
        "the graph around its recurrent nodes is not a plain stack: on a probe input its first output and the stack's output differ ({last})"
    )))
}

/// Runs graph and stack on a seeded probe; `None` when they agree, else why not. Sizes the
/// graph declares fixed are kept (seq_len 3 and batch 2 otherwise).
fn probe(model: &OnnxModel, stack: &Recurrent<f32>) -> Result<Option<String>> {
    let cfg = stack.config();
    let i = cfg.input_size;
    let first = model
        .inputs()
        .first()
        .ok_or_else(|| unsupported("the graph has no input"))?;
    if !matches!(first.elem_type, 0 | data_type::FLOAT) {
        return Err(unsupported(format!(
            "the first graph input `{}` is {}, not a FLOAT sequence: only plain recurrent stacks are imported (a model with an embedding or a head is not)",
            first.name,
            data_type::name(first.elem_type)
        )));
    }
    let declared = |k: usize, default: usize| {
        first
            .shape
            .as_ref()
            .and_then(|s| s.get(k).copied().flatten())
            .unwrap_or(default)
    };
    let (t, b) = match cfg.layout {
        BatchLayout::SeqFirst => (declared(0, 3), declared(1, 2)),
        BatchLayout::BatchFirst => (declared(1, 3), declared(0, 2)),
    };
    let x_shape = match cfg.layout {
        BatchLayout::SeqFirst => [t, b, i],
        BatchLayout::BatchFirst => [b, t, i],
    };
    let n = t
        .checked_mul(b)
        .and_then(|n| n.checked_mul(i))
        .filter(|&n| n <= super::value::MAX_ELEMENTS && n > 0)
        .ok_or_else(|| {
            unsupported(format!(
                "the graph's input shape {x_shape:?} is too large or empty for a probe"
            ))
        })?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut inputs = Vec::new();
    for (k, info) in model.inputs().iter().enumerate() {
        let v = if k == 0 {
            Value::f32(x.clone(), &x_shape)?
        } else if matches!(info.elem_type, data_type::INT32 | data_type::INT64) {
            // sequence_lens: full length
            if info.elem_type == data_type::INT32 {
                Value::i32(vec![t as i32; b], &[b])?
            } else {
                Value::i64(vec![t as i64; b], &[b])?
            }
        } else {
            // an initial state: zeros, the stack's own default
            let ld = cfg.num_layers * cfg.direction.count();
            Value::f32(
                vec![0.0; ld * b * cfg.hidden_size],
                &[ld, b, cfg.hidden_size],
            )?
        };
        inputs.push((info.name.as_str(), v));
    }
    let graph_out = match model.run(&inputs) {
        Ok(o) => o,
        Err(e) => return Ok(Some(format!("the graph does not run on it: {e}"))),
    };
    let x = crate::tensor::Tensor::new(x, &x_shape)?;
    let ours = stack.forward(&x, Call::new())?;
    let Some((name, got)) = graph_out.first() else {
        return Ok(Some("the graph has no output".into()));
    };
    if got.shape() != ours.output.shape() {
        return Ok(Some(format!(
            "`{name}` has shape {:?}, the stack's output {:?}",
            got.shape(),
            ours.output.shape()
        )));
    }
    let Data::F32(g) = got.data() else {
        return Ok(Some(format!("`{name}` is not FLOAT")));
    };
    let diff = g
        .iter()
        .zip(ours.output.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    Ok((diff > PROBE_TOL).then(|| format!("`{name}` differs by up to {diff:.3e}")))
}
