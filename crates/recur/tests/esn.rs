//! The echo state network against numpy: `tests/fixtures/esn/readout.safetensors`, made by
//! `scripts/gen_esn_fixtures.py`, holds a reservoir, its states computed in numpy from the
//! equations of `model/esn.rs`, and the ridge readout numpy's `lstsq` finds on the augmented
//! system `[Z; √λ I] W = [Y; 0]` (an SVD solve that never forms ZᵀZ). recur must reproduce the
//! spectral radius, the states and the readout.

mod common;

use recur::model::{Esn, EsnConfig, ridge_regression, spectral_radius};

/// States: the same f64 operations in another order (numpy's matrix-vector product sums in
/// blocks), amplified a little over 300 steps of a contracting map; observed ≤ 1e-15.
const STATE_TOL: f64 = 1e-12;
/// The readout: recur solves the normal equations by Cholesky, whose error grows with the
/// condition number of ZᵀZ + λI (about 1e5 here) times the rounding of forming ZᵀZ; lstsq's
/// SVD does not square it. Observed ≤ 1e-9 relative; 1e-7 keeps room and catches any wrong λ,
/// row or column (those change the weights at order 1e-2 or more).
const READOUT_TOL: f64 = 1e-7;
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
