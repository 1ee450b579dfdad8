//! `recur train --cell esn --csv`: an echo state network ([`recur::model::Esn`]) as a
//! forecaster. The CSV reading, the windows, the chronological split, the scaling, the
//! metrics and the baselines are the LSTM forecaster's ([`super::forecast`],
//! [`recur::data::forecast`]); only the model differs. The reservoir reads each window's W
//! scaled rows from the zero state, and the readout maps the feature row of the window's
//! last step to the H × targets scaled values (direct multi-horizon, as the LSTM's head on
//! its final state):
//!
//! ```text
//! x_t = (1 − a) x_{t−1} + a tanh(W_in [1; u_t] + W x_{t−1}),  x = 0 before the window's first row
//! ẑ = W_out [1; u_last; x_last]  ∈ R^{H·targets}          (data units: the forecaster's decode)
//! W_out = argmin Σ_train windows ‖ẑ − z‖² + λ ‖W_out‖²      λ from --ridge, by validation MSE
//! ```
//!
//! The forecast depends on the window's W rows and nothing else, as an LSTM forecaster's
//! does: `recur predict --csv` (with `--holdout` and `--plot`), `recur eval` and Python's
//! `recur.load(F).forecast(history)` read the file's spec and run the same readout. The file
//! is [`recur::io::save_esn`]'s, with the run's settings and, under `recur.extra.`, the kind
//! `forecast` and the spec (scalers included).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use recur::Tensor;
use recur::data::forecast::{ErrorSums, ForecastData, Part, Window};
use recur::io::predict::SAFETENSORS_META_PREFIX;
use recur::model::{Esn, EsnData, OutputForm};

use super::args::TrainArgs;
use super::forecast::{describe_data, load_data, spec_json, table_of};
use super::settings::Settings;

/// Reservoir state values (f64) one pass holds at most: windows × W × N is kept under it by
/// cutting the windows into batches (32 MiB).
const STATE_BUDGET: usize = 1 << 22;

/// Windows per batch for a window of `w` rows and `n` reservoir units (at least one).
fn windows_per_batch(w: usize, n: usize) -> usize {
    (STATE_BUDGET / w.saturating_mul(n).max(1)).max(1)
}

/// One batch of windows, in f64: input `[W, b, inputs]`, target `[b, H × targets]` (scaled),
/// and what turns outputs back into the data's units.
struct Batch {
    input: Tensor<f64>,
    target: Tensor<f64>,
    levels: Vec<Vec<f64>>,
    windows: Vec<Window>,
}

fn widen(t: &Tensor<f32>) -> Result<Tensor<f64>> {
    Ok(Tensor::new(
        t.data().iter().map(|&v| f64::from(v)).collect(),
        t.shape(),
    )?)
}

/// `windows` in batches of at most `per`.
fn batches(data: &ForecastData, windows: &[Window], per: usize) -> Result<Vec<Batch>> {
    windows
        .chunks(per)
        .map(|w| {
            let b = data.batch(w)?;
            Ok(Batch {
                input: widen(&b.input)?,
                target: widen(&b.target)?,
                levels: b.levels,
                windows: w.to_vec(),
            })
        })
        .collect()
}

fn view(batches: &[Batch]) -> Vec<EsnData<'_>> {
    batches
        .iter()
        .map(|b| (&b.input, None, &b.target))
        .collect()
}

/// The forecasts (data units, `[H × targets]` per window) of every window of `batches`. The
/// outputs are rounded to f32 before decoding, as every forecaster's are (the library's
/// [`recur::io::predict::forecast`] reads f32 outputs), so that `recur predict` gives the
/// numbers the test table was computed from.
fn forecasts(esn: &Esn, data: &ForecastData, batches: &[Batch]) -> Result<Vec<Vec<f64>>> {
    let no = data.spec.out_features();
    let mut out = Vec::new();
    for b in batches {
        let z = esn.predict(&b.input, None)?;
        for (j, w) in b.windows.iter().enumerate() {
            let zj: Vec<f32> = z.data()[j * no..(j + 1) * no]
                .iter()
                .map(|&v| v as f32)
                .collect();
            out.push(
                data.spec
                    .decode(&data.spec.scaling[w.series], &b.levels[j], &zj),
            );
        }
    }
    Ok(out)
}

/// The MAE (data units) of forecasts against the windows' truth.
fn mae(data: &ForecastData, windows: &[Window], preds: &[Vec<f64>]) -> f64 {
    let mut sums = ErrorSums::default();
    for (w, p) in windows.iter().zip(preds) {
        sums.add(p, &data.truth(w), &[None]);
    }
    sums.metrics().map_or(f64::NAN, |m| m.mae)
}

