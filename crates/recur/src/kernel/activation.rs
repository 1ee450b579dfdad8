//! Activation functions of the gates, each with its derivative written in terms of its own
//! output, which is what the backward pass keeps.
//!
//! The cells apply them a whole gate at a time ([`Activation::apply_slice`],
//! [`Activation::mul_derivative_from_output`]), the choice of function made once per slice.
//! In `f64` the functions are the exact ones (std's `exp`, `tanh`, …); in `f32` sigmoid and
//! tanh are the vectorised approximations of [`super::fast_f32`] (≤ 1.8e-7 relative error),
//! picked by [`Float::activate_slice`]; every other function is a plain loop over std's
//! functions in both types.
//!
//! The set is ONNX's (the `activations` of its LSTM, GRU and RNN operators), with the
//! definitions ONNX Runtime computes (`rnn_activation_functors.h`):
//!
//! | function | y = f(x) | f'(x) from y |
//! |---|---|---|
//! | `Sigmoid` | 1 / (1 + e^(−x)) | y (1 − y) |
//! | `Tanh` | tanh x | 1 − y² |
//! | `Relu` | max(0, x) | y > 0 ? 1 : 0 |
//! | `Affine` | α x + β | α |
//! | `LeakyRelu` | x ≥ 0 ? x : α x | y > 0 ? 1 : α (α ≥ 0) |
//! | `ThresholdedRelu` | x > α ? x : 0 | y > 0 ? 1 : 0 (α ≥ 0) |
//! | `ScaledTanh` | α tanh(β x) | α β (1 − (y/α)²), 0 when α = 0 |
//! | `HardSigmoid` | max(0, min(1, α x + β)) | 0 < y < 1 ? α : 0 |
//! | `Elu` | x ≥ 0 ? x : α (e^x − 1) | y > 0 ? 1 : y + α (α ≥ 0) |
//! | `Softsign` | x / (1 + \|x\|) | (1 − \|y\|)² |
//! | `Softplus` | ln(1 + e^x) | 1 − e^(−y) |
//!
//! At a kink (x = 0 for Relu, LeakyRelu, Elu; x = α for ThresholdedRelu; α x + β ∈ {0, 1} for
//! HardSigmoid) the derivative is one of the one-sided ones, as in PyTorch. Three settings
//! have a derivative that the output does not determine: LeakyRelu with α < 0 and Elu with
//! α < 0 (a positive y comes from a positive or a negative x), and ThresholdedRelu with α < 0
//! (y = 0 comes from x ≤ α, slope 0, or from x = 0, slope 1). They compute forward passes,
//! but [`crate::Recurrent::forward_train`] refuses them ([`Activation::output_determines_derivative`]),
//! so that no wrong gradient is ever returned.

use super::scalar::Float;
use crate::error::{Error, Result, config_err};

/// A pointwise activation. The parameters α, β are `f64` whatever the model's precision (they
/// are rounded to `f32` for an `f32` model).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
#[non_exhaustive]
pub enum Activation {
    /// σ(x) = 1 / (1 + e^(−x))
    #[default]
    Sigmoid,
    /// tanh(x)
    Tanh,
    /// max(0, x)
    Relu,
    /// α x + β
    Affine { alpha: f64, beta: f64 },
    /// x for x ≥ 0, α x below
    LeakyRelu { alpha: f64 },
    /// x for x > α, 0 otherwise
    ThresholdedRelu { alpha: f64 },
    /// α tanh(β x)
    ScaledTanh { alpha: f64, beta: f64 },
    /// max(0, min(1, α x + β))
    HardSigmoid { alpha: f64, beta: f64 },
    /// x for x ≥ 0, α (e^x − 1) below
    Elu { alpha: f64 },
    /// x / (1 + |x|)
    Softsign,
    /// ln(1 + e^x)
    Softplus,
}

