//! ONNX `LSTM`, `GRU` and `RNN` nodes (opset 7 to 22, every attribute and input) run on
//! recur's engine: each direction of a node becomes a one-layer [`Recurrent`] whose
//! parameters (laid out as [`Recurrent::layout`] says) are the node's weights moved from
//! ONNX's gate order to recur's. With constant weights it is built once and kept.
//!
//! | ONNX | recur |
//! |---|---|
//! | LSTM gates i, o, f, c in `W [D, 4H, I]`, `R [D, 4H, H]` | i, f, g, o in `weight_ih`, `weight_hh` |
//! | GRU gates z, r, h | r, z, n |
//! | `B [D, 2GH]` = `[Wb, Rb]` | `bias_ih`, `bias_hh` (no bias when `B` is absent) |
//! | `P [D, 3H]` = `p_i, p_o, p_f` | `peephole_i`, `peephole_o`, `peephole_f` |
//! | `input_forget = 1` | [`InputForget::Coupled`] (f = 1 − i; `p_f` then unused, as in ONNX Runtime) |
//! | `linear_before_reset = 0` / `1` | [`ResetPlacement::BeforeMatmul`] / `AfterMatmul` |
//! | `direction` forward / reverse / bidirectional | [`Direction::Forward`] / [`Direction::Reverse`] per direction |
//! | `layout = 1` (`X [B, T, I]`, `Y [B, T, D, H]`, states `[B, D, H]`) | [`BatchLayout::BatchFirst`] |
//! | `activations`, `activation_alpha` / `_beta` | the cell's [`Activation`]s ([`Activation::from_onnx`]; α, β consumed in order by the functions that take them) |
//! | `clip` | the cell's `clip` (every gate pre-activation clamped to [−clip, clip]) |
//! | `sequence_lens` | per-sequence lengths (zeros past a sequence's end, `Y_h` at its own last step, reverse within its own length) |
//!
//! `Y` is `[T, D, B, H]` where recur's output is `[T, B, H]` per direction: the directions
//! are interleaved here.

use std::sync::OnceLock;

use super::node::{Node, arg, f32s, opt};
use super::value::{Data, Value};
use crate::cell::{
    CellKind, GruActivations, GruCell, InputForget, LstmActivations, LstmCell, Peepholes,
    ResetPlacement, RnnCell,
};
use crate::error::Result;
use crate::kernel::activation::Activation;
use crate::layer::{
    BatchLayout, Bias, Call, Direction, ParamKind, Recurrent, RecurrentConfig, State,
};
use crate::tensor::Tensor;

/// Which recurrent op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Lstm,
    Gru,
    Rnn,
}

impl Op {
    /// The op of an ONNX op type, if it is a recurrent one.
    pub(crate) fn of(op_type: &str) -> Option<Self> {
        match op_type {
            "LSTM" => Some(Op::Lstm),
            "GRU" => Some(Op::Gru),
            "RNN" => Some(Op::Rnn),
            _ => None,
        }
    }

    /// G, the gates stacked in `W` and `R`.
    pub(crate) fn gates(self) -> usize {
        match self {
            Op::Lstm => 4,
            Op::Gru => 3,
            Op::Rnn => 1,
        }
    }

    /// How many activations one direction takes (ONNX's f, g, h).
    fn activation_count(self) -> usize {
        match self {
            Op::Lstm => 3,
            Op::Gru => 2,
            Op::Rnn => 1,
        }
    }

    /// recur's gate block k comes from ONNX's block `perm[k]`.
    pub(crate) fn onnx_block_of(self) -> &'static [usize] {
        match self {
            // recur i, f, g, o  ←  ONNX i, o, f, c
            Op::Lstm => &[0, 2, 3, 1],
            // recur r, z, n  ←  ONNX z, r, h
            Op::Gru => &[1, 0, 2],
            Op::Rnn => &[0],
        }
    }

    fn default_activations(self) -> &'static [&'static str] {
        match self {
            Op::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            Op::Gru => &["Sigmoid", "Tanh"],
            Op::Rnn => &["Tanh"],
        }
    }
}

/// Whether ONNX's activation `name` takes `activation_alpha` / `activation_beta` values.
fn takes_params(name: &str) -> (bool, bool) {
    match name.to_ascii_lowercase().as_str() {
        "affine" | "scaledtanh" | "hardsigmoid" => (true, true),
        "leakyrelu" | "thresholdedrelu" | "elu" => (true, false),
        _ => (false, false),
    }
}

