//! Forecasting from a CSV file: the next H values of the target(s) from the last W rows
//! (direct multi-horizon: one output per step and target, on the top layer's final state).
//!
//! ```text
//! z[b] = head(h_n(top)[b])  ∈ R^{H·targets}       ℓ = mean (z − y)²  on scaled values
//! ```
//! The windows, the chronological split, the scaling, the metrics and the baselines are the
//! library's ([`recur::data::forecast`]); this file trains on them with the one trainer and
//! prints the test table: MAE, RMSE and MASE of the model, of naive and of seasonal naive on
//! the very same rolling origins.

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use recur::Call;
use recur::data::forecast::{
    ErrorSums, ForecastConfig, ForecastData, ForecastSpec, Metrics, Part, Window, WindowScaling,
};
use recur::data::series::{CsvColumns, Missing, SeriesTable};
use recur::model::{ModelInput, OutputForm, Reduction, SequenceModel, mse_loss, mse_loss_backward};

use super::args::{MissingPolicy, TrainArgs, WindowScalingKind};
use super::checkpoint::Checkpoint;
use super::core::{Progress, check_model};
use super::dropout_seed;
use super::optim::describe;
use super::report::{EvalReport, Figures};
use super::seq::build_model;
use super::settings::Settings;
use super::trainer::{Batch, Moment, Plan, Task, Trainer};

