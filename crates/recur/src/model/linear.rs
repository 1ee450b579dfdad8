//! A fully connected layer, PyTorch's `nn.Linear`: the head that turns hidden states into
//! predictions.
//!
//! ```text
//! (1) y = x Wᵀ + b          x: [rows, in_features], W: [out_features, in_features], b: [out_features]
//! ```
//! Backward, given dy = ∂L/∂y:
//! ```text
//! (1)ᵀ dx = dy W;   dW += dyᵀ x;   db += Σ_rows dy
//! ```
//! `rows` is every leading axis of `x` flattened, so the same head serves one output per
//! sequence (`x = h_n`, `[batch, hidden_size]`) and one output per step
//! (`x = output`, `[seq_len, batch, hidden_size]`).
//!
//! Parameters live in one flat buffer `[weight | bias]` with PyTorch's names `weight`
//! `[out_features, in_features]` and `bias` `[out_features]`.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result, Shape, config_err, shape_err};
use crate::kernel::scalar::Float;
use crate::kernel::{Accumulate, Mat, add_column_sums, matmul};
use crate::layer::Bias;
use crate::tensor::Tensor;

/// Sizes of a [`Linear`] layer. The defaults are PyTorch's (`bias = True`).
///
/// ```
/// use recur::model::LinearConfig;
/// let config = LinearConfig { in_features: 32, out_features: 1, ..Default::default() };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinearConfig {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: Bias,
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self {
            in_features: 0,
            out_features: 0,
            bias: Bias::Enabled,
        }
    }
}

impl LinearConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::Config`] when a size is zero.
    pub fn validate(&self) -> Result<()> {
        if self.in_features == 0 {
            return Err(config_err("in_features", "must be at least 1"));
        }
        if self.out_features == 0 {
            return Err(config_err("out_features", "must be at least 1"));
        }
        Ok(())
    }

    /// Length of the flat parameter buffer: `out * in` (+ `out` with a bias).
    pub fn param_len(&self) -> usize {
        let bias = match self.bias {
            Bias::Enabled => self.out_features,
            Bias::Disabled => 0,
        };
        self.out_features * self.in_features + bias
    }
}

/// `y = x Wᵀ + b` with its parameters in one flat buffer `[weight | bias]`.
#[derive(Clone, Debug)]
pub struct Linear<T> {
    config: LinearConfig,
    params: Vec<T>,
}

impl<T: Float> Linear<T> {
    /// A layer with PyTorch's default initialisation: weight and bias ~ U(−1/√in, 1/√in)
    /// (what `kaiming_uniform_(a = √5)` comes to), weight first, drawn from a ChaCha8
    /// generator seeded with `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] when the configuration is invalid.
    pub fn new(config: LinearConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let k = 1.0 / (config.in_features as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let params = (0..config.param_len())
            .map(|_| T::from_f64(rng.random_range(-k..k)).unwrap_or_else(T::zero))
            .collect();
        Ok(Self { config, params })
    }

    /// A layer holding the given parameters, laid out `[weight | bias]`.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::Length`] when `params` has
    /// the wrong length.
    pub fn from_params(config: LinearConfig, params: Vec<T>) -> Result<Self> {
        config.validate()?;
        check_len("params", config.param_len(), params.len())?;
        Ok(Self { config, params })
    }

    pub fn config(&self) -> &LinearConfig {
        &self.config
    }

    /// All parameters, flat: `weight` `[out_features, in_features]` row-major, then `bias`.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut [T] {
        &mut self.params
    }

    /// `weight`, `[out_features, in_features]`.
    pub fn weight(&self) -> &[T] {
        &self.params[..self.weight_len()]
    }

    /// `bias`, `[out_features]`, when the layer has one.
    pub fn bias(&self) -> Option<&[T]> {
        match self.config.bias {
            Bias::Enabled => Some(&self.params[self.weight_len()..]),
            Bias::Disabled => None,
        }
    }

    /// The parameter tensor named `name` (`weight` or `bias`, PyTorch's names), if present.
    pub fn param(&self, name: &str) -> Option<&[T]> {
        match name {
            "weight" => Some(self.weight()),
            "bias" => self.bias(),
            _ => None,
        }
    }

    fn weight_len(&self) -> usize {
        self.config.out_features * self.config.in_features
    }

    /// `[*, in_features]` → `[*, out_features]`: (1) `y = x Wᵀ + b` on every row.
    ///
    /// # Errors
    /// [`Error::Shape`] when the last axis of `x` is not `in_features`.
    pub fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        affine_forward(&self.config, self.weight(), self.bias(), x)
    }

    /// The backward of [`Linear::forward`] on input `x`, given `dy = ∂L/∂y`. Adds the
    /// parameter gradients into `param_grads` (laid out as [`Linear::params`]) and returns
    /// `∂L/∂x`, shaped like `x`.
    ///
    /// # Errors
    /// [`Error::Shape`] when `x` or `dy` has the wrong shape, [`Error::Length`] when
    /// `param_grads` has the wrong length.
    pub fn backward(
        &self,
        x: &Tensor<T>,
        dy: &Tensor<T>,
        param_grads: &mut [T],
    ) -> Result<Tensor<T>> {
        check_len("param_grads", self.params.len(), param_grads.len())?;
        let (dw, db) = param_grads.split_at_mut(self.weight_len());
        let db = (self.config.bias == Bias::Enabled).then_some(db);
        affine_backward(&self.config, self.weight(), x, dy, dw, db)
    }
}

