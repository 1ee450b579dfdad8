//! The echo state network (Jaeger 2001; Jaeger & Haas 2004): a fixed, seeded random reservoir
//! of leaky tanh units whose states a linear readout, fitted in closed form, maps to the
//! targets. Nothing is trained by gradient: the reservoir is drawn once, and the readout is
//! ridge regression.
//!
//! With input u_t (K values), reservoir state x_t (N units, x_{−1} = 0) and leak rate a:
//! ```text
//! x̃_t = tanh(W_in [1; u_t] + W x_{t−1})          W_in [N, 1 + K], W [N, N]
//! x_t = (1 − a) x_{t−1} + a x̃_t
//! y_t = W_out [1; u_t; x_t]                      W_out [M, 1 + K + N]
//! ```
//! The reservoir (Lukoševičius 2012, "A practical guide to applying echo state networks"):
//! each recurrent weight is nonzero with probability 1 − sparsity and then uniform in (−1, 1),
//! and W is scaled so that its largest |eigenvalue| (computed by faer's eigenvalue solver) is
//! the spectral radius ρ; W_in's input columns are uniform in ±input_scaling, its bias column
//! uniform in ±bias_scaling.
//!
//! The readout: the feature rows z = [1; u_t; x_t] of every step from the washout on (or, with
//! [`OutputForm::Last`], of each sequence's last step) stacked into Z, the targets into Y,
//! ```text
//! W_outᵀ = argmin ‖Z W − Y‖² + λ ‖W‖²  =  (ZᵀZ + λ I)⁻¹ ZᵀY          (ridge regression)
//! ```
//! solved by a Cholesky factorisation of ZᵀZ + λI (faer); [`Esn::fit`] tries every λ of a
//! grid and keeps the one with the lowest mean squared error on validation data.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::OutputForm;
use crate::error::{Error, Result, config_err, shape_err};
use crate::tensor::Tensor;

/// The hyperparameters of a reservoir and its readout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsnConfig {
    /// K: values read per step.
    pub input_size: usize,
    /// N: reservoir units.
    pub reservoir_size: usize,
    /// M: readout outputs.
    pub output_size: usize,
    /// ρ: the largest |eigenvalue| of W after scaling.
    pub spectral_radius: f64,
    /// W_in's input columns are uniform in ±input_scaling.
    pub input_scaling: f64,
    /// W_in's bias column is uniform in ±bias_scaling.
    pub bias_scaling: f64,
    /// a ∈ (0, 1]: 1 is the plain tanh reservoir.
    pub leak_rate: f64,
    /// The probability that a recurrent weight is zero, in [0, 1).
    pub sparsity: f64,
    /// Steps of each sequence whose states the readout does not see (every-step readout).
    pub washout: usize,
    /// What the readout reads: every step's state, or each sequence's last.
    #[serde(with = "output_form")]
    pub output: OutputForm,
}

impl Default for EsnConfig {
    fn default() -> Self {
        Self {
            input_size: 1,
            reservoir_size: 100,
            output_size: 1,
            spectral_radius: 0.9,
            input_scaling: 1.0,
            bias_scaling: 0.0,
            leak_rate: 1.0,
            sparsity: 0.9,
            washout: 0,
            output: OutputForm::EveryStep,
        }
    }
}

mod output_form {
    use super::OutputForm;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(o: &OutputForm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match o {
            OutputForm::EveryStep => "every_step",
            OutputForm::Last => "last",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OutputForm, D::Error> {
        match String::deserialize(d)?.as_str() {
            "every_step" => Ok(OutputForm::EveryStep),
            "last" => Ok(OutputForm::Last),
            other => Err(serde::de::Error::custom(format!(
                "output: expected `every_step` or `last`, got `{other}`"
            ))),
        }
    }
}

impl EsnConfig {
    /// The largest reservoir recur builds (W alone is N² f64 values: 512 MiB at this size).
    pub const MAX_RESERVOIR_SIZE: usize = 8192;

    /// 1 + K + N: the width of a feature row.
    pub fn feature_size(&self) -> usize {
        1 + self.input_size + self.reservoir_size
    }

    /// Checks every value's range and that the sizes fit.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first value out of range.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("input_size", self.input_size),
            ("reservoir_size", self.reservoir_size),
            ("output_size", self.output_size),
        ];
        for (what, v) in positive {
            if v == 0 {
                return Err(config_err(what, "must be at least 1"));
            }
        }
        if self.reservoir_size > Self::MAX_RESERVOIR_SIZE {
            return Err(config_err(
                "reservoir_size",
                format!(
                    "{} is above the largest reservoir, {}",
                    self.reservoir_size,
                    Self::MAX_RESERVOIR_SIZE
                ),
            ));
        }
        if self.input_size > Self::MAX_RESERVOIR_SIZE || self.output_size > Self::MAX_RESERVOIR_SIZE
        {
            return Err(config_err(
                "input_size/output_size",
                format!("at most {} each", Self::MAX_RESERVOIR_SIZE),
            ));
        }
        let finite_nonneg = [
            ("input_scaling", self.input_scaling),
            ("bias_scaling", self.bias_scaling),
        ];
        for (what, v) in finite_nonneg {
            if !(v.is_finite() && v >= 0.0) {
                return Err(config_err(what, format!("must be finite and ≥ 0, got {v}")));
            }
        }
        if !(self.spectral_radius.is_finite() && self.spectral_radius > 0.0) {
            return Err(config_err(
                "spectral_radius",
                format!("must be finite and > 0, got {}", self.spectral_radius),
            ));
        }
        if !(self.leak_rate > 0.0 && self.leak_rate <= 1.0) {
            return Err(config_err(
                "leak_rate",
                format!("must lie in (0, 1], got {}", self.leak_rate),
            ));
        }
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(config_err(
                "sparsity",
                format!("must lie in [0, 1), got {}", self.sparsity),
            ));
        }
        Ok(())
    }
}

