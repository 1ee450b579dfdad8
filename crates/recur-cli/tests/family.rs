//! The long-time-lag tasks (multiplication, temporal order, embedded Reber grammar, timing)
//! and the echo state network (`--cell esn`) end to end: each task trains on the one trainer
//! and prints its validation and test lines; the ESN fits, reports, saves, and `recur eval`
//! scores its file again with the same figure.

mod common;

use common::{number_after, ok, one_line_error, p, scratch};

/// Lines starting with `prefix`.
fn lines<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn each_long_lag_task_trains_on_the_one_trainer() {
    let small = [
        "--steps",
        "60",
        "--eval-every",
        "30",
        "--hidden-size",
        "16",
        "--batch-size",
        "8",
    ];
    for (task, seq_len, figure) in [
        ("multiplication", Some("12"), "solved"),
        ("temporal-order", Some("12"), "correct"),
        ("temporal-order-3", Some("12"), "correct"),
        ("timing", Some("6"), "correct"),
        ("reber", None, "strings correct"),
    ] {
        let mut args = vec!["train", "--task", task];
        if let Some(t) = seq_len {
            args.extend(["--seq-len", t]);
        }
        args.extend(small);
        let out = ok(&args);
        assert!(out.starts_with("recur train: "), "{task}: {out}");
        // step 0, 30 and 60
        assert_eq!(lines(&out, "step").len(), 3, "{task}: {out}");
        let test = lines(&out, "test:");
        assert_eq!(test.len(), 1, "{task}: {out}");
        let v = number_after(test[0], figure);
        assert!((0.0..=100.0).contains(&v), "{task}: {out}");
    }
}

/// The embedded Reber grammar is learnt step by step quickly (most steps have one or two
/// locally predictable successors): the share of correct steps must rise well above its
/// value before training.
#[test]
fn reber_prediction_improves() {
    let out = ok(&[
        "train",
        "--task",
        "reber",
        "--steps",
        "300",
        "--eval-every",
        "300",
        "--hidden-size",
        "24",
        "--lr",
        "0.01",
    ]);
    let steps = lines(&out, "step");
    let before = number_after(steps[0], "steps correct");
    let after = number_after(steps[steps.len() - 1], "steps correct");
    assert!(after > before + 20.0 && after > 70.0, "{out}");
}

/// The ESN fits a readout on every kind of generated task, prints each λ it tried, and
/// beats chance where the task is short enough for its fading memory.
#[test]
fn esn_fits_every_generated_task() {
    let base = [
        "--cell",
        "esn",
        "--hidden-size",
        "60",
        "--esn-sequences",
        "300",
    ];
    for (task, seq_len, figure) in [
        ("adding", "8", "solved"),
        ("multiplication", "8", "solved"),
        ("temporal-order", "10", "correct"),
        ("timing", "4", "correct"),
        ("reber", "", "strings correct"),
        ("copy", "2", "recalled"),
    ] {
        let mut args = vec!["train", "--task", task];
        if !seq_len.is_empty() {
            args.extend(["--seq-len", seq_len]);
        }
        args.extend(base);
        let out = ok(&args);
        assert!(out.contains("echo state network"), "{task}: {out}");
        assert_eq!(
            lines(&out, "  λ = ").len(),
            5,
            "{task}: the default grid: {out}"
        );
        let test = lines(&out, "test:");
        assert_eq!(test.len(), 1, "{task}: {out}");
        assert!(number_after(test[0], "mse") < 1.0, "{task}: {out}");
        let _ = number_after(test[0], figure);
    }
    // temporal order at T = 10: two symbols within the reservoir's memory, far above 25%
    let out = ok(&[
        "train",
        "--task",
        "temporal-order",
        "--seq-len",
        "10",
        "--cell",
        "esn",
        "--hidden-size",
        "200",
        "--esn-sequences",
        "1000",
    ]);
    let acc = number_after(lines(&out, "test:")[0], "correct");
    assert!(acc > 60.0, "{out}");
}