/// recur's activation for ONNX's `name` with its parameters ([`Activation::from_onnx`]:
/// a missing α or β takes ONNX Runtime's default).
fn activation(
    node: &Node,
    name: &str,
    alpha: Option<f64>,
    beta: Option<f64>,
) -> Result<Activation> {
    Activation::from_onnx(name, alpha, beta).map_err(|e| match e {
        crate::Error::Unsupported(msg) => crate::Error::Unsupported(format!(
            "onnx node `{}` ({}): {msg}",
            node.name, node.op_type
        )),
        other => node.err(other.to_string()),
    })
}

/// The activations of each direction, `activation_alpha` / `_beta` consumed in order by the
/// functions that take them (as ONNX Runtime does).
fn activations(node: &Node, op: Op, dirs: usize) -> Result<Vec<Vec<Activation>>> {
    let count = op.activation_count();
    let names: Vec<String> = match node.strings("activations")? {
        None => op
            .default_activations()
            .iter()
            .cycle()
            .take(count * dirs)
            .map(|s| s.to_string())
            .collect(),
        Some(v) if v.len() == count * dirs => v.to_vec(),
        Some(v) => {
            return Err(node.err(format!(
                "`activations` has {} names; {count} per direction, {} in all, are needed",
                v.len(),
                count * dirs
            )));
        }
    };
    let alphas = node.floats("activation_alpha")?.unwrap_or(&[]);
    let betas = node.floats("activation_beta")?.unwrap_or(&[]);
    let (mut ai, mut bi) = (alphas.iter(), betas.iter());
    let mut out = Vec::with_capacity(dirs);
    for d in 0..dirs {
        let mut acts = Vec::with_capacity(count);
        for name in &names[d * count..(d + 1) * count] {
            let (ta, tb) = takes_params(name);
            let alpha = if ta {
                ai.next().map(|&a| f64::from(a))
            } else {
                None
            };
            let beta = if tb {
                bi.next().map(|&b| f64::from(b))
            } else {
                None
            };
            acts.push(activation(node, name, alpha, beta)?);
        }
        out.push(acts);
    }
    Ok(out)
}

/// What a recurrent node computes with, read and checked from its inputs and attributes.
struct Spec {
    dirs: usize,
    reverse_only: bool,
    batch_first: bool,
    seq_len: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    cells: Vec<CellKind>,
}

fn f32_input<'a>(node: &Node, v: &'a Value, what: &str, shape: &[usize]) -> Result<&'a [f32]> {
    let data = f32s(node, v, what)?;
    if v.shape() != shape {
        return Err(node.err(format!(
            "{what} must have shape {shape:?}, got {:?}",
            v.shape()
        )));
    }
    Ok(data)
}

/// recur's cell for each direction of a node; `peep`: the node has `P`.
pub(crate) fn cells(node: &Node, op: Op, dirs: usize, peep: bool) -> Result<Vec<CellKind>> {
    // ONNX `clip`: every gate pre-activation clamped to [−clip, clip]
    let clip = node.float("clip")?.map(f64::from);
    if let Some(c) = clip
        && !(c.is_finite() && c > 0.0)
    {
        return Err(node.err(format!("clip = {c} must be finite and positive")));
    }
    let acts = activations(node, op, dirs)?;
    let mut cells = Vec::with_capacity(dirs);
    for a in acts {
        cells.push(match op {
            Op::Lstm => {
                let coupled = match node.int("input_forget")?.unwrap_or(0) {
                    0 => InputForget::Separate,
                    1 => InputForget::Coupled,
                    other => return Err(node.err(format!("input_forget {other} is not 0 or 1"))),
                };
                CellKind::Lstm(LstmCell {
                    peepholes: Peepholes {
                        input: peep,
                        // ONNX Runtime computes f = 1 − i when coupled and never reads p_f
                        forget: peep && coupled == InputForget::Separate,
                        output: peep,
                    },
                    proj_size: 0,
                    input_forget: coupled,
                    activations: LstmActivations {
                        gate: a[0],
                        cell: a[1],
                        hidden: a[2],
                    },
                    clip,
                    layer_norm: false,
                })
            }
            Op::Gru => CellKind::Gru(GruCell {
                reset: match node.int("linear_before_reset")?.unwrap_or(0) {
                    0 => ResetPlacement::BeforeMatmul,
                    1 => ResetPlacement::AfterMatmul,
                    other => {
                        return Err(node.err(format!("linear_before_reset {other} is not 0 or 1")));
                    }
                },
                activations: GruActivations {
                    gate: a[0],
                    candidate: a[1],
                },
                clip,
                layer_norm: false,
            }),
            Op::Rnn => CellKind::Rnn(RnnCell {
                nonlinearity: a[0],
                clip,
                ..RnnCell::default()
            }),
        });
    }
    Ok(cells)
}