/// A comma-separated list of column names.
pub fn names(list: &str) -> Vec<String> {
    list.split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

/// The missing-value policy of the flags.
pub fn missing_policy(m: Option<MissingPolicy>) -> Missing {
    match m.unwrap_or(MissingPolicy::Error) {
        MissingPolicy::Error => Missing::Error,
        MissingPolicy::Drop => Missing::Drop,
        MissingPolicy::Ffill => Missing::Ffill,
        MissingPolicy::Interpolate => Missing::Interpolate,
    }
}

/// Reads the CSV file and cuts it into windows as the flags say.
pub fn load_data(a: &TrainArgs, s: &Settings) -> Result<ForecastData> {
    let Some(path) = &a.csv else {
        bail!("--csv is missing");
    };
    let targets = a.target.as_deref().map(names).unwrap_or_default();
    if targets.is_empty() {
        bail!("--csv needs --target COL (the column to forecast; several: COL,COL)");
    }
    let (Some(window), Some(horizon)) = (a.window, a.horizon) else {
        bail!("--csv needs --window W (rows read) and --horizon H (steps forecast)");
    };
    if window == 0 || horizon == 0 {
        bail!("--window and --horizon must be at least 1");
    }
    let missing = missing_policy(a.missing);
    let cols = CsvColumns {
        targets,
        features: a.features.as_deref().map(names).unwrap_or_default(),
        time: a.time_column.clone(),
        series: a.series_column.clone(),
        missing,
    };
    let table = SeriesTable::read_csv(path, &cols)?;
    let config = ForecastConfig {
        window,
        horizon,
        season: a.season,
        window_scaling: match a.window_scaling.unwrap_or(WindowScalingKind::Mean) {
            WindowScalingKind::None => WindowScaling::None,
            WindowScalingKind::Mean => WindowScaling::Mean,
            WindowScalingKind::Last => WindowScaling::Last,
        },
        split: s.split,
    };
    let data = ForecastData::new(
        table,
        &config,
        a.time_column.clone(),
        a.series_column.clone(),
        missing,
    )
    .with_context(|| format!("{}", path.display()))?;
    Ok(data)
}

/// The model's forecasts (data units, `[horizon × targets]` each) for `windows`.
pub fn forecasts(
    model: &SequenceModel<f32>,
    data: &ForecastData,
    windows: &[Window],
    batch: usize,
) -> Result<Vec<Vec<f64>>> {
    let mut out = Vec::with_capacity(windows.len());
    let no = data.spec.out_features();
    for b in windows.chunks(batch.max(1)) {
        let recur::data::forecast::WindowBatch {
            input: x, levels, ..
        } = data.batch(b)?;
        let z = model.forward(ModelInput::Features(x.view()), Call::new())?;
        for (j, w) in b.iter().enumerate() {
            let zj = &z.output.data()[j * no..(j + 1) * no];
            out.push(
                data.spec
                    .decode(&data.spec.scaling[w.series], &levels[j], zj),
            );
        }
    }
    Ok(out)
}

/// The scaled mean squared error and the MAE in data units over `windows`.
fn evaluate(
    model: &SequenceModel<f32>,
    data: &ForecastData,
    windows: &[Window],
    batch: usize,
) -> Result<(f64, f64)> {
    let (mut se, mut n) = (0.0, 0usize);
    let mut sums = ErrorSums::default();
    for b in windows.chunks(batch.max(1)) {
        let recur::data::forecast::WindowBatch {
            input: x,
            target: y,
            levels,
        } = data.batch(b)?;
        let z = model.forward(ModelInput::Features(x.view()), Call::new())?;
        se += f64::from(mse_loss(&z.output, &y, Reduction::Sum)?);
        n += y.data().len();
        let no = data.spec.out_features();
        for (j, w) in b.iter().enumerate() {
            let f = data.spec.decode(
                &data.spec.scaling[w.series],
                &levels[j],
                &z.output.data()[j * no..(j + 1) * no],
            );
            sums.add(&f, &data.truth(w), &[None]);
        }
    }
    let mae = sums.metrics().map_or(f64::NAN, |m| m.mae);
    Ok((se / n.max(1) as f64, mae))
}

/// A figure with as many decimals as its size needs.
fn fig(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The test table: the model, naive and seasonal naive on the same windows, and a last
/// line saying at a glance whether the model loses to a baseline.
pub fn test_table(
    model: &SequenceModel<f32>,
    data: &ForecastData,
    windows: &[Window],
    batch: usize,
) -> Result<String> {
    Ok(table_of(
        data,
        windows,
        &forecasts(model, data, windows, batch)?,
    ))
}

/// The test table of any forecaster's forecasts `preds` (data units, one per window).
pub fn table_of(data: &ForecastData, windows: &[Window], preds: &[Vec<f64>]) -> String {
    let spec = &data.spec;
    let nt = spec.targets.len();
    let (mut m, mut naive, mut snaive) = (
        ErrorSums::default(),
        ErrorSums::default(),
        ErrorSums::default(),
    );
    let mut seasonal_ok = spec.season.is_some();
    for (w, p) in windows.iter().zip(preds) {
        let scales: Vec<Option<f64>> = (0..nt).map(|k| data.mase_scale(w.series, k)).collect();
        let truth = data.truth(w);
        m.add(p, &truth, &scales);
        naive.add(&data.naive(w), &truth, &scales);
        match spec.season.and_then(|s| data.seasonal_naive(w, s)) {
            Some(f) => snaive.add(&f, &truth, &scales),
            None => seasonal_ok = false,
        }
    }
    let row = |name: &str, x: Option<Metrics>| match x {
        Some(x) => format!(
            "  {name:<18}{:>12}{:>12}{:>9}",
            fig(x.mae),
            fig(x.rmse),
            x.mase.map_or("-".into(), |v| format!("{v:.3}"))
        ),
        None => format!("  {name:<18}{:>12}{:>12}{:>9}", "-", "-", "-"),
    };
    let series = data.table.series.len();
    let mut lines = vec![
        format!(
            "test: {} rolling origins × {} steps{} over the test part of {} series{}",
            windows.len(),
            spec.horizon,
            if nt > 1 {
                format!(" × {nt} targets")
            } else {
                String::new()
            },
            series,
            match (&spec.frequency, spec.season) {
                (Some(f), Some(s)) => format!(" ({}, season {s})", f.name()),
                (Some(f), None) => format!(" ({}, no season: give --season)", f.name()),
                (None, Some(s)) => format!(" (season {s})"),
                (None, None) => " (no season: give --season)".into(),
            }
        ),
        format!("  {:<18}{:>12}{:>12}{:>9}", "", "MAE", "RMSE", "MASE"),
    ];
    let (mm, nm) = (m.metrics(), naive.metrics());
    let sm = if seasonal_ok { snaive.metrics() } else { None };
    lines.push(row("model", mm));
    lines.push(row("naive", nm));
    if let Some(s) = spec.season {
        lines.push(row(&format!("seasonal naive {s}"), sm));
    }
    let mae = |x: Option<Metrics>| x.map(|x| x.mae);
    let verdict = match (mae(mm), mae(nm), mae(sm)) {
        (Some(a), _, Some(s)) if a >= s => format!(
            "  !! the model LOSES to seasonal naive on test MAE ({} vs {})",
            fig(a),
            fig(s)
        ),
        (Some(a), Some(n), _) if a >= n => format!(
            "  !! the model LOSES to naive on test MAE ({} vs {})",
            fig(a),
            fig(n)
        ),
        (Some(_), Some(_), Some(_)) => {
            "  the model beats naive and seasonal naive on test MAE".into()
        }
        _ => "  the model beats naive on test MAE (no seasonal baseline)".into(),
    };
    lines.push(verdict);
    lines.join("\n")
}

/// A forecaster: batches of shuffled training windows.
struct Forecast {
    model: SequenceModel<f32>,
    data: ForecastData,
    train: Vec<Window>,
    valid: Vec<Window>,
    test: Vec<Window>,
    order: Vec<Window>,
    meta: [(&'static str, String); 1],
    plan: Plan,
    batch: usize,
    seed: u64,
    /// the last validation's or the test's, for the log
    figures: Figures,
}

impl Task for Forecast {
    fn kind(&self) -> &'static str {
        "forecast"
    }

    fn plan(&self) -> Plan {
        self.plan
    }

    fn model(&self) -> Option<&SequenceModel<f32>> {
        Some(&self.model)
    }

    fn model_mut(&mut self) -> Option<&mut SequenceModel<f32>> {
        Some(&mut self.model)
    }

    fn parts_mut(&mut self) -> [&mut [f32]; 3] {
        self.model.parts_mut()
    }

    /// The training windows in a permutation drawn from (seed, epoch): they hold no future
    /// of the validation or test parts, so their order is free.
    fn start_epoch(&mut self, epoch: usize) {
        self.order.clear();
        self.order.extend_from_slice(&self.train);
        self.order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            self.seed ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        ));
    }

    fn has_batch(&self, position: usize) -> bool {
        position < self.train.len().div_ceil(self.batch)
    }

    fn train_step(&mut self, prog: &Progress, grads: &mut [f32]) -> Result<Batch> {
        let k = prog.position;
        let idx = &self.order[k * self.batch..((k + 1) * self.batch).min(self.order.len())];
        let recur::data::forecast::WindowBatch {
            input: x,
            target: y,
            ..
        } = self.data.batch(idx)?;
        let (out, tape) = self.model.forward_train(
            ModelInput::Features(x.view()),
            Call::new().seed(dropout_seed(self.seed, prog.step)),
        )?;
        let loss = f64::from(mse_loss(&out.output, &y, Reduction::Mean)?);
        let grad = mse_loss_backward(&out.output, &y, Reduction::Mean, 1.0f32)?;
        self.model.backward(&tape, &grad, grads)?;
        let n = idx.len();
        Ok(Batch {
            loss,
            loss_sum: loss * n as f64,
            targets: n,
            tokens: n * self.data.spec.window,
            position: k + 1,
            ..Batch::default()
        })
    }

    fn bar_figure(&self, prog: &Progress, _: &Batch) -> String {
        format!("mse {:.5}", prog.loss_sum / prog.targets.max(1) as f64)
    }

    fn validate(&mut self, prog: &Progress, at: &Moment) -> Result<(f64, String)> {
        let train = prog.loss_sum / prog.targets.max(1) as f64;
        let (valid, mae) = evaluate(&self.model, &self.data, &self.valid, self.batch)?;
        let line = format!(
            "epoch {:>3}{}  lr {:.6}  train mse {train:.5}  valid mse {valid:.5}  valid MAE {}  \
             |grad| {:.3}  {:.1} s",
            at.epoch,
            if at.partial { " (part)" } else { "" },
            at.lr,
            fig(mae),
            at.grad_norm,
            at.elapsed_s
        );
        self.figures = vec![("loss", train), ("val_loss", valid), ("val_mae", mae)];
        Ok((valid, line))
    }

    fn finish(&mut self, prog: &Progress, elapsed_s: f64) -> Result<()> {
        println!(
            "{}",
            test_table(&self.model, &self.data, &self.test, self.batch)?
        );
        println!("{} steps in {elapsed_s:.1} s", prog.step);
        let (loss, mae) = evaluate(&self.model, &self.data, &self.test, self.batch)?;
        self.figures = vec![("loss", loss), ("mae", mae)];
        Ok(())
    }

    fn figures(&self) -> &[(&'static str, f64)] {
        &self.figures
    }

    fn checkpoint_meta(&self) -> &[(&'static str, String)] {
        &self.meta
    }
}

/// The spec's JSON as checkpoints, model files and ONNX files keep it.
pub fn spec_json(spec: &ForecastSpec) -> Result<String> {
    Ok(serde_json::to_string(spec)?)
}

/// What a forecasting run reads: the file, its series and rows, the window and horizon, the
/// windows of each part (`counts`: train, valid, test) and how they are split and scaled.
pub fn describe_data(
    args: &TrainArgs,
    s: &Settings,
    data: &ForecastData,
    counts: [usize; 3],
) -> String {
    let spec = &data.spec;
    let rows: usize = data.bounds.iter().map(|b| b[2]).sum();
    format!(
        "forecasting {} from {} ({} series, {rows} rows{}); window {} → horizon {}; {} \
         input(s) a step; windows train {} / valid {} / test {} (each series split {:?} in \
         time order, scaled on its training rows, window scaling {:?})",
        spec.targets.join(","),
        args.csv
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        data.table.series.len(),
        spec.frequency
            .as_ref()
            .map(|f| format!(", {}", f.name()))
            .unwrap_or_default(),
        spec.window,
        spec.horizon,
        spec.input_size(),
        counts[0],
        counts[1],
        counts[2],
        s.split,
        spec.window_scaling,
    )
}

/// Runs `recur train --csv`.
pub fn run(args: &TrainArgs, s: &Settings) -> Result<()> {
    let resume = match &args.resume {
        Some(p) => Some(Checkpoint::load(p)?),
        None => None,
    };
    let data = load_data(args, s)?;
    let spec = &data.spec;
    let model = build_model(
        s,
        spec.input_size(),
        spec.out_features(),
        OutputForm::Last,
        spec.window,
    )?;
    let (train, valid, test) = (
        data.windows(Part::Train),
        data.windows(Part::Valid),
        data.windows(Part::Test),
    );
    let n_batches = train.len().div_ceil(s.batch_size);
    let plan = Plan::epochs(s, n_batches);
    let Plan::Epochs { epochs, .. } = plan else {
        unreachable!("a plan of epochs")
    };
    println!(
        "recur train: {}",
        describe_data(args, s, &data, [train.len(), valid.len(), test.len()])
    );
    println!(
        "  model: {} {} × {} layer(s) → {} output(s); {} parameters; {} epoch(s) of {} steps \
         (batch {}); {}; clip norm {}; seed {}",
        s.cell.kind().name(),
        s.hidden_size,
        s.num_layers,
        spec.out_features(),
        model.param_len(),
        epochs,
        n_batches,
        s.batch_size,
        describe(&s.opt),
        s.clip_norm,
        s.seed
    );
    let meta = [("forecast", spec_json(spec)?)];
    let task = Forecast {
        model,
        order: Vec::with_capacity(train.len()),
        train,
        valid,
        test,
        data,
        meta,
        plan,
        batch: s.batch_size,
        seed: s.seed,
        figures: Figures::new(),
    };
    let mut trainer = Trainer::new(task, s, args)?;
    if let Some(ck) = &resume {
        trainer.resume(ck)?;
    }
    trainer.run()
}

/// `recur eval` of a forecaster: the test table on the data it was trained with.
pub fn eval_command(ck: &Checkpoint, batch: Option<usize>) -> Result<EvalReport> {
    let args = ck.args()?;
    let s = Settings::resolve(&args)
        .with_context(|| format!("{}: metadata `recur.run_config`", ck.file))?;
    let data = load_data(&args, &s)?;
    let spec = &data.spec;
    check_model(
        ck,
        &build_model(
            &s,
            spec.input_size(),
            spec.out_features(),
            OutputForm::Last,
            1,
        )?,
    )?;
    let test = data.windows(Part::Test);
    let batch = batch.unwrap_or(64);
    let (loss, mae) = evaluate(&ck.inner.model, &data, &test, batch)?;
    Ok(EvalReport {
        line: test_table(&ck.inner.model, &data, &test, batch)?.to_string(),
        data: "the test part".into(),
        counted: ("windows", test.len()),
        figures: vec![("loss", loss), ("mae", mae)],
    })
}
