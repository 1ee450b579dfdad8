//! One module per subcommand.

pub mod bench;
pub mod convert;
pub mod onnx;
pub mod train;