fn spec(node: &Node, op: Op, args: &[Option<&Value>]) -> Result<Spec> {
    let x = arg(node, args, 0)?;
    let w = arg(node, args, 1)?;
    let direction = node.string("direction")?.unwrap_or("forward");
    let (dirs, reverse_only) = match direction {
        "forward" => (1, false),
        "reverse" => (1, true),
        "bidirectional" => (2, false),
        other => {
            return Err(node.err(format!(
                "direction `{other}` is not forward, reverse or bidirectional"
            )));
        }
    };
    let batch_first = match node.int("layout")?.unwrap_or(0) {
        0 => false,
        1 => true,
        other => return Err(node.err(format!("layout {other} is not 0 or 1"))),
    };
    if x.shape().len() != 3 {
        return Err(node.err(format!(
            "X must have 3 dimensions ({}), got shape {:?}",
            if batch_first {
                "[batch, seq_len, input_size]"
            } else {
                "[seq_len, batch, input_size]"
            },
            x.shape()
        )));
    }
    let (seq_len, batch, input) = if batch_first {
        (x.shape()[1], x.shape()[0], x.shape()[2])
    } else {
        (x.shape()[0], x.shape()[1], x.shape()[2])
    };
    let g = op.gates();
    if w.shape().len() != 3
        || w.shape()[0] != dirs
        || !w.shape()[1].is_multiple_of(g)
        || w.shape()[2] != input
    {
        return Err(node.err(format!(
            "W must have shape [{dirs}, {g} * hidden_size, {input}], got {:?}",
            w.shape()
        )));
    }
    let hidden = w.shape()[1] / g;
    if let Some(h) = node.int("hidden_size")?
        && h != hidden as i64
    {
        return Err(node.err(format!(
            "hidden_size = {h} disagrees with W of shape {:?}",
            w.shape()
        )));
    }
    let cells = cells(node, op, dirs, opt(args, 7).is_some())?;
    Ok(Spec {
        dirs,
        reverse_only,
        batch_first,
        seq_len,
        batch,
        input,
        hidden,
        cells,
    })
}

