//! Forecasting from CSV (`recur train --csv`) and `recur predict` end to end on tiny data
//! written to a temp folder: the test table beside its baselines, CSV errors naming the row
//! and column, predictions of classifiers, regressors and forecasters read back and checked
//! against the library's own forward, ONNX metadata, plots.

mod common;

use std::path::Path;

use common::{number_after, ok, one_line_error, p, scratch};

/// A monthly series with a level of 10,000, a season of 12 and a trend: `n` rows from
/// 2000-01, with a feature column.
fn monthly_csv(n: usize) -> String {
    let mut s = String::from("month,sales,promo\n");
    for t in 0..n {
        let season = (2.0 * std::f64::consts::PI * t as f64 / 12.0).sin();
        let y = 10_000.0 + 40.0 * t as f64 + 2_000.0 * season;
        s.push_str(&format!(
            "{}-{:02},{y:.1},{}\n",
            2000 + t / 12,
            t % 12 + 1,
            t % 3
        ));
    }
    s
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    p(&path).to_string()
}

#[test]
fn forecasting_trains_and_prints_the_test_table_beside_the_baselines() {
    let dir = scratch("forecast-train");
    let csv = write(&dir, "sales.csv", &monthly_csv(120));
    let out = ok(&[
        "train",
        "--csv",
        &csv,
        "--target",
        "sales",
        "--features",
        "promo",
        "--time-column",
        "month",
        "--window",
        "12",
        "--horizon",
        "3",
        "--hidden-size",
        "8",
        "--epochs",
        "2",
        "--quiet",
    ]);
    assert!(out.contains("forecasting sales"), "{out}");
    assert!(out.contains("monthly"), "{out}");
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("test: "))
        .collect();
    assert!(table[0].contains("season 12"), "{out}");
    assert!(table[1].contains("MAE") && table[1].contains("RMSE") && table[1].contains("MASE"));
    assert!(table[2].trim_start().starts_with("model"), "{out}");
    assert!(table[3].trim_start().starts_with("naive"), "{out}");
    assert!(
        table[4].trim_start().starts_with("seasonal naive 12"),
        "{out}"
    );
    assert!(
        table[5].contains("LOSES") || table[5].contains("beats"),
        "{out}"
    );
    // 120 rows: 12 test rows, 3-step horizon: 10 rolling origins
    assert!(
        table[0].starts_with("test: 10 rolling origins × 3 steps"),
        "{out}"
    );
}

#[test]
fn csv_errors_name_the_row_and_column() {
    let dir = scratch("forecast-errors");
    let mut bad = monthly_csv(60);
    bad = bad.replacen("2001-03,", "2001-03,x", 1); // row 2 + 14 = 16, column 2
    let cell = write(&dir, "bad.csv", &bad);
    let base = [
        "train",
        "--target",
        "sales",
        "--time-column",
        "month",
        "--window",
        "6",
        "--horizon",
        "2",
        "--csv",
    ];
    let run = |file: &str, extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.push(file);
        a.extend_from_slice(extra);
        one_line_error(&a)
    };
    let e = run(&cell, &[]);
    assert!(e.contains("bad.csv: row 16, column 2 (`sales`)"), "{e}");
    assert!(e.contains("is not a number"), "{e}");
    let gap: String = monthly_csv(60)
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 30)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let e = run(&write(&dir, "gap.csv", &gap), &[]);
    assert!(
        e.contains("row 31, column 1 (`month`)") && e.contains("leaves a gap"),
        "{e}"
    );
    let missing = monthly_csv(60).replacen(",0\n", ",\n", 1);
    let m = write(&dir, "missing.csv", &missing);
    let e = run(&m, &["--features", "promo"]);
    assert!(e.contains("column 3 (`promo`): missing value"), "{e}");
    let e = run(&cell, &["--features", "nope"]);
    assert!(e.contains("column `nope` is not in the header"), "{e}");
    let e = one_line_error(&["train", "--csv", &m, "--target", "sales"]);
    assert!(e.contains("--window"), "{e}");
}

