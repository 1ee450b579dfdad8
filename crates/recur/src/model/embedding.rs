//! A lookup table of token vectors, PyTorch's `nn.Embedding`: the input of a language model.
//!
//! ```text
//! (1) y[n] = W[id_n]          ids: [*], W: [num_embeddings, embedding_dim], y: [*, embedding_dim]
//! ```
//! Backward, given dy = ∂L/∂y: the rows of dy scatter-add into the rows of dW they came from
//! (a token seen twice collects both gradients); the ids have no gradient:
//! ```text
//! (1)ᵀ dW[id_n] += dy[n]      for every n with id_n ≠ padding_idx
//! ```
//! With a `padding_idx`, that row starts as zeros and receives no gradient, so it stays
//! whatever it is (zero unless set by hand), exactly as in PyTorch.
//!
//! The one parameter is `weight` `[num_embeddings, embedding_dim]` (PyTorch's name), the
//! whole flat buffer.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result, Shape, config_err};
use crate::kernel::scalar::Float;
use crate::tensor::Tensor;
use crate::tensor::numel;

/// Sizes of an [`Embedding`]. The defaults are PyTorch's (no `padding_idx`).
///
/// ```
/// use recur::model::EmbeddingConfig;
/// let config = EmbeddingConfig { num_embeddings: 10_000, embedding_dim: 200, padding_idx: Some(0) };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmbeddingConfig {
    /// Vocabulary size: ids run over `0..num_embeddings`.
    pub num_embeddings: usize,
    pub embedding_dim: usize,
    /// The id whose row is zero at initialisation and never receives a gradient.
    pub padding_idx: Option<usize>,
}