/// (1) `y = x Wᵀ + b` with the weight and bias given as slices (`weight`
/// `[out_features, in_features]`, `bias` `[out_features]` when `config.bias` is enabled):
/// [`Linear::forward`], and the head of a model whose weight lives elsewhere (tied to its
/// embedding).
pub(crate) fn affine_forward<T: Float>(
    config: &LinearConfig,
    weight: &[T],
    bias: Option<&[T]>,
    x: &Tensor<T>,
) -> Result<Tensor<T>> {
    let (n_in, n_out) = (config.in_features, config.out_features);
    debug_assert_eq!(weight.len(), n_in * n_out);
    let rows = check_input(config, "x", x)?;
    let mut y = vec![T::zero(); rows * n_out];
    // (1) y = x Wᵀ
    matmul(
        &mut y,
        n_out,
        Mat::rows(x.data(), rows, n_in, n_in),
        Mat::rows(weight, n_out, n_in, n_in).t(),
        Accumulate::Overwrite,
    );
    // (1) y += b
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(n_out) {
            for (v, &bj) in row.iter_mut().zip(b) {
                *v += bj;
            }
        }
    }
    Tensor::new(y, &out_shape(x.shape(), n_out))
}

/// The backward of [`affine_forward`]: `dw += dyᵀ x` (`dw` `[out_features, in_features]`),
/// `db += Σ dy` (when given), returns `dx = dy W`.
pub(crate) fn affine_backward<T: Float>(
    config: &LinearConfig,
    weight: &[T],
    x: &Tensor<T>,
    dy: &Tensor<T>,
    dw: &mut [T],
    db: Option<&mut [T]>,
) -> Result<Tensor<T>> {
    let (n_in, n_out) = (config.in_features, config.out_features);
    debug_assert_eq!(weight.len(), n_in * n_out);
    debug_assert_eq!(dw.len(), n_in * n_out);
    let rows = check_input(config, "x", x)?;
    dy.expect_shape("grad y", &out_shape(x.shape(), n_out))?;
    let dy_m = Mat::rows(dy.data(), rows, n_out, n_out);
    // (1)ᵀ dW += dyᵀ x
    matmul(
        dw,
        n_in,
        dy_m.t(),
        Mat::rows(x.data(), rows, n_in, n_in),
        Accumulate::Add,
    );
    // (1)ᵀ db += Σ_rows dy
    if let Some(db) = db {
        add_column_sums(db, dy.data(), rows, n_out);
    }
    // (1)ᵀ dx = dy W
    let mut dx = vec![T::zero(); rows * n_in];
    matmul(
        &mut dx,
        n_in,
        dy_m,
        Mat::rows(weight, n_out, n_in, n_in),
        Accumulate::Overwrite,
    );
    Tensor::new(dx, x.shape())
}

