//! A minimal owned, row-major tensor, the currency of recur's public API, and its borrowed
//! view, which the entry points read.

use crate::error::{Error, Result, Shape};
use crate::kernel::scalar::Float;

/// An owned row-major tensor: a shape and its values.
///
/// recur's kernels work on slices; `Tensor` exists so that the public API can say and check
/// shapes (`[seq_len, batch, input_size]`) instead of trusting bare lengths.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T: Float> Tensor<T> {
    /// Wraps `data` as a tensor of `shape`.
    ///
    /// # Errors
    /// [`Error::Length`] when `data.len()` is not the product of `shape`.
    pub fn new(data: Vec<T>, shape: &[usize]) -> Result<Self> {
        let numel = numel(shape).ok_or_else(|| Error::Length {
            what: "tensor".into(),
            shape: Shape(shape.to_vec()),
            len: data.len(),
        })?;
        if numel != data.len() {
            return Err(Error::Length {
                what: "tensor".into(),
                shape: Shape(shape.to_vec()),
                len: data.len(),
            });
        }
        Ok(Self {
            shape: shape.to_vec(),
            data,
        })
    }

    /// The tensor borrowed, as the entry points read it.
    pub fn view(&self) -> TensorView<'_, T> {
        TensorView {
            shape: &self.shape,
            data: &self.data,
        }
    }

    /// A tensor of zeros.
    ///
    /// # Panics
    /// When the product of `shape` overflows `usize`.
    pub fn zeros(shape: &[usize]) -> Self {
        let n = numel(shape).expect("tensor size overflows usize");
        Self {
            shape: shape.to_vec(),
            data: vec![T::zero(); n],
        }
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values in row-major order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The values in row-major order, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Gives the values back.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Checks the shape, naming the tensor in the error.
    pub(crate) fn expect_shape(&self, what: &str, expected: &[usize]) -> Result<()> {
        self.view().expect_shape(what, expected)
    }
}

/// A borrowed row-major tensor: a shape and values owned elsewhere (a [`Tensor`], part of
/// a larger buffer, an array handed over from another language), read in place.
///
/// Every entry point that reads a tensor ([`crate::Recurrent::forward`],
/// [`crate::Recurrent::forward_train`], the gradients of [`crate::OutputGrad`], the initial
/// state of [`crate::Call`], ...) takes a view, so that data need not be copied into a
/// [`Tensor`] first; `&Tensor` converts into one (`From`), and [`Tensor::view`] makes one.
///
/// ```
/// # use recur::{Call, Recurrent, RecurrentConfig, TensorView};
/// # let lstm = Recurrent::<f32>::new(RecurrentConfig { input_size: 3, hidden_size: 4, ..Default::default() }, 0)?;
/// let values = vec![0.5f32; 5 * 2 * 3]; // owned by the caller, not copied
/// let x = TensorView::new(&values, &[5, 2, 3])?;
/// let out = lstm.forward(x, Call::new())?;
/// assert_eq!(out.output.shape(), &[5, 2, 4]);
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Debug, PartialEq)]
pub struct TensorView<'a, T> {
    shape: &'a [usize],
    data: &'a [T],
}

impl<T> Clone for TensorView<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for TensorView<'_, T> {}

impl<'a, T> TensorView<'a, T> {
    /// Views `data` as a tensor of `shape`.
    ///
    /// # Errors
    /// [`Error::Length`] when `data.len()` is not the product of `shape`.
    pub fn new(data: &'a [T], shape: &'a [usize]) -> Result<Self> {
        if numel(shape) != Some(data.len()) {
            return Err(Error::Length {
                what: "tensor".into(),
                shape: Shape(shape.to_vec()),
                len: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The values in row-major order.
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// An owned copy.
    pub fn to_tensor(&self) -> Tensor<T>
    where
        T: Clone,
    {
        Tensor {
            shape: self.shape.to_vec(),
            data: self.data.to_vec(),
        }
    }

    /// Checks the shape, naming the tensor in the error.
    pub(crate) fn expect_shape(&self, what: &str, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(crate::error::shape_err(what, expected, self.shape));
        }
        Ok(())
    }
}

impl<'a, T> From<&'a Tensor<T>> for TensorView<'a, T> {
    fn from(t: &'a Tensor<T>) -> Self {
        Self {
            shape: &t.shape,
            data: &t.data,
        }
    }
}

/// Product of the dimensions, `None` on overflow.
pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}
