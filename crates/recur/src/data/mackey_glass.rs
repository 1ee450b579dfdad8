//! The Mackey–Glass delay differential equation (Mackey & Glass 1977), the chaotic series of
//! Jaeger & Haas (2004) at delay τ = 17:
//! ```text
//! dx/dt = β x(t − τ) / (1 + x(t − τ)ⁿ) − γ x(t)        β = 0.2, γ = 0.1, n = 10
//! ```
//! integrated by the classical Runge–Kutta method with step 1/`subdivisions` (the delayed
//! value at a half step is the mean of its two grid neighbours), from the constant history
//! x = 1.2, and sampled once per time unit after `discard` units of transient. Deterministic:
//! no seed.

use crate::error::{Result, config_err};

/// The equation's constants and the integration.
#[derive(Clone, Debug, PartialEq)]
pub struct MackeyGlass {
    /// τ, in time units (17: mildly chaotic; 30: more so).
    pub tau: usize,
    pub beta: f64,
    pub gamma: f64,
    pub n: f64,
    /// Integration steps per time unit.
    pub subdivisions: usize,
    /// The constant history x(t ≤ 0).
    pub x0: f64,
}

impl Default for MackeyGlass {
    fn default() -> Self {
        Self {
            tau: 17,
            beta: 0.2,
            gamma: 0.1,
            n: 10.0,
            subdivisions: 10,
            x0: 1.2,
        }
    }
}

impl MackeyGlass {
    /// The largest number of samples a series may ask for.
    pub const MAX_SAMPLES: usize = 10_000_000;

    /// `len` samples, one per time unit, after `discard` units of transient.
    ///
    /// ```
    /// use recur::data::MackeyGlass;
    /// let x = MackeyGlass::default().series(500, 1000)?;
    /// assert_eq!(x.len(), 500);
    /// assert!(x.iter().all(|v| (0.2..1.5).contains(v)));
    /// # Ok::<(), recur::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Config`] for τ or the subdivisions 0, constants that are not finite,
    /// or more than [`MackeyGlass::MAX_SAMPLES`] samples in all.
    pub fn series(&self, len: usize, discard: usize) -> Result<Vec<f64>> {
        if self.tau == 0 || self.subdivisions == 0 {
            return Err(config_err(
                "mackey-glass",
                "τ and the subdivisions must be ≥ 1",
            ));
        }
        if ![self.beta, self.gamma, self.n, self.x0]
            .iter()
            .all(|v| v.is_finite())
        {
            return Err(config_err("mackey-glass", "the constants must be finite"));
        }
        let units = len
            .checked_add(discard)
            .filter(|&u| u <= Self::MAX_SAMPLES)
            .ok_or_else(|| {
                config_err(
                    "mackey-glass",
                    format!("at most {} samples in all", Self::MAX_SAMPLES),
                )
            })?;
        let s = self.subdivisions;
        let h = 1.0 / s as f64;
        let lag = self.tau * s;
        // x on the grid, with `lag` points of history before t = 0
        let steps = units * s;
        let mut x = Vec::with_capacity(lag + steps + 1);
        x.resize(lag + 1, self.x0);
        let f = |x: f64, delayed: f64| {
            self.beta * delayed / (1.0 + delayed.powf(self.n)) - self.gamma * x
        };
        let mut out = Vec::with_capacity(len);
        for i in 0..steps {
            let now = lag + i;
            let (d0, d1) = (x[now - lag], x[now - lag + 1]);
            let dm = 0.5 * (d0 + d1);
            let xi = x[now];
            let k1 = f(xi, d0);
            let k2 = f(xi + 0.5 * h * k1, dm);
            let k3 = f(xi + 0.5 * h * k2, dm);
            let k4 = f(xi + h * k3, d1);
            x.push(xi + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4));
            if (i + 1) % s == 0 && (i + 1) / s > discard {
                out.push(x[now + 1]);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An independent integration (explicit Euler with a hundred times finer steps) agrees
    /// over the first 200 time units, before chaos separates the two.
    #[test]
    fn runge_kutta_agrees_with_fine_euler() {
        let mg = MackeyGlass::default();
        let rk = mg.series(200, 0).unwrap();
        let (tau, h) = (17usize, 1e-3);
        let per_unit = 1000;
        let lag = tau * per_unit;
        let mut x = vec![1.2f64; lag + 1];
        let mut euler = Vec::new();
        for i in 0..200 * per_unit {
            let now = lag + i;
            let d = x[now - lag];
            let next = x[now] + h * (0.2 * d / (1.0 + d.powi(10)) - 0.1 * x[now]);
            x.push(next);
            if (i + 1) % per_unit == 0 {
                euler.push(next);
            }
        }
        let worst = rk
            .iter()
            .zip(&euler)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 5e-3, "{worst}");
    }

    #[test]
    fn the_attractor_and_the_checks() {
        let x = MackeyGlass::default().series(2000, 500).unwrap();
        let (lo, hi) = x
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        // the τ = 17 attractor spans about 0.2 … 1.35
        assert!(
            (0.15..0.5).contains(&lo) && (1.2..1.45).contains(&hi),
            "{lo} {hi}"
        );
        let bad = MackeyGlass {
            tau: 0,
            ..Default::default()
        };
        assert!(bad.series(10, 0).is_err());
        assert!(MackeyGlass::default().series(usize::MAX, 1).is_err());
    }
}
