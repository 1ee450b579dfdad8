//! Model pieces that sit around a recurrent stack: the linear head and the losses; and the
//! echo state network, whose reservoir is drawn and whose readout is fitted in closed form;
//! and the output-to-hidden recurrent network, whose previous output is its only recurrence.
//!
//! Each piece has a forward and a backward side by side, takes its parameters from one flat
//! buffer laid out like [`crate::Recurrent`]'s (PyTorch state_dict names), and accumulates
//! its parameter gradients into a flat buffer of the same layout, as PyTorch's `.grad` does.

pub mod cross_entropy;
pub mod cross_entropy_f32;
pub mod embedding;
pub mod esn;
pub mod feedback;
pub mod linear;
pub mod loss;
pub mod memory;
pub mod sequence;

pub use cross_entropy::{
    CrossEntropyConfig, CrossEntropyOutput, accuracy, bits_per_character, cross_entropy,
    cross_entropy_loss, perplexity,
};
pub use cross_entropy_f32::{CrossEntropySums, cross_entropy_in_place, cross_entropy_sums};
pub use embedding::{Embedding, EmbeddingConfig};
pub use esn::{Esn, EsnConfig, EsnData, FitReport, ridge_regression, spectral_radius};
pub use feedback::{Feed, Feedback, FeedbackConfig, FeedbackStepper, FeedbackTape};
pub use linear::{Linear, LinearConfig};
pub use loss::{Reduction, mse_loss, mse_loss_backward};
pub use memory::{MemoryEstimate, estimate_memory};
pub use sequence::{
    Input, ModelGrad, ModelInput, ModelOutput, ModelParam, OutputForm, SequenceModel,
    SequenceModelConfig, SequenceTape, TieWeights,
};

/// The f64 central-difference check the model pieces' tests share (the same criterion as
/// `tests/gradcheck.rs` applies to the recurrent stack).
#[cfg(test)]
pub(crate) mod gradcheck {
    /// Relative error allowed between the analytic and the central-difference gradient.
    /// Central differences with step [`EPS`] on these smooth, unit-scale f64 functions are
    /// accurate to ~1e-9; 1e-6 leaves room and still catches any wrong term.
    pub const GRADCHECK_TOL: f64 = 1e-6;
    /// Below this magnitude (|analytic| + |numeric|) the comparison becomes absolute, since
    /// a relative error of two near-zero numbers means nothing.
    pub const GRADCHECK_FLOOR: f64 = 1e-7;
    /// Step of the central difference.
    pub const EPS: f64 = 1e-6;

    pub fn rel_err(a: f64, n: f64) -> f64 {
        (a - n).abs() / (a.abs() + n.abs()).max(GRADCHECK_FLOOR)
    }

    /// Compares `analytic` with `(f(x + ε e_k) − f(x − ε e_k)) / 2ε` for every k.
    pub fn check(what: &str, x: &[f64], analytic: &[f64], f: impl Fn(&[f64]) -> f64) {
        assert_eq!(x.len(), analytic.len(), "{what}: lengths differ");
        let mut v = x.to_vec();
        for k in 0..v.len() {
            let x0 = v[k];
            v[k] = x0 + EPS;
            let up = f(&v);
            v[k] = x0 - EPS;
            let down = f(&v);
            v[k] = x0;
            let numeric = (up - down) / (2.0 * EPS);
            let e = rel_err(analytic[k], numeric);
            assert!(
                e <= GRADCHECK_TOL,
                "{what}[{k}]: analytic {:e}, numeric {numeric:e}, rel err {e:e}",
                analytic[k]
            );
        }
    }
}
