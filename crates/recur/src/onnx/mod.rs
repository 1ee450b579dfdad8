//! ONNX: run `.onnx` models whose recurrent work is `LSTM`, `GRU` and `RNN` nodes on recur's
//! engine, read and write tensor files, and export recur's models as ONNX.
//!
//! - [`OnnxModel`]: load a model ([`OnnxModel::load`]), check it (every op known, every
//!   value produced before use, initializers well formed) and run it ([`OnnxModel::run`]).
//!   The recurrent nodes take every attribute and input of the opset-22 spec (see
//!   `recurrent.rs` for the mapping onto [`crate::Recurrent`]); the ops around them are those
//!   `torch.onnx.export` emits for `nn.LSTM` / `nn.GRU` / `nn.RNN` stacks and
//!   embedding → recurrent → linear models ([`SUPPORTED_OPS`]). Anything else is an
//!   [`crate::Error::Unsupported`] naming the node and its op type, at load time.
//! - [`export_recurrent`], [`export_sequence_model`]: recur's models as ONNX graphs with
//!   PyTorch's inputs and outputs; [`import_recurrent`]: a graph that is a recurrent stack
//!   back as a [`crate::Recurrent`].
//! - [`read_tensor`], [`write_tensor`]: ONNX `TensorProto` (`.pb`) and NumPy (`.npy`) files.
//! - [`conformance`]: ONNX backend-test case folders, run and compared as ONNX's runner does.
//! - [`proto`]: the subset of `onnx.proto` recur reads and writes, as prost messages.
//!
//! Files are untrusted input: a truncated or corrupt file, a tensor whose data disagrees
//! with its dims, negative or oversized dims (every tensor is bounded by [`MAX_ELEMENTS`]),
//! a missing initializer or a cycle is a typed error, never a panic. Initializers stored as
//! external data are read from their files beside the model, which must lie inside the
//! model's folder and hold the bytes the tensor's dims need.

pub mod conformance;
mod export;
mod external;
mod graph;
mod import;
mod node;
mod ops;
pub mod proto;
mod recurrent;
mod tensor_file;
mod value;

pub use export::{
    EXPORT_IR_VERSION, EXPORT_OPSET, ExportOptions, export_recurrent, export_sequence_model,
    with_metadata,
};
pub use graph::{DEFAULT_RUN_BUDGET, MAX_OPSET, MIN_OPSET, OnnxModel, ValueInfo};
pub use import::{PROBE_TOL, import_recurrent};
pub use ops::SUPPORTED as SUPPORTED_OPS;
pub use tensor_file::{
    TensorFormat, read_tensor, tensor_from_bytes, tensor_to_bytes, write_tensor,
};
pub use value::{Data, MAX_ELEMENTS, MAX_RANK, Value};
