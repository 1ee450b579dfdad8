//! Gradient clipping, a training option (not ONNX's gate clip, not cuDNN's cell clip).
//!
//! By global norm, PyTorch's `clip_grad_norm_` with the 2-norm:
//! ```text
//! n = ‖∇‖₂ over every gradient            (reported: the pre-clip norm)
//! k = max_norm / (n + 1e-6)
//! ∇ = k ∇                                  only when k < 1
//! ```
//! By value, PyTorch's `clip_grad_value_`: each gradient clamped to [−c, c].
//!
//! The norm is summed and the scaling done on every core, in chunks of `CHUNK` (65,536) values.

use rayon::prelude::*;

use crate::error::{Result, config_err};
use crate::kernel::scalar::Float;

/// PyTorch's guard against dividing by a zero norm.
const NORM_EPS: f64 = 1e-6;

/// Values per parallel task: each chunk's squares are summed in order, then the chunks' sums.
const CHUNK: usize = 1 << 16;

/// The global 2-norm of `grads`, computed in f64 (what [`clip_grad_norm`] returns, without
/// clipping).
pub fn grad_norm<T: Float>(grads: &[T]) -> f64 {
    grads
        .par_chunks(CHUNK)
        .map(|c| {
            c.iter()
                .map(|g| {
                    let g = g.to_f64().unwrap_or(f64::NAN);
                    g * g
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt()
}

/// Rescales `grads` so that their 2-norm is at most `max_norm` and returns the norm they had
/// before (computed in f64). A non-finite norm is returned as it is, and then, as in PyTorch,
/// the gradients become zero or NaN: the caller decides whether to skip the step.
///
/// # Errors
/// [`crate::Error::Config`] when `max_norm` is not a finite number > 0.
pub fn clip_grad_norm<T: Float>(grads: &mut [T], max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(config_err(
            "max_norm",
            format!("must be a finite number > 0, got {max_norm}"),
        ));
    }
    let norm = grad_norm(grads);
    let k = max_norm / (norm + NORM_EPS);
    // k < 1, or NaN (a NaN norm), as PyTorch's clamp(k, max = 1) passes NaN on.
    if k < 1.0 || k.is_nan() {
        let k = T::from_f64(k).unwrap_or_else(T::nan);
        grads
            .par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|g| *g *= k));
    }
    Ok(norm)
}

/// Clamps every gradient to `[−clip_value, clip_value]`.
///
/// # Errors
/// [`crate::Error::Config`] when `clip_value` is not a finite number > 0.
pub fn clip_grad_value<T: Float>(grads: &mut [T], clip_value: f64) -> Result<()> {
    if !(clip_value.is_finite() && clip_value > 0.0) {
        return Err(config_err(
            "clip_value",
            format!("must be a finite number > 0, got {clip_value}"),
        ));
    }
    let c = T::from_f64(clip_value).unwrap_or_else(T::max_value);
    for g in grads.iter_mut() {
        *g = g.max(-c).min(c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `torch.nn.utils.clip_grad_norm_` on a gradient [3, 4] with max_norm 1 returns 5 and
    /// leaves [0.599999880000024, 0.799999840000032]; on [0.3, 0.4] it returns 0.5 and
    /// leaves the gradient alone.
    #[test]
    fn norm_clipping_matches_pytorch() {
        let mut g = [3.0f64, 4.0];
        let n = clip_grad_norm(&mut g, 1.0).unwrap();
        assert_eq!(n, 5.0);
        assert!((g[0] - 0.599999880000024).abs() < 1e-15, "{}", g[0]);
        assert!((g[1] - 0.799999840000032).abs() < 1e-15, "{}", g[1]);
        let mut g = [0.3f64, 0.4];
        let n = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((n - 0.5).abs() < 1e-15);
        assert_eq!(g, [0.3, 0.4]);
    }

    #[test]
    fn norm_clipping_bounds_the_norm_in_f32() {
        let mut g: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 10.0).collect();
        let before = clip_grad_norm(&mut g, 2.5).unwrap();
        assert!(before > 2.5);
        let after = clip_grad_norm(&mut g, 2.5).unwrap();
        assert!((after - 2.5).abs() < 1e-5, "{after}");
    }

    /// Over several chunks: the norm is the serial one (to rounding), every value scaled by
    /// the same factor.
    #[test]
    fn norm_clipping_over_several_chunks() {
        let g: Vec<f32> = (0..3 * CHUNK + 17)
            .map(|i| ((i * 7919) % 1013) as f32 * 1e-3 - 0.5)
            .collect();
        let serial = g
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        assert!((grad_norm(&g) - serial).abs() <= 1e-12 * serial);
        let mut c = g.clone();
        let n = clip_grad_norm(&mut c, 1.0).unwrap();
        let k = (1.0 / (n + NORM_EPS)) as f32;
        assert!(c.iter().zip(&g).all(|(&a, &b)| a == b * k));
        let mut c = g.clone();
        clip_grad_norm(&mut c, 1e9).unwrap();
        assert_eq!(c, g, "a norm under the limit: no clipping");
    }

    #[test]
    fn value_clipping_clamps_each_gradient() {
        let mut g = [-3.0f32, -0.5, 0.0, 0.25, 7.0];
        clip_grad_value(&mut g, 1.0).unwrap();
        assert_eq!(g, [-1.0, -0.5, 0.0, 0.25, 1.0]);
    }

    #[test]
    fn bad_limits_are_errors() {
        let mut g = [1.0f32];
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(clip_grad_norm(&mut g, bad).is_err());
            assert!(clip_grad_value(&mut g, bad).is_err());
        }
        assert_eq!(g, [1.0]);
    }
}
