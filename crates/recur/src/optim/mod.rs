//! Optimizers and gradient clipping over flat parameter buffers.
//!
//! Parameters and gradients are the flat buffers the layers lay out
//! ([`crate::Recurrent::params`], [`crate::model::Linear::params`]); an optimizer keeps its
//! state (momentum) in a buffer of the same layout, so its update is one loop and its state is
//! one write in a checkpoint. The update formulas are PyTorch's, element for element; since
//! they are elementwise, one optimizer per module gives the same numbers as one optimizer over
//! the modules' concatenation. [`AnyOptimizer`] holds whichever one a run configured, and
//! [`LrScheduler`] gives the learning rate of every step ([`schedule`]).

/// What the four optimizers have alike, written once: the accessors `config`, `step_count`
/// (documented by `$step_doc`) and `set_step_count`, and the [`Optimizer`] impl around the
/// optimizer's own `update` (its module's rule) and `config.lr`. Each optimizer keeps its
/// settings in `config` and its step count in `step`.
macro_rules! optimizer_common {
    ($opt:ident, $config:ident, $step_doc:literal) => {
        impl<T: Float> $opt<T> {
            pub fn config(&self) -> &$config {
                &self.config
            }

            #[doc = $step_doc]
            pub fn step_count(&self) -> u64 {
                self.step
            }

            /// Sets the step count (with the state buffers, what resuming from a checkpoint
            /// does).
            pub fn set_step_count(&mut self, step: u64) {
                self.step = step;
            }
        }

        impl<T: Float> Optimizer<T> for $opt<T> {
            fn step(&mut self, params: &mut [T], grads: &[T]) -> Result<()> {
                self.update(params, grads)
            }

            fn lr(&self) -> f64 {
                self.config.lr
            }

            fn set_lr(&mut self, lr: f64) -> Result<()> {
                check_lr(lr)?;
                self.config.lr = lr;
                Ok(())
            }
        }
    };
}

pub mod adagrad;
pub mod adam;
pub mod any;
pub mod clip;
pub mod rmsprop;
pub mod schedule;
pub mod sgd;

pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig, AmsGrad, WeightDecay};
pub use any::{AnyOptimizer, OptimizerConfig};
pub use clip::{clip_grad_norm, clip_grad_value, grad_norm};
pub use rmsprop::{Centered, Rmsprop, RmspropConfig};
pub use schedule::{
    LrScheduler, PlateauConfig, PlateauMode, Schedule, ScheduleConfig, SchedulerState,
    ThresholdMode, Warmup,
};
pub use sgd::{Nesterov, Sgd, SgdConfig};

use crate::error::Result;
use crate::error::{Error, Shape, config_err};
use crate::kernel::scalar::Float;

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

// Shared by the optimizers: argument checks and torch's `lerp`.

/// `a + w (b − a)` as torch's CPU `lerp` computes it (the other branch for |w| ≥ 0.5, so
/// that w = 1 gives b exactly).
#[inline]
pub(crate) fn lerp<T: Float>(a: T, b: T, w: T) -> T {
    let half = T::from_f64(0.5).unwrap_or_else(T::one);
    if w.abs() < half {
        a + w * (b - a)
    } else {
        b - (b - a) * (T::one() - w)
    }
}

/// The learning rate: finite and ≥ 0, as PyTorch requires.
pub(crate) fn check_lr(lr: f64) -> Result<()> {
    check_non_negative("lr", lr)
}

/// A hyper-parameter that must be finite and ≥ 0.
pub(crate) fn check_non_negative(what: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(config_err(
            what,
            format!("must be a finite number ≥ 0, got {v}"),
        ));
    }
    Ok(())
}

/// A buffer handed to an optimizer must have the optimizer's length.
pub(crate) fn check_len(what: &str, expected: usize, len: usize) -> Result<()> {
    if len != expected {
        return Err(Error::Length {
            what: what.into(),
            shape: Shape(vec![expected]),
            len,
        });
    }
    Ok(())
}
