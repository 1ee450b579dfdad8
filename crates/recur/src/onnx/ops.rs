//! The ops around the recurrent nodes: what `torch.onnx.export` (both exporters) emits for
//! `nn.LSTM` / `nn.GRU` / `nn.RNN` stacks and for embedding → recurrent → linear models, and
//! what recur's own exporter writes. Each follows the ONNX operator spec of the opset the
//! file imports (attributes before opset 10/13, inputs after, where the spec moved them).
//! Shapes are checked before anything is allocated; every output is bounded by
//! [`MAX_ELEMENTS`].

use std::sync::OnceLock;

use super::node::{Attr, Node, arg, f32s};
use super::proto::data_type;
use super::recurrent;
use super::value::{Data, MAX_ELEMENTS, MAX_RANK, Value, checked_numel};
use crate::error::Result;
use crate::kernel::{Accumulate, Mat, matmul};
use crate::layer::Recurrent;

/// Every op type the runner implements (default domain).
pub const SUPPORTED: &[&str] = &[
    "Add",
    "Cast",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Div",
    "Expand",
    "Flatten",
    "Gather",
    "Gemm",
    "GRU",
    "Identity",
    "LogSoftmax",
    "LSTM",
    "MatMul",
    "Max",
    "Min",
    "Mul",
    "Neg",
    "Range",
    "Relu",
    "Reshape",
    "RNN",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
];

type Outputs = Vec<Option<Value>>;

/// Runs one node on its inputs (`None` for an optional input left out); returns one value
/// per declared output (`None` where the op has nothing there). The one dispatcher of every
/// op type, the recurrent nodes included: `prepared` is where an `LSTM`, `GRU` or `RNN`
/// node keeps the models built from its weights between runs (`None` when a weight is
/// computed or given at run time; other ops ignore it).
pub(crate) fn run_node(
    node: &Node,
    opset: i64,
    args: &[Option<&Value>],
    prepared: Option<&OnceLock<Vec<Recurrent<f32>>>>,
) -> Result<Outputs> {
    let one = |v: Value| Ok(vec![Some(v)]);
    match node.op_type.as_str() {
        "LSTM" | "GRU" | "RNN" => recurrent::run(node, args, prepared),
        "Identity" => one(arg(node, args, 0)?.clone()),
        "Constant" => one(constant(node)?),
        "Shape" => one(shape_op(node, arg(node, args, 0)?)?),
        "Gather" => one(gather(node, arg(node, args, 0)?, arg(node, args, 1)?)?),
        "Unsqueeze" => one(unsqueeze(node, opset, args)?),
        "Squeeze" => one(squeeze(node, opset, args)?),
        "Concat" => one(concat(node, args)?),
        "Reshape" => one(reshape(node, opset, args)?),
        "Flatten" => one(flatten(node, arg(node, args, 0)?)?),
        "Transpose" => one(transpose(node, arg(node, args, 0)?)?),
        "Expand" => one(expand(node, arg(node, args, 0)?, arg(node, args, 1)?)?),
        "Slice" => one(slice(node, opset, args)?),
        "Split" => split(node, opset, args),
        "Cast" => one(cast(node, arg(node, args, 0)?)?),
        "ConstantOfShape" => one(constant_of_shape(node, arg(node, args, 0)?)?),
        "Range" => one(range(node, args)?),
        "MatMul" => one(matmul_op(node, arg(node, args, 0)?, arg(node, args, 1)?)?),
        "Gemm" => one(gemm(node, args)?),
        "Add" | "Sub" | "Mul" | "Div" | "Min" | "Max" => one(binary_fold(node, args)?),
        "Relu" | "Tanh" | "Sigmoid" | "Neg" => one(unary(node, arg(node, args, 0)?)?),
        "Softmax" | "LogSoftmax" => one(softmax(node, opset, arg(node, args, 0)?)?),
        other => Err(node.err(format!("op type {other} is not one recur runs"))),
    }
}

fn ints(node: &Node, v: &Value, what: &str) -> Result<Vec<i64>> {
    v.to_i64s().ok_or_else(|| {
        node.err(format!(
            "{what} must be INT64 or INT32, got {}",
            v.type_name()
        ))
    })
}

thread_local! {
    /// The memory budget of the graph run on this thread and what it holds now, in bytes
    /// ([`super::OnnxModel::run_within`]); no budget outside a run.
    static BUDGET: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((u64::MAX, 0)) };
}

/// Sets the budget of the run on this thread: `limit` bytes, of which `held` are taken.
pub(crate) fn set_budget(limit: u64, held: u64) {
    BUDGET.with(|b| b.set((limit, held)));
}

/// Refuses a new tensor of `elements` values of at least 4 bytes that would take the run past
/// its budget: checked before the tensor is allocated.
pub(crate) fn check_budget(node: &Node, elements: usize) -> Result<()> {
    let (limit, held) = BUDGET.with(std::cell::Cell::get);
    let bytes = (elements as u64).saturating_mul(4);
    if held.saturating_add(bytes) > limit {
        return Err(over_budget(node, bytes, held, limit));
    }
    Ok(())
}

/// The error of a node whose output would take the run past its budget.
pub(crate) fn over_budget(node: &Node, bytes: u64, held: u64, limit: u64) -> crate::Error {
    node.err(format!(
        "its output of {bytes} bytes would take the run past its memory budget of {limit} \
         bytes ({held} bytes are held); raise the budget (--max-memory on the command line, \
         OnnxModel::run_within in the library)"
    ))
}

fn numel(node: &Node, shape: &[usize]) -> Result<usize> {
    if shape.len() > MAX_RANK {
        return Err(node.err(format!(
            "rank {} exceeds the bound of {MAX_RANK}",
            shape.len()
        )));
    }
    let n = checked_numel(shape).ok_or_else(|| {
        node.err(format!(
            "output shape {shape:?} exceeds the bound of {MAX_ELEMENTS} elements"
        ))
    })?;
    check_budget(node, n)?;
    Ok(n)
}