/// `--esn-noise` (and the config file's `esn-noise`) adds seeded state noise to the training
/// states: the same seed gives the same fit, the noise changes it, and 0 is no noise.
#[test]
fn esn_noise_is_seeded_and_changes_the_fit() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--task",
            "adding",
            "--seq-len",
            "8",
            "--cell",
            "esn",
            "--hidden-size",
            "40",
            "--esn-sequences",
            "200",
            "--ridge",
            "1e-6",
        ];
        args.extend(extra);
        let out = ok(&args);
        let lambda = lines(&out, "  λ = ");
        assert_eq!(lambda.len(), 1, "{out}");
        (out.clone(), number_after(lambda[0], "valid mse"))
    };
    let (plain, clean) = run(&[]);
    assert!(plain.contains("state noise 0)"), "{plain}");
    let (out, zero) = run(&["--esn-noise", "0"]);
    assert_eq!(zero, clean, "{out}");
    let (out, noisy) = run(&["--esn-noise", "0.05"]);
    assert!(out.contains("state noise 0.05)"), "{out}");
    assert_ne!(noisy, clean, "{out}");
    assert_eq!(run(&["--esn-noise", "0.05"]).1, noisy);
    assert_ne!(
        run(&["--esn-noise", "0.05", "--seed", "1"]).1,
        run(&["--seed", "1"]).1
    );
    let dir = scratch("esn_noise");
    let cfg = dir.join("esn.toml");
    std::fs::write(&cfg, "esn-noise = 0.05\n").unwrap();
    assert_eq!(run(&["--config", p(&cfg)]).1, noisy);
}

/// A saved ESN scores the same figures under `recur eval`, on its generated test set and on a
/// labelled file.
#[test]
fn esn_saves_and_eval_reproduces_the_test() {
    let dir = scratch("esn_eval");
    let file = dir.join("esn.safetensors");
    let out = ok(&[
        "train",
        "--task",
        "timing",
        "--seq-len",
        "4",
        "--cell",
        "esn",
        "--hidden-size",
        "50",
        "--esn-sequences",
        "200",
        "--checkpoint",
        p(&file),
    ]);
    let test = lines(&out, "test:")[0];
    let eval = ok(&["eval", "--checkpoint", p(&file)]);
    assert_eq!(
        number_after(test, "correct"),
        number_after(&eval, "correct"),
        "{out}\n{eval}"
    );
    assert_eq!(number_after(test, "mse"), number_after(&eval, "mse"));

    // labelled sequences: the class is whether the sum of the steps is positive
    let mut text = String::new();
    for i in 0..240u32 {
        let steps: Vec<f64> = (0..5)
            .map(|t| (((i * 7 + t * 13) % 11) as f64 - 5.0) / 5.0)
            .collect();
        let label = if steps.iter().sum::<f64>() > 0.0 {
            "up"
        } else {
            "down"
        };
        let s: Vec<String> = steps.iter().map(|v| v.to_string()).collect();
        text.push_str(&format!("{label}\t{}\n", s.join(" ")));
    }
    let seqs = dir.join("s.txt");
    std::fs::write(&seqs, text).unwrap();
    let model = dir.join("seq.safetensors");
    let out = ok(&[
        "train",
        "--sequences",
        p(&seqs),
        "--cell",
        "esn",
        "--hidden-size",
        "80",
        "--split",
        "0.6,0.2,0.2",
        "--checkpoint",
        p(&model),
        "--input-scaling",
        "0.5",
    ]);
    let acc = number_after(lines(&out, "test:")[0], "correct");
    assert!(acc > 70.0, "{out}");
    let eval = ok(&["eval", "--checkpoint", p(&model)]);
    assert_eq!(acc, number_after(&eval, "correct"), "{eval}");
    let all = ok(&["eval", "--checkpoint", p(&model), "--sequences", p(&seqs)]);
    assert!(all.contains("240 sequences"), "{all}");
}

/// An echo state network trains nothing by gradient: on the generated tasks and on labelled
/// sequences, as on CSV series, the gradient-training flags are refused by name, not ignored.
#[test]
fn esn_refuses_gradient_training_flags() {
    let dir = scratch("esn_flags");
    let seqs = dir.join("s.txt");
    let lines: String = (0..40)
        .map(|i| format!("{}\t{} 0.5 -0.25\n", ["a", "b"][i % 2], i as f64 / 40.0))
        .collect();
    std::fs::write(&seqs, lines).unwrap();
    let task = [
        "train",
        "--cell",
        "esn",
        "--task",
        "adding",
        "--seq-len",
        "10",
    ];
    let labelled = ["train", "--cell", "esn", "--sequences", p(&seqs)];
    // (a generated task refuses --epochs on its own: it counts --steps)
    for (base, epochs) in [
        (&task[..], None),
        (&labelled[..], Some(&["--epochs", "2"][..])),
    ] {
        for flag in [
            &["--lr", "0.1"][..],
            &["--optimizer", "sgd"],
            &["--steps", "5"],
            epochs.unwrap_or(&["--momentum", "0.9"]),
            &["--batch-size", "8"],
            &["--clip-norm", "1"],
            &["--dropout", "0.1"],
            &["--schedule", "step"],
            &["--init-range", "0.1"],
        ] {
            let e = one_line_error(&[base, flag].concat());
            assert!(
                e.contains(&format!(
                    "{} is not an option of an echo state network",
                    flag[0]
                )),
                "{flag:?}: {e}"
            );
        }
    }
}

