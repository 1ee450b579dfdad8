//! Output-to-hidden recurrence (the seed text's form ii; Goodfellow, Bengio & Courville 2016,
//! §10.2.1): a recurrent network whose only recurrence is its output of the step before. The
//! hidden units do not see their own previous values; what reaches step t from the past is
//! ŷ_{t−1}, an output-sized vector.
//!
//! With input x_t (K values), hidden h_t (H units), output y_t (M real values) and targets
//! y*_t, for t = 0 … T−1:
//! ```text
//! (1)  a_t = W_xh x_t + W_yh ŷ_{t−1} + b_h          W_xh [H, K], W_yh [H, M]
//! (2)  h_t = act(a_t)                               act: tanh by default
//! (3)  y_t = W_hy h_t + b_y                         W_hy [M, H]
//! (4)  ŷ_t = m_{t+1} y_t + (1 − m_{t+1}) y*_t,      ŷ_{−1} = 0,   m_{t+1} ∈ {0, 1}
//! ```
//! The mask m chooses what is fed back, per step and per sequence ([`Feed`]):
//! - **teacher forcing**: m = 0, the previous *target* is fed back;
//! - **free running** (generation): m = 1, the model's own previous output is fed back, and
//!   no targets are needed;
//! - **scheduled sampling** (Bengio et al. 2015): m_{t+1} = 1 with probability ε, drawn for
//!   every step t ≥ 1 and every sequence b in that order (t outer, b inner) from a ChaCha8
//!   generator seeded with the given seed, so the same seed gives the same run.
//!
//! The outputs are real-valued (a regression head read with a squared error), and what is fed
//! back is the output itself, so the feedback is differentiable; recur does not feed back class
//! probabilities or sampled symbols.
//!
//! The backward, given g_t = ∂L/∂y_t from the loss (δa_T = 0):
//! ```text
//! (4)ᵀ (1)ᵀ  δy_t = g_t + m_{t+1} W_yhᵀ δa_{t+1}     (the path through the fed-back output)
//! (3)ᵀ       δh_t = W_hyᵀ δy_t,  dW_hy += δy_t h_tᵀ,  db_y += δy_t
//! (2)ᵀ       δa_t = act'(a_t) ⊙ δh_t                 (act' read from h_t)
//! (1)ᵀ       dW_xh += δa_t x_tᵀ,  dW_yh += δa_t ŷ_{t−1}ᵀ,  db_h += δa_t,  dx_t = W_xhᵀ δa_t
//! ```
//! Under teacher forcing every m is 0: the fed-back values are data, not functions of the
//! parameters, the steps are independent and the backward goes through no time at all (no
//! BPTT). Once an output is fed back, (4)ᵀ carries its gradient to the step before, and the
//! backward runs back through time along the fed-back outputs only. Targets are constants.
//!
//! Only the recurrence stays in the time loop: the input projections W_xh x_t + b_h before it,
//! and dW_xh, db_h and dx after it, are done for all steps at once; every buffer is allocated
//! (after its size was checked) before the loop.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, config_err, shape_err};
use crate::kernel::activation::Activation;
use crate::kernel::scalar::Float;
use crate::tensor::Tensor;

/// The sizes of an output-to-hidden network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackConfig {
    /// K: values read per step.
    pub input_size: usize,
    /// H: hidden units.
    pub hidden_size: usize,
    /// M: outputs per step, which are also what is fed back.
    pub output_size: usize,
    /// The hidden units' activation: `tanh` or `relu`.
    #[serde(default = "tanh_name")]
    pub activation: String,
}

fn tanh_name() -> String {
    "tanh".into()
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            input_size: 1,
            hidden_size: 32,
            output_size: 1,
            activation: tanh_name(),
        }
    }
}

impl FeedbackConfig {
    /// The largest input, hidden or output size accepted.
    pub const MAX_SIZE: usize = 1 << 16;
    /// The most parameters accepted (512 MiB of f64), checked before anything is allocated.
    pub const MAX_PARAMS: usize = 1 << 26;