/// Number of rows of `x` (`[*, in_features]`).
fn check_input<T: Float>(config: &LinearConfig, what: &str, x: &Tensor<T>) -> Result<usize> {
    let n_in = config.in_features;
    match x.shape().last() {
        Some(&last) if last == n_in => Ok(x.data().len() / n_in),
        _ => {
            let mut expected = x.shape().to_vec();
            match expected.last_mut() {
                Some(last) => *last = n_in,
                None => expected.push(n_in),
            }
            Err(shape_err(what, &expected, x.shape()))
        }
    }
}

/// `x`'s shape with the last axis replaced by `n_out`.
fn out_shape(x: &[usize], n_out: usize) -> Vec<usize> {
    let mut s = x.to_vec();
    if let Some(last) = s.last_mut() {
        *last = n_out;
    }
    s
}

fn check_len(what: &str, expected: usize, got: usize) -> Result<()> {
    if expected != got {
        return Err(Error::Length {
            what: what.into(),
            shape: Shape(vec![expected]),
            len: got,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck;

    fn fill(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// L = Σ w ⊙ y with fixed random weights w, so that every output matters differently.
    fn loss(layer: &Linear<f64>, x: &Tensor<f64>, w: &[f64]) -> f64 {
        let y = layer.forward(x).unwrap();
        y.data().iter().zip(w).map(|(a, b)| a * b).sum()
    }

    fn gradcheck(bias: Bias) {
        let config = LinearConfig {
            in_features: 5,
            out_features: 3,
            bias,
        };
        let shape = [4, 2, 5];
        let layer = Linear::<f64>::new(config.clone(), 7).unwrap();
        let x = Tensor::new(fill(40, 1), &shape).unwrap();
        let w = fill(4 * 2 * 3, 2);
        let dy = Tensor::new(w.clone(), &[4, 2, 3]).unwrap();
        // Start from non-zero gradients: backward must add to them, as PyTorch's .grad.
        let start = fill(layer.params().len(), 3);
        let mut grads = start.clone();
        let dx = layer.backward(&x, &dy, &mut grads).unwrap();
        let dparams: Vec<f64> = grads.iter().zip(&start).map(|(g, s)| g - s).collect();
        gradcheck::check("params", layer.params(), &dparams, |p| {
            loss(
                &Linear::from_params(config.clone(), p.to_vec()).unwrap(),
                &x,
                &w,
            )
        });
        gradcheck::check("x", x.data(), dx.data(), |v| {
            loss(&layer, &Tensor::new(v.to_vec(), &shape).unwrap(), &w)
        });
    }

    #[test]
    fn gradcheck_input_weight_bias() {
        gradcheck(Bias::Enabled);
    }

    #[test]
    fn gradcheck_without_bias() {
        gradcheck(Bias::Disabled);
    }

    /// Numbers from PyTorch:
    /// ```python
    /// lin = torch.nn.Linear(3, 2, dtype=torch.float64)
    /// lin.weight.data = torch.tensor([[1., 2., 3.], [-1., 0.5, 0.]], dtype=torch.float64)
    /// lin.bias.data = torch.tensor([0.1, -0.2], dtype=torch.float64)
    /// lin(torch.tensor([[1., 0., -1.], [0.5, 0.5, 0.5]], dtype=torch.float64))
    /// # tensor([[-1.9000, -1.2000], [ 3.1000, -0.4500]])
    /// ```
    #[test]
    fn forward_matches_pytorch_layout() {
        let config = LinearConfig {
            in_features: 3,
            out_features: 2,
            ..Default::default()
        };
        let layer =
            Linear::<f64>::from_params(config, vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.0, 0.1, -0.2])
                .unwrap();
        let x = Tensor::new(vec![1.0, 0.0, -1.0, 0.5, 0.5, 0.5], &[2, 3]).unwrap();
        let y = layer.forward(&x).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        let want = [-1.9, -1.2, 3.1, -0.45];
        for (a, b) in y.data().iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert_eq!(layer.param("weight").unwrap().len(), 6);
        assert_eq!(layer.param("bias").unwrap(), &[0.1, -0.2]);
    }

    /// An f32 product of `k` terms against the f64 sum of the same f32 values: a few ulps
    /// per term's rounding, relative to the sum of the terms' magnitudes.
    const F32_PRODUCT_TOL: f64 = 1e-5;

    /// The f32 forward at a language model's many rows against a naive f64 sum of the same
    /// values, at awkward sizes (columns not a multiple of 16 or 64, rows not of 6, up to a
    /// 200 → 5300 head), with and without a bias; and the same rows computed a few at a time.
    #[test]
    fn forward_at_many_rows_matches_a_naive_sum() {
        for (rows, n_in, n_out, bias) in [
            (37, 13, 70, Bias::Enabled),
            (33, 7, 1, Bias::Disabled),
            (40, 200, 5300, Bias::Enabled),
            (32, 65, 129, Bias::Disabled),
        ] {
            let config = LinearConfig {
                in_features: n_in,
                out_features: n_out,
                bias,
            };
            let layer = Linear::<f32>::new(config.clone(), 5).unwrap();
            let xs: Vec<f32> = fill(rows * n_in, 6).iter().map(|&v| v as f32).collect();
            let x = Tensor::new(xs.clone(), &[rows, n_in]).unwrap();
            let y = layer.forward(&x).unwrap();
            assert_eq!(y.shape(), &[rows, n_out]);
            let w = layer.weight();
            for r in 0..rows {
                for o in 0..n_out {
                    let terms = (0..n_in)
                        .map(|i| f64::from(xs[r * n_in + i]))
                        .zip(w[o * n_in..(o + 1) * n_in].iter().map(|&v| f64::from(v)));
                    let (mut sum, mut scale) = (0.0f64, 0.0f64);
                    for (a, b) in terms {
                        sum += a * b;
                        scale += (a * b).abs();
                    }
                    if let Some(b) = layer.bias() {
                        sum += f64::from(b[o]);
                        scale += f64::from(b[o].abs());
                    }
                    let got = f64::from(y.data()[r * n_out + o]);
                    assert!(
                        (got - sum).abs() <= F32_PRODUCT_TOL * scale.max(1e-30),
                        "{rows}×{n_in}→{n_out} [{r}, {o}]: {got} vs {sum}"
                    );
                }
            }
            // a few rows at a time (the other path) give the same rows within the same bound
            let few = Tensor::new(xs[..3 * n_in].to_vec(), &[3, n_in]).unwrap();
            let y3 = layer.forward(&few).unwrap();
            for (a, b) in y3.data().iter().zip(&y.data()[..3 * n_out]) {
                let scale = f64::from(a.abs().max(b.abs())).max(1.0);
                assert!(f64::from((a - b).abs()) <= F32_PRODUCT_TOL * scale * n_in as f64);
            }
        }
    }

    #[test]
    fn init_is_seeded_and_within_pytorch_bound() {
        let config = LinearConfig {
            in_features: 16,
            out_features: 4,
            ..Default::default()
        };
        let a = Linear::<f32>::new(config.clone(), 3).unwrap();
        let b = Linear::<f32>::new(config.clone(), 3).unwrap();
        let c = Linear::<f32>::new(config, 4).unwrap();
        assert_eq!(a.params(), b.params());
        assert_ne!(a.params(), c.params());
        assert_eq!(a.params().len(), 16 * 4 + 4);
        assert!(a.params().iter().all(|v| v.abs() <= 0.25));
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let config = LinearConfig {
            in_features: 3,
            out_features: 2,
            ..Default::default()
        };
        let layer = Linear::<f64>::new(config, 0).unwrap();
        let x = Tensor::new(vec![0.0; 8], &[2, 4]).unwrap();
        let e = layer.forward(&x).unwrap_err().to_string();
        assert_eq!(e, "x: expected shape [2, 3], got [2, 4]");
        let x = Tensor::new(vec![0.0; 6], &[2, 3]).unwrap();
        let dy = Tensor::new(vec![0.0; 6], &[2, 3]).unwrap();
        let e = layer.backward(&x, &dy, &mut [0.0; 8]).unwrap_err();
        assert_eq!(e.to_string(), "grad y: expected shape [2, 2], got [2, 3]");
        let dy = Tensor::new(vec![0.0; 4], &[2, 2]).unwrap();
        assert!(matches!(
            layer.backward(&x, &dy, &mut [0.0; 7]),
            Err(Error::Length { .. })
        ));
        let bad = LinearConfig {
            in_features: 0,
            out_features: 2,
            ..Default::default()
        };
        assert!(matches!(
            Linear::<f64>::new(bad, 0),
            Err(Error::Config { .. })
        ));
    }
}