/// `v` in the model's precision (exact for f64; rounded for f32).
#[inline(always)]
fn k<T: Float>(v: f64) -> T {
    T::from_f64(v).unwrap_or_else(T::nan)
}

impl Activation {
    /// The activation ONNX names `name` (case-insensitive: `Tanh`, `tanh`, `LeakyRelu`, …), with
    /// its `activation_alpha` / `activation_beta` values; a missing one takes the default ONNX
    /// Runtime uses inside its LSTM and GRU kernels (`rnn_helpers.cc`,
    /// `NameToArgDefaultsMap`: LeakyRelu α = 0.01, HardSigmoid α = 0.2, β = 0.5, Elu α = 1;
    /// every other missing α or β is 0, so e.g. `ThresholdedRelu` defaults to α = 0, not the
    /// standalone operator's 1). ORT's RNN kernel (`rnn.h`) differs: there every missing α and
    /// β is 0.0 whatever the function, so a loader reading an RNN node should pass
    /// `Some(0.0)` for a missing value to reproduce it.
    ///
    /// ```
    /// use recur::Activation;
    /// assert_eq!(Activation::from_onnx("leakyrelu", None, None)?, Activation::LeakyRelu { alpha: 0.01 });
    /// assert_eq!(Activation::from_onnx("Tanh", None, None)?, Activation::Tanh);
    /// # Ok::<(), recur::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a name ONNX does not list; [`Error::Config`] for an α or β
    /// that is not finite, or given to a function that takes none.
    pub fn from_onnx(name: &str, alpha: Option<f64>, beta: Option<f64>) -> Result<Activation> {
        let lower = name.to_ascii_lowercase();
        // (default α, default β) of the functions that take them, per ORT's rnn_helpers.cc
        let (takes, defaults): ((bool, bool), (f64, f64)) = match lower.as_str() {
            "sigmoid" | "tanh" | "relu" | "softsign" | "softplus" => ((false, false), (0.0, 0.0)),
            "affine" | "scaledtanh" => ((true, true), (0.0, 0.0)),
            "hardsigmoid" => ((true, true), (0.2, 0.5)),
            "leakyrelu" => ((true, false), (0.01, 0.0)),
            "elu" => ((true, false), (1.0, 0.0)),
            "thresholdedrelu" => ((true, false), (0.0, 0.0)),
            _ => {
                return Err(Error::Unsupported(format!(
                    "activation `{name}`: ONNX's recurrent operators list Relu, Tanh, Sigmoid, \
                     Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, \
                     Softsign and Softplus"
                )));
            }
        };
        for (what, given, taken) in [("alpha", alpha, takes.0), ("beta", beta, takes.1)] {
            match given {
                Some(_) if !taken => {
                    return Err(config_err(
                        format!("activation_{what}"),
                        format!("{name} takes no {what}"),
                    ));
                }
                Some(v) if !v.is_finite() => {
                    return Err(config_err(
                        format!("activation_{what}"),
                        format!("{name}: must be finite, got {v}"),
                    ));
                }
                _ => {}
            }
        }
        let a = alpha.unwrap_or(defaults.0);
        let b = beta.unwrap_or(defaults.1);
        Ok(match lower.as_str() {
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "relu" => Activation::Relu,
            "softsign" => Activation::Softsign,
            "softplus" => Activation::Softplus,
            "affine" => Activation::Affine { alpha: a, beta: b },
            "scaledtanh" => Activation::ScaledTanh { alpha: a, beta: b },
            "hardsigmoid" => Activation::HardSigmoid { alpha: a, beta: b },
            "leakyrelu" => Activation::LeakyRelu { alpha: a },
            "elu" => Activation::Elu { alpha: a },
            _ => Activation::ThresholdedRelu { alpha: a },
        })
    }

