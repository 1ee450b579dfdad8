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
//! let dx = lstm.backward(&tape, OutputGrad { output: Some(&dy), ..Default::default() }, &mut grads)?;
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
pub mod kernel;
pub mod layer;
pub mod model;
pub mod onnx;
pub mod optim;
mod tensor;

pub use cell::{
    CellKind, GruCell, InputForget, Leak, LstmCell, Peepholes, ResetPlacement, RnnCell,
};
pub use error::{Error, Result, Shape};
pub use kernel::activation::Activation;
pub use layer::{
    BatchLayout, Bias, Call, Direction, InputGrad, Output, OutputGrad, ParamInfo, ParamKind,
    ParamLayout, Recurrent, RecurrentConfig, State, Stepper, Tape, WeightFormat,
};
pub use tensor::Tensor;

/// The scalar types recur computes in: `f32` for speed, `f64` for gradient checks.
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::iter::Sum
    + Default
    + Send
    + Sync
    + std::fmt::Debug
    + std::fmt::Display
    + 'static
{
    /// `act(x)`: what [`Float::activate_slice`] gives for each element.
    fn activate(act: Activation, x: Self) -> Self;

    /// `xs[j] = act(xs[j])` for every j, the activation pass of a gate. `f64` uses the exact
    /// functions; `f32` the vectorised sigmoid and tanh of [`kernel::fast_f32`] (≤ 1.8e-7
    /// relative error against the exact ones).
    fn activate_slice(act: Activation, xs: &mut [Self]);

    // The panel kernel exists for f32 only: by default a type has none, and every method
    // below says so (`None`, `false`: the caller takes the general path).

    /// `b` packed for the panel kernel ([`kernel::panels`]) where this type and CPU have one
    /// (`f32` with AVX-512F), else `None`.
    fn pack_panels(_b: kernel::Mat<'_, Self>) -> Option<kernel::Panels> {
        None
    }

    /// `b` rounded to bf16 and packed for the bf16 panel kernel where this type and CPU
    /// have one (`f32` with AVX-512 BF16), else `None`.
    fn pack_panels_bf16(_b: kernel::Mat<'_, Self>) -> Option<kernel::Panels> {
        None
    }

    /// `dst (=|+=) a · b` (with `bias`: `dst = bias + a · b`, `acc` ignored) on the panel
    /// kernel, where this type and CPU have one and the operands suit it: `a` row-major or
    /// transposed, and `b` carrying its panels or row-major and worth reading in place
    /// ([`kernel::panels::matmul_unpacked`]). Returns whether it ran (`false`: the caller
    /// runs the general GEMM).
    fn matmul_panels(
        _dst: &mut [Self],
        _ld_dst: usize,
        _a: kernel::Mat<'_, Self>,
        _b: kernel::Mat<'_, Self>,
        _acc: kernel::Accumulate,
        _bias: Option<&[Self]>,
    ) -> bool {
        false
    }

    /// `dst₁ (=|+=) a · b₁` and `dst₂ (=|+=) a · b₂` in one pass over `a` on the panel
    /// kernel ([`kernel::panels::matmul_unpacked_two`]) where this type and CPU have one
    /// and the operands suit it; returns whether it ran.
    fn matmul_two(
        _a: kernel::Mat<'_, Self>,
        _first: (&mut [Self], usize, kernel::Mat<'_, Self>),
        _second: (&mut [Self], usize, kernel::Mat<'_, Self>),
        _acc: kernel::Accumulate,
    ) -> bool {
        false
    }
}

impl Float for f32 {
    #[inline]
    fn activate(act: Activation, x: Self) -> Self {
        kernel::activation::apply_f32(act, x)
    }

    #[inline]
    fn activate_slice(act: Activation, xs: &mut [Self]) {
        kernel::activation::apply_slice_f32(act, xs);
    }

    fn pack_panels(b: kernel::Mat<'_, Self>) -> Option<kernel::Panels> {
        kernel::Panels::pack(b)
    }

    fn pack_panels_bf16(b: kernel::Mat<'_, Self>) -> Option<kernel::Panels> {
        kernel::Panels::pack_bf16(b)
    }

    #[inline]
    fn matmul_panels(
        dst: &mut [Self],
        ld_dst: usize,
        a: kernel::Mat<'_, Self>,
        b: kernel::Mat<'_, Self>,
        acc: kernel::Accumulate,
        bias: Option<&[Self]>,
    ) -> bool {
        let row_major = a.col_stride == 1;
        if !row_major && a.row_stride != 1 {
            return false;
        }
        if let Some(p) = b.panels {
            if p.is_bf16() && !row_major {
                return false;
            }
            let cols = b.panels_at..b.panels_at + b.cols;
            kernel::panels::matmul_panel_columns(dst, ld_dst, a, p, cols, acc, bias);
            return true;
        }
        if bias.is_none()
            && b.col_stride == 1
            && kernel::panels::unpacked_worth(a.rows, b.cols, a.cols)
        {
            kernel::panels::matmul_unpacked(dst, ld_dst, a, b, acc);
            return true;
        }
        false
    }

    fn matmul_two(
        a: kernel::Mat<'_, Self>,
        first: (&mut [Self], usize, kernel::Mat<'_, Self>),
        second: (&mut [Self], usize, kernel::Mat<'_, Self>),
        acc: kernel::Accumulate,
    ) -> bool {
        let suits = (a.col_stride == 1 || a.row_stride == 1)
            && first.2.col_stride == 1
            && second.2.col_stride == 1
            && kernel::panels::unpacked_worth(a.rows, first.2.cols + second.2.cols, a.cols);
        if suits {
            kernel::panels::matmul_unpacked_two(a, first, second, acc);
        }
        suits
    }
}

impl Float for f64 {
    #[inline]
    fn activate(act: Activation, x: Self) -> Self {
        act.apply_exact(x)
    }

    #[inline]
    fn activate_slice(act: Activation, xs: &mut [Self]) {
        kernel::activation::apply_slice_exact(act, xs);
    }
}

/// The Rust examples of README.md and docs/ compile and run as doc tests.
#[cfg(doctest)]
mod doc_pages {
    #[doc = include_str!("../../../README.md")]
    struct Readme;
    #[doc = include_str!("../../../docs/library.md")]
    struct Library;
    #[doc = include_str!("../../../docs/pytorch.md")]
    struct Pytorch;
    #[doc = include_str!("../../../docs/onnx.md")]
    struct Onnx;
}
