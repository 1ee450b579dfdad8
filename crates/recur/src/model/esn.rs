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
//! solved without forming ZᵀZ: [Z | Y] is reduced batch by batch to the triangular factor
//! of its QR decomposition (faer), R's singular value decomposition R = U Σ Vᵀ gives
//! W_outᵀ = V diag(σ / (σ² + λ)) Uᵀ QᵀY for every λ at once, and λ = 0 is the least-squares
//! solution of least norm (singular values below ε · max(rows, F) · σ_max left out, as
//! numpy's lstsq does). [`Esn::fit`] tries every λ of a grid and keeps the one with the
//! lowest mean squared error on validation data. (The normal equations' Cholesky
//! factorisation, which this replaced, squares Z's condition number: at N = 1000 on
//! Mackey–Glass it failed below λ = 1e-10, and the free run's 84-step error was 19 times
//! larger: 2.6e-3 against 1.4e-4, reservoir seed 0.)
//!
//! State noise (Jaeger & Haas 2004): with [`EsnConfig::state_noise`] ν > 0, the training
//! states are collected with x_t ← x_t + ν_t, ν_t uniform in ±ν per unit and step, drawn
//! from [`EsnConfig::noise_seed`]; the readout then learns to correct small deviations of
//! the state, which a network running free on its own outputs makes.

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
    /// ν: while [`Esn::fit`] collects the training states, each unit's state gets noise
    /// uniform in ±state_noise after every update (Jaeger & Haas 2004 regularise the free
    /// run this way); 0, the default, adds none. Validation and prediction never add noise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub state_noise: f64,
    /// The seed of the state noise (ChaCha8; batch `b` of a fit draws from stream `b`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub noise_seed: u64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
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
            state_noise: 0.0,
            noise_seed: 0,
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
            ("state_noise", self.state_noise),
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
        self.collect_states(input, lengths, None)
    }

    /// The states as [`Esn::states`] computes them, with noise uniform in ±`noise` added to
    /// every unit after every update (and carried into the next step), drawn from `seed`
    /// (ChaCha8, stream `stream`): the teacher-forced run that [`Esn::fit`] collects when
    /// [`EsnConfig::state_noise`] is not 0. `noise` 0 gives [`Esn::states`] exactly.
    ///
    /// # Errors
    /// As [`Esn::states`]; [`Error::Config`] for a `noise` that is negative or not finite.
    pub fn noisy_states(
        &self,
        input: &Tensor<f64>,
        lengths: Option<&[usize]>,
        noise: f64,
        seed: u64,
        stream: u64,
    ) -> Result<Tensor<f64>> {
        if !(noise.is_finite() && noise >= 0.0) {
            return Err(config_err(
                "state_noise",
                format!("must be finite and ≥ 0, got {noise}"),
            ));
        }
        let rng = (noise > 0.0).then(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            (noise, rng)
        });
        self.collect_states(input, lengths, rng)
    }

    /// The recurrence, with state noise (amplitude, generator) when given.
    fn collect_states(
        &self,
        input: &Tensor<f64>,
        lengths: Option<&[usize]>,
        mut noise: Option<(f64, ChaCha8Rng)>,
    ) -> Result<Tensor<f64>> {
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
                if let Some((amplitude, rng)) = noise.as_mut() {
                    for v in row.iter_mut() {
                        *v += *amplitude * (2.0 * rng.random::<f64>() - 1.0);
                    }
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
        self.features_of(input, lengths, &states)
    }

    /// The feature rows of `input` with its (possibly noisy) `states`.
    fn features_of(
        &self,
        input: &Tensor<f64>,
        lengths: Option<&[usize]>,
        states: &Tensor<f64>,
    ) -> Result<Features> {
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
    /// batches are read one at a time (each is absorbed into the QR factor of [Z | Y]; the
    /// validation rows are kept), so a training set need not fit in memory as one feature
    /// matrix; one SVD then gives every λ (λ = 0: least squares). A training batch's states
    /// carry [`EsnConfig::state_noise`], drawn from [`EsnConfig::noise_seed`] and the
    /// batch's index as the stream.
    ///
    /// # Errors
    /// As [`Esn::features`]; [`Error::Shape`] for targets of another shape; [`Error::Empty`]
    /// for no training or no validation batch; [`Error::Config`] for an empty grid, a λ that
    /// is negative or not finite, or an SVD that does not converge.
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
        let mut design = Design::zeros(f, m);
        for (stream, &d) in (0u64..).zip(train) {
            let (z, y, rows) = self.design(d, Some(stream))?;
            design.add(&z, &y, rows);
        }
        let factored = design.factor()?;
        let valid_rows = valid
            .iter()
            .map(|&d| self.design(d, None))
            .collect::<Result<Vec<_>>>()?;
        let mut best: Option<(f64, f64, Vec<f64>)> = None;
        let mut tried = Vec::with_capacity(grid.len());
        let mut last_err = None;
        for &lambda in grid {
            match factored.solve(lambda) {
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
        let train_mse = design.mse(&w_out);
        self.w_out = w_out;
        self.ridge = ridge;
        Ok(FitReport {
            ridge,
            train_mse,
            valid_mse,
            grid: tried,
        })
    }

    /// Feature rows, target rows and the row count of a data set; a training batch (its
    /// `stream` given) with the configuration's state noise.
    fn design(
        &self,
        (x, lengths, target): EsnData<'_>,
        stream: Option<u64>,
    ) -> Result<(Vec<f64>, Vec<f64>, usize)> {
        let (z, at) = match stream {
            Some(stream) if self.config.state_noise > 0.0 => {
                let c = &self.config;
                let states = self.noisy_states(x, lengths, c.state_noise, c.noise_seed, stream)?;
                self.features_of(x, lengths, &states)?
            }
            _ => self.features(x, lengths)?,
        };
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
    /// As [`Esn::continue_batch`].
    pub fn continue_from(&self, state: &[f64], input: &[f64], horizon: usize) -> Result<Vec<f64>> {
        self.continue_batch(state, input, horizon)
    }

    /// [`Esn::continue_from`] for a batch of B free runs at once, one matrix product a step:
    /// `states` `[B, N]` and `inputs` `[B, K]` (row-major, B = states.len() / N) give
    /// `[horizon, B, M]`, run b's outputs being those of `continue_from` on its row.
    ///
    /// # Errors
    /// [`Error::Config`] when K ≠ M or the readout reads the last step only;
    /// [`Error::Length`] for states that are not whole rows of N (or none) or inputs that
    /// are not B rows of K; [`Error::Config`] when horizon × B × M overflows.
    pub fn continue_batch(
        &self,
        states: &[f64],
        inputs: &[f64],
        horizon: usize,
    ) -> Result<Vec<f64>> {
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
        let batch = states.len() / n;
        for (what, v, len) in [("state", states, n), ("input", inputs, k)] {
            if batch == 0 || v.len() != batch * len {
                return Err(Error::Length {
                    what: what.into(),
                    shape: crate::Shape(vec![batch.max(1), len]),
                    len: v.len(),
                });
            }
        }
        let total = horizon
            .checked_mul(batch)
            .and_then(|v| v.checked_mul(m))
            .ok_or_else(|| config_err("horizon", format!("{horizon} steps overflow")))?;
        let a = self.config.leak_rate;
        let f = self.config.feature_size();
        let w = faer::MatRef::from_row_major_slice(&self.w, n, n);
        let mut x = states.to_vec();
        let mut pre = vec![0.0; batch * n];
        let mut u = inputs.to_vec();
        let mut out = vec![0.0; total];
        for step in 0..horizon {
            if step > 0 {
                // read the last outputs as the inputs; the update as in `states`
                u.copy_from_slice(&out[(step - 1) * batch * m..step * batch * m]);
                for (p, ut) in pre.chunks_exact_mut(n).zip(u.chunks_exact(k)) {
                    for (i, v) in p.iter_mut().enumerate() {
                        let wi = &self.w_in[i * (1 + k)..(i + 1) * (1 + k)];
                        *v = wi[0] + wi[1..].iter().zip(ut).map(|(w, x)| w * x).sum::<f64>();
                    }
                }
                faer::linalg::matmul::matmul(
                    faer::MatMut::from_row_major_slice_mut(&mut pre, batch, n),
                    faer::Accum::Add,
                    faer::MatRef::from_row_major_slice(&x, batch, n),
                    w.transpose(),
                    1.0,
                    faer::Par::Seq,
                );
                for (v, &p) in x.iter_mut().zip(&pre) {
                    *v = (1.0 - a) * *v + a * p.tanh();
                }
            }
            let rows = &mut out[step * batch * m..(step + 1) * batch * m];
            for ((o, xb), ub) in rows
                .chunks_exact_mut(m)
                .zip(x.chunks_exact(n))
                .zip(u.chunks_exact(k))
            {
                for (j, y) in o.iter_mut().enumerate() {
                    let w = &self.w_out[j * f..(j + 1) * f];
                    *y = w[0]
                        + w[1..1 + k].iter().zip(ub).map(|(a, b)| a * b).sum::<f64>()
                        + w[1 + k..].iter().zip(xb).map(|(a, b)| a * b).sum::<f64>();
                }
            }
        }
        Ok(out)
    }
}

/// A design [Z | Y] reduced batch by batch to the triangular factor of its QR decomposition,
/// for solving at several λ without forming ZᵀZ (whose condition number is that of Z
/// squared: at N = 1000 on Mackey–Glass it is past what f64 resolves).
///
/// With [Z | Y] = Q [[R, C], [0, P]] (R `F × F` upper triangular, C = QᵀY, ‖P‖² the
/// residual of the least-squares fit), a new batch [Z_b | Y_b] is absorbed by the QR
/// decomposition of the factor stacked on it; Q itself is never kept.
struct Design {
    /// The `(F + M) × (F + M)` factor (zero before the first batch).
    r: faer::Mat<f64>,
    f: usize,
    m: usize,
    rows: usize,
}

/// A design's R = U Σ Vᵀ, from which every λ's readout follows.
struct Factored {
    sigma: Vec<f64>,
    v: faer::Mat<f64>,
    /// Uᵀ C: `F × M`
    utc: faer::Mat<f64>,
    /// Singular values at or below this count as zero at λ = 0 (as numpy's lstsq cuts them).
    cutoff: f64,
}

impl Design {
    fn zeros(f: usize, m: usize) -> Self {
        Self {
            r: faer::Mat::zeros(f + m, f + m),
            f,
            m,
            rows: 0,
        }
    }

    /// Adds `rows` rows: Z `rows × F` and Y `rows × M`, row-major.
    fn add(&mut self, z: &[f64], y: &[f64], rows: usize) {
        let (f, m) = (self.f, self.m);
        let w = f + m;
        let mut stacked = faer::Mat::<f64>::zeros(w + rows, w);
        stacked
            .as_mut()
            .submatrix_mut(0, 0, w, w)
            .copy_from(self.r.as_ref());
        for (i, (zr, yr)) in z.chunks_exact(f).zip(y.chunks_exact(m)).enumerate() {
            for (j, &v) in zr.iter().chain(yr).enumerate() {
                stacked[(w + i, j)] = v;
            }
        }
        let qr = stacked.qr();
        self.r.as_mut().copy_from(qr.thin_R());
        self.rows += rows;
    }

    /// The SVD of R and Uᵀ C.
    fn factor(&self) -> Result<Factored> {
        let f = self.f;
        let r = self.r.as_ref().submatrix(0, 0, f, f);
        let c = self.r.as_ref().submatrix(0, f, f, self.m);
        let svd = r
            .svd()
            .map_err(|e| config_err("ridge", format!("the SVD did not converge: {e:?}")))?;
        let sigma: Vec<f64> = svd.S().column_vector().iter().copied().collect();
        let largest = sigma.first().copied().unwrap_or(0.0);
        let cutoff = f64::EPSILON * self.rows.max(f) as f64 * largest;
        let utc = svd.U().transpose() * c;
        Ok(Factored {
            sigma,
            v: svd.V().to_owned(),
            utc,
            cutoff,
        })
    }

    /// The mean squared error per target value of W_out `[M, F]` on the absorbed rows:
    /// ‖Z w − y‖² = ‖R w − c‖² + ‖p‖² for each output.
    fn mse(&self, w_out: &[f64]) -> f64 {
        let (f, m) = (self.f, self.m);
        let mut sum = 0.0;
        for j in 0..m {
            let w = &w_out[j * f..(j + 1) * f];
            for a in 0..f {
                let fitted: f64 = (a..f).map(|b| self.r[(a, b)] * w[b]).sum();
                let e = fitted - self.r[(a, f + j)];
                sum += e * e;
            }
            sum += (f..f + m).map(|a| self.r[(a, f + j)].powi(2)).sum::<f64>();
        }
        sum / (self.rows * m).max(1) as f64
    }
}

impl Factored {
    /// W_out `[M, F]` row-major: V diag(σ / (σ² + λ)) Uᵀ C, the ridge solution; at λ = 0 the
    /// least-squares solution of least norm (singular values at or below the cutoff left out).
    fn solve(&self, lambda: f64) -> Result<Vec<f64>> {
        let f = self.sigma.len();
        let m = self.utc.ncols();
        let mut scaled = self.utc.clone();
        for (i, &s) in self.sigma.iter().enumerate() {
            let g = if s == 0.0 || (lambda == 0.0 && s <= self.cutoff) {
                0.0
            } else {
                s / (s * s + lambda)
            };
            for j in 0..m {
                scaled[(i, j)] *= g;
            }
        }
        let w = &self.v * &scaled;
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
/// λ = 0 is least squares, the solution of least norm where Z's columns are dependent.
///
/// # Errors
/// [`Error::Length`] when Z or Y does not fill its shape; [`Error::Config`] for a λ that is
/// negative or not finite, an SVD that does not converge or a solution that is not finite.
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
    let mut design = Design::zeros(f, m);
    design.add(z, y, rows);
    design.factor()?.solve(lambda)
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
            state_noise: 0.0,
            noise_seed: 0,
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
        // collinear columns at λ = 0: the least-squares solution of least norm, [½, ½]
        let z2: Vec<f64> = (0..rows).flat_map(|r| [r as f64, r as f64]).collect();
        let y2: Vec<f64> = (0..rows).map(|r| r as f64).collect();
        let w2 = ridge_regression(&z2, &y2, rows, 2, 1, 0.0).unwrap();
        assert!(w2.iter().all(|w| (w - 0.5).abs() < 1e-12), "{w2:?}");
    }

    /// An ill-conditioned design where the normal equations lose what least squares keeps:
    /// columns 1, t, …, t⁷ at 200 points of [0, 1] (condition number 1.2e5; ZᵀZ's 1.4e10)
    /// and a target that is exactly a polynomial. At λ = 0 the coefficients come back to
    /// 1e-9 (numpy's lstsq: 6e-13 off; a Cholesky solve of the normal equations, the
    /// previous route: 4e-7 off) and the residual is at rounding level.
    #[test]
    fn least_squares_at_lambda_zero_is_exact_on_an_ill_conditioned_design() {
        let (rows, f) = (200, 8);
        let t: Vec<f64> = (0..rows).map(|r| r as f64 / (rows - 1) as f64).collect();
        let z: Vec<f64> = t
            .iter()
            .flat_map(|&t| (0..f).map(move |p| t.powi(p as i32)))
            .collect();
        let coef = [0.3, -1.0, 2.0, 0.5, -0.25, 1.5, -0.75, 0.1];
        let y: Vec<f64> = t
            .iter()
            .map(|&t| (0..f).map(|p| coef[p] * t.powi(p as i32)).sum())
            .collect();
        let w = ridge_regression(&z, &y, rows, f, 1, 0.0).unwrap();
        for (a, b) in w.iter().zip(&coef) {
            assert!((a - b).abs() < 1e-9, "{w:?}");
        }
        // the same through the streaming design in two batches
        let mut d = Design::zeros(f, 1);
        d.add(&z[..120 * f], &y[..120], 120);
        d.add(&z[120 * f..], &y[120..], 80);
        let w2 = d.factor().unwrap().solve(0.0).unwrap();
        for (a, b) in w2.iter().zip(&coef) {
            assert!((a - b).abs() < 1e-9, "{w2:?}");
        }
        assert!(d.mse(&w2) < 1e-24, "{}", d.mse(&w2));
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
        // two batches fit as their concatenation does (the QR factor absorbs batch by batch)
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

    /// State noise: 0 is the noiseless run bit for bit, the same seed the same states, another
    /// seed or stream other states; the noise stays within its amplitude; fit uses it on the
    /// training batches only; bad amplitudes are typed errors.
    #[test]
    fn state_noise_is_seeded_and_bounded() {
        let esn = Esn::new(config(10), 4).unwrap();
        let u: Vec<f64> = (0..20 * 2 * 2).map(|i| (i as f64 * 0.3).cos()).collect();
        let x = Tensor::new(u, &[20, 2, 2]).unwrap();
        let lengths = [20, 13];
        let clean = esn.states(&x, Some(&lengths)).unwrap();
        let zero = esn.noisy_states(&x, Some(&lengths), 0.0, 9, 0).unwrap();
        assert_eq!(zero.data(), clean.data());
        let a = esn.noisy_states(&x, Some(&lengths), 1e-3, 9, 0).unwrap();
        let b = esn.noisy_states(&x, Some(&lengths), 1e-3, 9, 0).unwrap();
        assert_eq!(a.data(), b.data());
        assert_ne!(
            a.data(),
            esn.noisy_states(&x, Some(&lengths), 1e-3, 10, 0)
                .unwrap()
                .data()
        );
        assert_ne!(
            a.data(),
            esn.noisy_states(&x, Some(&lengths), 1e-3, 9, 1)
                .unwrap()
                .data()
        );
        assert_ne!(a.data(), clean.data());
        // the first step differs from the clean one by the noise alone (x_{-1} = 0 for both)
        for (p, q) in a.data()[..20].iter().zip(&clean.data()[..20]) {
            assert!((p - q).abs() <= 1e-3 && p != q, "{p} {q}");
        }
        // zero past the end, as without noise
        assert!(
            a.data()[(13 * 2 + 1) * 10..(13 * 2 + 2) * 10]
                .iter()
                .all(|&v| v == 0.0)
        );
        for bad in [-1e-3, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                esn.noisy_states(&x, None, bad, 0, 0),
                Err(Error::Config { .. })
            ));
            let c = EsnConfig {
                state_noise: bad,
                ..config(4)
            };
            assert!(matches!(Esn::new(c, 0), Err(Error::Config { .. })));
        }
        // fit: noise changes the readout, the same seed gives the same readout, and
        // noise 0 fits as before
        let y = Tensor::new(
            (0..20 * 2).map(|i| (i as f64 * 0.7).sin()).collect(),
            &[20, 2, 1],
        )
        .unwrap();
        let data = [(&x, Some(&lengths[..]), &y)];
        let fit_with = |noise: f64, seed: u64| {
            let mut e = Esn::new(
                EsnConfig {
                    state_noise: noise,
                    noise_seed: seed,
                    ..config(10)
                },
                4,
            )
            .unwrap();
            e.fit(&data, &data, &[1e-6]).unwrap();
            e.readout().to_vec()
        };
        let mut plain = esn.clone();
        plain.fit(&data, &data, &[1e-6]).unwrap();
        assert_eq!(fit_with(0.0, 3), plain.readout());
        assert_eq!(fit_with(1e-2, 3), fit_with(1e-2, 3));
        assert_ne!(fit_with(1e-2, 3), plain.readout());
        assert_ne!(fit_with(1e-2, 3), fit_with(1e-2, 4));
    }

    /// B free runs at once equal each run alone, and a run from a state matches generating
    /// from the primer that led to that state; bad shapes are typed errors.
    #[test]
    fn batched_free_runs_match_single_ones() {
        let c = EsnConfig {
            input_size: 1,
            washout: 0,
            ..config(9)
        };
        let esn = Esn::new(c.clone(), 6).unwrap();
        let w_out: Vec<f64> = (0..c.feature_size())
            .map(|i| (i as f64 * 0.53).cos() * 0.25)
            .collect();
        let esn = Esn::from_parts(
            c,
            esn.input_weights().to_vec(),
            esn.reservoir().to_vec(),
            w_out,
            0.0,
        )
        .unwrap();
        let prime: Vec<f64> = (0..12).map(|t| (t as f64 * 0.4).sin()).collect();
        let x = Tensor::new(prime.clone(), &[12, 1, 1]).unwrap();
        let states = esn.states(&x, None).unwrap();
        let at = [3usize, 7, 11];
        let mut rows = Vec::new();
        for &t in &at {
            rows.extend_from_slice(&states.data()[t * 9..(t + 1) * 9]);
        }
        let inputs: Vec<f64> = at.iter().map(|&t| prime[t]).collect();
        let horizon = 6;
        let batch = esn.continue_batch(&rows, &inputs, horizon).unwrap();
        assert_eq!(batch.len(), horizon * 3);
        for (b, &t) in at.iter().enumerate() {
            let one = esn
                .continue_from(&rows[b * 9..(b + 1) * 9], &inputs[b..=b], horizon)
                .unwrap();
            let from_primer = esn.generate(&prime[..=t], horizon).unwrap();
            for s in 0..horizon {
                assert!((batch[s * 3 + b] - one[s]).abs() < 1e-14);
                assert!((from_primer[s] - one[s]).abs() < 1e-14);
            }
        }
        assert!(matches!(
            esn.continue_batch(&rows[..10], &inputs, 2),
            Err(Error::Length { .. })
        ));
        assert!(matches!(
            esn.continue_batch(&rows, &inputs[..2], 2),
            Err(Error::Length { .. })
        ));
        assert!(matches!(
            esn.continue_batch(&[], &[], 2),
            Err(Error::Length { .. })
        ));
        assert!(esn.continue_batch(&rows, &inputs, usize::MAX).is_err());
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