/// Tolerance between predictions written to a file (shortest round-trip decimals of f32
/// outputs) and the library's own forward on the same data.
const SAME_PREDICTION: f64 = 1e-5;
/// Tolerance between recur's engine and the exported ONNX graph run on the interpreter.
const ONNX_PREDICTION: f64 = 1e-4;

/// Rising ("up") and falling ("down") sequences of 2 features; the regression target is the
/// mean of the first feature.
fn sequence_files(dir: &Path) -> (String, String, String) {
    let (mut cls, mut reg, mut bare) = (String::new(), String::new(), String::new());
    for i in 0..40 {
        let up = i % 2 == 0;
        let len = 3 + i % 5;
        let vals: Vec<f64> = (0..len)
            .map(|t| {
                let v = t as f64 / len as f64 + 0.05 * ((i * 7 + t) % 5) as f64;
                if up { v } else { -v }
            })
            .collect();
        let steps: Vec<String> = vals
            .iter()
            .map(|v| format!("{v:.3},{:.3}", v * 0.5))
            .collect();
        let mean = vals.iter().sum::<f64>() / len as f64;
        cls.push_str(&format!(
            "{}\t{}\n",
            if up { "up" } else { "down" },
            steps.join(" ")
        ));
        reg.push_str(&format!("{mean:.4}\t{}\n", steps.join(" ")));
        bare.push_str(&format!("{}\n", steps.join(" ")));
    }
    (
        write(dir, "cls.txt", &cls),
        write(dir, "reg.txt", &reg),
        write(dir, "bare.txt", &bare),
    )
}

/// The library's own outputs `[n, out]` of a checkpoint's model on a sequence file.
fn library_outputs(ck: &str, file: &str) -> Vec<Vec<f32>> {
    let model = recur::io::load_checkpoint::<f32>(ck, None).unwrap().model;
    let ds =
        recur::data::SequenceDataset::read_lines(file, recur::data::TargetKind::Regression, None)
            .unwrap();
    (0..ds.len())
        .map(|i| {
            let (x, lengths) = ds.padded_batch::<f32>(&[i]).unwrap();
            let out = model
                .forward(
                    recur::model::ModelInput::Features(x.view()),
                    recur::Call::new().lengths(&lengths),
                )
                .unwrap();
            out.output.data().to_vec()
        })
        .collect()
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    (
        header,
        lines
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect(),
    )
}