/// `axis` in `-rank..rank` → `0..rank`.
fn norm_axis(node: &Node, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(node.err(format!("axis {axis} is outside -{r}..{r}")));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Picks the elements at `positions` of `data`, keeping its type.
fn pick(data: &Data, positions: &[usize]) -> Data {
    match data {
        Data::F32(v) => Data::F32(positions.iter().map(|&p| v[p]).collect()),
        Data::F64(v) => Data::F64(positions.iter().map(|&p| v[p]).collect()),
        Data::I64(v) => Data::I64(positions.iter().map(|&p| v[p]).collect()),
        Data::I32(v) => Data::I32(positions.iter().map(|&p| v[p]).collect()),
    }
}

/// Element positions of a strided view: output index (row-major over `shape`) → `base +
/// Σ idx[d] · strides[d]`.
fn strided_positions(shape: &[usize], strides: &[isize], base: isize) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    let mut pos = base;
    for _ in 0..n {
        out.push(pos as usize);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            pos += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            pos -= strides[d] * shape[d] as isize;
            idx[d] = 0;
        }
    }
    out
}

fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut s = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for d in (0..shape.len()).rev() {
        s[d] = acc;
        acc *= shape[d] as isize;
    }
    s
}

fn constant(node: &Node) -> Result<Value> {
    if let Some(Attr::Tensor(t)) = node.attrs.get("value") {
        return Ok(t.clone());
    }
    if let Some(f) = node.float("value_float")? {
        return Ok(Value::from_parts(Data::F32(vec![f]), vec![]));
    }
    if let Some(v) = node.floats("value_floats")? {
        return Ok(Value::from_parts(Data::F32(v.to_vec()), vec![v.len()]));
    }
    if let Some(i) = node.int("value_int")? {
        return Ok(Value::from_parts(Data::I64(vec![i]), vec![]));
    }
    if let Some(v) = node.ints("value_ints")? {
        return Ok(Value::from_parts(Data::I64(v.to_vec()), vec![v.len()]));
    }
    Err(node.err("needs a `value` tensor, `value_float(s)` or `value_int(s)` (sparse and string values are not supported)"))
}

fn shape_op(node: &Node, x: &Value) -> Result<Value> {
    let r = x.shape().len() as i64;
    let clamp = |a: i64| (if a < 0 { a + r } else { a }).clamp(0, r) as usize;
    let start = clamp(node.int("start")?.unwrap_or(0));
    let end = clamp(node.int("end")?.unwrap_or(r));
    let dims: Vec<i64> = x.shape()[start..end.max(start)]
        .iter()
        .map(|&d| d as i64)
        .collect();
    let n = dims.len();
    Ok(Value::from_parts(Data::I64(dims), vec![n]))
}

fn gather(node: &Node, data: &Value, indices: &Value) -> Result<Value> {
    let shape = data.shape();
    if shape.is_empty() {
        return Err(node.err("data must have at least one dimension"));
    }
    let axis = norm_axis(node, node.int("axis")?.unwrap_or(0), shape.len())?;
    let idx = ints(node, indices, "indices")?;
    let dim = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out_shape = shape[..axis].to_vec();
    out_shape.extend_from_slice(indices.shape());
    out_shape.extend_from_slice(&shape[axis + 1..]);
    numel(node, &out_shape)?;
    let mut rows = Vec::with_capacity(idx.len());
    for (k, &i) in idx.iter().enumerate() {
        let j = if i < 0 { i + dim as i64 } else { i };
        if j < 0 || j >= dim as i64 {
            return Err(node.err(format!(
                "indices[{k}] = {i} is outside -{dim}..{dim} (axis {axis} has {dim} entries)"
            )));
        }
        rows.push(j as usize);
    }
    let mut positions = Vec::with_capacity(outer * rows.len() * inner);
    for o in 0..outer {
        for &r in &rows {
            let base = (o * dim + r) * inner;
            positions.extend(base..base + inner);
        }
    }
    Ok(Value::from_parts(pick(data.data(), &positions), out_shape))
}

/// Axes from the attribute (before `since`) or from input 1.
fn axes_of(
    node: &Node,
    opset: i64,
    since: i64,
    args: &[Option<&Value>],
) -> Result<Option<Vec<i64>>> {
    if opset >= since {
        match args.get(1).copied().flatten() {
            Some(v) => Ok(Some(ints(node, v, "axes")?)),
            None => Ok(None),
        }
    } else {
        Ok(node.ints("axes")?.map(<[i64]>::to_vec))
    }
}

fn unsqueeze(node: &Node, opset: i64, args: &[Option<&Value>]) -> Result<Value> {
    let x = arg(node, args, 0)?;
    let axes = axes_of(node, opset, 13, args)?.ok_or_else(|| node.err("needs axes"))?;
    let rank = x.shape().len() + axes.len();
    let mut ones = vec![false; rank];
    for &a in &axes {
        let a = norm_axis(node, a, rank)?;
        if ones[a] {
            return Err(node.err(format!("axis {a} is given twice")));
        }
        ones[a] = true;
    }
    let mut dims = x.shape().iter();
    let shape: Vec<usize> = ones
        .iter()
        .map(|&one| {
            if one {
                1
            } else {
                *dims.next().expect("rank adds up")
            }
        })
        .collect();
    numel(node, &shape)?;
    Ok(Value::from_parts(x.data().clone(), shape))
}

fn squeeze(node: &Node, opset: i64, args: &[Option<&Value>]) -> Result<Value> {
    let x = arg(node, args, 0)?;
    let rank = x.shape().len();
    let drop: Vec<bool> = match axes_of(node, opset, 13, args)? {
        None => x.shape().iter().map(|&d| d == 1).collect(),
        Some(axes) => {
            let mut drop = vec![false; rank];
            for a in axes {
                let a = norm_axis(node, a, rank)?;
                if x.shape()[a] != 1 {
                    return Err(node.err(format!(
                        "axis {a} has size {}, not 1 (input shape {:?})",
                        x.shape()[a],
                        x.shape()
                    )));
                }
                drop[a] = true;
            }
            drop
        }
    };
    let shape = x
        .shape()
        .iter()
        .zip(&drop)
        .filter(|(_, d)| !**d)
        .map(|(&s, _)| s)
        .collect();
    Ok(Value::from_parts(x.data().clone(), shape))
}