    /// Checks the sizes and the activation's name.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first value out of range.
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("output_size", self.output_size),
        ] {
            if v == 0 || v > Self::MAX_SIZE {
                return Err(config_err(
                    what,
                    format!("must lie in 1..={}, got {v}", Self::MAX_SIZE),
                ));
            }
        }
        // each size is at most 2^16, so these products fit a 64-bit usize
        if self.num_params() > Self::MAX_PARAMS {
            return Err(config_err(
                "hidden_size",
                format!(
                    "{} parameters are more than the {} accepted",
                    self.num_params(),
                    Self::MAX_PARAMS
                ),
            ));
        }
        self.act().map(|_| ())
    }

    fn act(&self) -> Result<Activation> {
        match self.activation.as_str() {
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            other => Err(config_err(
                "activation",
                format!("expected `tanh` or `relu`, got `{other}`"),
            )),
        }
    }

    /// The parameters in the order of the flat buffer: PyTorch-style name and shape.
    pub fn layout(&self) -> [(&'static str, Vec<usize>); 5] {
        let (k, h, m) = (self.input_size, self.hidden_size, self.output_size);
        [
            ("weight_xh", vec![h, k]),
            ("weight_yh", vec![h, m]),
            ("bias_h", vec![h]),
            ("weight_hy", vec![m, h]),
            ("bias_y", vec![m]),
        ]
    }

    /// The length of the flat parameter buffer.
    pub fn num_params(&self) -> usize {
        let (k, h, m) = (self.input_size, self.hidden_size, self.output_size);
        h * k + h * m + h + m * h + m
    }
}

/// What is fed back at each step: equation (4)'s mask.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Feed {
    /// The previous target (m = 0): independent steps, no BPTT.
    TeacherForcing,
    /// The model's own previous output (m = 1); needs no targets.
    FreeRunning,
    /// The model's own output with probability `epsilon`, the target otherwise, drawn per
    /// step and sequence from `seed`.
    Scheduled { epsilon: f64, seed: u64 },
}

/// An output-to-hidden recurrent network: its sizes and one flat parameter buffer laid out
/// as [`FeedbackConfig::layout`] lists.
///
/// ```
/// use recur::model::{Feed, Feedback, FeedbackConfig};
/// use recur::Tensor;
/// let net = Feedback::<f64>::new(FeedbackConfig { hidden_size: 8, ..Default::default() }, 3)?;
/// let x = Tensor::new(vec![0.5f64; 6 * 2], &[6, 2, 1])?; // [T, B, K]
/// let (y, _tape) = net.forward(&x, None, Feed::FreeRunning)?;
/// assert_eq!(y.shape(), &[6, 2, 1]);
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Feedback<T: Float> {
    config: FeedbackConfig,
    act: Activation,
    params: Vec<T>,
}

/// What the forward keeps for the backward.
#[derive(Clone, Debug)]
pub struct FeedbackTape<T: Float> {
    shape: [usize; 2],
    x: Vec<T>,
    /// h_t, [T, B, H].
    h: Vec<T>,
    /// ŷ_{t−1} as step t read it, [T, B, M].
    fed: Vec<T>,
    /// m_t: whether step t read the model's own output, [T, B] (m_0 = false).
    mask: Vec<bool>,
}

impl<T: Float> FeedbackTape<T> {
    /// m_t for step t and sequence b, [T, B] row-major: true where step t read the model's own
    /// previous output.
    pub fn mask(&self) -> &[bool] {
        &self.mask
    }
}

/// (W_xh, W_yh, b_h, W_hy, b_y).
type Parts<'a, T> = (&'a [T], &'a [T], &'a [T], &'a [T], &'a [T]);

fn cast<T: Float>(v: f64) -> T {
    T::from_f64(v).unwrap_or_else(T::nan)
}

/// `n` values, or a typed error if the count overflows.
fn size(what: &str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| config_err(what, format!("the sizes {dims:?} overflow")))
}

