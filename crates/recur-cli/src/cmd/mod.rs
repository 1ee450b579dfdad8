//! One module per subcommand.

pub mod bench;
pub mod compare;
pub mod convert;
pub mod eval;
pub mod gradflow;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod plot;
pub mod predict;
pub mod sample;
pub mod summary;
pub mod train;