fn concat(node: &Node, args: &[Option<&Value>]) -> Result<Value> {
    let vals: Vec<&Value> = args.iter().flatten().copied().collect();
    let first = *vals
        .first()
        .ok_or_else(|| node.err("needs at least one input"))?;
    let rank = first.shape().len();
    let axis = norm_axis(
        node,
        node.int("axis")?
            .ok_or_else(|| node.err("needs the `axis` attribute"))?,
        rank.max(1),
    )?;
    let mut out_shape = first.shape().to_vec();
    if rank == 0 {
        return Err(node.err("inputs must have at least one dimension"));
    }
    out_shape[axis] = 0;
    for v in &vals {
        let s = v.shape();
        let same = s.len() == rank
            && s.iter()
                .zip(first.shape())
                .enumerate()
                .all(|(d, (a, b))| d == axis || a == b);
        if !same || std::mem::discriminant(v.data()) != std::mem::discriminant(first.data()) {
            return Err(node.err(format!(
                "inputs of shapes {:?} and {:?} ({} and {}) do not concatenate on axis {axis}",
                first.shape(),
                s,
                first.type_name(),
                v.type_name()
            )));
        }
        out_shape[axis] = out_shape[axis]
            .checked_add(s[axis])
            .ok_or_else(|| node.err("output size overflows"))?;
    }
    numel(node, &out_shape)?;
    let outer: usize = out_shape[..axis].iter().product();
    let inner: usize = out_shape[axis + 1..].iter().product();
    macro_rules! cat {
        ($variant:ident) => {{
            let mut out = Vec::with_capacity(outer * out_shape[axis] * inner);
            for o in 0..outer {
                for v in &vals {
                    let Data::$variant(d) = v.data() else {
                        unreachable!("types checked")
                    };
                    let chunk = v.shape()[axis] * inner;
                    out.extend_from_slice(&d[o * chunk..(o + 1) * chunk]);
                }
            }
            Data::$variant(out)
        }};
    }
    let data = match first.data() {
        Data::F32(_) => cat!(F32),
        Data::F64(_) => cat!(F64),
        Data::I64(_) => cat!(I64),
        Data::I32(_) => cat!(I32),
    };
    Ok(Value::from_parts(data, out_shape))
}

fn reshape(node: &Node, opset: i64, args: &[Option<&Value>]) -> Result<Value> {
    let x = arg(node, args, 0)?;
    let target = if opset >= 5 {
        ints(node, arg(node, args, 1)?, "shape")?
    } else {
        node.ints("shape")?
            .ok_or_else(|| node.err("needs the `shape` attribute"))?
            .to_vec()
    };
    let allowzero = node.int("allowzero")?.unwrap_or(0) == 1;
    let mut shape = Vec::with_capacity(target.len());
    let mut infer = None;
    for (k, &d) in target.iter().enumerate() {
        shape.push(match d {
            -1 if infer.is_none() => {
                infer = Some(k);
                1
            }
            0 if !allowzero => *x.shape().get(k).ok_or_else(|| {
                node.err(format!(
                    "shape[{k}] = 0 copies a dim the input (rank {}) does not have",
                    x.shape().len()
                ))
            })?,
            d if d >= 0 => d as usize,
            _ => return Err(node.err(format!("shape {target:?} is not a valid target"))),
        });
    }
    let known = numel(node, &shape)?;
    if let Some(k) = infer {
        if known == 0 || !x.len().is_multiple_of(known) {
            return Err(node.err(format!(
                "cannot infer the -1 of {target:?} for {} elements",
                x.len()
            )));
        }
        shape[k] = x.len() / known;
    }
    if numel(node, &shape)? != x.len() {
        return Err(node.err(format!(
            "input of shape {:?} does not reshape to {shape:?}",
            x.shape()
        )));
    }
    Ok(Value::from_parts(x.data().clone(), shape))
}

fn flatten(node: &Node, x: &Value) -> Result<Value> {
    let r = x.shape().len();
    let a = node.int("axis")?.unwrap_or(1);
    let axis = if a == r as i64 {
        r
    } else {
        norm_axis(node, a, r.max(1))?
    };
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis..].iter().product();
    Ok(Value::from_parts(x.data().clone(), vec![outer, inner]))
}

fn transpose(node: &Node, x: &Value) -> Result<Value> {
    let r = x.shape().len();
    let perm: Vec<usize> = match node.ints("perm")? {
        None => (0..r).rev().collect(),
        Some(p) => {
            let mut seen = vec![false; r];
            let mut perm = Vec::with_capacity(r);
            if p.len() != r {
                return Err(node.err(format!("perm {p:?} does not fit rank {r}")));
            }
            for &a in p {
                let a = norm_axis(node, a, r)?;
                if seen[a] {
                    return Err(node.err(format!("perm {p:?} is not a permutation")));
                }
                seen[a] = true;
                perm.push(a);
            }
            perm
        }
    };
    let strides = contiguous_strides(x.shape());
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let pstrides: Vec<isize> = perm.iter().map(|&p| strides[p]).collect();
    let positions = strided_positions(&shape, &pstrides, 0);
    Ok(Value::from_parts(pick(x.data(), &positions), shape))
}

/// numpy broadcasting of two shapes.
fn broadcast(node: &Node, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let (oa, ob) = (r - a.len(), r - b.len());
    (0..r)
        .map(|i| {
            let da = if i >= oa { a[i - oa] } else { 1 };
            let db = if i >= ob { b[i - ob] } else { 1 };
            match (da, db) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(node.err(format!("shapes {a:?} and {b:?} do not broadcast"))),
            }
        })
        .collect()
}