#[test]
fn predict_round_trips_a_classifier_through_checkpoint_model_file_and_onnx() {
    let dir = scratch("predict-classifier");
    let (cls, reg, bare) = sequence_files(&dir);
    let ck = p(&dir.join("c.safetensors")).to_string();
    ok(&[
        "train",
        "--sequences",
        &cls,
        "--hidden-size",
        "8",
        "--epochs",
        "3",
        "--checkpoint",
        &ck,
        "--quiet",
    ]);
    let out = dir.join("p.csv");
    // labels present or left out: the same predictions
    ok(&[
        "predict",
        "--checkpoint",
        &ck,
        "--sequences",
        &bare,
        "-o",
        p(&out),
        "--proba",
    ]);
    let (header, rows) = read_csv(&out);
    // classes sorted: down, up
    assert_eq!(header, ["label", "down", "up"]);
    assert_eq!(rows.len(), 40);
    // the regression file holds the same steps, with numbers for labels
    let lib = library_outputs(&ck, &reg);
    for (row, z) in rows.iter().zip(&lib) {
        let e: Vec<f64> = z.iter().map(|&v| f64::from(v).exp()).collect();
        let s: f64 = e.iter().sum();
        let best = if z[0] >= z[1] { "down" } else { "up" };
        assert_eq!(row[0], best);
        for k in 0..2 {
            let got: f64 = row[k + 1].parse().unwrap();
            assert!(
                (got - e[k] / s).abs() < SAME_PREDICTION,
                "{got} vs {}",
                e[k] / s
            );
        }
    }
    let labelled = dir.join("l.csv");
    ok(&[
        "predict",
        "--checkpoint",
        &ck,
        "--sequences",
        &cls,
        "-o",
        p(&labelled),
        "--proba",
    ]);
    assert_eq!(
        std::fs::read(&labelled).unwrap(),
        std::fs::read(&out).unwrap()
    );
    // the model file and the ONNX file keep the class names: the same labels
    let model = p(&dir.join("m.safetensors")).to_string();
    let onnx = p(&dir.join("m.onnx")).to_string();
    ok(&["convert", &ck, &model]);
    ok(&["convert", &ck, &onnx]);
    for file in [&model, &onnx] {
        let o = dir.join("o.csv");
        ok(&[
            "predict",
            "--checkpoint",
            file,
            "--sequences",
            &bare,
            "-o",
            p(&o),
            "--proba",
        ]);
        let (h2, r2) = read_csv(&o);
        assert_eq!(h2, header);
        for (a, b) in rows.iter().zip(&r2) {
            assert_eq!(a[0], b[0]);
            for k in 1..3 {
                let (x, y): (f64, f64) = (a[k].parse().unwrap(), b[k].parse().unwrap());
                assert!((x - y).abs() < ONNX_PREDICTION, "{file}: {x} vs {y}");
            }
        }
    }
    // JSON keyed by the header; .npy of class indices
    let json = dir.join("p.json");
    ok(&[
        "predict",
        "--checkpoint",
        &ck,
        "--sequences",
        &bare,
        "-o",
        p(&json),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 40);
    assert_eq!(v[0]["label"].as_str().unwrap(), rows[0][0]);
    let npy = dir.join("p.npy");
    ok(&[
        "predict",
        "--checkpoint",
        &ck,
        "--sequences",
        &bare,
        "-o",
        p(&npy),
    ]);
    let (_, ids) = recur::onnx::read_tensor(&npy).unwrap();
    assert_eq!(ids.shape(), &[40]);
}

#[test]
fn predict_writes_a_regressors_values_in_the_datas_units() {
    let dir = scratch("predict-regressor");
    let (_, reg, bare) = sequence_files(&dir);
    let ck = p(&dir.join("r.safetensors")).to_string();
    ok(&[
        "train",
        "--sequences",
        &reg,
        "--target",
        "regression",
        "--hidden-size",
        "8",
        "--epochs",
        "3",
        "--checkpoint",
        &ck,
        "--quiet",
    ]);
    let out = dir.join("p.csv");
    ok(&[
        "predict",
        "--checkpoint",
        &ck,
        "--sequences",
        &bare,
        "-o",
        p(&out),
    ]);
    let (header, rows) = read_csv(&out);
    assert_eq!(header, ["prediction"]);
    let lib = library_outputs(&ck, &reg);
    assert_eq!(rows.len(), lib.len());
    for (row, z) in rows.iter().zip(&lib) {
        let got: f64 = row[0].parse().unwrap();
        assert!((got - f64::from(z[0])).abs() < SAME_PREDICTION);
    }
    let e = one_line_error(&[
        "predict",
        "--checkpoint",
        &ck,
        "--sequences",
        &bare,
        "-o",
        p(&out),
        "--proba",
    ]);
    assert!(e.contains("regressor"), "{e}");
    let e = one_line_error(&[
        "predict",
        "--checkpoint",
        &ck,
        "--sequences",
        &bare,
        "-o",
        "x.txt",
    ]);
    assert!(e.contains(".csv, .json or .npy"), "{e}");
    // pictures are a forecaster's
    for flags in [&["--plot", "x.png"][..], &["--holdout"]] {
        let e = one_line_error(
            &[
                &[
                    "predict",
                    "--checkpoint",
                    &ck,
                    "--sequences",
                    &bare,
                    "-o",
                    p(&out),
                ][..],
                flags,
            ]
            .concat(),
        );
        assert!(
            e.contains("is for forecasters") && e.contains("is a regressor"),
            "{e}"
        );
    }
}

#[test]
fn predict_forecasts_the_steps_after_the_history_with_the_time_column_continued() {
    let dir = scratch("predict-forecast");
    let csv = write(&dir, "sales.csv", &monthly_csv(96));
    let ck = p(&dir.join("f.safetensors")).to_string();
    ok(&[
        "train",
        "--csv",
        &csv,
        "--target",
        "sales",
        "--features",
        "promo",
        "--time-column",
        "month",
        "--window",
        "12",
        "--horizon",
        "4",
        "--hidden-size",
        "8",
        "--epochs",
        "2",
        "--checkpoint",
        &ck,
        "--quiet",
    ]);
    // `recur eval` prints the training's test table again
    let table = |out: &str| -> Vec<String> {
        out.lines()
            .skip_while(|l| !l.starts_with("test: "))
            .take(6)
            .map(str::to_string)
            .collect()
    };
    let trained = ok(&[
        "train",
        "--csv",
        &csv,
        "--target",
        "sales",
        "--features",
        "promo",
        "--time-column",
        "month",
        "--window",
        "12",
        "--horizon",
        "4",
        "--hidden-size",
        "8",
        "--epochs",
        "2",
        "--quiet",
    ]);
    let eval = ok(&["eval", "--checkpoint", &ck]);
    assert_eq!(table(&eval), table(&trained), "{eval}");
    let history = write(&dir, "history.csv", &monthly_csv(90));
    let out = dir.join("f.csv");
    ok(&[
        "predict",
        "--checkpoint",
        &ck,
        "--csv",
        &history,
        "-o",
        p(&out),
    ]);
    let (header, rows) = read_csv(&out);
    assert_eq!(header, ["month", "sales"]);
    // 90 rows from 2000-01 end in 2007-06
    let months: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(months, ["2007-07", "2007-08", "2007-09", "2007-10"]);
    // the library's own forward on the last 12 rows
    let ck_lib = recur::io::load_checkpoint::<f32>(&ck, None).unwrap();
    let spec: recur::data::forecast::ForecastSpec =
        serde_json::from_str(ck_lib.extra_metadata("forecast").unwrap()).unwrap();
    let table = recur::data::series::SeriesTable::read_csv(&history, &spec.csv_columns()).unwrap();
    let (x, levels) = spec.history_input(&table.series[0]).unwrap();
    let z = ck_lib
        .model
        .forward(
            recur::model::ModelInput::Features(x.view()),
            recur::Call::new(),
        )
        .unwrap();
    let f = spec.decode(&spec.scaling[0], &levels, z.output.data());
    for (row, want) in rows.iter().zip(&f) {
        let got: f64 = row[1].parse().unwrap();
        assert!(
            (got - want).abs() < SAME_PREDICTION * want.abs(),
            "{got} vs {want}"
        );
    }
    // through ONNX: the window, scaling and time column come from metadata_props
    let onnx = p(&dir.join("f.onnx")).to_string();
    ok(&["convert", &ck, &onnx]);
    let o2 = dir.join("o.csv");
    ok(&[
        "predict",
        "--checkpoint",
        &onnx,
        "--csv",
        &history,
        "-o",
        p(&o2),
    ]);
    let (h2, r2) = read_csv(&o2);
    assert_eq!(h2, header);
    for (a, b) in rows.iter().zip(&r2) {
        assert_eq!(a[0], b[0]);
        let (x, y): (f64, f64) = (a[1].parse().unwrap(), b[1].parse().unwrap());
        assert!((x - y).abs() < ONNX_PREDICTION * x.abs(), "{x} vs {y}");
    }
    // .npy: [series, horizon, targets]
    let npy = dir.join("f.npy");
    ok(&[
        "predict",
        "--checkpoint",
        &ck,
        "--csv",
        &history,
        "-o",
        p(&npy),
    ]);
    assert_eq!(
        recur::onnx::read_tensor(&npy).unwrap().1.shape(),
        &[1, 4, 1]
    );
    // a history shorter than the window, and the wrong data flag
    let short = write(&dir, "short.csv", &monthly_csv(5));
    let e = one_line_error(&[
        "predict",
        "--checkpoint",
        &ck,
        "--csv",
        &short,
        "-o",
        p(&out),
    ]);
    assert!(e.contains("has 5 rows; the model reads the last 12"), "{e}");
    let e = one_line_error(&[
        "predict",
        "--checkpoint",
        &ck,
        "--sequences",
        &short,
        "-o",
        p(&out),
    ]);
    assert!(e.contains("--csv HISTORY.csv"), "{e}");
}

#[test]
fn many_series_in_long_format_are_forecast_by_id() {
    let dir = scratch("forecast-long");
    let mut csv = String::from("store,month,sales\n");
    for t in 0..60 {
        for (s, level) in [("a", 100.0), ("b", 5000.0)] {
            let y = level * (1.0 + 0.2 * (t as f64 * 0.5).sin()) + t as f64;
            csv.push_str(&format!("{s},{}-{:02},{y:.2}\n", 2000 + t / 12, t % 12 + 1));
        }
    }
    let file = write(&dir, "stores.csv", &csv);
    let ck = p(&dir.join("s.safetensors")).to_string();
    let out = ok(&[
        "train",
        "--csv",
        &file,
        "--target",
        "sales",
        "--time-column",
        "month",
        "--series-column",
        "store",
        "--window",
        "8",
        "--horizon",
        "2",
        "--hidden-size",
        "8",
        "--epochs",
        "2",
        "--checkpoint",
        &ck,
        "--quiet",
    ]);
    assert!(out.contains("2 series"), "{out}");
    let o = dir.join("o.csv");
    ok(&["predict", "--checkpoint", &ck, "--csv", &file, "-o", p(&o)]);
    let (header, rows) = read_csv(&o);
    assert_eq!(header, ["store", "month", "sales"]);
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["a", "a", "b", "b"]);
    assert_eq!(rows[0][1], "2005-01");
    // each series in its own units (scaled on its own)
    let a: f64 = rows[0][2].parse().unwrap();
    let b: f64 = rows[2][2].parse().unwrap();
    assert!(a < 1000.0 && b > 1000.0, "{rows:?}");
    let unknown = write(&dir, "unknown.csv", &csv.replace("b,", "c,"));
    let e = one_line_error(&[
        "predict",
        "--checkpoint",
        &ck,
        "--csv",
        &unknown,
        "-o",
        p(&o),
    ]);
    assert!(e.contains("series `c` was not in the training data"), "{e}");
}

