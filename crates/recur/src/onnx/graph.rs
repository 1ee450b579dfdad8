//! A loaded ONNX graph: checked once at load time (every op known, every value produced
//! before it is used, initializers well formed), then run node by node in graph order.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use prost::Message;

use super::external;
use super::node::{Attr, Node};
use super::ops;
use super::proto::{
    AttributeProto, DimValue, GraphProto, ModelProto, ValueInfoProto, attribute_type,
};
use super::value::Value;
use crate::error::{Error, Result, Shape};
use crate::layer::Recurrent;

/// The opset versions recur's runner implements the default domain's ops for. Older files
/// use attributes where newer ones use inputs (`Squeeze` axes, `Slice` starts, …); both are
/// read.
pub const MIN_OPSET: i64 = 7;
/// See [`MIN_OPSET`].
pub const MAX_OPSET: i64 = 23;

/// Element type and (partly symbolic) shape of a graph input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueInfo {
    pub name: String,
    /// ONNX `TensorProto.DataType`, 0 when the file does not say.
    pub elem_type: i32,
    /// Each dim: `Some(size)` when fixed, `None` when symbolic or unknown; `None` for the
    /// whole shape when the file gives none.
    pub shape: Option<Vec<Option<usize>>>,
}

/// An ONNX model recur can run: its graph checked and its initializers decoded.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    file: String,
    opset: i64,
    producer: String,
    metadata: Vec<(String, String)>,
    inputs: Vec<ValueInfo>,
    outputs: Vec<ValueInfo>,
    pub(crate) initializers: HashMap<String, Value>,
    pub(crate) nodes: Vec<Node>,
    /// Per node: the engine models of a recurrent node whose weights are initializers, built
    /// on its first run and reused.
    prepared: Vec<OnceLock<Vec<Recurrent<f32>>>>,
}

fn format_err(file: &str, reason: impl Into<String>) -> Error {
    Error::OnnxFormat {
        file: file.to_string(),
        reason: reason.into(),
    }
}

fn value_info(v: &ValueInfoProto) -> ValueInfo {
    let tensor = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    ValueInfo {
        name: v.name.clone(),
        elem_type: tensor.map_or(0, |t| t.elem_type),
        shape: tensor.and_then(|t| t.shape.as_ref()).map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(DimValue::DimValue(n)) => usize::try_from(n).ok(),
                    _ => None,
                })
                .collect()
        }),
    }
}

fn attr(file: &str, node: &str, a: &AttributeProto) -> Result<Attr> {
    let mut t = a.r#type;
    if t == 0 {
        // IR version 1 files leave the type out: take the field that is set.
        t = if a.t.is_some() {
            attribute_type::TENSOR
        } else if a.g.is_some() {
            attribute_type::GRAPH
        } else if !a.floats.is_empty() {
            attribute_type::FLOATS
        } else if !a.ints.is_empty() {
            attribute_type::INTS
        } else if !a.strings.is_empty() {
            attribute_type::STRINGS
        } else if !a.s.is_empty() {
            attribute_type::STRING
        } else if a.f != 0.0 {
            attribute_type::FLOAT
        } else {
            attribute_type::INT
        };
    }
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| {
            format_err(
                file,
                format!("node `{node}`: attribute `{}` is not UTF-8", a.name),
            )
        })
    };
    Ok(match t {
        attribute_type::FLOAT => Attr::Float(a.f),
        attribute_type::INT => Attr::Int(a.i),
        attribute_type::STRING => Attr::Str(utf8(&a.s)?),
        attribute_type::TENSOR => Attr::Tensor(Value::from_proto(
            file,
            a.t.as_ref().ok_or_else(|| {
                format_err(
                    file,
                    format!("node `{node}`: attribute `{}` has no tensor", a.name),
                )
            })?,
        )?),
        attribute_type::FLOATS => Attr::Floats(a.floats.clone()),
        attribute_type::INTS => Attr::Ints(a.ints.clone()),
        attribute_type::STRINGS => Attr::Strings(
            a.strings
                .iter()
                .map(|s| utf8(s))
                .collect::<Result<Vec<_>>>()?,
        ),
        other => {
            return Err(Error::Unsupported(format!(
                "onnx node `{node}`: attribute `{}` of type {other} (graphs, sparse tensors, type protos) is not one recur reads",
                a.name
            )));
        }
    })
}

impl OnnxModel {
    /// Reads and checks an ONNX model file, and the external data files of its initializers
    /// from its folder (see the `external` module: relative paths inside the folder only, sizes
    /// checked before reading).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read, otherwise as [`OnnxModel::from_bytes`].
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let bytes = crate::io::read_limited(path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        Self::parse(&file, &bytes, Some(dir))
    }