/// Positions in a tensor of shape `inp` of each element of its broadcast to `out`.
fn broadcast_positions(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let off = out.len() - inp.len();
    let mut strides = vec![0isize; out.len()];
    let mut s = 1isize;
    for i in (0..inp.len()).rev() {
        strides[i + off] = if inp[i] == 1 { 0 } else { s };
        s *= inp[i] as isize;
    }
    strides_fix_ones(&mut strides, out);
    strided_positions(out, &strides, 0)
}

/// A stride over a dim of size 1 never moves; make it 0 so that the walk stays in bounds.
fn strides_fix_ones(strides: &mut [isize], shape: &[usize]) {
    for (s, &d) in strides.iter_mut().zip(shape) {
        if d == 1 {
            *s = 0;
        }
    }
}

fn expand(node: &Node, x: &Value, shape: &Value) -> Result<Value> {
    let target: Vec<usize> = ints(node, shape, "shape")?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| node.err(format!("shape dim {d} is negative"))))
        .collect::<Result<_>>()?;
    let out = broadcast(node, x.shape(), &target)?;
    numel(node, &out)?;
    let positions = broadcast_positions(&out, x.shape());
    Ok(Value::from_parts(pick(x.data(), &positions), out))
}

fn slice(node: &Node, opset: i64, args: &[Option<&Value>]) -> Result<Value> {
    let x = arg(node, args, 0)?;
    let r = x.shape().len();
    let (starts, ends, axes, steps) = if opset >= 10 {
        let opt = |k: usize, what: &str| -> Result<Option<Vec<i64>>> {
            args.get(k)
                .copied()
                .flatten()
                .map(|v| ints(node, v, what))
                .transpose()
        };
        (
            opt(1, "starts")?.ok_or_else(|| node.err("needs starts"))?,
            opt(2, "ends")?.ok_or_else(|| node.err("needs ends"))?,
            opt(3, "axes")?,
            opt(4, "steps")?,
        )
    } else {
        let need = |n: &str| -> Result<Vec<i64>> {
            Ok(node
                .ints(n)?
                .ok_or_else(|| node.err(format!("needs the `{n}` attribute")))?
                .to_vec())
        };
        (
            need("starts")?,
            need("ends")?,
            node.ints("axes")?.map(<[i64]>::to_vec),
            None,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(node.err("starts, ends, axes and steps differ in length"));
    }
    let mut shape = x.shape().to_vec();
    let base_strides = contiguous_strides(x.shape());
    let mut strides = base_strides.clone();
    let mut base = 0isize;
    let mut seen = vec![false; r];
    for k in 0..starts.len() {
        let a = norm_axis(node, axes[k], r)?;
        if seen[a] {
            return Err(node.err(format!("axis {a} is sliced twice")));
        }
        seen[a] = true;
        let dim = x.shape()[a] as i64;
        let step = steps[k];
        if step == 0 {
            return Err(node.err("a step of 0"));
        }
        let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (start, end) = if step > 0 {
            (fix(starts[k]).clamp(0, dim), fix(ends[k]).clamp(0, dim))
        } else {
            (
                fix(starts[k]).clamp(0, dim - 1),
                fix(ends[k]).clamp(-1, dim - 1),
            )
        };
        let len = if step > 0 {
            if end > start {
                (end - start + step - 1) / step
            } else {
                0
            }
        } else if start > end {
            (start - end + (-step) - 1) / (-step)
        } else {
            0
        };
        shape[a] = len as usize;
        if len > 0 {
            base += start as isize * base_strides[a];
        }
        strides[a] = base_strides[a] * step as isize;
    }
    numel(node, &shape)?;
    strides_fix_ones(&mut strides, &shape);
    let positions = if shape.contains(&0) {
        Vec::new()
    } else {
        strided_positions(&shape, &strides, base)
    };
    Ok(Value::from_parts(pick(x.data(), &positions), shape))
}

fn split(node: &Node, opset: i64, args: &[Option<&Value>]) -> Result<Outputs> {
    let x = arg(node, args, 0)?;
    let r = x.shape().len();
    let axis = norm_axis(node, node.int("axis")?.unwrap_or(0), r.max(1))?;
    if r == 0 {
        return Err(node.err("input must have at least one dimension"));
    }
    let dim = x.shape()[axis];
    let n_out = node.outputs.len();
    let given = if opset >= 13 {
        args.get(1)
            .copied()
            .flatten()
            .map(|v| ints(node, v, "split"))
            .transpose()?
    } else {
        node.ints("split")?.map(<[i64]>::to_vec)
    };
    let sizes: Vec<usize> = match given {
        Some(s) => {
            if s.len() != n_out || s.iter().any(|&v| v < 0) || s.iter().sum::<i64>() != dim as i64 {
                return Err(node.err(format!("split {s:?} does not cut {dim} into {n_out} parts")));
            }
            s.iter().map(|&v| v as usize).collect()
        }
        None => {
            let parts = node
                .int("num_outputs")?
                .map_or(n_out, |n| n.max(1) as usize);
            let each = dim.div_ceil(parts.max(1));
            (0..parts)
                .map(|k| each.min(dim.saturating_sub(k * each)))
                .collect()
        }
    };
    let outer: usize = x.shape()[..axis].iter().product();
    let inner: usize = x.shape()[axis + 1..].iter().product();
    let mut offset = 0;
    let mut outs = Vec::with_capacity(sizes.len());
    for &s in &sizes {
        let mut positions = Vec::with_capacity(outer * s * inner);
        for o in 0..outer {
            let b = (o * dim + offset) * inner;
            positions.extend(b..b + s * inner);
        }
        let mut shape = x.shape().to_vec();
        shape[axis] = s;
        outs.push(Some(Value::from_parts(pick(x.data(), &positions), shape)));
        offset += s;
    }
    Ok(outs)
}

fn cast(node: &Node, x: &Value) -> Result<Value> {
    let to = node
        .int("to")?
        .ok_or_else(|| node.err("needs the `to` attribute"))? as i32;
    let as_f64: Vec<f64> = match x.data() {
        Data::F32(v) => v.iter().map(|&a| f64::from(a)).collect(),
        Data::F64(v) => v.clone(),
        Data::I64(v) => v.iter().map(|&a| a as f64).collect(),
        Data::I32(v) => v.iter().map(|&a| f64::from(a)).collect(),
    };
    let data = match (to, x.data()) {
        (data_type::FLOAT, _) => Data::F32(as_f64.iter().map(|&a| a as f32).collect()),
        (data_type::DOUBLE, _) => Data::F64(as_f64),
        (data_type::INT64, Data::I64(v)) => Data::I64(v.clone()),
        (data_type::INT64, Data::I32(v)) => Data::I64(v.iter().map(|&a| i64::from(a)).collect()),
        (data_type::INT64, _) => Data::I64(as_f64.iter().map(|&a| a as i64).collect()),
        (data_type::INT32, Data::I64(v)) => Data::I32(v.iter().map(|&a| a as i32).collect()),
        (data_type::INT32, _) => Data::I32(as_f64.iter().map(|&a| a as i32).collect()),
        _ => {
            return Err(node.err(format!(
                "cast to {} is not supported (FLOAT, DOUBLE, INT64, INT32 are)",
                data_type::name(to)
            )));
        }
    };
    Ok(Value::from_parts(data, x.shape().to_vec()))
}

fn constant_of_shape(node: &Node, shape: &Value) -> Result<Value> {
    let dims: Vec<usize> = ints(node, shape, "input")?
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|_| node.err(format!("dim {d} is negative"))))
        .collect::<Result<_>>()?;
    let n = numel(node, &dims)?;
    let data = match node.attrs.get("value") {
        None => Data::F32(vec![0.0; n]),
        Some(Attr::Tensor(t)) if t.len() == 1 => match t.data() {
            Data::F32(v) => Data::F32(vec![v[0]; n]),
            Data::F64(v) => Data::F64(vec![v[0]; n]),
            Data::I64(v) => Data::I64(vec![v[0]; n]),
            Data::I32(v) => Data::I32(vec![v[0]; n]),
        },
        Some(_) => return Err(node.err("`value` must be a one-element tensor")),
    };
    Ok(Value::from_parts(data, dims))
}