/// A reservoir and its readout.
///
/// ```
/// use recur::model::{Esn, EsnConfig, OutputForm};
/// use recur::Tensor;
/// // learn to output the input of one step earlier
/// let config = EsnConfig { reservoir_size: 50, washout: 10, ..Default::default() };
/// let mut esn = Esn::new(config, 7)?;
/// let u: Vec<f64> = (0..300).map(|t| (t as f64 * 0.3).sin()).collect();
/// let y: Vec<f64> = std::iter::once(0.0).chain(u[..299].iter().copied()).collect();
/// let x = Tensor::new(u, &[300, 1, 1])?;
/// let y = Tensor::new(y, &[300, 1, 1])?;
/// let fit = esn.fit(&[(&x, None, &y)], &[(&x, None, &y)], &[1e-8, 1e-6])?;
/// assert!(fit.valid_mse < 1e-4);
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Esn {
    config: EsnConfig,
    /// [N, 1 + K], row-major; column 0 is the bias.
    w_in: Vec<f64>,
    /// [N, N], row-major.
    w: Vec<f64>,
    /// [M, 1 + K + N], row-major; zero until fitted.
    w_out: Vec<f64>,
    /// The λ of the fitted readout (0 before fitting).
    ridge: f64,
}

/// What [`Esn::fit`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct FitReport {
    /// The λ kept.
    pub ridge: f64,
    /// Mean squared error per target value on the training and validation rows with it.
    pub train_mse: f64,
    pub valid_mse: f64,
    /// (λ, validation MSE) for every λ of the grid tried.
    pub grid: Vec<(f64, f64)>,
}

/// Feature rows `rows × (1 + K + N)` (row-major) and each row's (step, sequence).
pub type Features = (Vec<f64>, Vec<(usize, usize)>);

/// Data for [`Esn::fit`]: input `[seq_len, batch, K]`, optional lengths, targets
/// (`[seq_len, batch, M]` for an every-step readout, `[batch, M]` for the last step's).
pub type EsnData<'a> = (&'a Tensor<f64>, Option<&'a [usize]>, &'a Tensor<f64>);

impl Esn {
    /// A reservoir drawn from `seed` (ChaCha8), scaled to the spectral radius; the readout
    /// zero until [`Esn::fit`].
    ///
    /// # Errors
    /// [`Error::Config`] for a configuration out of range, or a reservoir whose drawn W has
    /// no nonzero eigenvalue (too sparse to scale).
    pub fn new(config: EsnConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let (n, k) = (config.reservoir_size, config.input_size);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut w = vec![0.0; n * n];
        for v in &mut w {
            // one draw decides the connection, a second its weight: the same reservoir for
            // the same seed whatever the sparsity does to the count
            let keep = rng.random::<f64>() >= config.sparsity;
            let value = rng.random_range(-1.0..1.0);
            if keep {
                *v = value;
            }
        }
        let radius = spectral_radius(&w, n)?;
        if radius == 0.0 {
            return Err(config_err(
                "sparsity",
                format!(
                    "the drawn {n} × {n} reservoir has spectral radius 0 at sparsity {}; lower \
                     the sparsity or grow the reservoir",
                    config.sparsity
                ),
            ));
        }
        let scale = config.spectral_radius / radius;
        for v in &mut w {
            *v *= scale;
        }
        let mut w_in = vec![0.0; n * (1 + k)];
        for row in w_in.chunks_exact_mut(1 + k) {
            row[0] = config.bias_scaling * rng.random_range(-1.0..1.0);
            for v in &mut row[1..] {
                *v = config.input_scaling * rng.random_range(-1.0..1.0);
            }
        }
        let w_out = vec![0.0; config.output_size * config.feature_size()];
        Ok(Self {
            config,
            w_in,
            w,
            w_out,
            ridge: 0.0,
        })
    }

    /// An ESN from its parts (a file's, or a reference's): W_in `[N, 1 + K]`, W `[N, N]`,
    /// W_out `[M, 1 + K + N]`, row-major, and the readout's λ.
    ///
    /// # Errors
    /// [`Error::Config`] for a configuration out of range; [`Error::Length`] for a part of
    /// the wrong length.
    pub fn from_parts(
        config: EsnConfig,
        w_in: Vec<f64>,
        w: Vec<f64>,
        w_out: Vec<f64>,
        ridge: f64,
    ) -> Result<Self> {
        config.validate()?;
        let [s_in, s_w, s_out] = Self::part_shapes(&config);
        for (what, shape, len) in [
            ("w_in", s_in, w_in.len()),
            ("w", s_w, w.len()),
            ("w_out", s_out, w_out.len()),
        ] {
            if shape[0] * shape[1] != len {
                return Err(Error::Length {
                    what: what.into(),
                    shape: crate::Shape(shape.to_vec()),
                    len,
                });
            }
        }
        Ok(Self {
            config,
            w_in,
            w,
            w_out,
            ridge,
        })
    }

