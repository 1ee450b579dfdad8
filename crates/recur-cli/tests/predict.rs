//! Forecasting from CSV (`recur train --csv`) and `recur predict` end to end on tiny data
//! written to a temp folder: the test table beside its baselines, CSV errors naming the row
//! and column, predictions of classifiers, regressors and forecasters read back and checked
//! against the library's own forward, ONNX metadata, plots.

mod common;

use std::path::Path;

use common::{ok, one_line_error, p, scratch};

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