/// Flags of gradient training and of the generated tasks, which a closed-form fit on CSV
/// windows cannot honour: refused rather than ignored.
fn refuse_flags(a: &TrainArgs) -> Result<()> {
    super::esn::refuse_gradient_flags(
        a,
        "--cell esn --csv",
        &[("--esn-sequences", a.esn_sequences.is_some())],
        "the readout is fitted in closed form on every training window; its options are \
         --hidden-size, --spectral-radius, --input-scaling, --bias-scaling, --leak-rate, \
         --sparsity, --ridge, --esn-noise and --seed",
    )
}

/// Runs `recur train --cell esn --csv`.
pub fn run(args: &TrainArgs, s: &Settings) -> Result<()> {
    refuse_flags(args)?;
    let start = Instant::now();
    let data = load_data(args, s)?;
    let spec = &data.spec;
    let [train, valid, test] = [Part::Train, Part::Valid, Part::Test].map(|p| data.windows(p));
    println!(
        "recur train: echo state network {}",
        describe_data(args, s, &data, [train.len(), valid.len(), test.len()])
    );
    let e = &s.esn;
    let config =
        super::esn::esn_config(s, spec.input_size(), spec.out_features(), OutputForm::Last);
    let mut esn = Esn::new(config, s.seed).context("echo state network")?;
    println!(
        "  {}; the readout maps each window's last state to {} value(s), fitted on {} \
         training windows",
        super::esn::describe(s),
        spec.out_features(),
        train.len()
    );
    let per = windows_per_batch(spec.window, s.hidden_size);
    let [tb, vb, sb] = [&train, &valid, &test].map(|w| batches(&data, w, per));
    let (tb, vb, sb) = (tb?, vb?, sb?);
    let fit = esn.fit(&view(&tb), &view(&vb), &e.ridge)?;
    for (lambda, mse) in &fit.grid {
        println!("  λ = {lambda:e}: valid mse {mse:.6}");
    }
    let valid_mae = mae(&data, &valid, &forecasts(&esn, &data, &vb)?);
    println!(
        "kept λ = {:e}: train mse {:.5}; valid mse {:.5}, valid MAE {:.4}",
        fit.ridge, fit.train_mse, fit.valid_mse, valid_mae
    );
    println!("{}", table_of(&data, &test, &forecasts(&esn, &data, &sb)?));
    println!("fitted in {:.1} s", start.elapsed().as_secs_f64());
    if let Some(path) = &args.checkpoint {
        let spec = spec_json(spec)?;
        let kind_key = format!("{SAFETENSORS_META_PREFIX}kind");
        let spec_key = format!("{SAFETENSORS_META_PREFIX}forecast");
        super::esn::save(
            &esn,
            path,
            args,
            None,
            &[(&kind_key, "forecast"), (&spec_key, &spec)],
        )?;
        println!("saved to {}", path.display());
    }
    Ok(())
}

/// `recur eval` of an ESN forecaster: the test table again, on the CSV file and settings it
/// was fitted with (refused if the file now gives another spec: other rows, another
/// scaling).
pub fn eval(esn: &Esn, saved_spec: Option<&String>, args: &TrainArgs, file: &Path) -> Result<()> {
    let s = Settings::resolve(args)?;
    let data = load_data(args, &s)?;
    let spec = spec_json(&data.spec)?;
    if saved_spec != Some(&spec) {
        bail!(
            "{}: the CSV file it was fitted on now gives other windows or scalers than the \
             network's (the file changed since); `recur predict --csv` forecasts new history",
            file.display()
        );
    }
    if esn.config().output_size != data.spec.out_features()
        || esn.config().input_size != data.spec.input_size()
    {
        bail!(
            "{}: the network's sizes do not match its forecasting spec",
            file.display()
        );
    }
    let test = data.windows(Part::Test);
    let sb = batches(
        &data,
        &test,
        windows_per_batch(data.spec.window, esn.config().reservoir_size),
    )?;
    println!("{}", table_of(&data, &test, &forecasts(esn, &data, &sb)?));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_within_the_budget() {
        assert_eq!(windows_per_batch(24, 500), STATE_BUDGET / 12_000);
        assert!(windows_per_batch(24, 500) * 24 * 500 <= STATE_BUDGET);
        assert_eq!(windows_per_batch(1 << 20, 8192), 1);
        assert_eq!(windows_per_batch(0, 0), STATE_BUDGET);
    }
}