impl EmbeddingConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::Config`] when a size is zero or `padding_idx` is not a valid id.
    pub fn validate(&self) -> Result<()> {
        if self.num_embeddings == 0 {
            return Err(config_err("num_embeddings", "must be at least 1"));
        }
        if self.embedding_dim == 0 {
            return Err(config_err("embedding_dim", "must be at least 1"));
        }
        if let Some(p) = self.padding_idx
            && p >= self.num_embeddings
        {
            return Err(config_err(
                "padding_idx",
                format!(
                    "must be below num_embeddings = {}, got {p}",
                    self.num_embeddings
                ),
            ));
        }
        numel(&[self.num_embeddings, self.embedding_dim])
            .ok_or_else(|| config_err("num_embeddings", "table size overflows usize"))?;
        Ok(())
    }

    /// Length of the flat parameter buffer: `num_embeddings * embedding_dim`.
    pub fn param_len(&self) -> usize {
        self.num_embeddings * self.embedding_dim
    }
}

/// `y[n] = W[id_n]`, with `W` in one flat buffer.
#[derive(Clone, Debug)]
pub struct Embedding<T> {
    config: EmbeddingConfig,
    params: Vec<T>,
}

impl<T: Float> Embedding<T> {
    /// A table with PyTorch's default initialisation, every element ~ N(0, 1) (the same
    /// distribution, not the same numbers: draws come from a ChaCha8 generator seeded with
    /// `seed`, through the Box–Muller transform), and the `padding_idx` row zeroed.
    ///
    /// # Errors
    /// [`Error::Config`] when the configuration is invalid.
    pub fn new(config: EmbeddingConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = config.param_len();
        let mut params = Vec::with_capacity(n);
        while params.len() < n {
            // Box–Muller: two uniforms (u1 in (0, 1], so ln u1 is finite) give two normals.
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            let r = (-2.0 * u1.ln()).sqrt();
            let theta = std::f64::consts::TAU * u2;
            for z in [r * theta.cos(), r * theta.sin()] {
                if params.len() < n {
                    params.push(T::from_f64(z).unwrap_or_else(T::zero));
                }
            }
        }
        let mut table = Self { config, params };
        if let Some(p) = table.config.padding_idx {
            table.row_mut(p).fill(T::zero());
        }
        Ok(table)
    }

    /// A table holding the given weight, `[num_embeddings, embedding_dim]` row-major. The
    /// `padding_idx` row is kept as given (PyTorch's `from_pretrained` does the same).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration, [`Error::Length`] when `params` has
    /// the wrong length.
    pub fn from_params(config: EmbeddingConfig, params: Vec<T>) -> Result<Self> {
        config.validate()?;
        if params.len() != config.param_len() {
            return Err(Error::Length {
                what: "params".into(),
                shape: Shape(vec![config.num_embeddings, config.embedding_dim]),
                len: params.len(),
            });
        }
        Ok(Self { config, params })
    }

    pub fn config(&self) -> &EmbeddingConfig {
        &self.config
    }

    /// All parameters, flat: `weight` `[num_embeddings, embedding_dim]` row-major.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut [T] {
        &mut self.params
    }

    /// `weight`, `[num_embeddings, embedding_dim]`.
    pub fn weight(&self) -> &[T] {
        &self.params
    }

    /// The parameter tensor named `name` (`weight`, PyTorch's name), if present.
    pub fn param(&self, name: &str) -> Option<&[T]> {
        (name == "weight").then_some(self.weight())
    }

    fn row_mut(&mut self, id: usize) -> &mut [T] {
        let d = self.config.embedding_dim;
        &mut self.params[id * d..(id + 1) * d]
    }

    /// `ids` `[*]` (laid out as `ids_shape`, e.g. `[seq_len, batch]`) →
    /// `[*, embedding_dim]`: (1) `y[n] = W[id_n]`.
    ///
    /// # Errors
    /// [`Error::Length`] when `ids` does not fill `ids_shape`, [`Error::Index`] naming the
    /// first id that is not below `num_embeddings`.
    pub fn forward(&self, ids: &[usize], ids_shape: &[usize]) -> Result<Tensor<T>> {
        self.check("ids", ids, ids_shape)?;
        let d = self.config.embedding_dim;
        let mut y = Vec::with_capacity(ids.len() * d);
        for &id in ids {
            // (1) y[n] = W[id_n]
            y.extend_from_slice(&self.params[id * d..(id + 1) * d]);
        }
        Tensor::new(y, &out_shape(ids_shape, d))
    }

    /// The backward of [`Embedding::forward`] on the same `ids`, given `dy = ∂L/∂y`
    /// `[*, embedding_dim]`: scatter-adds each row of `dy` into the gradient row of its id
    /// in `param_grads` (laid out as [`Embedding::params`]), skipping `padding_idx`.
    ///
    /// # Errors
    /// As [`Embedding::forward`]; also [`Error::Shape`] when `dy` is not
    /// `[*ids_shape, embedding_dim]` and [`Error::Length`] when `param_grads` has the wrong
    /// length.
    pub fn backward(
        &self,
        ids: &[usize],
        ids_shape: &[usize],
        dy: &Tensor<T>,
        param_grads: &mut [T],
    ) -> Result<()> {
        self.check("ids", ids, ids_shape)?;
        let d = self.config.embedding_dim;
        dy.expect_shape("grad y", &out_shape(ids_shape, d))?;
        if param_grads.len() != self.params.len() {
            return Err(Error::Length {
                what: "param_grads".into(),
                shape: Shape(vec![self.config.num_embeddings, d]),
                len: param_grads.len(),
            });
        }
        for (&id, dy_n) in ids.iter().zip(dy.data().chunks_exact(d)) {
            if Some(id) == self.config.padding_idx {
                continue;
            }
            // (1)ᵀ dW[id_n] += dy[n]
            for (g, &v) in param_grads[id * d..(id + 1) * d].iter_mut().zip(dy_n) {
                *g += v;
            }
        }
        Ok(())
    }

    fn check(&self, what: &str, ids: &[usize], ids_shape: &[usize]) -> Result<()> {
        if numel(ids_shape) != Some(ids.len()) {
            return Err(Error::Length {
                what: what.into(),
                shape: Shape(ids_shape.to_vec()),
                len: ids.len(),
            });
        }
        check_ids(
            what,
            ids,
            self.config.num_embeddings,
            "num_embeddings",
            None,
        )
    }
}

/// Checks that every id is below `bound` (called `bound_name` in the message), except `skip`
/// (an ignore index, which may lie outside the range, as PyTorch's −100 does).
///
/// # Errors
/// [`Error::Index`] naming the first position out of range, e.g.
/// `ids[3] = 12 is not below num_embeddings = 10`.
pub(crate) fn check_ids(
    what: &str,
    ids: &[usize],
    bound: usize,
    bound_name: &str,
    skip: Option<usize>,
) -> Result<()> {
    match ids
        .iter()
        .enumerate()
        .find(|&(_, &id)| id >= bound && Some(id) != skip)
    {
        Some((position, &value)) => Err(Error::Index {
            what: what.to_string(),
            position,
            value,
            bound_name: bound_name.to_string(),
            bound,
        }),
        None => Ok(()),
    }
}

/// `ids_shape` with an `embedding_dim` axis appended.
fn out_shape(ids_shape: &[usize], d: usize) -> Vec<usize> {
    let mut s = ids_shape.to_vec();
    s.push(d);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gradcheck;

    fn config(padding_idx: Option<usize>) -> EmbeddingConfig {
        EmbeddingConfig {
            num_embeddings: 6,
            embedding_dim: 3,
            padding_idx,
        }
    }

    /// L = Σ w ⊙ y with fixed random weights w.
    fn loss(table: &Embedding<f64>, ids: &[usize], shape: &[usize], w: &[f64]) -> f64 {
        let y = table.forward(ids, shape).unwrap();
        y.data().iter().zip(w).map(|(a, b)| a * b).sum()
    }

    /// ids `[seq_len = 4, batch = 2]` with repeats (scatter-add must sum them) and the
    /// padding id.
    const IDS: [usize; 8] = [1, 4, 0, 1, 5, 0, 1, 2];

    fn gradcheck(padding_idx: Option<usize>) {
        let shape = [4, 2];
        let table = Embedding::<f64>::new(config(padding_idx), 5).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let w: Vec<f64> = (0..IDS.len() * 3)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let dy = Tensor::new(w.clone(), &[4, 2, 3]).unwrap();
        // Start from non-zero gradients: backward must add to them, as PyTorch's .grad.
        let start: Vec<f64> = (0..18).map(|k| k as f64 * 0.01).collect();
        let mut grads = start.clone();
        table.backward(&IDS, &shape, &dy, &mut grads).unwrap();
        let mut dparams: Vec<f64> = grads.iter().zip(&start).map(|(g, s)| g - s).collect();
        if let Some(p) = padding_idx {
            // PyTorch's padding row receives no gradient although it does reach the output,
            // so the numeric derivative there is the one PyTorch deliberately drops.
            assert!(dparams[p * 3..p * 3 + 3].iter().all(|&g| g == 0.0));
            let n_p = IDS.iter().filter(|&&id| id == p).count();
            assert!(n_p > 0);
            for (n, _) in IDS.iter().enumerate().filter(|&(_, &id)| id == p) {
                for j in 0..3 {
                    dparams[p * 3 + j] += w[n * 3 + j];
                }
            }
        }
        gradcheck::check("weight", table.params(), &dparams, |p| {
            loss(
                &Embedding::from_params(config(padding_idx), p.to_vec()).unwrap(),
                &IDS,
                &shape,
                &w,
            )
        });
    }

    #[test]
    fn gradcheck_weight() {
        gradcheck(None);
    }

    #[test]
    fn gradcheck_weight_with_padding() {
        gradcheck(Some(0));
    }

    #[test]
    fn forward_picks_rows() {
        let params: Vec<f64> = (0..18).map(|k| k as f64).collect();
        let table = Embedding::from_params(config(None), params).unwrap();
        let y = table.forward(&[2, 0, 5], &[3]).unwrap();
        assert_eq!(y.shape(), &[3, 3]);
        assert_eq!(y.data(), &[6.0, 7.0, 8.0, 0.0, 1.0, 2.0, 15.0, 16.0, 17.0]);
        assert_eq!(table.param("weight").unwrap().len(), 18);
        assert!(table.param("bias").is_none());
    }

    #[test]
    fn init_is_seeded_standard_normal_with_zero_padding_row() {
        let big = EmbeddingConfig {
            num_embeddings: 1000,
            embedding_dim: 101,
            padding_idx: Some(7),
        };
        let a = Embedding::<f64>::new(big.clone(), 3).unwrap();
        let b = Embedding::<f64>::new(big.clone(), 3).unwrap();
        let c = Embedding::<f64>::new(big, 4).unwrap();
        assert_eq!(a.params(), b.params());
        assert_ne!(a.params(), c.params());
        assert!(a.params()[7 * 101..8 * 101].iter().all(|&v| v == 0.0));
        // 101,000 draws: the sample mean is within 5σ/√n ≈ 0.016 of 0, the variance within
        // 5·√(2/n) ≈ 0.022 of 1 (the zero row moves them by < 0.001).
        let n = a.params().len() as f64;
        let mean = a.params().iter().sum::<f64>() / n;
        let var = a
            .params()
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.016, "{mean}");
        assert!((var - 1.0).abs() < 0.022, "{var}");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let table = Embedding::<f32>::new(config(None), 0).unwrap();
        let e = table.forward(&[1, 6, 2], &[3]).unwrap_err();
        assert_eq!(e.to_string(), "ids[1] = 6 is not below num_embeddings = 6");
        let e = table.forward(&[1, 2, 3], &[2, 2]).unwrap_err();
        assert_eq!(e.to_string(), "ids: 3 values do not fill shape [2, 2]");
        let dy = Tensor::new(vec![0.0f32; 6], &[2, 3]).unwrap();
        let e = table
            .backward(&[0, 1, 2], &[3], &dy, &mut [0.0; 18])
            .unwrap_err();
        assert_eq!(e.to_string(), "grad y: expected shape [3, 3], got [2, 3]");
        let e = table
            .backward(&[0, 1], &[2], &dy, &mut [0.0; 17])
            .unwrap_err();
        assert!(matches!(e, Error::Length { .. }), "{e}");
        for bad in [
            EmbeddingConfig {
                num_embeddings: 0,
                embedding_dim: 2,
                padding_idx: None,
            },
            EmbeddingConfig {
                num_embeddings: 3,
                embedding_dim: 2,
                padding_idx: Some(3),
            },
        ] {
            assert!(matches!(
                Embedding::<f64>::new(bad, 0),
                Err(Error::Config { .. })
            ));
        }
    }
}