impl<T: Float> Feedback<T> {
    /// A network with PyTorch's initialisation for its RNN and linear layers: every weight
    /// and bias of the hidden layer uniform in ±1/√H, the output layer's in ±1/√H as well
    /// (its fan-in is H), drawn from a ChaCha8 generator seeded with `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] for a size out of range or an unknown activation.
    pub fn new(config: FeedbackConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let bound = 1.0 / (config.hidden_size as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let params = (0..config.num_params())
            .map(|_| cast(rng.random_range(-bound..bound)))
            .collect();
        let act = config.act()?;
        Ok(Self {
            config,
            act,
            params,
        })
    }

    /// A network from its parameters, laid out as [`FeedbackConfig::layout`] lists.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad configuration; [`Error::Length`] when `params` has the
    /// wrong length.
    pub fn from_params(config: FeedbackConfig, params: Vec<T>) -> Result<Self> {
        config.validate()?;
        if params.len() != config.num_params() {
            return Err(Error::Length {
                what: "feedback parameters".into(),
                shape: crate::error::Shape(vec![config.num_params()]),
                len: params.len(),
            });
        }
        let act = config.act()?;
        Ok(Self {
            config,
            act,
            params,
        })
    }

    /// The sizes.
    pub fn config(&self) -> &FeedbackConfig {
        &self.config
    }

    /// The flat parameter buffer.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    /// The flat parameter buffer, to be updated by an optimizer.
    pub fn params_mut(&mut self) -> &mut [T] {
        &mut self.params
    }

    /// (W_xh, W_yh, b_h, W_hy, b_y) as slices of the flat buffer.
    fn parts(&self) -> Parts<'_, T> {
        let (k, h, m) = self.sizes();
        let (w_xh, rest) = self.params.split_at(h * k);
        let (w_yh, rest) = rest.split_at(h * m);
        let (b_h, rest) = rest.split_at(h);
        let (w_hy, b_y) = rest.split_at(m * h);
        (w_xh, w_yh, b_h, w_hy, b_y)
    }

    fn sizes(&self) -> (usize, usize, usize) {
        (
            self.config.input_size,
            self.config.hidden_size,
            self.config.output_size,
        )
    }

    /// Runs a batch of sequences: `input` is [T, B, K]; `targets` [T, B, M] are needed for
    /// teacher forcing and scheduled sampling (free running reads none). Returns the outputs
    /// y [T, B, M] and the tape for [`Feedback::backward`].
    ///
    /// # Errors
    /// [`Error::Shape`] / [`Error::Rank`] for a tensor of the wrong shape,
    /// [`Error::Config`] for missing targets, an ε outside [0, 1] or sizes that overflow.
    pub fn forward(
        &self,
        input: &Tensor<T>,
        targets: Option<&Tensor<T>>,
        feed: Feed,
    ) -> Result<(Tensor<T>, FeedbackTape<T>)> {
        let (k, hs, m) = self.sizes();
        let [steps, batch] = match *input.shape() {
            [t, b, kk] if kk == k => [t, b],
            [t, b, _] => return Err(shape_err("feedback input", &[t, b, k], input.shape())),
            _ => {
                return Err(Error::Rank {
                    what: "feedback input".into(),
                    expected_rank: 3,
                    expected: "[seq_len, batch, input_size]".into(),
                    got: crate::error::Shape(input.shape().to_vec()),
                });
            }
        };
        if let Some(y) = targets
            && y.shape() != [steps, batch, m]
        {
            return Err(shape_err("feedback targets", &[steps, batch, m], y.shape()));
        }
        let needs_targets = !matches!(feed, Feed::FreeRunning);
        if needs_targets && targets.is_none() {
            return Err(config_err(
                "feedback targets",
                "teacher forcing and scheduled sampling feed back targets: give them",
            ));
        }
        if let Feed::Scheduled { epsilon, .. } = feed
            && !(0.0..=1.0).contains(&epsilon)
        {
            return Err(config_err(
                "scheduled sampling",
                format!("ε must lie in [0, 1], got {epsilon}"),
            ));
        }
        let n_h = size("feedback hidden states", &[steps, batch, hs])?;
        let n_y = size("feedback outputs", &[steps, batch, m])?;

        // m_t for every step and sequence, drawn before the loop
        let mut mask = vec![false; steps * batch];
        match feed {
            Feed::TeacherForcing => {}
            Feed::FreeRunning => mask.iter_mut().skip(batch).for_each(|v| *v = true),
            Feed::Scheduled { epsilon, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                for v in mask.iter_mut().skip(batch) {
                    *v = rng.random::<f64>() < epsilon;
                }
            }
        }

        let (w_xh, w_yh, b_h, w_hy, b_y) = self.parts();
        // (1)'s input part for all steps at once: h ← W_xh x_t + b_h
        let x = input.data();
        let mut h = vec![T::zero(); n_h];
        for (row, x_row) in h.chunks_exact_mut(hs).zip(x.chunks_exact(k)) {
            for (j, v) in row.iter_mut().enumerate() {
                let w = &w_xh[j * k..(j + 1) * k];
                *v = b_h[j] + w.iter().zip(x_row).map(|(&a, &b)| a * b).sum::<T>();
            }
        }
        let mut fed = vec![T::zero(); n_y];
        let mut y = vec![T::zero(); n_y];
        let target = targets.map(|t| t.data());
        for t in 0..steps {
            for b in 0..batch {
                let r = t * batch + b;
                // (4) for the step before: ŷ_{t−1}
                if t > 0 {
                    let prev = (t - 1) * batch + b;
                    let src = if mask[r] {
                        &y[prev * m..(prev + 1) * m]
                    } else {
                        // targets are present whenever a mask is false past step 0
                        &target.unwrap_or(&[])[prev * m..(prev + 1) * m]
                    };
                    fed[r * m..(r + 1) * m].copy_from_slice(src);
                }
                let yhat = &fed[r * m..(r + 1) * m];
                let h_row = &mut h[r * hs..(r + 1) * hs];
                // (1) recurrent part, (2)
                for (j, v) in h_row.iter_mut().enumerate() {
                    let w = &w_yh[j * m..(j + 1) * m];
                    let a = *v + w.iter().zip(yhat).map(|(&a, &b)| a * b).sum::<T>();
                    *v = T::activate(self.act, a);
                }
                // (3)
                let y_row = &mut y[r * m..(r + 1) * m];
                for (i, v) in y_row.iter_mut().enumerate() {
                    let w = &w_hy[i * hs..(i + 1) * hs];
                    *v = b_y[i] + w.iter().zip(h_row.iter()).map(|(&a, &b)| a * b).sum::<T>();
                }
            }
        }
        let tape = FeedbackTape {
            shape: [steps, batch],
            x: x.to_vec(),
            h,
            fed,
            mask,
        };
        Ok((Tensor::new(y, &[steps, batch, m])?, tape))
    }

