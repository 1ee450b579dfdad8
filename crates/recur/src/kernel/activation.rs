//! Activation functions of the gates, each with its derivative written in terms of its own
//! output, which is what the backward pass keeps.
//!
//! The cells apply them a whole gate at a time ([`Activation::apply_slice`],
//! [`Activation::mul_derivative_from_output`]), the choice of function made once per slice.
//! In `f64` the functions are the exact ones (std's `exp`, `tanh`); in `f32` sigmoid and tanh
//! are the vectorised approximations of [`super::fast_f32`] (≤ 1.8e-7 relative error), picked
//! by [`Float::activate_slice`]. ReLU and the derivatives are plain loops in both.
//!
//! The set is open (`#[non_exhaustive]`): ONNX's selectable activations (Affine, LeakyRelu,
//! HardSigmoid, Elu, Softsign, …) all have derivatives expressible from their outputs and slot
//! in here without touching the cells.

use crate::Float;

/// A pointwise activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Activation {
    /// σ(x) = 1 / (1 + e^(−x))
    #[default]
    Sigmoid,
    /// tanh(x)
    Tanh,
    /// max(0, x)
    Relu,
}

impl Activation {
    /// y = act(x), the function [`Activation::apply_slice`] applies: exact in `f64`, the
    /// [`super::fast_f32`] approximation in `f32`.
    #[inline]
    pub fn apply<T: Float>(self, x: T) -> T {
        T::activate(self, x)
    }

    /// `xs[j] = act(xs[j])` for every j (vectorised in `f32`). Gives the same bits as
    /// [`Activation::apply`] on each element, wherever it sits in the slice.
    #[inline]
    pub fn apply_slice<T: Float>(self, xs: &mut [T]) {
        T::activate_slice(self, xs);
    }

    /// `d[j] *= act'(y[j])` with `y = act(x)` the saved outputs: the backward of
    /// [`Activation::apply_slice`]. `y` is at least as long as `d`.
    #[inline]
    pub fn mul_derivative_from_output<T: Float>(self, d: &mut [T], y: &[T]) {
        let y = &y[..d.len()];
        // one loop per function, each free of branches so that it vectorises
        match self {
            Activation::Sigmoid => {
                for (d, &y) in d.iter_mut().zip(y) {
                    *d *= y * (T::one() - y);
                }
            }
            Activation::Tanh => {
                for (d, &y) in d.iter_mut().zip(y) {
                    *d *= T::one() - y * y;
                }
            }
            Activation::Relu => {
                for (d, &y) in d.iter_mut().zip(y) {
                    *d *= if y > T::zero() { T::one() } else { T::zero() };
                }
            }
        }
    }

    /// y = act(x) with the exact functions, in any precision.
    #[inline(always)]
    pub fn apply_exact<T: Float>(self, x: T) -> T {
        match self {
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.max(T::zero()),
        }
    }

    /// dy/dx expressed through y = act(x).
    #[inline(always)]
    pub fn derivative_from_output<T: Float>(self, y: T) -> T {
        match self {
            Activation::Sigmoid => y * (T::one() - y),
            Activation::Tanh => T::one() - y * y,
            Activation::Relu => {
                if y > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
        }
    }

    /// The ONNX name of the function.
    pub fn onnx_name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::Relu => "Relu",
        }
    }
}

/// [`Float::activate_slice`] for `f64` (and any type without a faster kernel): the exact
/// functions, the `match` outside the loops.
pub(crate) fn apply_slice_exact<T: Float>(act: Activation, xs: &mut [T]) {
    match act {
        Activation::Sigmoid => xs.iter_mut().for_each(|x| *x = sigmoid(*x)),
        Activation::Tanh => xs.iter_mut().for_each(|x| *x = x.tanh()),
        Activation::Relu => relu_slice(xs),
    }
}

/// [`Float::activate`] for `f32`: the scalar form of [`apply_slice_f32`].
#[inline]
pub(crate) fn apply_f32(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Sigmoid => super::fast_f32::sigmoid(x),
        Activation::Tanh => super::fast_f32::tanh(x),
        Activation::Relu => x.max(0.0),
    }
}

/// [`Float::activate_slice`] for `f32`: the vectorised sigmoid and tanh of
/// [`super::fast_f32`].
pub(crate) fn apply_slice_f32(act: Activation, xs: &mut [f32]) {
    match act {
        Activation::Sigmoid => super::fast_f32::sigmoid_in_place(xs),
        Activation::Tanh => super::fast_f32::tanh_in_place(xs),
        Activation::Relu => relu_slice(xs),
    }
}

fn relu_slice<T: Float>(xs: &mut [T]) {
    for x in xs {
        *x = x.max(T::zero());
    }
}

/// The logistic function, written so that it never overflows.
#[inline(always)]
pub fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each derivative-from-output agrees with a central difference of the function.
    #[test]
    fn derivatives_match_finite_differences() {
        const EPS: f64 = 1e-6;
        const TOL: f64 = 1e-8;
        for act in [Activation::Sigmoid, Activation::Tanh, Activation::Relu] {
            for &x in &[-30.0, -3.0, -0.7, -0.1, 0.2, 0.9, 2.5, 40.0] {
                let y = act.apply(x);
                let fd = (act.apply(x + EPS) - act.apply(x - EPS)) / (2.0 * EPS);
                let d = act.derivative_from_output(y);
                assert!((fd - d).abs() < TOL, "{act:?} at {x}: {d} vs {fd}");
                let mut slice_d = [1.5];
                act.mul_derivative_from_output(&mut slice_d, &[y]);
                assert_eq!(slice_d[0], 1.5 * d);
            }
        }
        assert_eq!(sigmoid(-1000.0f64), 0.0);
        assert_eq!(sigmoid(1000.0f64), 1.0);
    }

    /// The slice passes give, element by element, the bits of the scalar `apply`; in `f64`
    /// that is the exact function, in `f32` the fast one.
    #[test]
    fn slices_agree_with_scalars() {
        let xs: Vec<f64> = (0..1003).map(|k| (k as f64 - 501.0) * 0.037).collect();
        for act in [Activation::Sigmoid, Activation::Tanh, Activation::Relu] {
            for len in [0usize, 1, 15, 16, 17, 63, 65, 1000] {
                let mut y64 = xs[..len].to_vec();
                act.apply_slice(&mut y64);
                let mut y32: Vec<f32> = xs[..len].iter().map(|&x| x as f32).collect();
                act.apply_slice(&mut y32);
                for (k, &x) in xs[..len].iter().enumerate() {
                    assert_eq!(y64[k].to_bits(), act.apply_exact(x).to_bits(), "{act:?}");
                    assert_eq!(y64[k].to_bits(), act.apply(x).to_bits(), "{act:?}");
                    assert_eq!(y32[k].to_bits(), act.apply(x as f32).to_bits(), "{act:?}");
                }
            }
        }
    }
}
