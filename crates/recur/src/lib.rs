//! # recur
//!
//! Gated recurrent neural networks (LSTM, GRU, Elman RNN) with hand-derived
//! backpropagation through time, exact to PyTorch, built for CPU speed.
//!
//! ```
//! use recur::{Call, CellKind, Direction, OutputGrad, Recurrent, RecurrentConfig, Tensor};
//!
//! let config = RecurrentConfig {
//!     cell: CellKind::lstm(),
//!     input_size: 3,
//!     hidden_size: 8,
//!     num_layers: 2,
//!     direction: Direction::Bidirectional,
//!     ..Default::default()
//! };
//! let lstm = Recurrent::<f32>::new(config, 42)?;
//! // [seq_len = 5, batch = 2, input_size = 3]
//! let x = Tensor::new(vec![0.1f32; 5 * 2 * 3], &[5, 2, 3])?;
//! // no dropout: a training call needs no seed
//! let (out, tape) = lstm.forward_train(&x, Call::new().lengths(&[5, 3]))?;
//! assert_eq!(out.output.shape(), &[5, 2, 16]);
//! assert_eq!(out.state.h.shape(), &[4, 2, 8]);
//!
//! let mut grads = vec![0.0f32; lstm.params().len()];
//! let dy = Tensor::new(vec![1.0f32; 5 * 2 * 16], &[5, 2, 16])?;
//! let dx = lstm.backward(&tape, OutputGrad { output: Some(dy.view()), ..Default::default() }, &mut grads)?;
//! assert_eq!(dx.input.shape(), &[5, 2, 3]);
//! # Ok::<(), recur::Error>(())
//! ```
//!
//! ## Conventions
//! - PyTorch's everywhere: gate orders (LSTM i, f, g, o; GRU r, z, n), weight layouts
//!   (`weight_ih_l{k}`: `[G * hidden_size, input]`), state_dict names, `[seq_len, batch, ·]`
//!   tensors with `BatchLayout::BatchFirst` as the option, `h_n` index `layer * D + direction`.
//! - Every cell's equations and derived backward are at the top of its module in [`cell`].
//! - Numbers are generic over `f32` and `f64` ([`Float`]).
//! - The library never prints; every failure is an [`Error`].

pub mod cell;
pub mod data;
mod error;
pub mod io;
// The kernel's products, panels and thread pairs are recur's own business (`unsafe` lives
// there): only `Float` and `Activation` leave it, below. The feature `internals` opens it,
// unstable and hidden, for the criterion benches and the tests that ask which kernel ran.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod kernel;
#[cfg(not(feature = "internals"))]
mod kernel;
pub mod layer;
pub mod model;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod optim;
mod tensor;

pub use cell::{
    CellKind, GruCell, InputForget, Leak, LstmCell, Peepholes, ResetPlacement, RnnCell,
};
pub use error::{EXCERPT_CHARS, Error, Result, Shape, excerpt, excerpt_of};
pub use kernel::activation::Activation;
pub use kernel::scalar::Float;
pub use layer::{
    BatchLayout, Bias, Call, Direction, InputGrad, Output, OutputGrad, ParamInfo, ParamKind,
    ParamLayout, Recurrent, RecurrentConfig, State, StateGradNorms, StateView, Stepper, Tape,
    WeightFormat,
};
pub use model::{MemoryEstimate, estimate_memory};
pub use tensor::{Tensor, TensorView};

/// The Rust examples of README.md and docs/ compile and run as doc tests.
#[cfg(doctest)]
mod doc_pages {
    #[doc = include_str!("../../../README.md")]
    struct Readme;
    #[doc = include_str!("../../../docs/library.md")]
    struct Library;
    #[doc = include_str!("../../../docs/pytorch.md")]
    struct Pytorch;
    #[cfg(feature = "onnx")]
    #[doc = include_str!("../../../docs/onnx.md")]
    struct Onnx;
}