#[test]
fn bad_settings_are_one_line_errors() {
    for args in [
        &["train", "--task", "reber", "--seq-len", "20"][..],
        &["train", "--task", "temporal-order", "--seq-len", "5"],
        &["train", "--task", "timing", "--seq-len", "1"],
        &["train", "--task", "timing", "--epochs", "2"],
        &["train", "--task", "reber", "--checkpoint", "x.safetensors"],
        &["train", "--spectral-radius", "0.5"],
        &["train", "--cell", "esn", "--num-layers", "2"],
        &["train", "--cell", "esn", "--ridge", "-1"],
        &["train", "--cell", "esn", "--ridge", "a,b"],
        &["train", "--cell", "esn", "--leak-rate", "0"],
        &["train", "--cell", "esn", "--sparsity", "1"],
        &["train", "--cell", "esn", "--esn-noise", "-1"],
        &["train", "--cell", "esn", "--esn-noise", "inf"],
        &["train", "--esn-noise", "0.1"],
        &["train", "--cell", "esn", "--hidden-size", "100000"],
    ] {
        one_line_error(args);
    }
}

/// Tolerance between a forecast written by `recur predict` (shortest round-trip decimals of
/// an f64 decoded from an f32 output) and the same forecast computed here from the file.
const SAME_FORECAST: f64 = 1e-9;

/// The test table's lines (from `test:` to the verdict).
fn table(out: &str) -> Vec<&str> {
    let t: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("test: "))
        .take_while(|l| l.starts_with("test: ") || l.starts_with("  "))
        .collect();
    assert!(t.len() >= 4, "no test table in {out}");
    t
}

/// A clean sine (period 2π/0.37 ≈ 17 steps) around 50, with a second column, as CSV with
/// a numeric time column.
fn sine_csv(n: usize) -> String {
    let mut s = String::from("t,y,z\n");
    for t in 0..n {
        let a = t as f64 * 0.37;
        s.push_str(&format!(
            "{t},{:.6},{:.6}\n",
            50.0 + 10.0 * a.sin(),
            (0.5 * a).cos()
        ));
    }
    s
}