/// Runs an `LSTM`, `GRU` or `RNN` node: outputs `Y`, `Y_h` (and `Y_c` for LSTM), each only
/// when the node names it.
/// `cache`: where the per-direction models built from constant weights are kept between
/// runs (`None` when a weight is computed or given at run time).
pub(crate) fn run(
    node: &Node,
    args: &[Option<&Value>],
    cache: Option<&OnceLock<Vec<Recurrent<f32>>>>,
) -> Result<Vec<Option<Value>>> {
    let op = Op::of(&node.op_type).expect("a recurrent op");
    let s = spec(node, op, args)?;
    let (d, t, b, i, h, g) = (s.dirs, s.seq_len, s.batch, s.input, s.hidden, op.gates());
    if t == 0 || b == 0 {
        return Err(node.err(format!(
            "X of shape {:?} has no steps or no sequences",
            arg(node, args, 0)?.shape()
        )));
    }
    let x = arg(node, args, 0)?
        .as_f32()
        .ok_or_else(|| node.err("X must be FLOAT"))?;
    let w = f32_input(node, arg(node, args, 1)?, "W", &[d, g * h, i])?;
    let r = f32_input(node, arg(node, args, 2)?, "R", &[d, g * h, h])?;
    let bias = opt(args, 3)
        .map(|v| f32_input(node, v, "B", &[d, 2 * g * h]))
        .transpose()?;
    let lengths: Option<Vec<usize>> = match opt(args, 4) {
        None => None,
        Some(v) => {
            let l = v.to_i64s().ok_or_else(|| {
                node.err(format!(
                    "sequence_lens must be INT32 or INT64, got {}",
                    v.type_name()
                ))
            })?;
            if v.shape() != [b] {
                return Err(node.err(format!(
                    "sequence_lens must have shape [{b}], got {:?}",
                    v.shape()
                )));
            }
            let mut out = Vec::with_capacity(b);
            for (k, &n) in l.iter().enumerate() {
                if n < 1 || n > t as i64 {
                    return Err(node.err(format!(
                        "sequence_lens[{k}] = {n} is outside 1..={t} (recur does not run empty sequences)"
                    )));
                }
                out.push(n as usize);
            }
            Some(out)
        }
    };
    let state_shape = if s.batch_first { [b, d, h] } else { [d, b, h] };
    let h0 = opt(args, 5)
        .map(|v| f32_input(node, v, "initial_h", &state_shape))
        .transpose()?;
    let (c0, p) = if op == Op::Lstm {
        (
            opt(args, 6)
                .map(|v| f32_input(node, v, "initial_c", &state_shape))
                .transpose()?,
            opt(args, 7)
                .map(|v| f32_input(node, v, "P", &[d, 3 * h]))
                .transpose()?,
        )
    } else {
        (None, None)
    };
    // Y is [T, D, B, H], and the engine's outputs as much again, besides a copy of X: checked
    // against the per-tensor bound and the run's budget before any of it is allocated.
    let y_len = [t, d, b, h]
        .iter()
        .try_fold(1usize, |n, &k| n.checked_mul(k))
        .filter(|&n| n <= super::value::MAX_ELEMENTS)
        .ok_or_else(|| {
            node.err(format!(
                "output Y of [{t}, {d}, {b}, {h}] exceeds the bound of {} elements",
                super::value::MAX_ELEMENTS
            ))
        })?;
    super::ops::check_budget(node, 2 * y_len + x.len())?;
    let x_shape = if s.batch_first { [b, t, i] } else { [t, b, i] };
    let x_tensor = Tensor::new(x.to_vec(), &x_shape).map_err(|e| node.err(e.to_string()))?;

    // [D, B, H] state block of direction `dir` from ONNX's layout.
    let state_block = |src: &[f32], dir: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(b * h);
        for bb in 0..b {
            let at = if s.batch_first {
                (bb * d + dir) * h
            } else {
                (dir * b + bb) * h
            };
            out.extend_from_slice(&src[at..at + h]);
        }
        out
    };
    let mut y = vec![0.0f32; y_len];
    let mut y_h = vec![0.0f32; d * b * h];
    let mut y_c = vec![0.0f32; if op == Op::Lstm { d * b * h } else { 0 }];
    let built;
    let models: &[Recurrent<f32>] = match cache.and_then(OnceLock::get) {
        Some(m) => m,
        None => {
            let mut models = Vec::with_capacity(d);
            for dir in 0..d {
                let config = RecurrentConfig {
                    cell: s.cells[dir].clone(),
                    input_size: i,
                    hidden_size: h,
                    num_layers: 1,
                    bias: if bias.is_some() {
                        Bias::Enabled
                    } else {
                        Bias::Disabled
                    },
                    direction: if dir == 1 || s.reverse_only {
                        Direction::Reverse
                    } else {
                        Direction::Forward
                    },
                    dropout: 0.0,
                    layout: if s.batch_first {
                        BatchLayout::BatchFirst
                    } else {
                        BatchLayout::SeqFirst
                    },
                    ..Default::default()
                };
                let mut model = Recurrent::new(config, 0).map_err(|e| node.err(e.to_string()))?;
                fill_params(&mut model, (0, 0), op, h, i, dir, w, r, bias, p);
                models.push(model);
            }
            if let Some(c) = cache {
                let _ = c.set(models.clone());
            }
            built = models;
            &built
        }
    };
    for (dir, model) in models.iter().enumerate() {
        let state = if h0.is_some() || c0.is_some() {
            let hs = h0.map_or_else(|| vec![0.0; b * h], |v| state_block(v, dir));
            let cs = (op == Op::Lstm)
                .then(|| c0.map_or_else(|| vec![0.0; b * h], |v| state_block(v, dir)));
            Some(State {
                h: Tensor::new(hs, &[1, b, h]).map_err(|e| node.err(e.to_string()))?,
                c: cs
                    .map(|c| Tensor::new(c, &[1, b, h]))
                    .transpose()
                    .map_err(|e| node.err(e.to_string()))?,
            })
        } else {
            None
        };
        let out = model
            .forward(
                &x_tensor,
                Call {
                    state: state.as_ref().map(State::view),
                    lengths: lengths.as_deref(),
                    ..Call::new()
                },
            )
            .map_err(|e| node.err(e.to_string()))?;
        let yd = out.output.data();
        // recur: [T, B, H] (batch-first [B, T, H]); ONNX: [T, D, B, H] ([B, T, D, H])
        for tt in 0..t {
            for bb in 0..b {
                let (from, to) = if s.batch_first {
                    ((bb * t + tt) * h, ((bb * t + tt) * d + dir) * h)
                } else {
                    ((tt * b + bb) * h, ((tt * d + dir) * b + bb) * h)
                };
                y[to..to + h].copy_from_slice(&yd[from..from + h]);
            }
        }
        let put_state = |dst: &mut [f32], src: &[f32]| {
            for bb in 0..b {
                let at = if s.batch_first {
                    (bb * d + dir) * h
                } else {
                    (dir * b + bb) * h
                };
                dst[at..at + h].copy_from_slice(&src[bb * h..(bb + 1) * h]);
            }
        };
        put_state(&mut y_h, out.state.h.data());
        if let Some(c) = &out.state.c {
            put_state(&mut y_c, c.data());
        }
    }
    let y_shape = if s.batch_first {
        vec![b, t, d, h]
    } else {
        vec![t, d, b, h]
    };
    let mut results = vec![
        Some(Value::from_parts(Data::F32(y), y_shape)),
        Some(Value::from_parts(Data::F32(y_h), state_shape.to_vec())),
    ];
    if op == Op::Lstm {
        results.push(Some(Value::from_parts(
            Data::F32(y_c),
            state_shape.to_vec(),
        )));
    }
    results.truncate(node.outputs.len());
    results.resize(node.outputs.len(), None);
    Ok(results)
}