fn range(node: &Node, args: &[Option<&Value>]) -> Result<Value> {
    let (s, l, d) = (
        arg(node, args, 0)?,
        arg(node, args, 1)?,
        arg(node, args, 2)?,
    );
    if s.len() != 1 || l.len() != 1 || d.len() != 1 {
        return Err(node.err("start, limit and delta must be scalars"));
    }
    match (s.data(), l.data(), d.data()) {
        (Data::F32(s), Data::F32(l), Data::F32(d)) => {
            let n = ((l[0] - s[0]) / d[0]).ceil();
            if !n.is_finite() {
                return Err(node.err("the range is not finite"));
            }
            let n = n.max(0.0) as usize;
            numel(node, &[n])?;
            Ok(Value::from_parts(
                Data::F32((0..n).map(|k| s[0] + k as f32 * d[0]).collect()),
                vec![n],
            ))
        }
        _ => {
            let (s, l, d) = (
                ints(node, s, "start")?[0],
                ints(node, l, "limit")?[0],
                ints(node, d, "delta")?[0],
            );
            if d == 0 {
                return Err(node.err("delta is 0"));
            }
            let span = l.saturating_sub(s);
            let n = if (span > 0) == (d > 0) && span != 0 {
                (span.unsigned_abs().div_ceil(d.unsigned_abs())) as usize
            } else {
                0
            };
            numel(node, &[n])?;
            let vals: Vec<i64> = (0..n as i64).map(|k| s + k * d).collect();
            let data = if matches!(arg(node, args, 0)?.data(), Data::I32(_)) {
                Data::I32(vals.iter().map(|&v| v as i32).collect())
            } else {
                Data::I64(vals)
            };
            Ok(Value::from_parts(data, vec![n]))
        }
    }
}

