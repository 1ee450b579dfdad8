//! Activation functions of the gates, each with its derivative written in terms of its own
//! output, which is what the backward pass keeps.
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
    /// y = act(x)
    #[inline(always)]
    pub fn apply<T: Float>(self, x: T) -> T {
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
            }
        }
        assert_eq!(sigmoid(-1000.0f64), 0.0);
        assert_eq!(sigmoid(1000.0f64), 1.0);
    }
}