/// Sets the parameters of (`layer`, `model_dir`) of `model` from direction `dir` of ONNX's
/// tensors (`W [D, G*H, i]`, `R`, `B`, `P`), in recur's layout and gate order. A tensor the
/// node leaves out (`B`, `P`) is zero.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fill_params(
    model: &mut Recurrent<f32>,
    (layer, model_dir): (usize, usize),
    op: Op,
    h: usize,
    i: usize,
    dir: usize,
    w: &[f32],
    r: &[f32],
    bias: Option<&[f32]>,
    p: Option<&[f32]>,
) {
    let g = op.gates();
    let perm = op.onnx_block_of();
    // rows of `src` (a [G*H, cols] matrix) regrouped gate block by gate block
    let reorder = |src: &[f32], cols: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(g * h * cols);
        for &blk in perm {
            out.extend_from_slice(&src[blk * h * cols..(blk + 1) * h * cols]);
        }
        out
    };
    let (gh, ph) = (g * h, 3 * h);
    let layout = model.layout().clone();
    let params = model.params_mut();
    for e in layout
        .entries()
        .iter()
        .filter(|e| e.layer == layer && e.direction == model_dir)
    {
        let src: Vec<f32> = match (e.kind, bias, p) {
            (ParamKind::WeightIh, _, _) => reorder(&w[dir * gh * i..(dir + 1) * gh * i], i),
            (ParamKind::WeightHh, _, _) => reorder(&r[dir * gh * h..(dir + 1) * gh * h], h),
            (ParamKind::BiasIh, Some(b), _) => reorder(&b[dir * 2 * gh..dir * 2 * gh + gh], 1),
            (ParamKind::BiasHh, Some(b), _) => {
                reorder(&b[dir * 2 * gh + gh..(dir + 1) * 2 * gh], 1)
            }
            (ParamKind::PeepholeI, _, Some(p)) => p[dir * ph..dir * ph + h].to_vec(),
            (ParamKind::PeepholeO, _, Some(p)) => p[dir * ph + h..dir * ph + 2 * h].to_vec(),
            (ParamKind::PeepholeF, _, Some(p)) => p[dir * ph + 2 * h..dir * ph + 3 * h].to_vec(),
            _ => vec![0.0; e.len],
        };
        params[e.offset..e.offset + e.len].copy_from_slice(&src);
    }
}