#[test]
fn language_models_are_refused_with_what_to_use() {
    let dir = scratch("predict-lm");
    let text = write(&dir, "t.txt", &"the cat sat on the mat\n".repeat(50));
    let ck = p(&dir.join("lm.safetensors")).to_string();
    ok(&[
        "train",
        "--text",
        &text,
        "--hidden-size",
        "8",
        "--num-layers",
        "1",
        "--epochs",
        "1",
        "--checkpoint",
        &ck,
        "--quiet",
    ]);
    let e = one_line_error(&[
        "predict",
        "--checkpoint",
        &ck,
        "--text",
        &text,
        "-o",
        "x.csv",
    ]);
    assert!(
        e.contains("recur sample") && e.contains("recur eval"),
        "{e}"
    );
}

/// The holdout figures are printed with 4 decimals.
const PRINTED_4: f64 = 1e-4;

/// `--holdout` forecasts each series' last H rows from the rows before them (the same
/// forecast as a history file without them), prints the MAE and RMSE that the written
/// forecast and those rows give, and `--plot` draws history, forecast and truth as PNG or
/// SVG.
#[test]
fn holdout_scores_the_withheld_rows_and_plot_draws_them() {
    let dir = scratch("predict-holdout");
    let (n, h) = (60, 3);
    let (mut csv, mut cut) = (
        String::from("store,month,sales\n"),
        String::from("store,month,sales\n"),
    );
    let mut truth: Vec<(String, String, f64)> = Vec::new();
    for t in 0..n {
        for (s, level) in [("a", 100.0), ("b", 5000.0)] {
            let y = level * (1.0 + 0.2 * (t as f64 * 0.5).sin()) + t as f64;
            let month = format!("{}-{:02}", 2000 + t / 12, t % 12 + 1);
            let line = format!("{s},{month},{y:.2}\n");
            csv.push_str(&line);
            if t < n - h {
                cut.push_str(&line);
            } else {
                truth.push((s.into(), month, format!("{y:.2}").parse().unwrap()));
            }
        }
    }
    truth.sort_by(|x, y| x.0.cmp(&y.0)); // by store, in time order within each
    let file = write(&dir, "stores.csv", &csv);
    let short = write(&dir, "short.csv", &cut);
    let ck = p(&dir.join("s.safetensors")).to_string();
    ok(&[
        "train",
        "--csv",
        &file,
        "--target",
        "sales",
        "--time-column",
        "month",
        "--series-column",
        "store",
        "--window",
        "8",
        "--horizon",
        &h.to_string(),
        "--hidden-size",
        "8",
        "--epochs",
        "2",
        "--checkpoint",
        &ck,
        "--quiet",
    ]);
    let (held, png) = (dir.join("held.csv"), dir.join("f.png"));
    let out = ok(&[
        "predict",
        "--checkpoint",
        &ck,
        "--csv",
        &file,
        "-o",
        p(&held),
        "--holdout",
        "--plot",
        p(&png),
    ]);
    let line = out.lines().find(|l| l.starts_with("holdout:")).unwrap();
    let (header, rows) = read_csv(&held);
    assert_eq!(header, ["store", "month", "sales"]);
    assert_eq!(rows.len(), truth.len());
    // an independent MAE and RMSE of the written forecast against the withheld rows
    let (mut abs, mut sq) = (0.0, 0.0);
    for (row, (store, month, y)) in rows.iter().zip(&truth) {
        assert_eq!((&row[0], &row[1]), (store, month));
        let e: f64 = row[2].parse::<f64>().unwrap() - y;
        abs += e.abs();
        sq += e * e;
    }
    let k = truth.len() as f64;
    assert!(
        (number_after(line, "MAE ") - abs / k).abs() < PRINTED_4,
        "{line}"
    );
    assert!(
        (number_after(line, "RMSE ") - (sq / k).sqrt()).abs() < PRINTED_4,
        "{line}"
    );
    // the forecast of the history without those rows
    let plain = dir.join("plain.csv");
    ok(&[
        "predict",
        "--checkpoint",
        &ck,
        "--csv",
        &short,
        "-o",
        p(&plain),
    ]);
    assert_eq!(
        std::fs::read(&plain).unwrap(),
        std::fs::read(&held).unwrap()
    );
    // the pictures
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"),
        "{}",
        bytes.len()
    );
    let svg = dir.join("b.svg");
    ok(&[
        "predict",
        "--checkpoint",
        &ck,
        "--csv",
        &file,
        "-o",
        p(&plain),
        "--holdout",
        "--plot",
        p(&svg),
        "--plot-series",
        "b",
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") || text.starts_with("<?xml"),
        "{}",
        &text[..40]
    );
    for label in ["history", "forecast", "truth", "b (holdout MAE"] {
        assert!(text.contains(label), "{label} missing from the SVG");
    }
    assert!(!text.contains("a (holdout MAE"));
    let run = |extra: &[&str]| {
        one_line_error(
            &[
                &[
                    "predict",
                    "--checkpoint",
                    &ck,
                    "--csv",
                    &file,
                    "-o",
                    p(&plain),
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    let e = run(&["--plot", p(&svg), "--plot-series", "zz"]);
    assert!(e.contains("--plot-series zz: no such series"), "{e}");
    let e = run(&["--plot", "f.pdf"]);
    assert!(e.contains(".png or .svg"), "{e}");
    let e = run(&["--plot-series", "a"]);
    assert!(e.contains("give --plot too"), "{e}");
    let tiny = write(&dir, "tiny.csv", "store,month,sales\na,2000-01,1\n");
    let e = one_line_error(&[
        "predict",
        "--checkpoint",
        &ck,
        "--csv",
        &tiny,
        "-o",
        p(&plain),
        "--holdout",
    ]);
    assert!(e.contains("withholding the last 3"), "{e}");
}
