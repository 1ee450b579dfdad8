//! Losses, each with its gradient beside it.
//!
//! Mean squared error, PyTorch's `nn.MSELoss` (`F.mse_loss`), over N elements:
//! ```text
//! (1) e = ŷ − y
//! (2) L = (1/N) Σ e²        (Reduction::Mean, PyTorch's default)
//!     L =       Σ e²        (Reduction::Sum)
//! ```
//! Backward, given dL (1 when L is the loss being minimised):
//! ```text
//! (2)ᵀ de = dL · 2e / N     (Mean)      de = dL · 2e     (Sum)
//! (1)ᵀ dŷ = de
//! ```
//! Unlike PyTorch, shapes are not broadcast: prediction and target must have the same shape.

use crate::error::{Error, Result};
use crate::kernel::scalar::Float;
use crate::tensor::Tensor;

/// How a loss reduces over its elements (PyTorch's `reduction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over every element (PyTorch's default).
    #[default]
    Mean,
    /// The sum over every element.
    Sum,
}

impl Reduction {
    /// The factor that turns a sum over `n` elements into this reduction.
    fn scale<T: Float>(self, n: usize) -> T {
        match self {
            Reduction::Mean => T::one() / T::from_usize(n).unwrap_or_else(T::one),
            Reduction::Sum => T::one(),
        }
    }
}

/// (1)–(2): the squared error of `pred` against `target`, reduced by `reduction`.
///
/// # Errors
/// [`Error::Shape`] when the shapes differ, [`Error::Empty`] when there are no elements.
pub fn mse_loss<T: Float>(pred: &Tensor<T>, target: &Tensor<T>, reduction: Reduction) -> Result<T> {
    check(pred, target)?;
    let sum: T = pred
        .data()
        .iter()
        .zip(target.data())
        .map(|(&p, &y)| (p - y) * (p - y))
        .sum();
    Ok(sum * reduction.scale(pred.data().len()))
}

/// (2)ᵀ–(1)ᵀ: `∂L/∂pred` of [`mse_loss`], scaled by `dloss` (1 for the loss itself).
///
/// # Errors
/// As [`mse_loss`].
pub fn mse_loss_backward<T: Float>(
    pred: &Tensor<T>,
    target: &Tensor<T>,
    reduction: Reduction,
    dloss: T,
) -> Result<Tensor<T>> {
    check(pred, target)?;
    let two = T::one() + T::one();
    let k = dloss * two * reduction.scale(pred.data().len());
    let grad = pred
        .data()
        .iter()
        .zip(target.data())
        .map(|(&p, &y)| k * (p - y))
        .collect();
    Tensor::new(grad, pred.shape())
}

fn check<T: Float>(pred: &Tensor<T>, target: &Tensor<T>) -> Result<()> {
    target.expect_shape("target", pred.shape())?;
    if pred.data().is_empty() {
        return Err(Error::Empty("mse loss of no elements".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck;

    fn tensors() -> (Tensor<f64>, Tensor<f64>) {
        let pred = Tensor::new(vec![0.3, -1.2, 0.75, 2.0, 0.0, -0.4], &[3, 2]).unwrap();
        let target = Tensor::new(vec![0.5, -1.0, 0.25, 1.5, 0.1, -0.9], &[3, 2]).unwrap();
        (pred, target)
    }

    /// `F.mse_loss(pred, target)` and `F.mse_loss(pred, target, reduction="sum")` in PyTorch
    /// float64 give 0.14 and 0.8400000000000001 for the tensors above.
    #[test]
    fn values_match_pytorch() {
        let (pred, target) = tensors();
        let mean = mse_loss(&pred, &target, Reduction::Mean).unwrap();
        let sum = mse_loss(&pred, &target, Reduction::Sum).unwrap();
        assert!((mean - 0.14).abs() < 1e-15, "{mean}");
        assert!((sum - 0.84).abs() < 1e-15, "{sum}");
    }

    #[test]
    fn gradcheck_prediction() {
        let (pred, target) = tensors();
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let dloss = 0.7;
            let grad = mse_loss_backward(&pred, &target, reduction, dloss).unwrap();
            gradcheck::check(
                &format!("pred ({reduction:?})"),
                pred.data(),
                grad.data(),
                |p| {
                    let p = Tensor::new(p.to_vec(), &[3, 2]).unwrap();
                    dloss * mse_loss(&p, &target, reduction).unwrap()
                },
            );
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let (pred, _) = tensors();
        let target = Tensor::new(vec![0.0; 6], &[6]).unwrap();
        let e = mse_loss(&pred, &target, Reduction::Mean).unwrap_err();
        assert_eq!(e.to_string(), "target: expected shape [3, 2], got [6]");
        let empty = Tensor::<f64>::new(vec![], &[0, 2]).unwrap();
        assert!(matches!(
            mse_loss_backward(&empty, &empty, Reduction::Mean, 1.0),
            Err(Error::Empty(_))
        ));
    }
}