    /// Parses and checks an ONNX model; `file` names it in errors.
    ///
    /// # Errors
    /// [`Error::OnnxFormat`] for bytes that are not an ONNX model (truncated or corrupt
    /// protobuf, no graph, no default-domain opset), a malformed initializer (see
    /// [`Value::from_proto`]), a node input that no graph input, initializer or earlier node
    /// provides (a missing initializer, or nodes out of topological order: a cycle), a graph
    /// output nothing produces, a value produced twice; [`Error::TensorDtype`] for an
    /// initializer of an element type recur does not compute in; [`Error::Unsupported`]
    /// naming the node and op type for an op (or domain, or opset version) recur does not
    /// run, and for sparse initializers or model-local functions. An initializer with
    /// external data is an error here (bytes have no folder to find its file in):
    /// [`OnnxModel::load`] reads it.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Self> {
        Self::parse(file, bytes, None)
    }

    /// [`OnnxModel::from_bytes`], with initializers' external data read from `dir` (the
    /// model's folder) when there is one.
    fn parse(file: &str, bytes: &[u8], dir: Option<&std::path::Path>) -> Result<Self> {
        let model = ModelProto::decode(bytes)
            .map_err(|e| format_err(file, format!("protobuf decoding failed: {e}")))?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .ok_or_else(|| {
                format_err(
                    file,
                    "no opset_import for the default domain (not an ONNX model, or truncated)",
                )
            })?;
        if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
            return Err(Error::Unsupported(format!(
                "{file}: opset {opset} is outside the versions recur runs ({MIN_OPSET} to {MAX_OPSET})"
            )));
        }
        let mut graph: GraphProto = model
            .graph
            .ok_or_else(|| format_err(file, "the model has no graph"))?;
        if !graph.sparse_initializer.is_empty() {
            return Err(Error::Unsupported(format!(
                "{file}: sparse initializers are not supported"
            )));
        }
        for t in &mut graph.initializer {
            if external::is_external(t) {
                external::load(file, dir, t)?;
            }
        }
        let mut initializers = HashMap::new();
        for t in &graph.initializer {
            let v = Value::from_proto(file, t)?;
            if initializers.insert(t.name.clone(), v).is_some() {
                return Err(format_err(
                    file,
                    format!("initializer `{}` is given twice", t.name),
                ));
            }
        }
        let inputs: Vec<ValueInfo> = graph
            .input
            .iter()
            .filter(|v| !initializers.contains_key(&v.name))
            .map(value_info)
            .collect();
        let outputs: Vec<ValueInfo> = graph.output.iter().map(value_info).collect();

        let mut available: HashSet<String> = initializers.keys().cloned().collect();
        available.extend(inputs.iter().map(|v| v.name.clone()));
        let produced_later: HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .collect();
        let mut nodes = Vec::with_capacity(graph.node.len());
        for (index, n) in graph.node.iter().enumerate() {
            let name = if n.name.is_empty() {
                format!("#{index}")
            } else {
                n.name.clone()
            };
            if !(n.domain.is_empty() || n.domain == "ai.onnx") {
                return Err(Error::Unsupported(format!(
                    "{file}: onnx node `{name}`: op type {} of domain `{}` is not one recur runs",
                    n.op_type, n.domain
                )));
            }
            if !ops::SUPPORTED.contains(&n.op_type.as_str()) {
                return Err(Error::Unsupported(format!(
                    "{file}: onnx node `{name}`: op type {} is not one recur runs (it runs {})",
                    n.op_type,
                    ops::SUPPORTED.join(", ")
                )));
            }
            for i in n.input.iter().filter(|i| !i.is_empty()) {
                if !available.contains(i) {
                    let reason = if produced_later.contains(i.as_str()) {
                        format!(
                            "node `{name}` uses `{i}` before the node that produces it \
                             (the nodes are not in topological order, or form a cycle)"
                        )
                    } else {
                        format!(
                            "node `{name}` uses `{i}`, which no graph input, initializer or \
                             node provides (a missing initializer?)"
                        )
                    };
                    return Err(format_err(file, reason));
                }
            }
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                if !available.insert(o.clone()) {
                    return Err(format_err(
                        file,
                        format!("node `{name}` produces `{o}`, which already has a value"),
                    ));
                }
            }
            let mut attrs = HashMap::new();
            for a in &n.attribute {
                if !a.ref_attr_name.is_empty() {
                    return Err(format_err(
                        file,
                        format!(
                            "node `{name}`: attribute `{}` refers to a function attribute outside a function",
                            a.name
                        ),
                    ));
                }
                attrs.insert(a.name.clone(), attr(file, &name, a)?);
            }
            nodes.push(Node {
                name,
                op_type: n.op_type.clone(),
                inputs: n
                    .input
                    .iter()
                    .map(|i| (!i.is_empty()).then(|| i.clone()))
                    .collect(),
                outputs: n.output.clone(),
                attrs,
            });
        }
        for o in &outputs {
            if !available.contains(&o.name) {
                return Err(format_err(
                    file,
                    format!("graph output `{}` is produced by no node", o.name),
                ));
            }
        }
        Ok(Self {
            prepared: (0..nodes.len()).map(|_| OnceLock::new()).collect(),
            file: file.to_string(),
            opset,
            producer: model.producer_name,
            metadata: model
                .metadata_props
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect(),
            inputs,
            outputs,
            initializers,
            nodes,
        })
    }

    /// The graph inputs that are not initializers, in graph order: what [`OnnxModel::run`]
    /// needs.
    pub fn inputs(&self) -> &[ValueInfo] {
        &self.inputs
    }

    /// The graph outputs, in graph order.
    pub fn outputs(&self) -> &[ValueInfo] {
        &self.outputs
    }

    /// The default domain's opset version the file imports.
    /// The initializers (the model's weights), by name.
    pub fn initializers(&self) -> Vec<(&str, &Value)> {
        let mut v: Vec<(&str, &Value)> = self
            .initializers
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The model's `metadata_props` (key, value), in the file's order.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// The value of metadata key `key`, if the file has it.
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `producer_name` the file gives (e.g. `pytorch`), empty when none.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// The op types of the nodes, in graph order.
    pub fn op_types(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.op_type.as_str())
    }

    /// Runs the graph on `inputs` (name → value; every graph input must be given, and an
    /// initializer may be overridden by a value of the same name) and returns every graph
    /// output, in graph order.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for an input the graph does not have or a missing one,
    /// [`Error::TensorDtype`] / [`Error::Shape`] for an input whose element type or fixed
    /// dims contradict the graph's declaration, [`Error::OnnxNode`] (or an error of the
    /// recurrent engine) naming the node that cannot run on what it is given.
    pub fn run(&self, inputs: &[(&str, Value)]) -> Result<Vec<(String, Value)>> {
        self.run_within(inputs, DEFAULT_RUN_BUDGET)
    }

    /// [`OnnxModel::run`] holding no more than `max_bytes` of values at any time (the inputs
    /// given and every value computed and not yet dropped; the model's initializers aside):
    /// each node's output is checked against what is left before it is allocated (a few
    /// hundred bytes of graph can otherwise ask for gigabytes, one bounded tensor after
    /// another).
    ///
    /// # Errors
    /// As [`OnnxModel::run`]; [`Error::OnnxNode`] naming the node whose output would take the
    /// run past `max_bytes`, and [`Error::Unsupported`] when the inputs alone do.
    pub fn run_within(
        &self,
        inputs: &[(&str, Value)],
        max_bytes: u64,
    ) -> Result<Vec<(String, Value)>> {
        // The budget is the calling thread's for the run, and lifted after it however the
        // run ends.
        struct Lift;
        impl Drop for Lift {
            fn drop(&mut self) {
                ops::set_budget(u64::MAX, 0);
            }
        }
        let _lift = Lift;
        let given: u64 = inputs.iter().map(|(_, v)| value_bytes(v)).sum();
        if given > max_bytes {
            return Err(Error::Unsupported(format!(
                "{}: the inputs take {given} bytes, more than the run's memory budget of \
                 {max_bytes} bytes",
                self.file
            )));
        }
        self.run_budgeted(inputs, max_bytes, given)
    }

    fn run_budgeted(
        &self,
        inputs: &[(&str, Value)],
        limit: u64,
        mut held: u64,
    ) -> Result<Vec<(String, Value)>> {
        let mut env: HashMap<&str, Value> = HashMap::new();
        for (name, v) in inputs {
            let declared = self.inputs.iter().find(|i| i.name == *name);
            if declared.is_none() && !self.initializers.contains_key(*name) {
                return Err(Error::Unsupported(format!(
                    "{}: the graph has no input `{name}` (its inputs: {})",
                    self.file,
                    self.input_names()
                )));
            }
            if let Some(d) = declared {
                check_declared(&self.file, d, v)?;
            }
            env.insert(name, v.clone());
        }
        for i in &self.inputs {
            if !env.contains_key(i.name.as_str()) {
                return Err(Error::Unsupported(format!(
                    "{}: graph input `{}` was not given (its inputs: {})",
                    self.file,
                    i.name,
                    self.input_names()
                )));
            }
        }
        // Each value is dropped after its last use, so that a long graph keeps only what is
        // still needed.
        let mut last_use: HashMap<&str, usize> = HashMap::new();
        for (k, n) in self.nodes.iter().enumerate() {
            for i in n.inputs.iter().flatten() {
                last_use.insert(i, k);
            }
        }
        let wanted: HashSet<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
        for (k, node) in self.nodes.iter().enumerate() {
            // Every input was produced or given (checked at load), unless the node that
            // declares it left it out at run time (an optional output it does not compute).
            let args: Vec<Option<&Value>> = node
                .inputs
                .iter()
                .map(|i| {
                    i.as_deref()
                        .map(|i| {
                            env.get(i).or_else(|| self.initializers.get(i)).ok_or_else(|| {
                                node.err(format!(
                                    "input `{i}` was not computed (its node does not produce that optional output)"
                                ))
                            })
                        })
                        .transpose()
                })
                .collect::<Result<_>>()?;
            // W, R, B and P from initializers nobody overrode: a recurrent node's models can
            // be kept
            let constant_weights = node.inputs.iter().enumerate().all(|(j, i)| {
                !matches!(j, 1 | 2 | 3 | 7)
                    || i.as_deref()
                        .is_none_or(|i| self.initializers.contains_key(i) && !env.contains_key(i))
            });
            let prepared = constant_weights.then_some(&self.prepared[k]);
            ops::set_budget(limit, held);
            let results = ops::run_node(node, self.opset, &args, prepared)?;
            // what no check before an allocation saw (an op's scratch, a recurrent node's
            // outputs) is counted here
            let made: u64 = results.iter().flatten().map(value_bytes).sum();
            if held.saturating_add(made) > limit {
                return Err(ops::over_budget(node, made, held, limit));
            }
            for (name, v) in node.outputs.iter().zip(results) {
                if let (false, Some(v)) = (name.is_empty(), v) {
                    held += value_bytes(&v);
                    if let Some(old) = env.insert(name, v) {
                        held -= value_bytes(&old);
                    }
                }
            }
            for i in node.inputs.iter().flatten() {
                if last_use.get(i.as_str()) == Some(&k)
                    && !wanted.contains(i.as_str())
                    && let Some(v) = env.remove(i.as_str())
                {
                    held -= value_bytes(&v);
                }
            }
        }
        self.outputs
            .iter()
            .map(|o| {
                let v = env
                    .get(o.name.as_str())
                    .or_else(|| self.initializers.get(&o.name))
                    .cloned()
                    .ok_or_else(|| {
                        Error::Unsupported(format!(
                            "{}: graph output `{}` was not computed (an optional output its node left out)",
                            self.file, o.name
                        ))
                    })?;
                Ok((o.name.clone(), v))
            })
            .collect()
    }

    fn input_names(&self) -> String {
        self.inputs
            .iter()
            .map(|i| format!("`{}`", i.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The memory budget of [`OnnxModel::run`]: 8 GiB.
pub const DEFAULT_RUN_BUDGET: u64 = 8 << 30;

/// The bytes a value's elements take.
fn value_bytes(v: &Value) -> u64 {
    let width = match v.data() {
        super::value::Data::F32(_) | super::value::Data::I32(_) => 4,
        super::value::Data::F64(_) | super::value::Data::I64(_) => 8,
    };
    (v.data().len() as u64).saturating_mul(width)
}

/// Checks a given input against the graph's declaration of it.
fn check_declared(file: &str, d: &ValueInfo, v: &Value) -> Result<()> {
    if d.elem_type != 0 && d.elem_type != v.data().onnx_type() {
        return Err(Error::TensorDtype {
            file: file.to_string(),
            name: d.name.clone(),
            dtype: v.type_name(),
            expected: super::proto::data_type::name(d.elem_type),
        });
    }
    if let Some(shape) = &d.shape {
        let fits = shape.len() == v.shape().len()
            && shape
                .iter()
                .zip(v.shape())
                .all(|(want, &got)| want.is_none_or(|w| w == got));
        if !fits {
            return Err(Error::Shape {
                what: format!("input `{}` (0 = any size)", d.name),
                expected: Shape(shape.iter().map(|d| d.unwrap_or(0)).collect()),
                got: Shape(v.shape().to_vec()),
            });
        }
    }
    Ok(())
}
