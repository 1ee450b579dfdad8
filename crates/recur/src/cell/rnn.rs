//! Elman RNN with an optional leaky integrator (the "leaky units" of the text).
//!
//! ```text
//! (1) a = W_ih x + b_ih + b_hh + W_hh h_prev      (input part: one GEMM for all t)
//! (2) u = act(a)                                  act = tanh, ReLU or any ONNX activation
//! (3) h = (1 − α) ⊙ h_prev + α ⊙ u                α = 1: PyTorch's nn.RNN
//! ```
//! Backward:
//! ```text
//! (3)ᵀ du = α ⊙ dh;  dh_prev = (1 − α) ⊙ dh
//! (2)ᵀ da = du ⊙ act'(u)
//! (1)ᵀ dh_prev += da W_hh;  dW_hh += daᵀ h_prev;  db_hh += Σ da   (after the loop, in the
//!      driver with dW_ih, dX and db_ih)
//! ```
//! ONNX `clip` (ONNX Runtime's `rnn.cc`): a is clamped to [−clip, clip] before act; da is 0
//! where it was clamped. Recurrent dropout: (1) reads `m ⊙ h_prev`, the leaky term (3) reads
//! h_prev; (1)ᵀ adds m ⊙ (da W_hh) to dh_prev and dW_hh += daᵀ (m ⊙ h_prev).

use super::{BwdStep, FwdStep, StepWeights, check_rate};
use crate::error::{Result, config_err};
use crate::kernel::activation::Activation;
use crate::kernel::scalar::Float;
use crate::kernel::{Accumulate, Mat, matmul};

/// Leaky integration: h = (1 − α) h_prev + α act(…), with a fixed rate α ∈ (0, 1].
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Leak {
    /// α = 1: the plain Elman RNN.
    #[default]
    None,
    /// One α for every layer.
    Uniform(f64),
    /// One α per layer (length `num_layers`).
    PerLayer(Vec<f64>),
}

impl Leak {
    /// α of `layer`.
    pub fn rate(&self, layer: usize) -> f64 {
        match self {
            Leak::None => 1.0,
            Leak::Uniform(a) => *a,
            Leak::PerLayer(v) => v[layer],
        }
    }
}

/// RNN options. The default is PyTorch's `nn.RNN` (tanh, not leaky).
#[derive(Clone, Debug, PartialEq)]
pub struct RnnCell {
    /// tanh or ReLU (PyTorch's `nonlinearity`), or any of ONNX's activations
    pub nonlinearity: Activation,
    pub leak: Leak,
    /// ONNX `clip`: the pre-activation clamped to [−clip, clip] (finite, > 0); `None` = off
    /// (PyTorch).
    pub clip: Option<f64>,
}

impl Default for RnnCell {
    fn default() -> Self {
        Self {
            nonlinearity: Activation::Tanh,
            leak: Leak::None,
            clip: None,
        }
    }
}

impl RnnCell {
    pub(crate) fn validate(&self, num_layers: usize) -> Result<()> {
        match &self.leak {
            Leak::None => Ok(()),
            Leak::Uniform(a) => check_rate("leak", *a),
            Leak::PerLayer(v) => {
                if v.len() != num_layers {
                    return Err(config_err(
                        "leak",
                        format!("one rate per layer: expected {num_layers}, got {}", v.len()),
                    ));
                }
                v.iter()
                    .enumerate()
                    .try_for_each(|(l, &a)| check_rate(&format!("leak[{l}]"), a))
            }
        }
    }
}

/// The forward step's products over all its rows: 0, (1)'s recurrent part; 1, none.
pub(crate) fn forward_product<T: Float>(k: usize, w: &StepWeights<'_, T>, s: &mut FwdStep<'_, T>) {
    let (n, h) = (s.n, w.hidden);
    if k == 0 {
        // (1) (recurrent dropout: (m ⊙ h_prev) W_hhᵀ)
        matmul(
            s.gates,
            h,
            Mat::rows(s.h_rec, n, h, h),
            w.w_hh_t,
            Accumulate::Add,
        );
    }
}

/// The forward step's row pass, (2) and (3), over the rows of `s`.
pub(crate) fn forward_rows<T: Float>(cell: &RnnCell, w: &StepWeights<'_, T>, s: FwdStep<'_, T>) {
    let (n, h) = (s.n, w.hidden);
    let alpha = w.leak;
    let keep = T::one() - alpha;
    let (u, h_out, h_prev) = (&mut s.gates[..n * h], &mut s.h[..n * h], &s.h_prev[..n * h]);
    // (2) u = act(a): the rows are contiguous, so one pass over all of them
    if let Some(clip) = super::clip_bound::<T>(cell.clip) {
        super::clamp(u, &mut s.keep[..n * h], clip);
    }
    cell.nonlinearity.apply_slice(u);
    // (3)
    if alpha == T::one() {
        h_out.copy_from_slice(u);
    } else {
        for ((hh, &u), &hp) in h_out.iter_mut().zip(&*u).zip(h_prev) {
            *hh = keep * hp + alpha * u;
        }
    }
}

/// The backward step's products over all its rows: 0, none; 1, (1)ᵀ's dh_prev.
pub(crate) fn backward_product<T: Float>(k: usize, w: &StepWeights<'_, T>, s: &mut BwdStep<'_, T>) {
    let (n, h) = (s.n, w.hidden);
    if k == 0 {
        return;
    }
    // (1)ᵀ dh_prev += da W_hh (recurrent dropout: m ⊙ (da W_hh))
    let (da, w_hh) = (Mat::rows(&*s.dgates, n, h, h), w.w_hh_b);
    if s.mask.is_empty() {
        matmul(s.dh, h, da, w_hh, Accumulate::Add);
    } else {
        matmul(s.dh_rec, h, da, w_hh, Accumulate::Overwrite);
        super::add_masked(s.dh, s.mask, s.dh_rec);
    }
}

/// The backward step's row pass, (3)ᵀ and (2)ᵀ, over the rows of `s`.
pub(crate) fn backward_rows<T: Float>(cell: &RnnCell, w: &StepWeights<'_, T>, s: BwdStep<'_, T>) {
    let (n, h) = (s.n, w.hidden);
    let alpha = w.leak;
    let keep = T::one() - alpha;
    let (da, dh) = (&mut s.dgates[..n * h], &mut s.dh[..n * h]);
    // (3)ᵀ du = α ⊙ dh;  dh_prev = (1 − α) ⊙ dh
    for (da, dh) in da.iter_mut().zip(dh.iter_mut()) {
        *da = alpha * *dh;
        *dh = keep * *dh;
    }
    // (2)ᵀ da = du ⊙ act'(u)
    cell.nonlinearity
        .mul_derivative_from_output(da, &s.gates[..n * h]);
    if cell.clip.is_some() {
        super::mul_assign(da, &s.keep[..n * h]);
    }
}
