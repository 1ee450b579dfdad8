//! `recur gradflow` and `recur compare` end to end: the gradient-norm record (CSV and
//! picture) and what it shows of a plain RNN against an LSTM; a small comparison's table and
//! files.

mod common;

use common::{ok, one_line_error, p, scratch};

/// One line of `gradflow.csv`: train_step, t, ‖∂L/∂h_t‖, ‖∂L/∂c_t‖ if any.
type Line = (usize, usize, f64, Option<f64>);

/// The header and lines of `gradflow.csv`.
fn read_record(path: &std::path::Path) -> (String, Vec<Line>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            (
                v[0].parse().unwrap(),
                v[1].parse().unwrap(),
                v[2].parse().unwrap(),
                v.get(3).map(|c| c.parse().unwrap()),
            )
        })
        .collect();
    (header, rows)
}

fn gradflow(cell: &str, seq_len: &str, steps: &str, every: &str, out: &str) -> String {
    ok(&[
        "gradflow",
        "--cell",
        cell,
        "--seq-len",
        seq_len,
        "--steps",
        steps,
        "--every",
        every,
        "--eval-every",
        steps,
        "--hidden-size",
        "8",
        "--batch-size",
        "8",
        "--out",
        out,
    ])
}

#[test]
fn gradflow_writes_a_row_per_recorded_step_and_t_and_a_picture() {
    let dir = scratch("gradflow-files");
    let out = gradflow("lstm", "12", "40", "20", p(&dir));
    assert!(out.contains("gradflow: 2 recorded steps"), "{out}");
    let (header, rows) = read_record(&dir.join("gradflow.csv"));
    assert_eq!(header, "train_step,t,grad_h_norm,grad_c_norm");
    // updates 0 and 20 of 40; t from 0 to the longest sequence's last step (T + T/10 − 1)
    assert_eq!(rows.len(), 2 * 13, "{rows:?}");
    for (k, &(step, t, h, c)) in rows.iter().enumerate() {
        assert_eq!((step, t), ((k / 13) * 20, k % 13));
        assert!(h.is_finite() && h > 0.0, "{rows:?}");
        assert!(c.is_some_and(|c| c.is_finite() && c >= 0.0), "{rows:?}");
    }
    let png = std::fs::read(dir.join("gradflow.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
}

/// The argument the command makes visible: at the initial weights the plain RNN's ‖∂L/∂h_t‖
/// has all but vanished 29 steps from the loss; the LSTM's ‖∂L/∂c_t‖ (the constant error
/// carousel, its forget gates open by the adding problem's default bias of 3) has not.
#[test]
fn the_rnn_gradient_vanishes_with_distance_and_the_lstm_cell_gradient_does_not() {
    let run = |cell: &str| {
        let dir = scratch(&format!("gradflow-{cell}"));
        gradflow(cell, "30", "1", "1", p(&dir));
        read_record(&dir.join("gradflow.csv")).1
    };
    // t = 29 is the last step of the shortest sequences; every sequence runs to it
    let rnn = run("rnn");
    assert!(rnn[0].3.is_none(), "an RNN has no cell state");
    let ratio = rnn[0].2 / rnn[29].2;
    assert!(ratio < 1e-3, "rnn: ‖∂L/∂h_0‖ / ‖∂L/∂h_29‖ = {ratio:e}");
    // ∂L/∂c_29 is zero for the sequences that end there (the loss reads h only): compare
    // with t = 28
    let lstm = run("lstm");
    let ratio = lstm[0].3.unwrap() / lstm[28].3.unwrap();
    assert!(ratio > 1e-2, "lstm: ‖∂L/∂c_0‖ / ‖∂L/∂c_28‖ = {ratio:e}");
}

#[test]
fn gradflow_refuses_what_it_cannot_record() {
    let dir = scratch("gradflow-refused");
    let err = one_line_error(&["gradflow", "--cell", "esn", "--out", p(&dir)]);
    assert!(err.contains("closed form"), "{err}");
    let err = one_line_error(&["gradflow", "--task", "reber", "--out", p(&dir)]);
    assert!(err.contains("--task"), "{err}");
    let err = one_line_error(&["gradflow", "--every", "0", "--out", p(&dir)]);
    assert!(err.contains("--every"), "{err}");
}

#[test]
fn a_small_comparison_prints_its_table_and_writes_its_files() {
    let dir = scratch("compare");
    let out = ok(&[
        "compare",
        "--cells",
        "rnn,peephole,esn",
        "--task",
        "adding",
        "--seq-len",
        "10",
        "--steps",
        "30",
        "--eval-every",
        "15",
        "--seeds",
        "2",
        "--hidden-size",
        "8",
        "--reservoir-size",
        "20",
        "--batch-size",
        "8",
        "--out",
        p(&dir),
    ]);
    let table: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("cell "))
        .take(4)
        .collect();
    assert_eq!(table.len(), 4, "{out}");
    for (line, cell) in table[1..].iter().zip(["rnn", "peephole", "esn"]) {
        assert!(line.starts_with(cell), "{out}");
        assert!(line.contains("/2"), "{out}");
    }
    let csv = std::fs::read_to_string(dir.join("compare.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("cell,seeds,succeeded,"), "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("compare.json")).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 6);
    assert_eq!(json["seq_len"], 10);
    let png = std::fs::read(dir.join("compare.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let err = one_line_error(&["compare", "--task", "reber", "--out", p(&dir)]);
    assert!(err.contains("--task"), "{err}");
}