    /// The backward of [`Feedback::forward`]: `grad_output` is ∂L/∂y [T, B, M]; the parameter
    /// gradients are added to `grads` (the flat layout), and ∂L/∂x [T, B, K] is returned.
    ///
    /// # Errors
    /// [`Error::Shape`] when `grad_output` or `grads` do not fit the tape and the model.
    pub fn backward(
        &self,
        tape: &FeedbackTape<T>,
        grad_output: &Tensor<T>,
        grads: &mut [T],
    ) -> Result<Tensor<T>> {
        let (k, hs, m) = self.sizes();
        let [steps, batch] = tape.shape;
        if grad_output.shape() != [steps, batch, m] {
            return Err(shape_err(
                "feedback output gradient",
                &[steps, batch, m],
                grad_output.shape(),
            ));
        }
        if grads.len() != self.params.len() {
            return Err(shape_err(
                "feedback gradient buffer",
                &[self.params.len()],
                &[grads.len()],
            ));
        }
        let (w_xh, w_yh, _, w_hy, _) = self.parts();
        let (g_xh, rest) = grads.split_at_mut(hs * k);
        let (g_yh, rest) = rest.split_at_mut(hs * m);
        let (g_bh, rest) = rest.split_at_mut(hs);
        let (g_hy, g_by) = rest.split_at_mut(m * hs);

        let g = grad_output.data();
        let mut da = vec![T::zero(); tape.h.len()];
        let mut dy = vec![T::zero(); m];
        for t in (0..steps).rev() {
            for b in 0..batch {
                let r = t * batch + b;
                // (4)ᵀ: δy_t = g_t + m_{t+1} W_yhᵀ δa_{t+1}
                dy.copy_from_slice(&g[r * m..(r + 1) * m]);
                if t + 1 < steps && tape.mask[r + batch] {
                    let next = &da[(r + batch) * hs..(r + batch + 1) * hs];
                    for (j, &d) in next.iter().enumerate() {
                        let w = &w_yh[j * m..(j + 1) * m];
                        for (v, &wv) in dy.iter_mut().zip(w) {
                            *v += wv * d;
                        }
                    }
                }
                let h_row = &tape.h[r * hs..(r + 1) * hs];
                // (3)ᵀ
                for (i, &d) in dy.iter().enumerate() {
                    g_by[i] += d;
                    let gw = &mut g_hy[i * hs..(i + 1) * hs];
                    for (v, &hv) in gw.iter_mut().zip(h_row) {
                        *v += d * hv;
                    }
                }
                // (3)ᵀ then (2)ᵀ: δa_t = act'(h_t) ⊙ W_hyᵀ δy_t
                let da_row = &mut da[r * hs..(r + 1) * hs];
                for (j, v) in da_row.iter_mut().enumerate() {
                    let dh: T = (0..m).map(|i| w_hy[i * hs + j] * dy[i]).sum();
                    *v = dh * self.act.derivative_from_output(h_row[j]);
                }
                // (1)ᵀ for W_yh, whose input ŷ_{t−1} is per step
                let yhat = &tape.fed[r * m..(r + 1) * m];
                for (j, &d) in da_row.iter().enumerate() {
                    let gw = &mut g_yh[j * m..(j + 1) * m];
                    for (v, &yv) in gw.iter_mut().zip(yhat) {
                        *v += d * yv;
                    }
                }
            }
        }
        // (1)ᵀ for all steps at once: dW_xh, db_h, dx
        let mut dx = vec![T::zero(); tape.x.len()];
        for ((da_row, x_row), dx_row) in da
            .chunks_exact(hs)
            .zip(tape.x.chunks_exact(k))
            .zip(dx.chunks_exact_mut(k))
        {
            for (j, &d) in da_row.iter().enumerate() {
                g_bh[j] += d;
                let w = &w_xh[j * k..(j + 1) * k];
                let gw = &mut g_xh[j * k..(j + 1) * k];
                for ((gv, dv), (&xv, &wv)) in gw
                    .iter_mut()
                    .zip(dx_row.iter_mut())
                    .zip(x_row.iter().zip(w))
                {
                    *gv += d * xv;
                    *dv += d * wv;
                }
            }
        }
        Tensor::new(dx, &[steps, batch, k])
    }

