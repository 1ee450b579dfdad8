//! One type for "whichever optimizer the run configured": what a training loop and a
//! checkpoint hold.

use serde::{Deserialize, Serialize};

use super::{
    Adagrad, AdagradConfig, Adam, AdamConfig, Optimizer, Rmsprop, RmspropConfig, Sgd, SgdConfig,
};
use crate::error::{Error, Result, Shape, config_err};
use crate::kernel::scalar::Float;

/// The optimizer and its settings. As JSON (what a checkpoint stores) it is the settings
/// with a `kind` tag: `{"kind": "sgd", "lr": 0.1, "momentum": 0.9, …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    Sgd(SgdConfig),
    Adam(AdamConfig),
    Rmsprop(RmspropConfig),
    Adagrad(AdagradConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Sgd(SgdConfig::default())
    }
}

impl OptimizerConfig {
    /// `sgd`, `adam`, `rmsprop` or `adagrad` (AdamW is `adam` with decoupled weight decay).
    pub fn kind(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd(_) => "sgd",
            OptimizerConfig::Adam(_) => "adam",
            OptimizerConfig::Rmsprop(_) => "rmsprop",
            OptimizerConfig::Adagrad(_) => "adagrad",
        }
    }

    /// The configured learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd(c) => c.lr,
            OptimizerConfig::Adam(c) => c.lr,
            OptimizerConfig::Rmsprop(c) => c.lr,
            OptimizerConfig::Adagrad(c) => c.lr,
        }
    }

    /// Checks every setting as PyTorch does.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        match self {
            OptimizerConfig::Sgd(c) => c.validate(),
            OptimizerConfig::Adam(c) => c.validate(),
            OptimizerConfig::Rmsprop(c) => c.validate(),
            OptimizerConfig::Adagrad(c) => c.validate(),
        }
    }
}

/// Any of recur's optimizers over one flat buffer of `len` parameters.
///
/// ```
/// use recur::optim::{AnyOptimizer, Optimizer, OptimizerConfig, SgdConfig};
/// let mut opt = AnyOptimizer::<f64>::new(OptimizerConfig::Sgd(SgdConfig { lr: 0.5, momentum: 0.9, ..Default::default() }), 2)?;
/// let mut p = [1.0, 2.0];
/// opt.step(&mut p, &[1.0, -1.0])?;
/// assert_eq!(p, [0.5, 2.5]);
/// assert_eq!(opt.state_buffers()[0], ("momentum_buffer", &[1.0, -1.0][..]));
/// # Ok::<(), recur::Error>(())
/// ```
#[derive(Clone, Debug)]
pub enum AnyOptimizer<T> {
    Sgd(Sgd<T>),
    Adam(Adam<T>),
    Rmsprop(Rmsprop<T>),
    Adagrad(Adagrad<T>),
}

impl<T: Float> AnyOptimizer<T> {
    /// The optimizer `config` names, its state fresh.
    ///
    /// # Errors
    /// [`Error::Config`] when the configuration is invalid.
    pub fn new(config: OptimizerConfig, len: usize) -> Result<Self> {
        Ok(match config {
            OptimizerConfig::Sgd(c) => AnyOptimizer::Sgd(Sgd::new(c, len)?),
            OptimizerConfig::Adam(c) => AnyOptimizer::Adam(Adam::new(c, len)?),
            OptimizerConfig::Rmsprop(c) => AnyOptimizer::Rmsprop(Rmsprop::new(c, len)?),
            OptimizerConfig::Adagrad(c) => AnyOptimizer::Adagrad(Adagrad::new(c, len)?),
        })
    }

    /// The settings, with the learning rate now in use.
    pub fn config(&self) -> OptimizerConfig {
        match self {
            AnyOptimizer::Sgd(o) => OptimizerConfig::Sgd(o.config().clone()),
            AnyOptimizer::Adam(o) => OptimizerConfig::Adam(o.config().clone()),
            AnyOptimizer::Rmsprop(o) => OptimizerConfig::Rmsprop(o.config().clone()),
            AnyOptimizer::Adagrad(o) => OptimizerConfig::Adagrad(o.config().clone()),
        }
    }

    /// The number of steps taken.
    pub fn step_count(&self) -> u64 {
        match self {
            AnyOptimizer::Sgd(o) => o.step_count(),
            AnyOptimizer::Adam(o) => o.step_count(),
            AnyOptimizer::Rmsprop(o) => o.step_count(),
            AnyOptimizer::Adagrad(o) => o.step_count(),
        }
    }

    /// The state buffers under PyTorch's state names, each laid out as the parameters
    /// (SGD: `momentum_buffer` once made; Adam: `exp_avg`, `exp_avg_sq`[, `max_exp_avg_sq`];
    /// RMSprop: `square_avg`[, `grad_avg`][, `momentum_buffer`]; Adagrad: `sum`).
    pub fn state_buffers(&self) -> Vec<(&'static str, &[T])> {
        match self {
            AnyOptimizer::Sgd(o) => o.state_buffers(),
            AnyOptimizer::Adam(o) => o.state_buffers(),
            AnyOptimizer::Rmsprop(o) => o.state_buffers(),
            AnyOptimizer::Adagrad(o) => o.state_buffers(),
        }
    }

