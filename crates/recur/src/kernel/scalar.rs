//! The scalar types recur computes in, on the ground floor: every other module bounds its
//! numbers by [`Float`] (re-exported as `recur::Float`), and nothing here imports from above
//! `kernel/`.
//!
//! [`Float`] carries the scalar maths ([`num_traits::Float`]) and the activation of a gate;
//! the panel-kernel dispatch a matrix product needs is its crate-private supertrait
//! ([`super::Dispatch`]). It is sealed: `f32` and `f64` are the only types, and code outside
//! recur can name `T: Float` as a bound but not implement it.

use super::Dispatch;
use super::activation::{self, Activation};

/// The scalar types recur computes in: `f32` for speed, `f64` for gradient checks.
///
/// Sealed: implemented for `f32` and `f64` only.
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
    + Dispatch
    + sealed::Sealed
{
    /// `act(x)`: what [`Float::activate_slice`] gives for each element.
    fn activate(act: Activation, x: Self) -> Self;

    /// `xs[j] = act(xs[j])` for every j, the activation pass of a gate. `f64` uses the exact
    /// functions; `f32` the vectorised sigmoid and tanh of `kernel/fast_f32.rs` (≤ 1.8e-7
    /// relative error against the exact ones).
    fn activate_slice(act: Activation, xs: &mut [Self]);
}

mod sealed {
    /// Implemented for `f32` and `f64` only, and unnameable outside this module.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

impl Float for f32 {
    #[inline]
    fn activate(act: Activation, x: Self) -> Self {
        activation::apply_f32(act, x)
    }

    #[inline]
    fn activate_slice(act: Activation, xs: &mut [Self]) {
        activation::apply_slice_f32(act, xs);
    }
}

impl Float for f64 {
    #[inline]
    fn activate(act: Activation, x: Self) -> Self {
        act.apply_exact(x)
    }

    #[inline]
    fn activate_slice(act: Activation, xs: &mut [Self]) {
        activation::apply_slice_exact(act, xs);
    }
}