    /// The ONNX name of the function, as ONNX spells it (`LeakyRelu`, `HardSigmoid`, …).
    pub fn onnx_name(&self) -> &'static str {
        match self {
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::Relu => "Relu",
            Activation::Affine { .. } => "Affine",
            Activation::LeakyRelu { .. } => "LeakyRelu",
            Activation::ThresholdedRelu { .. } => "ThresholdedRelu",
            Activation::ScaledTanh { .. } => "ScaledTanh",
            Activation::HardSigmoid { .. } => "HardSigmoid",
            Activation::Elu { .. } => "Elu",
            Activation::Softsign => "Softsign",
            Activation::Softplus => "Softplus",
        }
    }

    /// The function's ONNX `activation_alpha` and `activation_beta` values: `Some` exactly for
    /// the parameters it takes, so that an exporter writes them in ONNX's order and
    /// [`Activation::from_onnx`] reads them back to the same value.
    pub fn onnx_params(&self) -> (Option<f64>, Option<f64>) {
        match *self {
            Activation::Affine { alpha, beta }
            | Activation::ScaledTanh { alpha, beta }
            | Activation::HardSigmoid { alpha, beta } => (Some(alpha), Some(beta)),
            Activation::LeakyRelu { alpha }
            | Activation::ThresholdedRelu { alpha }
            | Activation::Elu { alpha } => (Some(alpha), None),
            _ => (None, None),
        }
    }

    /// Every parameter is finite.
    ///
    /// # Errors
    /// [`Error::Config`] naming `what` (the slot, e.g. `activations.gate`) otherwise.
    pub(crate) fn validate(&self, what: &str) -> Result<()> {
        let (a, b) = self.onnx_params();
        for (name, v) in [("alpha", a), ("beta", b)] {
            if let Some(v) = v
                && !v.is_finite()
            {
                return Err(config_err(
                    what,
                    format!("{} {name} must be finite, got {v}", self.onnx_name()),
                ));
            }
        }
        Ok(())
    }

    /// Whether the derivative is a function of the output, which is what the backward pass
    /// keeps. False only for LeakyRelu and Elu with α < 0 and ThresholdedRelu with α < 0 (see
    /// the module docs); training refuses those.
    pub fn output_determines_derivative(&self) -> bool {
        match *self {
            Activation::LeakyRelu { alpha }
            | Activation::Elu { alpha }
            | Activation::ThresholdedRelu { alpha } => alpha >= 0.0,
            _ => true,
        }
    }

    /// y = act(x), the function [`Activation::apply_slice`] applies: exact in `f64`, the
    /// `kernel::fast_f32` approximation of sigmoid and tanh in `f32`.
    #[inline]
    pub fn apply<T: Float>(self, x: T) -> T {
        T::activate(self, x)
    }

    /// `xs[j] = act(xs[j])` for every j (vectorised sigmoid and tanh in `f32`). Gives the same
    /// bits as [`Activation::apply`] on each element, wherever it sits in the slice.
    #[inline]
    pub fn apply_slice<T: Float>(self, xs: &mut [T]) {
        T::activate_slice(self, xs);
    }

    /// `d[j] *= act'(y[j])` with `y = act(x)` the saved outputs: the backward of
    /// [`Activation::apply_slice`]. `y` is at least as long as `d`.
    #[inline]
    pub fn mul_derivative_from_output<T: Float>(self, d: &mut [T], y: &[T]) {
        let y = &y[..d.len()];
        let (zero, one) = (T::zero(), T::one());
        // one loop per function, each free of data-dependent calls so that it vectorises
        match self {
            Activation::Sigmoid => {
                for (d, &y) in d.iter_mut().zip(y) {
                    *d *= y * (one - y);
                }
            }
            Activation::Tanh => {
                for (d, &y) in d.iter_mut().zip(y) {
                    *d *= one - y * y;
                }
            }
            Activation::Relu | Activation::ThresholdedRelu { .. } => {
                for (d, &y) in d.iter_mut().zip(y) {
                    *d *= if y > zero { one } else { zero };
                }
            }
            _ => {
                for (d, &y) in d.iter_mut().zip(y) {
                    *d *= self.derivative_from_output(y);
                }
            }
        }
    }

    /// y = act(x) with the exact functions, in any precision.
    #[inline(always)]
    pub fn apply_exact<T: Float>(self, x: T) -> T {
        let (zero, one) = (T::zero(), T::one());
        match self {
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.max(zero),
            Activation::Affine { alpha, beta } => k::<T>(alpha) * x + k::<T>(beta),
            Activation::LeakyRelu { alpha } => {
                if x >= zero {
                    x
                } else {
                    k::<T>(alpha) * x
                }
            }
            Activation::ThresholdedRelu { alpha } => {
                if x > k::<T>(alpha) {
                    x
                } else {
                    zero
                }
            }
            Activation::ScaledTanh { alpha, beta } => k::<T>(alpha) * (k::<T>(beta) * x).tanh(),
            Activation::HardSigmoid { alpha, beta } => {
                (k::<T>(alpha) * x + k::<T>(beta)).max(zero).min(one)
            }
            Activation::Elu { alpha } => {
                if x >= zero {
                    x
                } else {
                    k::<T>(alpha) * x.exp_m1()
                }
            }
            Activation::Softsign => x / (one + x.abs()),
            // max(x, 0) + ln(1 + e^(−|x|)): never overflows, exact to the last bit or two
            Activation::Softplus => x.max(zero) + (-x.abs()).exp().ln_1p(),
        }
    }

    /// dy/dx expressed through y = act(x) (see the table of the module docs).
    #[inline(always)]
    pub fn derivative_from_output<T: Float>(self, y: T) -> T {
        let (zero, one) = (T::zero(), T::one());
        match self {
            Activation::Sigmoid => y * (one - y),
            Activation::Tanh => one - y * y,
            Activation::Relu | Activation::ThresholdedRelu { .. } => {
                if y > zero {
                    one
                } else {
                    zero
                }
            }
            Activation::Affine { alpha, .. } => k(alpha),
            Activation::LeakyRelu { alpha } => {
                if y > zero {
                    one
                } else {
                    k(alpha)
                }
            }
            Activation::ScaledTanh { alpha, beta } => {
                if alpha == 0.0 {
                    zero
                } else {
                    let t = y / k::<T>(alpha);
                    k::<T>(alpha) * k::<T>(beta) * (one - t * t)
                }
            }
            Activation::HardSigmoid { alpha, .. } => {
                if y > zero && y < one {
                    k(alpha)
                } else {
                    zero
                }
            }
            Activation::Elu { alpha } => {
                if y > zero {
                    one
                } else {
                    y + k::<T>(alpha)
                }
            }
            Activation::Softsign => {
                let s = one - y.abs();
                s * s
            }
            // σ(x) = 1 − e^(−y), with expm1 so that it stays exact when y is tiny
            Activation::Softplus => -(-y).exp_m1(),
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
        _ => xs.iter_mut().for_each(|x| *x = act.apply_exact(*x)),
    }
}