/// `--cell esn --csv`: the ESN forecaster beats the naive baseline on a clean sine; its file
/// is a forecaster for `recur eval` (the same table), `recur predict` (the numbers the
/// readout gives on the file's spec, computed here from the file; `--holdout` scoring the one
/// test origin as the table did; `--plot`) and `recur summary`.
#[test]
fn esn_forecasts_csv_series_and_its_file_is_a_forecaster() {
    let dir = scratch("esn_csv");
    let csv = dir.join("sine.csv");
    std::fs::write(&csv, sine_csv(200)).unwrap();
    let file = dir.join("esn.safetensors");
    // 200 rows: 150 train, 40 valid, 10 test = one test origin of the 10-step horizon
    let base = [
        "train",
        "--cell",
        "esn",
        "--csv",
        p(&csv),
        "--target",
        "y",
        "--time-column",
        "t",
        "--window",
        "34",
        "--horizon",
        "10",
        "--split",
        "0.75,0.2,0.05",
        "--hidden-size",
        "100",
    ];
    let out = ok(&[&base[..], &["--checkpoint", p(&file)]].concat());
    assert!(out.contains("echo state network forecasting y"), "{out}");
    assert_eq!(lines(&out, "  λ = ").len(), 5, "{out}");
    let t = table(&out);
    assert!(
        t[0].starts_with("test: 1 rolling origins × 10 steps"),
        "{out}"
    );
    let model = number_after(t[2], "model");
    let naive = number_after(t[3], "naive");
    assert!(model < naive / 10.0, "the ESN beats naive on a sine: {out}");
    assert!(t.last().unwrap().contains("beats naive"), "{out}");

    // `recur eval`: the same table
    let eval = ok(&["eval", "--checkpoint", p(&file)]);
    assert_eq!(table(&eval), t, "{eval}");

    // `recur predict --holdout`: the last 10 rows are the test origin's targets
    let (held, png) = (dir.join("held.csv"), dir.join("f.png"));
    let pred = ok(&[
        "predict",
        "--checkpoint",
        p(&file),
        "--csv",
        p(&csv),
        "-o",
        p(&held),
        "--holdout",
        "--plot",
        p(&png),
    ]);
    let line = pred.lines().find(|l| l.starts_with("holdout:")).unwrap();
    // both printed to 4 decimals
    assert!(
        (number_after(line, "MAE ") - model).abs() <= 1.0001e-4,
        "{line} vs {out}"
    );
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));

    // `recur predict` on new history: the readout on the last window, decoded, from the file
    let history = dir.join("history.csv");
    std::fs::write(&history, sine_csv(180)).unwrap();
    let next = dir.join("next.csv");
    ok(&[
        "predict",
        "--checkpoint",
        p(&file),
        "--csv",
        p(&history),
        "-o",
        p(&next),
    ]);
    let written: Vec<(String, f64)> = std::fs::read_to_string(&next)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (t, v) = l.split_once(',').unwrap();
            (t.to_string(), v.parse().unwrap())
        })
        .collect();
    let steps: Vec<&str> = written.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        steps,
        [
            "180", "181", "182", "183", "184", "185", "186", "187", "188", "189"
        ]
    );
    let (esn, extra) = recur::io::load_esn(&file).unwrap();
    let spec: recur::data::forecast::ForecastSpec =
        serde_json::from_str(&extra["recur.extra.forecast"]).unwrap();
    assert_eq!(extra["recur.extra.kind"], "forecast");
    let rows = recur::data::series::SeriesTable::read_csv(&history, &spec.csv_columns()).unwrap();
    let (x, levels) = spec.history_input(&rows.series[0]).unwrap();
    let x =
        recur::Tensor::new(x.data().iter().map(|&v| f64::from(v)).collect(), x.shape()).unwrap();
    let z: Vec<f32> = esn
        .predict(&x, None)
        .unwrap()
        .data()
        .iter()
        .map(|&v| v as f32)
        .collect();
    let want = spec.decode(&spec.scaling[0], &levels, &z);
    for ((_, got), want) in written.iter().zip(&want) {
        assert!(
            (got - want).abs() <= SAME_FORECAST * want.abs(),
            "{got} vs {want}"
        );
    }
    // and the forecast is close to the sine's continuation
    for (k, (_, got)) in written.iter().enumerate() {
        let truth = 50.0 + 10.0 * ((180 + k) as f64 * 0.37).sin();
        assert!((got - truth).abs() < 1.0, "step {k}: {got} vs {truth}");
    }

    let summary = ok(&["summary", p(&file)]);
    assert!(
        summary.contains("echo state network") && summary.contains("w_out"),
        "{summary}"
    );
    assert!(summary.contains("kind: forecast"), "{summary}");

    // several targets: H × 2 outputs, both scored
    let two = ok(&[
        "train",
        "--cell",
        "esn",
        "--csv",
        p(&csv),
        "--target",
        "y,z",
        "--window",
        "20",
        "--horizon",
        "3",
        "--hidden-size",
        "30",
    ]);
    assert!(table(&two)[0].contains("× 2 targets"), "{two}");

    // what does not fit is a one-line error naming it
    let e = one_line_error(&[&base[..], &["--epochs", "3"]].concat());
    assert!(e.contains("--epochs is not an option"), "{e}");
    let e = one_line_error(&[&base[..], &["--esn-sequences", "3"]].concat());
    assert!(e.contains("--esn-sequences"), "{e}");
    let e = one_line_error(&["eval", "--checkpoint", p(&file), "--sequences", p(&csv)]);
    assert!(e.contains("a forecaster"), "{e}");
    let e = one_line_error(&[
        "predict",
        "--checkpoint",
        p(&file),
        "--sequences",
        p(&csv),
        "-o",
        p(&next),
    ]);
    assert!(e.contains("--csv HISTORY.csv"), "{e}");
    // an ESN of a generated task has nothing for `recur predict`
    let task = dir.join("task.safetensors");
    ok(&[
        "train",
        "--cell",
        "esn",
        "--task",
        "adding",
        "--seq-len",
        "5",
        "--hidden-size",
        "20",
        "--esn-sequences",
        "50",
        "--checkpoint",
        p(&task),
    ]);
    let e = one_line_error(&[
        "predict",
        "--checkpoint",
        p(&task),
        "--csv",
        p(&csv),
        "-o",
        p(&next),
    ]);
    assert!(e.contains("recur eval"), "{e}");
    // a CSV changed since the fit: eval refuses rather than scoring other windows
    std::fs::write(&csv, sine_csv(220)).unwrap();
    let e = one_line_error(&["eval", "--checkpoint", p(&file)]);
    assert!(e.contains("changed"), "{e}");
}