/// `[…, M, K] · […, K, N]` with numpy's batch broadcasting and 1-D promotion.
fn matmul_op(node: &Node, a: &Value, b: &Value) -> Result<Value> {
    let (ad, bd) = (f32s(node, a, "A")?, f32s(node, b, "B")?);
    let (mut sa, mut sb) = (a.shape().to_vec(), b.shape().to_vec());
    if sa.is_empty() || sb.is_empty() {
        return Err(node.err("inputs must have at least one dimension"));
    }
    let a1 = sa.len() == 1;
    let b1 = sb.len() == 1;
    if a1 {
        sa.insert(0, 1);
    }
    if b1 {
        sb.push(1);
    }
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k != k2 {
        return Err(node.err(format!(
            "inner dimensions differ: {:?} · {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let batch = broadcast(node, &sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    let total = numel(node, &out_shape)?;
    let mut out = vec![0.0f32; total];
    let nb: usize = batch.iter().product();
    let pa = broadcast_positions(&batch, &sa[..sa.len() - 2]);
    let pb = broadcast_positions(&batch, &sb[..sb.len() - 2]);
    for i in 0..nb {
        let am = Mat::rows(&ad[pa[i] * m * k..(pa[i] + 1) * m * k], m, k, k);
        let bm = Mat::rows(&bd[pb[i] * k * n..(pb[i] + 1) * k * n], k, n, n);
        matmul(
            &mut out[i * m * n..(i + 1) * m * n],
            n,
            am,
            bm,
            Accumulate::Overwrite,
        );
    }
    if a1 {
        out_shape.remove(out_shape.len() - 2);
    }
    if b1 {
        out_shape.pop();
    }
    Ok(Value::from_parts(Data::F32(out), out_shape))
}

fn gemm(node: &Node, args: &[Option<&Value>]) -> Result<Value> {
    let (a, b) = (arg(node, args, 0)?, arg(node, args, 1)?);
    let (ad, bd) = (f32s(node, a, "A")?, f32s(node, b, "B")?);
    if a.shape().len() != 2 || b.shape().len() != 2 {
        return Err(node.err("A and B must be matrices"));
    }
    let ta = node.int("transA")?.unwrap_or(0) != 0;
    let tb = node.int("transB")?.unwrap_or(0) != 0;
    let alpha = node.float("alpha")?.unwrap_or(1.0);
    let beta = node.float("beta")?.unwrap_or(1.0);
    let (ar, ac) = (a.shape()[0], a.shape()[1]);
    let (br, bc) = (b.shape()[0], b.shape()[1]);
    let mut am = Mat::rows(ad, ar, ac, ac);
    let mut bm = Mat::rows(bd, br, bc, bc);
    if ta {
        am = am.t();
    }
    if tb {
        bm = bm.t();
    }
    if am.cols != bm.rows {
        return Err(node.err(format!(
            "inner dimensions differ: {:?}{} · {:?}{}",
            a.shape(),
            if ta { "ᵀ" } else { "" },
            b.shape(),
            if tb { "ᵀ" } else { "" }
        )));
    }
    let (m, n) = (am.rows, bm.cols);
    let mut out = vec![0.0f32; numel(node, &[m, n])?];
    matmul(&mut out, n, am, bm, Accumulate::Overwrite);
    if alpha != 1.0 {
        out.iter_mut().for_each(|v| *v *= alpha);
    }
    if let Some(c) = args.get(2).copied().flatten() {
        let cd = f32s(node, c, "C")?;
        if broadcast(node, c.shape(), &[m, n])? != [m, n] {
            return Err(node.err(format!(
                "C of shape {:?} does not broadcast to [{m}, {n}]",
                c.shape()
            )));
        }
        for (o, p) in out.iter_mut().zip(broadcast_positions(&[m, n], c.shape())) {
            *o += beta * cd[p];
        }
    }
    Ok(Value::from_parts(Data::F32(out), vec![m, n]))
}

/// Add, Sub, Mul, Div (two inputs) and Min, Max (one or more), with broadcasting.
fn binary_fold(node: &Node, args: &[Option<&Value>]) -> Result<Value> {
    let vals: Vec<&Value> = args.iter().flatten().copied().collect();
    let first = *vals.first().ok_or_else(|| node.err("needs inputs"))?;
    let binary = matches!(node.op_type.as_str(), "Add" | "Sub" | "Mul" | "Div");
    if binary && vals.len() != 2 {
        return Err(node.err("needs two inputs"));
    }
    let mut acc = first.clone();
    for v in &vals[1..] {
        acc = binary_op(node, &acc, v)?;
    }
    Ok(acc)
}

fn binary_op(node: &Node, a: &Value, b: &Value) -> Result<Value> {
    let shape = broadcast(node, a.shape(), b.shape())?;
    numel(node, &shape)?;
    let pa = broadcast_positions(&shape, a.shape());
    let pb = broadcast_positions(&shape, b.shape());
    let op = node.op_type.as_str();
    macro_rules! apply {
        ($x:expr, $y:expr, $div:expr) => {
            pa.iter()
                .zip(&pb)
                .map(|(&i, &j)| {
                    let (x, y) = ($x[i], $y[j]);
                    match op {
                        "Add" => x + y,
                        "Sub" => x - y,
                        "Mul" => x * y,
                        "Div" => $div(x, y),
                        "Min" => {
                            if y < x {
                                y
                            } else {
                                x
                            }
                        }
                        _ => {
                            if y > x {
                                y
                            } else {
                                x
                            }
                        }
                    }
                })
                .collect()
        };
    }
    let data = match (a.data(), b.data()) {
        (Data::F32(x), Data::F32(y)) => Data::F32(apply!(x, y, |x: f32, y: f32| x / y)),
        (Data::F64(x), Data::F64(y)) => Data::F64(apply!(x, y, |x: f64, y: f64| x / y)),
        (Data::I64(x), Data::I64(y)) => {
            if op == "Div" && pb.iter().any(|&j| y[j] == 0) {
                return Err(node.err("integer division by zero"));
            }
            Data::I64(apply!(x, y, |x: i64, y: i64| x.wrapping_div(y)))
        }
        (Data::I32(x), Data::I32(y)) => {
            if op == "Div" && pb.iter().any(|&j| y[j] == 0) {
                return Err(node.err("integer division by zero"));
            }
            Data::I32(apply!(x, y, |x: i32, y: i32| x.wrapping_div(y)))
        }
        _ => {
            return Err(node.err(format!(
                "inputs of different element types ({} and {})",
                a.type_name(),
                b.type_name()
            )));
        }
    };
    Ok(Value::from_parts(data, shape))
}

fn unary(node: &Node, x: &Value) -> Result<Value> {
    let op = node.op_type.as_str();
    let data = match x.data() {
        Data::F32(v) => Data::F32(
            v.iter()
                .map(|&a| match op {
                    "Relu" => a.max(0.0),
                    "Tanh" => a.tanh(),
                    "Sigmoid" => 1.0 / (1.0 + (-a).exp()),
                    _ => -a,
                })
                .collect(),
        ),
        Data::I64(v) if op == "Neg" => Data::I64(v.iter().map(|&a| a.wrapping_neg()).collect()),
        Data::I64(v) if op == "Relu" => Data::I64(v.iter().map(|&a| a.max(0)).collect()),
        _ => return Err(node.err(format!("input must be FLOAT, got {}", x.type_name()))),
    };
    Ok(Value::from_parts(data, x.shape().to_vec()))
}

fn softmax(node: &Node, opset: i64, x: &Value) -> Result<Value> {
    let v = f32s(node, x, "input")?;
    let r = x.shape().len();
    let default_axis = if opset >= 13 { -1 } else { 1 };
    let axis = norm_axis(node, node.int("axis")?.unwrap_or(default_axis), r.max(1))?;
    if r == 0 {
        return Err(node.err("input must have at least one dimension"));
    }
    // Before opset 13 the input is flattened to [outer, inner] at `axis`; from 13 the
    // softmax runs along `axis` alone.
    let (outer, len, inner) = if opset >= 13 {
        (
            x.shape()[..axis].iter().product::<usize>(),
            x.shape()[axis],
            x.shape()[axis + 1..].iter().product::<usize>(),
        )
    } else {
        (
            x.shape()[..axis].iter().product::<usize>(),
            x.shape()[axis..].iter().product::<usize>(),
            1,
        )
    };
    let log = node.op_type == "LogSoftmax";
    let mut out = v.to_vec();
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * len + k) * inner + i;
            let max = (0..len).map(|k| v[at(k)]).fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = (0..len).map(|k| (v[at(k)] - max).exp()).sum();
            for k in 0..len {
                out[at(k)] = if log {
                    v[at(k)] - max - sum.ln()
                } else {
                    (v[at(k)] - max).exp() / sum
                };
            }
        }
    }
    Ok(Value::from_parts(Data::F32(out), x.shape().to_vec()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn node(op: &str, attrs: Vec<(&str, Attr)>, outputs: usize) -> Node {
        Node {
            name: format!("t_{op}"),
            op_type: op.into(),
            inputs: Vec::new(),
            outputs: (0..outputs).map(|k| format!("o{k}")).collect(),
            attrs: attrs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<HashMap<_, _>>(),
        }
    }

    fn f(v: &[f32], s: &[usize]) -> Value {
        Value::f32(v.to_vec(), s).unwrap()
    }

    fn i(v: &[i64]) -> Value {
        Value::i64(v.to_vec(), &[v.len()]).unwrap()
    }

    fn run1(n: &Node, opset: i64, args: &[Option<&Value>]) -> Value {
        run_node(n, opset, args, None).unwrap().remove(0).unwrap()
    }

    fn iota(n: usize) -> Vec<f32> {
        (0..n).map(|k| k as f32).collect()
    }

    #[test]
    fn slice_steps_and_clamping() {
        let x = f(&iota(10), &[2, 5]);
        let n = node("Slice", vec![], 1);
        // x[:, 4:0:-2] with an end past the start; then x[-1:, ::1] via i64::MAX end
        let (s, e, a, st) = (i(&[4]), i(&[0]), i(&[1]), i(&[-2]));
        let y = run1(&n, 13, &[Some(&x), Some(&s), Some(&e), Some(&a), Some(&st)]);
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.as_f32().unwrap(), &[4.0, 2.0, 9.0, 7.0]);
        let (s, e) = (i(&[-1]), i(&[i64::MAX]));
        let y = run1(&n, 13, &[Some(&x), Some(&s), Some(&e)]);
        assert_eq!(y.shape(), &[1, 5]);
        assert_eq!(y.as_f32().unwrap(), &[5.0, 6.0, 7.0, 8.0, 9.0]);
        // opset 9: attributes
        let n9 = node(
            "Slice",
            vec![
                ("starts", Attr::Ints(vec![1])),
                ("ends", Attr::Ints(vec![3])),
                ("axes", Attr::Ints(vec![-1])),
            ],
            1,
        );
        let y = run1(&n9, 9, &[Some(&x)]);
        assert_eq!(y.as_f32().unwrap(), &[1.0, 2.0, 6.0, 7.0]);
        // reverse everything: x[::-1]
        let (s, e, a, st) = (i(&[-1]), i(&[i64::MIN]), i(&[0]), i(&[-1]));
        let y = run1(&n, 13, &[Some(&x), Some(&s), Some(&e), Some(&a), Some(&st)]);
        assert_eq!(y.as_f32().unwrap()[..5], [5.0, 6.0, 7.0, 8.0, 9.0]);
    }

    #[test]
    fn gather_reshape_squeeze_unsqueeze() {
        let x = f(&iota(6), &[3, 2]);
        let g = node("Gather", vec![("axis", Attr::Int(1))], 1);
        let idx = Value::i64(vec![-1, 0], &[2]).unwrap();
        let y = run1(&g, 13, &[Some(&x), Some(&idx)]);
        assert_eq!(y.as_f32().unwrap(), &[1.0, 0.0, 3.0, 2.0, 5.0, 4.0]);
        let bad = Value::i64(vec![2], &[1]).unwrap();
        assert!(run_node(&g, 13, &[Some(&x), Some(&bad)], None).is_err());
        let scalar = Value::i64(vec![1], &[]).unwrap();
        let g0 = node("Gather", vec![], 1);
        let y = run1(&g0, 13, &[Some(&x), Some(&scalar)]);
        assert_eq!(
            (y.shape(), y.as_f32().unwrap()),
            (&[2][..], &[2.0, 3.0][..])
        );

        let r = node("Reshape", vec![], 1);
        let y = run1(&r, 13, &[Some(&x), Some(&i(&[0, -1, 1]))]);
        assert_eq!(y.shape(), &[3, 2, 1]);
        assert!(run_node(&r, 13, &[Some(&x), Some(&i(&[4, -1]))], None).is_err());

        let u = node("Unsqueeze", vec![], 1);
        let y = run1(&u, 13, &[Some(&x), Some(&i(&[0, -1]))]);
        assert_eq!(y.shape(), &[1, 3, 2, 1]);
        let u11 = node("Unsqueeze", vec![("axes", Attr::Ints(vec![1]))], 1);
        assert_eq!(run1(&u11, 11, &[Some(&x)]).shape(), &[3, 1, 2]);
        let s = node("Squeeze", vec![], 1);
        assert_eq!(run1(&s, 13, &[Some(&y)]).shape(), &[3, 2]);
        assert_eq!(
            run1(&s, 13, &[Some(&y), Some(&i(&[-1]))]).shape(),
            &[1, 3, 2]
        );
        assert!(run_node(&s, 13, &[Some(&y), Some(&i(&[1]))], None).is_err());
    }

    #[test]
    fn transpose_concat_split_expand() {
        let x = f(&iota(6), &[2, 3]);
        let t = node("Transpose", vec![], 1);
        let y = run1(&t, 13, &[Some(&x)]);
        assert_eq!(
            (y.shape(), y.as_f32().unwrap()),
            (&[3, 2][..], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0][..])
        );
        let c = node("Concat", vec![("axis", Attr::Int(-1))], 1);
        let y = run1(&c, 13, &[Some(&x), Some(&x)]);
        assert_eq!(y.shape(), &[2, 6]);
        assert_eq!(&y.as_f32().unwrap()[..6], &[0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
        let sp = node("Split", vec![("axis", Attr::Int(1))], 2);
        let parts = run_node(&sp, 13, &[Some(&x), Some(&i(&[1, 2]))], None).unwrap();
        assert_eq!(parts[0].as_ref().unwrap().as_f32().unwrap(), &[0.0, 3.0]);
        assert_eq!(
            parts[1].as_ref().unwrap().as_f32().unwrap(),
            &[1.0, 2.0, 4.0, 5.0]
        );
        let e = node("Expand", vec![], 1);
        let col = f(&[1.0, 2.0], &[2, 1]);
        let y = run1(&e, 13, &[Some(&col), Some(&i(&[2, 2, 3]))]);
        assert_eq!(y.shape(), &[2, 2, 3]);
        assert_eq!(&y.as_f32().unwrap()[..6], &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    }

    #[test]
    fn matmul_gemm_and_arithmetic() {
        // [2, 1, 2, 3] · [3, 2] broadcast, checked against explicit sums
        let a = f(&iota(12), &[2, 1, 2, 3]);
        let b = f(&[1.0, 0.5, -1.0, 2.0, 0.0, 1.0], &[3, 2]);
        let y = run1(&node("MatMul", vec![], 1), 13, &[Some(&a), Some(&b)]);
        assert_eq!(y.shape(), &[2, 1, 2, 2]);
        let (av, bv) = (a.as_f32().unwrap(), b.as_f32().unwrap());
        for r in 0..4 {
            for c in 0..2 {
                let want: f32 = (0..3).map(|k| av[r * 3 + k] * bv[k * 2 + c]).sum();
                assert_eq!(y.as_f32().unwrap()[r * 2 + c], want);
            }
        }
        // Gemm: 2 · Aᵀ Bᵀ + 0.5 · C, C broadcast from [2]
        let a = f(&iota(6), &[3, 2]);
        let b = f(&iota(6), &[2, 3]);
        let cb = f(&[10.0, 20.0], &[2]);
        let g = node(
            "Gemm",
            vec![
                ("transA", Attr::Int(1)),
                ("transB", Attr::Int(1)),
                ("alpha", Attr::Float(2.0)),
                ("beta", Attr::Float(0.5)),
            ],
            1,
        );
        let y = run1(&g, 13, &[Some(&a), Some(&b), Some(&cb)]);
        // Aᵀ = [[0,2,4],[1,3,5]], Bᵀ = [[0,3],[1,4],[2,5]]
        assert_eq!(
            y.as_f32().unwrap(),
            &[
                2.0 * 10.0 + 5.0,
                2.0 * 28.0 + 10.0,
                2.0 * 13.0 + 5.0,
                2.0 * 40.0 + 10.0
            ]
        );
        let x = f(&[1.0, -2.0, 3.0], &[3]);
        let one = f(&[1.0], &[]);
        let y = run1(&node("Min", vec![], 1), 13, &[Some(&x), Some(&one)]);
        assert_eq!(y.as_f32().unwrap(), &[1.0, -2.0, 1.0]);
        let y = run1(&node("Sub", vec![], 1), 13, &[Some(&one), Some(&x)]);
        assert_eq!(y.as_f32().unwrap(), &[0.0, 3.0, -2.0]);
        let y = run1(&node("Relu", vec![], 1), 13, &[Some(&x)]);
        assert_eq!(y.as_f32().unwrap(), &[1.0, 0.0, 3.0]);
        let (p, q) = (i(&[7, -7]), i(&[2, 2]));
        let y = run1(&node("Div", vec![], 1), 13, &[Some(&p), Some(&q)]);
        assert_eq!(y.to_i64s().unwrap(), vec![3, -3]);
        let z = i(&[0, 1]);
        assert!(run_node(&node("Div", vec![], 1), 13, &[Some(&p), Some(&z)], None).is_err());
        assert!(run_node(&node("Add", vec![], 1), 13, &[Some(&x), Some(&p)], None).is_err());
    }

    #[test]
    fn shape_cast_range_constant_of_shape_softmax() {
        let x = f(&iota(24), &[2, 3, 4]);
        let s = run1(
            &node("Shape", vec![("start", Attr::Int(-2))], 1),
            15,
            &[Some(&x)],
        );
        assert_eq!(s.to_i64s().unwrap(), vec![3, 4]);
        let c = run1(
            &node("Cast", vec![("to", Attr::Int(1))], 1),
            13,
            &[Some(&s)],
        );
        assert_eq!(c.as_f32().unwrap(), &[3.0, 4.0]);
        let r = run1(
            &node("Range", vec![], 1),
            13,
            &[
                Some(&f(&[1.0], &[])),
                Some(&f(&[2.0], &[])),
                Some(&f(&[0.25], &[])),
            ],
        );
        assert_eq!(r.as_f32().unwrap(), &[1.0, 1.25, 1.5, 1.75]);
        let r = run1(
            &node("Range", vec![], 1),
            13,
            &[Some(&i(&[5])), Some(&i(&[0])), Some(&i(&[-2]))],
        );
        assert_eq!(r.to_i64s().unwrap(), vec![5, 3, 1]);
        let z = run1(
            &node("ConstantOfShape", vec![], 1),
            13,
            &[Some(&i(&[2, 2]))],
        );
        assert_eq!(z.as_f32().unwrap(), &[0.0; 4]);
        let y = run1(&node("Softmax", vec![], 1), 13, &[Some(&x)]);
        let v = y.as_f32().unwrap();
        let sum: f32 = v[..4].iter().sum();
        assert!((sum - 1.0).abs() < 1e-6 && v[3] > v[0]);
        let y = run1(
            &node("LogSoftmax", vec![("axis", Attr::Int(1))], 1),
            13,
            &[Some(&x)],
        );
        let v = y.as_f32().unwrap();
        let total: f32 = [v[0], v[4], v[8]].iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
