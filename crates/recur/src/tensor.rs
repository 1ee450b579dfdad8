//! A minimal owned, row-major tensor: the currency of recur's public API.

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
        if self.shape != expected {
            return Err(crate::error::shape_err(what, expected, &self.shape));
        }
        Ok(())
    }
}

/// Product of the dimensions, `None` on overflow.
pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}