    /// Restores the step count and every state buffer saved from
    /// [`AnyOptimizer::state_buffers`] (by name, in any order).
    ///
    /// # Errors
    /// [`Error::Config`] naming a buffer this optimizer does not keep, or one it needs that
    /// is missing; [`Error::Length`] for a buffer of the wrong length. Nothing is changed
    /// when an error is returned.
    pub fn restore(&mut self, step_count: u64, buffers: &[(&str, &[T])]) -> Result<()> {
        let kind = self.config().kind();
        let unknown = |name: &str| {
            config_err(
                format!("optimizer state `{name}`"),
                format!("{kind} keeps no such buffer"),
            )
        };
        if let AnyOptimizer::Sgd(o) = self {
            let mut momentum = None;
            for &(name, values) in buffers {
                if name != "momentum_buffer" {
                    return Err(unknown(name));
                }
                momentum = Some(values.to_vec());
            }
            o.set_momentum_buffer(momentum)?;
            o.set_step_count(step_count);
            return Ok(());
        }
        let expected: Vec<(&'static str, usize)> = self
            .state_buffers()
            .iter()
            .map(|(n, b)| (*n, b.len()))
            .collect();
        for &(name, values) in buffers {
            let Some(&(_, len)) = expected.iter().find(|(n, _)| *n == name) else {
                return Err(unknown(name));
            };
            if values.len() != len {
                return Err(Error::Length {
                    what: format!("optimizer state `{name}`"),
                    shape: Shape(vec![len]),
                    len: values.len(),
                });
            }
        }
        for (name, _) in &expected {
            if !buffers.iter().any(|(n, _)| n == name) {
                return Err(config_err(
                    format!("optimizer state `{name}`"),
                    "missing from the saved state",
                ));
            }
        }
        let mut targets = match self {
            AnyOptimizer::Adam(o) => {
                o.set_step_count(step_count);
                o.state_buffers_mut()
            }
            AnyOptimizer::Rmsprop(o) => {
                o.set_step_count(step_count);
                o.state_buffers_mut()
            }
            AnyOptimizer::Adagrad(o) => {
                o.set_step_count(step_count);
                o.state_buffers_mut()
            }
            AnyOptimizer::Sgd(_) => unreachable!("handled above"),
        };
        for (name, target) in &mut targets {
            let (_, values) = buffers
                .iter()
                .find(|(n, _)| n == name)
                .expect("checked above");
            target.copy_from_slice(values);
        }
        Ok(())
    }
}

impl<T: Float> Optimizer<T> for AnyOptimizer<T> {
    fn step(&mut self, params: &mut [T], grads: &[T]) -> Result<()> {
        match self {
            AnyOptimizer::Sgd(o) => o.step(params, grads),
            AnyOptimizer::Adam(o) => o.step(params, grads),
            AnyOptimizer::Rmsprop(o) => o.step(params, grads),
            AnyOptimizer::Adagrad(o) => o.step(params, grads),
        }
    }

    fn lr(&self) -> f64 {
        match self {
            AnyOptimizer::Sgd(o) => o.lr(),
            AnyOptimizer::Adam(o) => o.lr(),
            AnyOptimizer::Rmsprop(o) => o.lr(),
            AnyOptimizer::Adagrad(o) => o.lr(),
        }
    }

    fn set_lr(&mut self, lr: f64) -> Result<()> {
        match self {
            AnyOptimizer::Sgd(o) => o.set_lr(lr),
            AnyOptimizer::Adam(o) => o.set_lr(lr),
            AnyOptimizer::Rmsprop(o) => o.set_lr(lr),
            AnyOptimizer::Adagrad(o) => o.set_lr(lr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{AdamConfig, AmsGrad};

    /// Ten steps straight equal five steps, a save/restore into a fresh optimizer, and five
    /// more — bitwise, for every kind.
    #[test]
    fn restore_resumes_exactly() {
        let configs = [
            OptimizerConfig::Sgd(SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                ..Default::default()
            }),
            OptimizerConfig::Adam(AdamConfig {
                amsgrad: AmsGrad::Enabled,
                ..Default::default()
            }),
            OptimizerConfig::Rmsprop(RmspropConfig {
                momentum: 0.5,
                centered: crate::optim::Centered::Enabled,
                ..Default::default()
            }),
            OptimizerConfig::Adagrad(AdagradConfig {
                lr_decay: 0.1,
                ..Default::default()
            }),
        ];
        let grad = |t: usize| [(t as f64).sin(), (t as f64 * 0.7).cos() - 0.3, 0.1];
        for config in configs {
            let json = serde_json::to_string(&config).unwrap();
            assert_eq!(
                serde_json::from_str::<OptimizerConfig>(&json).unwrap(),
                config
            );
            let mut straight = AnyOptimizer::<f64>::new(config.clone(), 3).unwrap();
            let mut p = [1.0, -1.0, 0.5];
            for t in 0..10 {
                straight.step(&mut p, &grad(t)).unwrap();
            }
            let mut first = AnyOptimizer::<f64>::new(config.clone(), 3).unwrap();
            let mut q = [1.0, -1.0, 0.5];
            for t in 0..5 {
                first.step(&mut q, &grad(t)).unwrap();
            }
            let saved: Vec<(&str, Vec<f64>)> = first
                .state_buffers()
                .into_iter()
                .map(|(n, b)| (n, b.to_vec()))
                .collect();
            let view: Vec<(&str, &[f64])> = saved.iter().map(|(n, b)| (*n, &b[..])).collect();
            let mut resumed = AnyOptimizer::<f64>::new(config.clone(), 3).unwrap();
            resumed.restore(first.step_count(), &view).unwrap();
            for t in 5..10 {
                resumed.step(&mut q, &grad(t)).unwrap();
            }
            assert_eq!(p, q, "{}", config.kind());
            assert_eq!(resumed.step_count(), 10);
            // wrong names and lengths are errors
            assert!(resumed.restore(0, &[("nope", &[0.0; 3])]).is_err());
            if let Some((name, _)) = view.first() {
                assert!(resumed.restore(0, &[(name, &[0.0; 2])]).is_err());
            }
        }
    }
}
