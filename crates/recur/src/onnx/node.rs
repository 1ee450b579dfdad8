//! One node of a loaded graph, its attributes decoded, and the helpers every op uses to read
//! its arguments. Below the graph, the ops and the recurrent nodes, which all import it.

use std::collections::HashMap;

use super::value::Value;
use crate::error::{Error, Result};

/// An attribute of a node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Attr {
    Float(f32),
    Int(i64),
    Str(String),
    Tensor(Value),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

/// One node, its attributes decoded.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// The node's name, or `#index` when it has none.
    pub name: String,
    pub op_type: String,
    /// `None` for an empty name (an optional input left out).
    pub inputs: Vec<Option<String>>,
    /// `""` for an optional output that is not wanted.
    pub outputs: Vec<String>,
    pub attrs: HashMap<String, Attr>,
}

impl Node {
    /// An [`Error::OnnxNode`] about this node.
    pub fn err(&self, reason: impl Into<String>) -> Error {
        Error::OnnxNode {
            node: self.name.clone(),
            op_type: self.op_type.clone(),
            reason: reason.into(),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Int(i)) => Ok(Some(*i)),
            Some(_) => Err(self.err(format!("attribute `{name}` must be an int"))),
        }
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Float(f)) => Ok(Some(*f)),
            Some(_) => Err(self.err(format!("attribute `{name}` must be a float"))),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<&str>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Str(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(format!("attribute `{name}` must be a string"))),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<&[i64]>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v)),
            Some(_) => Err(self.err(format!("attribute `{name}` must be a list of ints"))),
        }
    }

    pub fn floats(&self, name: &str) -> Result<Option<&[f32]>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v)),
            Some(_) => Err(self.err(format!("attribute `{name}` must be a list of floats"))),
        }
    }

    pub fn strings(&self, name: &str) -> Result<Option<&[String]>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Strings(v)) => Ok(Some(v)),
            Some(_) => Err(self.err(format!("attribute `{name}` must be a list of strings"))),
        }
    }
}

/// Input `k`, which must be present.
pub(crate) fn arg<'a>(node: &Node, args: &[Option<&'a Value>], k: usize) -> Result<&'a Value> {
    args.get(k)
        .copied()
        .flatten()
        .ok_or_else(|| node.err(format!("input {k} is required")))
}

/// Input `k`, or `None` when the node leaves it out.
pub(crate) fn opt<'a>(args: &[Option<&'a Value>], k: usize) -> Option<&'a Value> {
    args.get(k).copied().flatten()
}

/// The data of `v`, which must be FLOAT; `what` names it in the error.
pub(crate) fn f32s<'a>(node: &Node, v: &'a Value, what: &str) -> Result<&'a [f32]> {
    v.as_f32()
        .ok_or_else(|| node.err(format!("{what} must be FLOAT, got {}", v.type_name())))
}
