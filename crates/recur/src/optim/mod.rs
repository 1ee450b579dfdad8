//! Optimizers and gradient clipping over flat parameter buffers.
//!
//! Parameters and gradients are the flat buffers the layers lay out
//! ([`crate::Recurrent::params`], [`crate::model::Linear::params`]); an optimizer keeps its
//! state (momentum) in a buffer of the same layout, so its update is one loop and its state is
//! one write in a checkpoint. The update formulas are PyTorch's, element for element; since
//! they are elementwise, one optimizer per module gives the same numbers as one optimizer over
//! the modules' concatenation.

pub mod adagrad;
pub mod adam;
pub mod clip;
pub mod rmsprop;
pub mod sgd;

pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig, AmsGrad, WeightDecay};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use rmsprop::{Centered, Rmsprop, RmspropConfig};
pub use sgd::{Nesterov, Sgd, SgdConfig};

use crate::Result;

/// One update rule over a flat buffer.
pub trait Optimizer<T> {
    /// Updates `params` in place from `grads` (the same layout and length).
    ///
    /// # Errors
    /// [`crate::Error::Length`] when a buffer's length differs from the optimizer's.
    fn step(&mut self, params: &mut [T], grads: &[T]) -> Result<()>;

    /// The learning rate the next step will use.
    fn lr(&self) -> f64;

    /// Sets the learning rate (what a schedule does between steps).
    ///
    /// # Errors
    /// [`crate::Error::Config`] when `lr` is not a finite number ≥ 0.
    fn set_lr(&mut self, lr: f64) -> Result<()>;
}
