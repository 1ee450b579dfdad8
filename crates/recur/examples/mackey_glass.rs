//! Jaeger & Haas (2004), "Harnessing nonlinearity", Science 304: an echo state network
//! predicts the Mackey–Glass series (τ = 17) 84 steps ahead by running free on its own
//! outputs. They report NRMSE84 ≈ 10^−4.2 with 1000 reservoir units.
//!
//! The setup followed here (the paper's where it states it, recur's defaults otherwise):
//! the series sampled once per time unit and squashed as tanh(x − 1); a reservoir of N tanh
//! units (default 1000), 1% connectivity, spectral radius 0.8, the series fed back with
//! weights in ±0.56 (here: as the input) and a bias of weights in ±`--bias` on a constant 1
//! (the paper's constant input 0.02 on weights in ±1 is `--bias 0.02`); teacher forcing over
//! 3000 steps, the first 1000 discarded, with state noise uniform in ±`--noise` while the
//! training states are collected; the readout by ridge regression, λ chosen from a grid by
//! the 84-step error on 20 validation points that follow the training series; then 100 test
//! points further on, each a free run of 84 steps from the (noiseless) teacher-forced state
//! there. NRMSE84 = √(mean over the test points of (x̂ − x)² at step 84 / σ²), in the
//! series' original scale (x̂ = 1 + atanh(ŷ)), σ² the series' variance. `--runs R` repeats
//! it with R reservoirs (seeds `--seed` … `--seed` + R − 1), each on its own stretch of the
//! series, and pools the squared errors (the paper averages 100 independent runs).
//! `scripts/mackey_glass_ref.py` is the same experiment written independently in numpy.
//!
//! ```sh
//! cargo run --release -p recur --example mackey_glass                       # N = 1000
//! cargo run --release -p recur --example mackey_glass -- --n 400 --seed 3
//! cargo run --release -p recur --example mackey_glass -- --noise 1e-8 --runs 10
//! ```

use std::time::Instant;

use recur::Tensor;
use recur::data::MackeyGlass;
use recur::model::{Esn, EsnConfig, OutputForm};

const TRAIN: usize = 3000;
const WASHOUT: usize = 1000;
const HORIZON: usize = 84;
const VALID_POINTS: usize = 20;
const TEST_POINTS: usize = 100;
/// Steps between two trial points.
const SPACING: usize = 20;
/// The series' steps one run uses: training, the trial points and the last one's horizon.
const PER_RUN: usize = TRAIN + (VALID_POINTS + TEST_POINTS) * SPACING + HORIZON + 1;
/// The published figure: log10 NRMSE84.
const PUBLISHED_LOG10: f64 = -4.2;
const GRID: [f64; 6] = [0.0, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4];

struct Args {
    n: usize,
    seed: u64,
    runs: usize,
    noise: f64,
    bias: f64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        n: 1000,
        seed: 0,
        runs: 1,
        noise: 0.0,
        bias: 0.2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--n" => a.n = value.parse().map_err(|e| bad(&e))?,
            "--seed" => a.seed = value.parse().map_err(|e| bad(&e))?,
            "--runs" => a.runs = value.parse().map_err(|e| bad(&e))?,
            "--noise" => a.noise = value.parse().map_err(|e| bad(&e))?,
            "--bias" => a.bias = value.parse().map_err(|e| bad(&e))?,
            _ => {
                return Err(format!(
                    "unknown flag {flag} (--n --seed --runs --noise --bias)"
                ));
            }
        }
    }
    if a.runs == 0 || a.runs > 1000 {
        return Err("--runs: 1 to 1000".into());
    }
    Ok(a)
}

/// The step-84 errors at `points` (indices into the series) of a fitted network, in the
/// series' original scale, from the teacher-forced `states` `[steps, 1, N]`: one batch of
/// free runs.
fn errors(
    esn: &Esn,
    states: &Tensor<f64>,
    x: &[f64],
    y: &[f64],
    points: &[usize],
) -> recur::Result<Vec<f64>> {
    let n = esn.config().reservoir_size;
    let mut rows = Vec::with_capacity(points.len() * n);
    for &p in points {
        rows.extend_from_slice(&states.data()[p * n..(p + 1) * n]);
    }
    let inputs: Vec<f64> = points.iter().map(|&p| y[p]).collect();
    let out = esn.continue_batch(&rows, &inputs, HORIZON)?;
    let last = &out[(HORIZON - 1) * points.len()..];
    Ok(points
        .iter()
        .zip(last)
        .map(|(&p, &o)| 1.0 + o.clamp(-1.0 + 1e-15, 1.0 - 1e-15).atanh() - x[p + HORIZON])
        .collect())
}