    /// A stepper for generation over `batch` sequences, its fed-back output ŷ_{−1} = 0.
    ///
    /// # Errors
    /// [`Error::Config`] when the buffers' sizes overflow.
    pub fn stepper(&self, batch: usize) -> Result<FeedbackStepper<T>> {
        let (_, hs, m) = self.sizes();
        Ok(FeedbackStepper {
            batch,
            prev: vec![T::zero(); size("feedback stepper", &[batch, m])?],
            h: vec![T::zero(); hs],
            y: vec![T::zero(); size("feedback stepper", &[batch, m])?],
        })
    }
}

/// One step at a time, free running: each call's output is fed back to the next call, as
/// [`Feed::FreeRunning`] does over a whole sequence (and gives the same numbers).
#[derive(Clone, Debug)]
pub struct FeedbackStepper<T: Float> {
    batch: usize,
    prev: Vec<T>,
    h: Vec<T>,
    y: Vec<T>,
}

impl<T: Float> FeedbackStepper<T> {
    /// Sets what the next step reads as ŷ_{t−1} ([B, M] row-major), e.g. the last known value
    /// of a series when priming it.
    ///
    /// # Errors
    /// [`Error::Shape`] when `prev` is not B·M long.
    pub fn set_previous(&mut self, prev: &[T]) -> Result<()> {
        if prev.len() != self.prev.len() {
            return Err(shape_err(
                "feedback previous output",
                &[self.prev.len()],
                &[prev.len()],
            ));
        }
        self.prev.copy_from_slice(prev);
        Ok(())
    }

    /// One step on x_t ([B, K] row-major): returns y_t ([B, M]), which the next step reads.
    ///
    /// # Errors
    /// [`Error::Shape`] when `x` is not B·K long.
    pub fn step(&mut self, net: &Feedback<T>, x: &[T]) -> Result<&[T]> {
        let (k, hs, m) = net.sizes();
        if x.len() != self.batch * k || self.prev.len() != self.batch * m || self.h.len() != hs {
            return Err(shape_err(
                "feedback step input",
                &[self.batch, k],
                &[x.len()],
            ));
        }
        let (w_xh, w_yh, b_h, w_hy, b_y) = net.parts();
        for b in 0..self.batch {
            let x_row = &x[b * k..(b + 1) * k];
            let yhat = &self.prev[b * m..(b + 1) * m];
            for (j, v) in self.h.iter_mut().enumerate() {
                let wx = &w_xh[j * k..(j + 1) * k];
                let wy = &w_yh[j * m..(j + 1) * m];
                let a = b_h[j]
                    + wx.iter().zip(x_row).map(|(&a, &b)| a * b).sum::<T>()
                    + wy.iter().zip(yhat).map(|(&a, &b)| a * b).sum::<T>();
                *v = T::activate(net.act, a);
            }
            for (i, v) in self.y[b * m..(b + 1) * m].iter_mut().enumerate() {
                let w = &w_hy[i * hs..(i + 1) * hs];
                *v = b_y[i] + w.iter().zip(&self.h).map(|(&a, &b)| a * b).sum::<T>();
            }
        }
        self.prev.copy_from_slice(&self.y);
        Ok(&self.y)
    }
}
