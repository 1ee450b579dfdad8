//! What one run of a generated task measured, for `recur compare`: its training curve, when
//! it first solved the validation set, its test figures and its wall time; and when a run
//! counts as a success.
//!
//! Each task counts a sequence solved by its own criterion: the adding and multiplication
//! problems when the prediction is within [`recur::data::AddingProblem::SOLVED_TOLERANCE`]
//! (0.04) of the target, the classification tasks (temporal order, timing) when the largest
//! logit is the class. A run succeeds when at least [`SOLVED_FRACTION`] of the fresh test
//! set (2,560 sequences) is solved; it solves at the first validation (every
//! `--eval-every` steps, on 512 sequences) at which [`SOLVED_FRACTION`] of the validation set
//! is.

/// The share of sequences a run must solve to count as a success (the adding problem's
/// criterion in the README: ≥ 99% of 2,560 fresh sequences within 0.04).
pub const SOLVED_FRACTION: f64 = 0.99;

/// One run's figures.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// the training loss of each step, in order (empty for a closed-form fit)
    pub losses: Vec<f64>,
    /// (step, fraction of the validation set solved) at each validation after step 0
    pub valid: Vec<(usize, f64)>,
    /// the fresh test set's mean loss and the fraction of it solved
    pub test_loss: f64,
    pub test_solved: f64,
    /// seconds from building the model to the end of the test
    pub elapsed_s: f64,
}

impl Outcome {
    /// Whether the run succeeded: at least [`SOLVED_FRACTION`] of the test set solved.
    pub fn succeeded(&self) -> bool {
        solved(self.test_solved)
    }

    /// The first validation step at which at least [`SOLVED_FRACTION`] of the validation set
    /// was solved.
    pub fn steps_to_solve(&self) -> Option<usize> {
        self.valid
            .iter()
            .find(|&&(_, f)| solved(f))
            .map(|&(step, _)| step)
    }
}

/// Whether a solved fraction meets [`SOLVED_FRACTION`].
fn solved(fraction: f64) -> bool {
    fraction >= SOLVED_FRACTION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_needs_99_percent_of_the_test_set() {
        let mut o = Outcome {
            test_solved: 0.99,
            ..Outcome::default()
        };
        assert!(o.succeeded());
        o.test_solved = 0.9899;
        assert!(!o.succeeded());
        o.test_solved = f64::NAN;
        assert!(!o.succeeded());
    }

    #[test]
    fn steps_to_solve_is_the_first_validation_at_the_threshold() {
        let o = Outcome {
            valid: vec![(100, 0.5), (200, 0.995), (300, 0.98), (400, 1.0)],
            ..Outcome::default()
        };
        assert_eq!(o.steps_to_solve(), Some(200));
        let never = Outcome {
            valid: vec![(100, 0.5), (200, 0.989)],
            ..Outcome::default()
        };
        assert_eq!(never.steps_to_solve(), None);
    }
}