/// One run on the series stretch `x`, `y` (PER_RUN steps): the chosen λ and the test errors.
fn run(a: &Args, seed: u64, x: &[f64], y: &[f64]) -> recur::Result<(f64, Vec<f64>)> {
    let config = EsnConfig {
        input_size: 1,
        reservoir_size: a.n,
        output_size: 1,
        spectral_radius: 0.8,
        input_scaling: 0.56,
        bias_scaling: a.bias,
        leak_rate: 1.0,
        sparsity: 0.99,
        washout: WASHOUT,
        output: OutputForm::EveryStep,
        state_noise: a.noise,
        noise_seed: seed,
    };
    let esn = Esn::new(config, seed)?;
    // teacher forcing: read y_t, predict y_{t+1}
    let u = Tensor::new(y[..TRAIN].to_vec(), &[TRAIN, 1, 1])?;
    let target = Tensor::new(y[1..=TRAIN].to_vec(), &[TRAIN, 1, 1])?;
    // the noiseless teacher-forced states over the whole stretch, for the trial points
    let steps = PER_RUN - HORIZON - 1;
    let states = esn.states(&Tensor::new(y[..steps].to_vec(), &[steps, 1, 1])?, None)?;
    let points = |from: usize, count: usize| -> Vec<usize> {
        (from..from + count).map(|i| TRAIN + i * SPACING).collect()
    };
    let (valid, test) = (points(0, VALID_POINTS), points(VALID_POINTS, TEST_POINTS));
    let mut best: Option<(f64, f64, Esn)> = None;
    for &lambda in &GRID {
        let mut candidate = esn.clone();
        // a λ whose solve fails is skipped, not fatal
        if let Err(e) = candidate.fit(&[(&u, None, &target)], &[(&u, None, &target)], &[lambda]) {
            println!("  seed {seed}, λ = {lambda:e}: skipped ({e})");
            continue;
        }
        let e = errors(&candidate, &states, x, y, &valid)?;
        let v = e.iter().map(|e| e * e).sum::<f64>() / e.len() as f64;
        println!("  seed {seed}, λ = {lambda:e}: validation mean squared error {v:.3e}");
        if best.as_ref().is_none_or(|(_, b, _)| v < *b) {
            best = Some((lambda, v, candidate));
        }
    }
    let Some((lambda, _, fitted)) = best else {
        return Err(recur::Error::Empty(
            "no λ of the grid could be solved".into(),
        ));
    };
    Ok((lambda, errors(&fitted, &states, x, y, &test)?))
}

fn main() -> recur::Result<()> {
    let a = parse().map_err(recur::Error::Empty)?;
    let start = Instant::now();
    let len = PER_RUN * a.runs;
    let x = MackeyGlass::default().series(len, 1000)?;
    let mean = x.iter().sum::<f64>() / len as f64;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / len as f64;
    let y: Vec<f64> = x.iter().map(|v| (v - 1.0).tanh()).collect();
    let mut sq = Vec::new();
    let mut lambdas = Vec::new();
    for r in 0..a.runs {
        let stretch = r * PER_RUN..(r + 1) * PER_RUN;
        let (lambda, e) = run(&a, a.seed + r as u64, &x[stretch.clone()], &y[stretch])?;
        let run_nrmse = (e.iter().map(|e| e * e).sum::<f64>() / e.len() as f64 / var).sqrt();
        println!(
            "  seed {}: λ = {lambda:e}, test NRMSE84 {run_nrmse:.3e}",
            a.seed + r as u64
        );
        lambdas.push(lambda);
        sq.extend(e.iter().map(|e| e * e));
    }
    let nrmse = (sq.iter().sum::<f64>() / sq.len() as f64 / var).sqrt();
    println!(
        "Mackey–Glass τ = 17, N = {}, {} run(s) from seed {}, noise {:e}, bias ±{}: test \
         NRMSE84 = {nrmse:.3e} (log10 {:.2}) over {} points; Jaeger & Haas 2004: \
         10^{PUBLISHED_LOG10} = {:.1e} (N = 1000); {:.1} s",
        a.n,
        a.runs,
        a.seed,
        a.noise,
        a.bias,
        nrmse.log10(),
        sq.len(),
        10f64.powf(PUBLISHED_LOG10),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