    /// The shapes of W_in, W and W_out for a configuration.
    pub fn part_shapes(config: &EsnConfig) -> [[usize; 2]; 3] {
        let (n, k, m) = (config.reservoir_size, config.input_size, config.output_size);
        [[n, 1 + k], [n, n], [m, config.feature_size()]]
    }

    pub fn config(&self) -> &EsnConfig {
        &self.config
    }

    /// W_in `[N, 1 + K]`, row-major, column 0 the bias.
    pub fn input_weights(&self) -> &[f64] {
        &self.w_in
    }

    /// W `[N, N]`, row-major.
    pub fn reservoir(&self) -> &[f64] {
        &self.w
    }

    /// W_out `[M, 1 + K + N]`, row-major.
    pub fn readout(&self) -> &[f64] {
        &self.w_out
    }

    /// The readout's λ (0 before fitting).
    pub fn ridge(&self) -> f64 {
        self.ridge
    }

    /// Checks an input `[seq_len, batch, K]` and its lengths; returns (seq_len, batch) and
    /// each sequence's length.
    fn check_input(
        &self,
        input: &Tensor<f64>,
        lengths: Option<&[usize]>,
    ) -> Result<(usize, usize, Vec<usize>)> {
        let s = input.shape();
        if s.len() != 3 || s[2] != self.config.input_size {
            return Err(Error::Rank {
                what: "esn input".into(),
                expected_rank: 3,
                expected: format!("[seq_len, batch, {}]", self.config.input_size),
                got: crate::Shape(s.to_vec()),
            });
        }
        let (n, b) = (s[0], s[1]);
        if n == 0 || b == 0 {
            return Err(Error::Empty(
                "an esn input with no steps or no sequences".into(),
            ));
        }
        let lengths = match lengths {
            None => vec![n; b],
            Some(l) => {
                if l.len() != b {
                    return Err(shape_err("lengths", &[b], &[l.len()]));
                }
                if let Some((index, &length)) =
                    l.iter().enumerate().find(|&(_, &v)| v == 0 || v > n)
                {
                    return Err(Error::SequenceLength {
                        index,
                        length,
                        seq_len: n,
                    });
                }
                l.to_vec()
            }
        };
        Ok((n, b, lengths))
    }

    /// The reservoir's states `[seq_len, batch, N]` for `input` `[seq_len, batch, K]`, zero
    /// past each sequence's end.
    ///
    /// # Errors
    /// [`Error::Rank`] for an input of another width; [`Error::Empty`] for no steps or
    /// sequences; [`Error::Shape`] / [`Error::SequenceLength`] for bad lengths.
    pub fn states(&self, input: &Tensor<f64>, lengths: Option<&[usize]>) -> Result<Tensor<f64>> {
        let (n_steps, batch, lengths) = self.check_input(input, lengths)?;
        let (n, k, a) = (
            self.config.reservoir_size,
            self.config.input_size,
            self.config.leak_rate,
        );
        let total = n_steps
            .checked_mul(batch)
            .and_then(|v| v.checked_mul(n))
            .ok_or_else(|| config_err("esn states", "seq_len × batch × N overflows"))?;
        // the input projections of every step, outside the time loop
        let mut out = vec![0.0; total];
        let u = input.data();
        for (row, o) in out.chunks_exact_mut(n).enumerate() {
            let ut = &u[row * k..(row + 1) * k];
            for (i, v) in o.iter_mut().enumerate() {
                let wi = &self.w_in[i * (1 + k)..(i + 1) * (1 + k)];
                *v = wi[0] + wi[1..].iter().zip(ut).map(|(w, x)| w * x).sum::<f64>();
            }
        }
        // the recurrence: every sequence's state carried through time, one product per step
        // for the whole batch (a sequence that has ended keeps its last state in `prev` and
        // writes zeros)
        let mut prev = vec![0.0; batch * n];
        let w = faer::MatRef::from_row_major_slice(&self.w, n, n);
        for t in 0..n_steps {
            let rows = &mut out[t * batch * n..(t + 1) * batch * n];
            // pre-activations: W_in [1; u_t] (already there) + W x_{t−1}
            faer::linalg::matmul::matmul(
                faer::MatMut::from_row_major_slice_mut(rows, batch, n),
                faer::Accum::Add,
                faer::MatRef::from_row_major_slice(&prev, batch, n),
                w.transpose(),
                1.0,
                faer::Par::Seq,
            );
            for ((row, x), &len) in (rows.chunks_exact_mut(n))
                .zip(prev.chunks_exact_mut(n))
                .zip(lengths.iter())
            {
                if t >= len {
                    row.fill(0.0);
                    continue;
                }
                for (v, &s) in row.iter_mut().zip(x.iter()) {
                    *v = (1.0 - a) * s + a * v.tanh();
                }
                x.copy_from_slice(row);
            }
        }
        Tensor::new(out, &[n_steps, batch, n])
    }