/// [`Float::activate`] for `f32`: the scalar form of [`apply_slice_f32`].
#[inline]
pub(crate) fn apply_f32(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Sigmoid => super::fast_f32::sigmoid(x),
        Activation::Tanh => super::fast_f32::tanh(x),
        _ => act.apply_exact(x),
    }
}

/// [`Float::activate_slice`] for `f32`: the vectorised sigmoid and tanh of
/// [`super::fast_f32`]; the other functions exact, as in `f64`.
pub(crate) fn apply_slice_f32(act: Activation, xs: &mut [f32]) {
    match act {
        Activation::Sigmoid => super::fast_f32::sigmoid_in_place(xs),
        Activation::Tanh => super::fast_f32::tanh_in_place(xs),
        Activation::Relu => relu_slice(xs),
        _ => xs.iter_mut().for_each(|x| *x = act.apply_exact(*x)),
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

    /// Every function, with parameters away from their defaults.
    pub(crate) fn every() -> Vec<Activation> {
        vec![
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Relu,
            Activation::Affine {
                alpha: 0.7,
                beta: -0.2,
            },
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::ThresholdedRelu { alpha: 0.15 },
            Activation::ScaledTanh {
                alpha: 1.3,
                beta: 0.8,
            },
            Activation::HardSigmoid {
                alpha: 0.3,
                beta: 0.45,
            },
            Activation::Elu { alpha: 0.7 },
            Activation::Softsign,
            Activation::Softplus,
        ]
    }

    /// Each derivative-from-output agrees with a central difference of the function, at
    /// points away from every kink, and the slice form gives the scalar's bits.
    #[test]
    fn derivatives_match_finite_differences() {
        const EPS: f64 = 1e-6;
        const TOL: f64 = 1e-8;
        let xs = [-30.0, -3.0, -0.7, -0.1, 0.2, 0.9, 2.5, 40.0];
        for act in every().into_iter().chain([
            Activation::ScaledTanh {
                alpha: 0.0,
                beta: 2.0,
            },
            Activation::HardSigmoid {
                alpha: -0.4,
                beta: 0.5,
            },
            Activation::LeakyRelu { alpha: 0.0 },
            Activation::Elu { alpha: 1.0 },
        ]) {
            for &x in &xs {
                let y = act.apply(x);
                let fd = (act.apply(x + EPS) - act.apply(x - EPS)) / (2.0 * EPS);
                let d = act.derivative_from_output(y);
                assert!((fd - d).abs() < TOL, "{act:?} at {x}: {d} vs {fd}");
                let mut slice_d = [1.5];
                act.mul_derivative_from_output(&mut slice_d, &[y]);
                assert_eq!(slice_d[0], 1.5 * d, "{act:?}");
            }
        }
        assert_eq!(sigmoid(-1000.0f64), 0.0);
        assert_eq!(sigmoid(1000.0f64), 1.0);
        // Softplus never overflows, and its derivative stays exact where y is tiny.
        let sp = Activation::Softplus;
        assert_eq!(sp.apply(1000.0f64), 1000.0);
        assert!((sp.apply(-40.0f64) / (-40.0f64).exp() - 1.0).abs() < 1e-15);
        let y = sp.apply(-40.0f64);
        assert!((sp.derivative_from_output(y) / sigmoid(-40.0f64) - 1.0).abs() < 1e-15);
    }

    /// The flat parts: zero slope wherever the function is flat, the exact slope elsewhere.
    #[test]
    fn flat_parts_and_slopes_are_exact() {
        let hs = Activation::HardSigmoid {
            alpha: 0.3,
            beta: 0.45,
        };
        for x in [-10.0f64, 10.0] {
            assert_eq!(hs.derivative_from_output(hs.apply(x)), 0.0);
        }
        assert_eq!(hs.derivative_from_output(hs.apply(0.1f64)), 0.3);
        let tr = Activation::ThresholdedRelu { alpha: 0.15 };
        assert_eq!(tr.apply(0.1f64), 0.0);
        assert_eq!(tr.derivative_from_output(tr.apply(0.1f64)), 0.0);
        assert_eq!(tr.derivative_from_output(tr.apply(0.2f64)), 1.0);
        let lr = Activation::LeakyRelu { alpha: 0.1 };
        assert_eq!(lr.derivative_from_output(lr.apply(-3.0f64)), 0.1);
        let af = Activation::Affine {
            alpha: 0.7,
            beta: -0.2,
        };
        assert_eq!(af.derivative_from_output(af.apply(5.0f64)), 0.7);
        let elu = Activation::Elu { alpha: 0.7 };
        let x = -2.0f64;
        assert!((elu.derivative_from_output(elu.apply(x)) - 0.7 * x.exp()).abs() < 1e-16);
    }

    /// The slice passes give, element by element, the bits of the scalar `apply`; in `f64`
    /// that is the exact function, in `f32` the fast one for sigmoid and tanh.
    #[test]
    fn slices_agree_with_scalars() {
        let xs: Vec<f64> = (0..1003).map(|k| (k as f64 - 501.0) * 0.037).collect();
        for act in every() {
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

    /// Names and parameters go to ONNX and back unchanged; names are case-insensitive;
    /// missing parameters take ONNX Runtime's defaults.
    #[test]
    fn onnx_names_and_parameters_round_trip() {
        for act in every() {
            let (a, b) = act.onnx_params();
            assert_eq!(Activation::from_onnx(act.onnx_name(), a, b).unwrap(), act);
            let upper = act.onnx_name().to_ascii_uppercase();
            assert_eq!(Activation::from_onnx(&upper, a, b).unwrap(), act);
        }
        let d = |name| Activation::from_onnx(name, None, None).unwrap();
        assert_eq!(d("LeakyRelu"), Activation::LeakyRelu { alpha: 0.01 });
        assert_eq!(
            d("HardSigmoid"),
            Activation::HardSigmoid {
                alpha: 0.2,
                beta: 0.5
            }
        );
        assert_eq!(d("Elu"), Activation::Elu { alpha: 1.0 });
        assert_eq!(
            d("ThresholdedRelu"),
            Activation::ThresholdedRelu { alpha: 0.0 }
        );
        assert_eq!(
            d("ScaledTanh"),
            Activation::ScaledTanh {
                alpha: 0.0,
                beta: 0.0
            }
        );
        assert_eq!(
            d("Affine"),
            Activation::Affine {
                alpha: 0.0,
                beta: 0.0
            }
        );
        assert_eq!(
            Activation::from_onnx("hardsigmoid", Some(0.3), None).unwrap(),
            Activation::HardSigmoid {
                alpha: 0.3,
                beta: 0.5
            }
        );
    }

    #[test]
    fn bad_names_and_parameters_are_errors() {
        let e = Activation::from_onnx("Swish", None, None).unwrap_err();
        assert!(
            matches!(&e, Error::Unsupported(m) if m.contains("Swish")),
            "{e}"
        );
        let e = Activation::from_onnx("LeakyRelu", Some(f64::NAN), None).unwrap_err();
        assert!(
            matches!(&e, Error::Config { what, .. } if what == "activation_alpha"),
            "{e}"
        );
        let e = Activation::from_onnx("Affine", Some(1.0), Some(f64::INFINITY)).unwrap_err();
        assert!(
            matches!(&e, Error::Config { what, .. } if what == "activation_beta"),
            "{e}"
        );
        let e = Activation::from_onnx("Tanh", Some(1.0), None).unwrap_err();
        assert!(
            matches!(&e, Error::Config { what, .. } if what == "activation_alpha"),
            "{e}"
        );
        let e = Activation::from_onnx("Elu", None, Some(1.0)).unwrap_err();
        assert!(
            matches!(&e, Error::Config { what, .. } if what == "activation_beta"),
            "{e}"
        );
    }

    /// Exactly the settings whose slope the output cannot tell are flagged.
    #[test]
    fn settings_whose_slope_the_output_cannot_tell() {
        for act in every() {
            assert!(act.output_determines_derivative(), "{act:?}");
        }
        for act in [
            Activation::LeakyRelu { alpha: -0.1 },
            Activation::Elu { alpha: -1.0 },
            Activation::ThresholdedRelu { alpha: -0.5 },
        ] {
            assert!(!act.output_determines_derivative(), "{act:?}");
        }
        // why: the same positive output from a positive and a negative input, different slopes
        let lr = Activation::LeakyRelu { alpha: -0.5 };
        assert_eq!(lr.apply(1.0f64), lr.apply(-2.0f64));
    }
}
