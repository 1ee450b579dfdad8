//! The echo state network against numpy: `tests/fixtures/esn/readout.safetensors`, made by
//! `scripts/gen_esn_fixtures.py`, holds a reservoir, its states computed in numpy from the
//! equations of `model/esn.rs`, and the ridge readout numpy's `lstsq` finds on the augmented
//! system `[Z; √λ I] W = [Y; 0]` (an SVD solve that never forms ZᵀZ). recur must reproduce the
//! spectral radius, the states and the readout. `tests/fixtures/esn/forecast.safetensors`, from
//! the same script, is the ESN as a forecaster of a CSV series (`recur train --cell esn
//! --csv`), written out in numpy from the forecasting pipeline's description: recur's split,
//! scaling, windows, last-state readout and decoding must give its forecasts.

mod common;

use recur::Tensor;
use recur::data::forecast::{ForecastConfig, ForecastData, Part, WindowScaling};
use recur::data::series::{CsvColumns, Missing, SeriesTable};
use recur::model::{Esn, EsnConfig, ridge_regression, spectral_radius};

/// States: the same f64 operations in another order (numpy's matrix-vector product sums in
/// blocks), amplified a little over 300 steps of a contracting map; observed ≤ 1e-15.
const STATE_TOL: f64 = 1e-12;
/// The readout: recur solves the normal equations by Cholesky, whose error grows with the
/// condition number of ZᵀZ + λI (about 1e5 here) times the rounding of forming ZᵀZ; lstsq's
/// SVD does not square it. Observed ≤ 1e-9 relative; 1e-7 keeps room and catches any wrong λ,
/// row or column (those change the weights at order 1e-2 or more).
const READOUT_TOL: f64 = 1e-7;
/// The forecasts, relative to the largest: recur rounds each readout output to f32 before
/// putting it back into the data's units (as every forecaster's output is), ≤ 6e-8 of a
/// scaled value; the scalers' and levels' sums are taken in another order than numpy's,
/// which may move a float32 input by one ulp. Observed 2.5e-9; a wrong level, scaler, row or
/// window moves them by 1e-3 or more.
const FORECAST_TOL: f64 = 1e-7;
/// Eigenvalues by two QR-based solvers of a 40 × 40 matrix agree to a few ulps.
const RADIUS_TOL: f64 = 1e-12;

fn close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / scale;
        assert!(
            err <= tol,
            "{what}[{k}]: recur {g:e}, numpy {w:e}, error {err:e} of the largest"
        );
    }
}

#[test]
fn reservoir_states_and_readout_match_numpy() {
    let f = common::load(&common::fixture_dir().join("esn/readout.safetensors"));
    let config: EsnConfig = serde_json::from_str(&f.meta["config"]).unwrap();
    let ridge: f64 = f.meta["ridge"].parse().unwrap();
    let n = config.reservoir_size;
    let (_, w_raw) = &f.tensors["w_raw"];
    let radius = spectral_radius(w_raw, n).unwrap();
    close("radius", &[radius], &f.tensors["radius_raw"].1, RADIUS_TOL);
    let scaled: Vec<f64> = w_raw
        .iter()
        .map(|v| v * config.spectral_radius / radius)
        .collect();
    close("w", &scaled, &f.tensors["w"].1, RADIUS_TOL);

    let m = config.output_size;
    let f_size = config.feature_size();
    let mut esn = Esn::from_parts(
        config.clone(),
        f.tensors["w_in"].1.clone(),
        f.tensors["w"].1.clone(),
        vec![0.0; m * f_size],
        0.0,
    )
    .unwrap();
    let u = f.tensor("u");
    let states = esn.states(&u, None).unwrap();
    close("states", states.data(), &f.tensors["states"].1, STATE_TOL);

    // the readout through the library's own path, and through ridge_regression directly
    let y = f.tensor("y");
    let report = esn
        .fit(&[(&u, None, &y)], &[(&u, None, &y)], &[ridge])
        .unwrap();
    assert_eq!(report.ridge, ridge);
    close(
        "w_out (fit)",
        esn.readout(),
        &f.tensors["w_out"].1,
        READOUT_TOL,
    );
    let (z, at) = esn.features(&u, None).unwrap();
    assert_eq!(at.len(), 300 - config.washout);
    let y_rows: Vec<f64> = at
        .iter()
        .flat_map(|&(t, _)| y.data()[t * m..(t + 1) * m].to_vec())
        .collect();
    let w = ridge_regression(&z, &y_rows, at.len(), f_size, m, ridge).unwrap();
    close(
        "w_out (ridge_regression)",
        &w,
        &f.tensors["w_out"].1,
        READOUT_TOL,
    );
}

fn widen(t: &Tensor<f32>) -> Tensor<f64> {
    Tensor::new(t.data().iter().map(|&v| f64::from(v)).collect(), t.shape()).unwrap()
}

#[test]
fn the_esn_forecaster_matches_numpy() {
    let f = common::load(&common::fixture_dir().join("esn/forecast.safetensors"));
    let config: EsnConfig = serde_json::from_str(&f.meta["config"]).unwrap();
    let ridge: f64 = f.meta["ridge"].parse().unwrap();
    let split: Vec<f64> = serde_json::from_str(&f.meta["split"]).unwrap();
    let (window, horizon) = (
        f.meta["window"].parse().unwrap(),
        f.meta["horizon"].parse().unwrap(),
    );
    // the series as a CSV file (Rust's shortest round-trip decimals: the same f64 values)
    let mut csv = String::from("y,x\n");
    for row in f.tensors["series"].1.chunks_exact(2) {
        csv.push_str(&format!("{:?},{:?}\n", row[0], row[1]));
    }
    let columns = CsvColumns {
        targets: vec!["y".into()],
        features: vec!["x".into()],
        time: None,
        series: None,
        missing: Missing::Error,
    };
    let table = SeriesTable::parse_csv(csv.as_bytes(), "fixture", &columns).unwrap();
    let forecast = ForecastConfig {
        window,
        horizon,
        season: None,
        window_scaling: WindowScaling::Mean,
        split: [split[0], split[1], split[2]],
    };
    let data = ForecastData::new(table, &forecast, None, None, Missing::Error).unwrap();
    let f_size = config.feature_size();
    let mut esn = Esn::from_parts(
        config.clone(),
        f.tensors["w_in"].1.clone(),
        f.tensors["w"].1.clone(),
        vec![0.0; config.output_size * f_size],
        0.0,
    )
    .unwrap();
    let train = data.batch(&data.windows(Part::Train)).unwrap();
    let (x, y) = (widen(&train.input), widen(&train.target));
    esn.fit(&[(&x, None, &y)], &[(&x, None, &y)], &[ridge])
        .unwrap();
    close("w_out", esn.readout(), &f.tensors["w_out"].1, READOUT_TOL);

    let test = data.windows(Part::Test);
    let batch = data.batch(&test).unwrap();
    let z = esn.predict(&widen(&batch.input), None).unwrap();
    let mut got = Vec::new();
    for (j, w) in test.iter().enumerate() {
        let zj: Vec<f32> = z.data()[j * horizon..(j + 1) * horizon]
            .iter()
            .map(|&v| v as f32)
            .collect();
        got.extend(
            data.spec
                .decode(&data.spec.scaling[w.series], &batch.levels[j], &zj),
        );
    }
    close("forecasts", &got, &f.tensors["forecasts"].1, FORECAST_TOL);
}