    /// The readout's feature rows [1; u_t; x_t] (`rows × (1 + K + N)`, row-major) and, for
    /// each row, its (step, sequence): every step from the washout to each end, or each
    /// sequence's last step.
    ///
    /// # Errors
    /// As [`Esn::states`]; [`Error::Empty`] when the washout leaves no step.
    pub fn features(&self, input: &Tensor<f64>, lengths: Option<&[usize]>) -> Result<Features> {
        let states = self.states(input, lengths)?;
        let (n_steps, batch, lengths) = self.check_input(input, lengths)?;
        let (n, k) = (self.config.reservoir_size, self.config.input_size);
        let at: Vec<(usize, usize)> = match self.config.output {
            OutputForm::Last => lengths
                .iter()
                .enumerate()
                .map(|(b, &l)| (l - 1, b))
                .collect(),
            OutputForm::EveryStep => (0..n_steps)
                .flat_map(|t| (0..batch).map(move |b| (t, b)))
                .filter(|&(t, b)| t >= self.config.washout && t < lengths[b])
                .collect(),
        };
        if at.is_empty() {
            return Err(Error::Empty(format!(
                "no step after the washout of {} steps",
                self.config.washout
            )));
        }
        let f = self.config.feature_size();
        let mut z = vec![0.0; at.len() * f];
        let (u, x) = (input.data(), states.data());
        for (row, &(t, b)) in z.chunks_exact_mut(f).zip(&at) {
            let r = t * batch + b;
            row[0] = 1.0;
            row[1..1 + k].copy_from_slice(&u[r * k..(r + 1) * k]);
            row[1 + k..].copy_from_slice(&x[r * n..(r + 1) * n]);
        }
        Ok((z, at))
    }

    /// The targets of the rows `at` from a target tensor, `rows × M`.
    fn target_rows(
        &self,
        target: &Tensor<f64>,
        at: &[(usize, usize)],
        n_steps: usize,
        batch: usize,
    ) -> Result<Vec<f64>> {
        let m = self.config.output_size;
        let expected: Vec<usize> = match self.config.output {
            OutputForm::Last => vec![batch, m],
            OutputForm::EveryStep => vec![n_steps, batch, m],
        };
        if target.shape() != expected.as_slice() {
            return Err(shape_err("esn target", &expected, target.shape()));
        }
        let y = target.data();
        let mut out = Vec::with_capacity(at.len() * m);
        for &(t, b) in at {
            let r = match self.config.output {
                OutputForm::Last => b,
                OutputForm::EveryStep => t * batch + b,
            };
            out.extend_from_slice(&y[r * m..(r + 1) * m]);
        }
        Ok(out)
    }

    /// Fits the readout by ridge regression on the batches of `train` for every λ of `grid`
    /// and keeps the one with the lowest mean squared error on the batches of `valid`. The
    /// batches are read one at a time (ZᵀZ and ZᵀY accumulate; the validation rows are kept),
    /// so a training set need not fit in memory as one feature matrix.
    ///
    /// # Errors
    /// As [`Esn::features`]; [`Error::Shape`] for targets of another shape; [`Error::Empty`]
    /// for no training or no validation batch; [`Error::Config`] for an empty grid, a λ that
    /// is negative or not finite, or normal equations that are not positive definite at
    /// every λ (λ = 0 on collinear features).
    pub fn fit(
        &mut self,
        train: &[EsnData<'_>],
        valid: &[EsnData<'_>],
        grid: &[f64],
    ) -> Result<FitReport> {
        if grid.is_empty() {
            return Err(config_err("ridge grid", "give at least one λ"));
        }
        if let Some(bad) = grid.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
            return Err(config_err(
                "ridge grid",
                format!("λ = {bad} is not finite and ≥ 0"),
            ));
        }
        if train.is_empty() || valid.is_empty() {
            return Err(Error::Empty(
                "an esn fit needs training and validation data".into(),
            ));
        }
        let f = self.config.feature_size();
        let m = self.config.output_size;
        let mut gram = Gram::zeros(f, m);
        for &d in train {
            let (z, y, rows) = self.design(d)?;
            gram.add(&z, &y, rows);
        }
        let valid_rows = valid
            .iter()
            .map(|&d| self.design(d))
            .collect::<Result<Vec<_>>>()?;
        let mut best: Option<(f64, f64, Vec<f64>)> = None;
        let mut tried = Vec::with_capacity(grid.len());
        let mut last_err = None;
        for &lambda in grid {
            match gram.solve(lambda) {
                Ok(w_out) => {
                    let (mut sq, mut count) = (0.0, 0);
                    for (z, y, rows) in &valid_rows {
                        sq += squared_error(&w_out, z, f, y, m);
                        count += rows * m;
                    }
                    let mse = sq / count.max(1) as f64;
                    tried.push((lambda, mse));
                    if best.as_ref().is_none_or(|(_, b, _)| mse < *b) {
                        best = Some((lambda, mse, w_out));
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some((ridge, valid_mse, w_out)) = best else {
            return Err(last_err.unwrap_or_else(|| config_err("ridge grid", "no λ solved")));
        };
        let train_mse = gram.mse(&w_out);
        self.w_out = w_out;
        self.ridge = ridge;
        Ok(FitReport {
            ridge,
            train_mse,
            valid_mse,
            grid: tried,
        })
    }

    /// Feature rows, target rows and the row count of a data set.
    fn design(&self, (x, lengths, target): EsnData<'_>) -> Result<(Vec<f64>, Vec<f64>, usize)> {
        let (z, at) = self.features(x, lengths)?;
        let s = x.shape();
        let y = self.target_rows(target, &at, s[0], s[1])?;
        Ok((z, y, at.len()))
    }

    /// The readout's outputs: `[seq_len, batch, M]` (every step, zero past each end) or
    /// `[batch, M]` (each sequence's last step).
    ///
    /// # Errors
    /// As [`Esn::features`].
    pub fn predict(&self, input: &Tensor<f64>, lengths: Option<&[usize]>) -> Result<Tensor<f64>> {
        let (n_steps, batch, lens) = self.check_input(input, lengths)?;
        let m = self.config.output_size;
        let f = self.config.feature_size();
        let (z, at) = match self.config.output {
            OutputForm::Last => self.features(input, lengths)?,
            OutputForm::EveryStep => {
                // every step, the washout included
                let washed = Esn {
                    config: EsnConfig {
                        washout: 0,
                        ..self.config.clone()
                    },
                    ..self.clone()
                };
                washed.features(input, Some(&lens))?
            }
        };
        let shape: Vec<usize> = match self.config.output {
            OutputForm::Last => vec![batch, m],
            OutputForm::EveryStep => vec![n_steps, batch, m],
        };
        let mut out = vec![0.0; shape.iter().product()];
        for (row, &(t, b)) in z.chunks_exact(f).zip(&at) {
            let r = match self.config.output {
                OutputForm::Last => b,
                OutputForm::EveryStep => t * batch + b,
            };
            for j in 0..m {
                let w = &self.w_out[j * f..(j + 1) * f];
                out[r * m + j] = w.iter().zip(row).map(|(a, b)| a * b).sum();
            }
        }
        Tensor::new(out, &shape)
    }

    /// Runs one sequence `prime` `[steps, K]` (row-major) through the reservoir, then feeds
    /// each output back as the next input for `horizon` steps (generative mode, K = M): the
    /// `horizon` outputs, the first being the prediction that follows the primer.
    ///
    /// # Errors
    /// As [`Esn::continue_from`]; [`Error::Empty`] for an empty primer; [`Error::Length`]
    /// for a primer that is not whole steps.
    pub fn generate(&self, prime: &[f64], horizon: usize) -> Result<Vec<f64>> {
        let k = self.config.input_size;
        if prime.is_empty() {
            return Err(Error::Empty("a primer of no steps".into()));
        }
        if !prime.len().is_multiple_of(k) {
            return Err(Error::Length {
                what: "primer".into(),
                shape: crate::Shape(vec![prime.len() / k + 1, k]),
                len: prime.len(),
            });
        }
        let steps = prime.len() / k;
        let x = Tensor::new(prime.to_vec(), &[steps, 1, k])?;
        let states = self.states(&x, None)?;
        let n = self.config.reservoir_size;
        let last = &states.data()[(steps - 1) * n..];
        self.continue_from(last, &prime[(steps - 1) * k..], horizon)
    }

    /// Generative mode from a reservoir state: `state` is x_t (N values) after reading
    /// `input` u_t (K values); y_t = W_out [1; u_t; x_t] predicts u_{t+1} and is fed back as
    /// the next input, `horizon` times (K = M). Returns y_t, y_{t+1}, … (`horizon × M`).
    ///
    /// # Errors
    /// [`Error::Config`] when K ≠ M or the readout reads the last step only;
    /// [`Error::Length`] for a state or input of the wrong length.
    pub fn continue_from(&self, state: &[f64], input: &[f64], horizon: usize) -> Result<Vec<f64>> {
        let (n, k, m) = (
            self.config.reservoir_size,
            self.config.input_size,
            self.config.output_size,
        );
        if k != m || self.config.output != OutputForm::EveryStep {
            return Err(config_err(
                "generate",
                "needs an every-step readout with as many outputs as inputs",
            ));
        }
        for (what, v, len) in [("state", state, n), ("input", input, k)] {
            if v.len() != len {
                return Err(Error::Length {
                    what: what.into(),
                    shape: crate::Shape(vec![len]),
                    len: v.len(),
                });
            }
        }
        let total = horizon
            .checked_mul(m)
            .ok_or_else(|| config_err("horizon", format!("{horizon} steps overflow")))?;
        let a = self.config.leak_rate;
        let f = self.config.feature_size();
        let mut x = state.to_vec();
        let mut next = vec![0.0; n];
        let mut u = input.to_vec();
        let mut out = Vec::with_capacity(total);
        for step in 0..horizon {
            if step > 0 {
                // read the last output as the input
                u.copy_from_slice(&out[(step - 1) * m..step * m]);
                for (i, nx) in next.iter_mut().enumerate() {
                    let wi = &self.w_in[i * (1 + k)..(i + 1) * (1 + k)];
                    let wr = &self.w[i * n..(i + 1) * n];
                    let pre = wi[0]
                        + wi[1..].iter().zip(&u).map(|(w, v)| w * v).sum::<f64>()
                        + wr.iter().zip(&x).map(|(w, s)| w * s).sum::<f64>();
                    *nx = (1.0 - a) * x[i] + a * pre.tanh();
                }
                std::mem::swap(&mut x, &mut next);
            }
            for j in 0..m {
                let w = &self.w_out[j * f..(j + 1) * f];
                let y = w[0]
                    + w[1..1 + k].iter().zip(&u).map(|(a, b)| a * b).sum::<f64>()
                    + w[1 + k..].iter().zip(&x).map(|(a, b)| a * b).sum::<f64>();
                out.push(y);
            }
        }
        Ok(out)
    }
}

/// ZᵀZ, ZᵀY and YᵀY (per output) of a design, accumulated batch by batch, for solving at
/// several λ.
struct Gram {
    ztz: faer::Mat<f64>,
    zty: faer::Mat<f64>,
    yty: Vec<f64>,
    rows: usize,
}

impl Gram {
    fn zeros(f: usize, m: usize) -> Self {
        Self {
            ztz: faer::Mat::zeros(f, f),
            zty: faer::Mat::zeros(f, m),
            yty: vec![0.0; m],
            rows: 0,
        }
    }

    /// Adds `rows` rows: Z `rows × F` and Y `rows × M`, row-major.
    fn add(&mut self, z: &[f64], y: &[f64], rows: usize) {
        let (f, m) = (self.ztz.nrows(), self.zty.ncols());
        let zm = faer::MatRef::from_row_major_slice(z, rows, f);
        let ym = faer::MatRef::from_row_major_slice(y, rows, m);
        use faer::linalg::matmul::matmul;
        matmul(
            &mut self.ztz,
            faer::Accum::Add,
            zm.transpose(),
            zm,
            1.0,
            faer::Par::Seq,
        );
        matmul(
            &mut self.zty,
            faer::Accum::Add,
            zm.transpose(),
            ym,
            1.0,
            faer::Par::Seq,
        );
        for row in y.chunks_exact(m) {
            for (s, v) in self.yty.iter_mut().zip(row) {
                *s += v * v;
            }
        }
        self.rows += rows;
    }

    /// W_out `[M, F]` row-major: (ZᵀZ + λI)⁻¹ ZᵀY, transposed.
    fn solve(&self, lambda: f64) -> Result<Vec<f64>> {
        let f = self.ztz.nrows();
        let m = self.zty.ncols();
        let mut a = self.ztz.clone();
        for i in 0..f {
            a[(i, i)] += lambda;
        }
        let llt = a.llt(faer::Side::Lower).map_err(|_| {
            config_err(
                "ridge",
                format!("ZᵀZ + λI is not positive definite at λ = {lambda}; use a larger λ"),
            )
        })?;
        let w = faer::linalg::solvers::Solve::solve(&llt, &self.zty);
        let mut out = vec![0.0; m * f];
        for j in 0..m {
            for i in 0..f {
                out[j * f + i] = w[(i, j)];
            }
        }
        if out.iter().any(|v| !v.is_finite()) {
            return Err(config_err(
                "ridge",
                format!("the solve at λ = {lambda} is not finite"),
            ));
        }
        Ok(out)
    }

    /// The mean squared error per target value of W_out on the accumulated rows, from the
    /// sums: ‖Zw − y‖² = wᵀ(ZᵀZ)w − 2wᵀ(Zᵀy) + yᵀy for each output.
    fn mse(&self, w_out: &[f64]) -> f64 {
        let (f, m) = (self.ztz.nrows(), self.zty.ncols());
        let mut sum = 0.0;
        for j in 0..m {
            let w = &w_out[j * f..(j + 1) * f];
            let mut quad = 0.0;
            for a in 0..f {
                let row: f64 = (0..f).map(|b| self.ztz[(a, b)] * w[b]).sum();
                quad += w[a] * row;
            }
            let cross: f64 = (0..f).map(|a| w[a] * self.zty[(a, j)]).sum();
            sum += (quad - 2.0 * cross + self.yty[j]).max(0.0);
        }
        sum / (self.rows * m).max(1) as f64
    }
}

/// The summed squared error of W_out on a design.
fn squared_error(w_out: &[f64], z: &[f64], f: usize, y: &[f64], m: usize) -> f64 {
    let mut sum = 0.0;
    for (zr, yr) in z.chunks_exact(f).zip(y.chunks_exact(m)) {
        for (j, &t) in yr.iter().enumerate() {
            let p: f64 = w_out[j * f..(j + 1) * f]
                .iter()
                .zip(zr)
                .map(|(a, b)| a * b)
                .sum();
            sum += (p - t) * (p - t);
        }
    }
    sum
}

/// Ridge regression on row-major data: W `[M, F]` minimising ‖Z Wᵀ − Y‖² + λ‖W‖² for Z
/// `rows × F`, Y `rows × M`.
///
/// # Errors
/// [`Error::Length`] when Z or Y does not fill its shape; [`Error::Config`] for a λ that is
/// negative or not finite, or normal equations that are not positive definite.
pub fn ridge_regression(
    z: &[f64],
    y: &[f64],
    rows: usize,
    f: usize,
    m: usize,
    lambda: f64,
) -> Result<Vec<f64>> {
    for (what, v, cols) in [("z", z, f), ("y", y, m)] {
        if rows.checked_mul(cols) != Some(v.len()) {
            return Err(Error::Length {
                what: what.into(),
                shape: crate::Shape(vec![rows, cols]),
                len: v.len(),
            });
        }
    }
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(config_err(
            "ridge",
            format!("λ = {lambda} is not finite and ≥ 0"),
        ));
    }
    let mut gram = Gram::zeros(f, m);
    gram.add(z, y, rows);
    gram.solve(lambda)
}

/// The largest |eigenvalue| of the `n × n` row-major matrix `w` (faer's eigenvalue solver).
///
/// # Errors
/// [`Error::Length`] when `w` is not `n × n`; [`Error::Config`] when the solver does not
/// converge or `w` holds a value that is not finite.
pub fn spectral_radius(w: &[f64], n: usize) -> Result<f64> {
    if n.checked_mul(n) != Some(w.len()) {
        return Err(Error::Length {
            what: "w".into(),
            shape: crate::Shape(vec![n, n]),
            len: w.len(),
        });
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(config_err("reservoir", "a weight is not finite"));
    }
    let m = faer::MatRef::from_row_major_slice(w, n, n).to_owned();
    let eig = m
        .eigenvalues()
        .map_err(|e| config_err("reservoir", format!("eigenvalues did not converge: {e:?}")))?;
    Ok(eig.iter().map(|c| c.norm()).fold(0.0, f64::max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(n: usize) -> EsnConfig {
        EsnConfig {
            input_size: 2,
            reservoir_size: n,
            output_size: 1,
            spectral_radius: 0.8,
            input_scaling: 0.5,
            bias_scaling: 0.2,
            leak_rate: 0.6,
            sparsity: 0.5,
            washout: 5,
            output: OutputForm::EveryStep,
        }
    }

    #[test]
    fn the_reservoir_is_seeded_and_scaled() {
        let a = Esn::new(config(40), 3).unwrap();
        assert_eq!(a, Esn::new(config(40), 3).unwrap());
        assert_ne!(a, Esn::new(config(40), 4).unwrap());
        let rho = spectral_radius(a.reservoir(), 40).unwrap();
        assert!((rho - 0.8).abs() < 1e-10, "{rho}");
        let zeros = a.reservoir().iter().filter(|&&v| v == 0.0).count();
        assert!(
            (600..1000).contains(&zeros),
            "about half of 1600 zero: {zeros}"
        );
        // the input weights lie within their scalings
        for row in a.input_weights().chunks_exact(3) {
            assert!(row[0].abs() <= 0.2 && row[1..].iter().all(|v| v.abs() <= 0.5));
        }
    }

    /// A spectral radius known in closed form: a rotation by θ scaled by r has eigenvalues
    /// r e^{±iθ}.
    #[test]
    fn spectral_radius_of_a_known_matrix() {
        let (r, t) = (0.7f64, 0.3f64);
        let w = [r * t.cos(), -r * t.sin(), r * t.sin(), r * t.cos()];
        assert!((spectral_radius(&w, 2).unwrap() - r).abs() < 1e-14);
        assert!(spectral_radius(&w, 3).is_err());
        assert!(spectral_radius(&[f64::NAN], 1).is_err());
    }

    /// The state recurrence, checked one step at a time against the equations written out.
    #[test]
    fn states_follow_the_equations() {
        let esn = Esn::new(config(6), 1).unwrap();
        let u: Vec<f64> = (0..3 * 2 * 2).map(|i| (i as f64 * 0.7).sin()).collect();
        let x = Tensor::new(u.clone(), &[3, 2, 2]).unwrap();
        let s = esn.states(&x, Some(&[3, 2])).unwrap();
        let (win, w) = (esn.input_weights(), esn.reservoir());
        for b in 0..2 {
            let mut prev = [0.0f64; 6];
            for t in 0..[3, 2][b] {
                let ut = &u[(t * 2 + b) * 2..(t * 2 + b) * 2 + 2];
                for i in 0..6 {
                    let mut pre = win[i * 3] + win[i * 3 + 1] * ut[0] + win[i * 3 + 2] * ut[1];
                    for j in 0..6 {
                        pre += w[i * 6 + j] * prev[j];
                    }
                    let want = 0.4 * prev[i] + 0.6 * pre.tanh();
                    let got = s.data()[(t * 2 + b) * 6 + i];
                    assert!((want - got).abs() < 1e-14);
                }
                prev.copy_from_slice(&s.data()[(t * 2 + b) * 6..(t * 2 + b) * 6 + 6]);
            }
        }
        assert!(
            s.data()[(2 * 2 + 1) * 6..].iter().all(|&v| v == 0.0),
            "zero past the end"
        );
    }

    /// The ridge solution satisfies its normal equations (ZᵀZ + λI) W = ZᵀY.
    #[test]
    fn ridge_solves_its_normal_equations() {
        let (rows, f, m) = (30, 4, 2);
        let z: Vec<f64> = (0..rows * f)
            .map(|i| ((i * 7 % 13) as f64 - 6.0) / 5.0)
            .collect();
        let y: Vec<f64> = (0..rows * m).map(|i| (i as f64).cos()).collect();
        let lambda = 0.3;
        let w = ridge_regression(&z, &y, rows, f, m, lambda).unwrap();
        for j in 0..m {
            for a in 0..f {
                let mut lhs = lambda * w[j * f + a];
                let mut rhs = 0.0;
                for r in 0..rows {
                    let p: f64 = (0..f).map(|c| z[r * f + c] * w[j * f + c]).sum();
                    lhs += z[r * f + a] * p;
                    rhs += z[r * f + a] * y[r * m + j];
                }
                assert!((lhs - rhs).abs() < 1e-10, "{lhs} vs {rhs}");
            }
        }
        assert!(ridge_regression(&z, &y[1..], rows, f, m, lambda).is_err());
        assert!(ridge_regression(&z, &y, rows, f, m, -1.0).is_err());
        // collinear columns at λ = 0: not positive definite, a clear error
        let z2: Vec<f64> = (0..rows).flat_map(|r| [r as f64, r as f64]).collect();
        let y2: Vec<f64> = (0..rows).map(|r| r as f64).collect();
        assert!(matches!(
            ridge_regression(&z2, &y2, rows, 2, 1, 0.0),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn fit_picks_the_best_lambda_and_predicts_what_it_fitted() {
        let mut esn = Esn::new(config(30), 2).unwrap();
        let u: Vec<f64> = (0..200 * 2)
            .map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0)
            .collect();
        // target: the first input one step earlier
        let y: Vec<f64> = (0..200)
            .map(|t| if t == 0 { 0.0 } else { u[(t - 1) * 2] })
            .collect();
        let x = Tensor::new(u, &[200, 1, 2]).unwrap();
        let yt = Tensor::new(y.clone(), &[200, 1, 1]).unwrap();
        let grid = [1e-8, 1e-4, 1e-1, 10.0];
        let fit = esn
            .fit(&[(&x, None, &yt)], &[(&x, None, &yt)], &grid)
            .unwrap();
        assert_eq!(fit.grid.len(), 4);
        let best = fit.grid.iter().map(|g| g.1).fold(f64::INFINITY, f64::min);
        assert_eq!(fit.valid_mse, best);
        assert_eq!(esn.ridge(), fit.ridge);
        let p = esn.predict(&x, None).unwrap();
        let mse: f64 = (5..200).map(|t| (p.data()[t] - y[t]).powi(2)).sum::<f64>() / 195.0;
        assert!(mse > 0.0);
        assert!(
            (mse - fit.train_mse).abs() < 1e-9,
            "{mse} vs {}",
            fit.train_mse
        );
        // two batches fit as their concatenation does (Gram sums are additive)
        let (a, b) = (
            Tensor::new(x.data()[..200].to_vec(), &[100, 1, 2]).unwrap(),
            Tensor::new(x.data()[200..].to_vec(), &[100, 1, 2]).unwrap(),
        );
        let (ya, yb) = (
            Tensor::new(y[..100].to_vec(), &[100, 1, 1]).unwrap(),
            Tensor::new(y[100..].to_vec(), &[100, 1, 1]).unwrap(),
        );
        let mut split = esn.clone();
        let lambda = [fit.ridge];
        let two = split
            .fit(
                &[(&a, None, &ya), (&b, None, &yb)],
                &[(&x, None, &yt)],
                &lambda,
            )
            .unwrap();
        assert!(two.valid_mse.is_finite());
        assert_eq!(split.readout().len(), esn.readout().len());
        assert!(
            fit.train_mse < 0.05 * 1.0 / 3.0,
            "learns the delay: {}",
            fit.train_mse
        );
        let d = [(&x, None, &yt)];
        assert!(esn.fit(&d, &d, &[]).is_err());
        assert!(esn.fit(&d, &d, &[f64::NAN]).is_err());
        assert!(esn.fit(&[], &d, &grid).is_err());
        let wrong = Tensor::new(vec![0.0; 200], &[200, 1]).unwrap();
        assert!(esn.fit(&[(&x, None, &wrong)], &d, &grid).is_err());
    }

    /// Generative mode agrees with the teacher-forced readout when the fed-back output is
    /// the next input: on a readout that copies its input (W_out = [0, 1, 0…]), the free run
    /// repeats the last input forever.
    #[test]
    fn generation_feeds_the_output_back() {
        let c = EsnConfig {
            input_size: 1,
            washout: 0,
            ..config(8)
        };
        let esn = Esn::new(c.clone(), 3).unwrap();
        let mut w_out = vec![0.0; c.feature_size()];
        w_out[1] = 1.0;
        let copy = Esn::from_parts(
            c,
            esn.input_weights().to_vec(),
            esn.reservoir().to_vec(),
            w_out,
            0.0,
        )
        .unwrap();
        let out = copy.generate(&[0.1, -0.4, 0.25], 4).unwrap();
        assert_eq!(out, vec![0.25; 4]);
        // with any readout, the first output is the teacher-forced prediction after the
        // primer, and the second the prediction after reading the first back
        let w_out: Vec<f64> = (0..copy.config().feature_size())
            .map(|i| (i as f64 * 0.37).sin() * 0.3)
            .collect();
        let esn = Esn::from_parts(
            copy.config().clone(),
            esn.input_weights().to_vec(),
            esn.reservoir().to_vec(),
            w_out,
            0.0,
        )
        .unwrap();
        let g = esn.generate(&[0.1, -0.4, 0.25], 2).unwrap();
        let x = Tensor::new(vec![0.1, -0.4, 0.25, g[0]], &[4, 1, 1]).unwrap();
        let p = esn.predict(&x, None).unwrap();
        assert!((g[0] - p.data()[2]).abs() < 1e-15);
        assert!((g[1] - p.data()[3]).abs() < 1e-15);
        assert!(esn.generate(&[], 3).is_err());
        assert!(esn.continue_from(&[0.0; 3], &[0.0], 2).is_err());
    }

    #[test]
    fn bad_configurations_are_errors() {
        let bad = [
            EsnConfig {
                reservoir_size: 0,
                ..config(4)
            },
            EsnConfig {
                reservoir_size: EsnConfig::MAX_RESERVOIR_SIZE + 1,
                ..config(4)
            },
            EsnConfig {
                leak_rate: 0.0,
                ..config(4)
            },
            EsnConfig {
                sparsity: 1.0,
                ..config(4)
            },
            EsnConfig {
                spectral_radius: f64::INFINITY,
                ..config(4)
            },
            EsnConfig {
                input_scaling: -1.0,
                ..config(4)
            },
        ];
        for c in bad {
            assert!(matches!(Esn::new(c, 0), Err(Error::Config { .. })));
        }
        let esn = Esn::new(config(4), 0).unwrap();
        let x = Tensor::new(vec![0.0; 6], &[2, 1, 3]).unwrap();
        assert!(esn.states(&x, None).is_err());
        let x = Tensor::new(vec![0.0; 4], &[2, 1, 2]).unwrap();
        assert!(esn.states(&x, Some(&[3])).is_err());
        assert!(
            esn.features(&x, None).is_err(),
            "a washout of 5 leaves nothing of 2 steps"
        );
        assert!(esn.generate(&[1.0], 3).is_err(), "K = 2 ≠ M = 1");
    }
}
