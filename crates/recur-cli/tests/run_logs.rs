//! Seeing a run end to end: the JSONL log's record kinds, `--csv-log`, `recur plot`,
//! `--early-stopping`, the optimizer's own defaults for a text and `recur eval --json`.

mod common;

use std::path::{Path, PathBuf};

use common::{number_after, ok, one_line_error, p, scratch};
use serde_json::Value;

/// Lines of words from a 16-word list with a simple grammar, so a model can learn them.
fn corpus(lines: usize, seed: u64) -> String {
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "from", "home",
        "to", "see", "friends",
    ];
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut out = String::new();
    for _ in 0..lines {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut w = (x >> 40) as usize % 16;
        for k in 0..3 + (x >> 60) as usize % 6 {
            if k > 0 {
                out.push(' ');
            }
            out.push_str(words[w]);
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            w = (w * 3 + 1 + (x >> 63) as usize) % 16;
        }
        out.push('\n');
    }
    out
}

fn text_files(dir: &Path) -> [PathBuf; 3] {
    [
        ("train.txt", 200, 1),
        ("valid.txt", 30, 2),
        ("test.txt", 30, 3),
    ]
    .map(|(name, n, seed)| {
        let path = dir.join(name);
        std::fs::write(&path, corpus(n, seed)).expect("write");
        path
    })
}

const SMALL: [&str; 10] = [
    "--hidden-size",
    "16",
    "--num-layers",
    "1",
    "--batch-size",
    "4",
    "--bptt",
    "8",
    "--quiet",
    "--level=word",
];

/// Trains a small word-level model for `epochs`, with `extra` flags; its output.
fn train_text(dir: &Path, epochs: &str, extra: &[&str]) -> String {
    let [train, valid, test] = text_files(dir);
    let args = [
        &[
            "train",
            "--train",
            p(&train),
            "--valid",
            p(&valid),
            "--test",
            p(&test),
            "--epochs",
            epochs,
        ][..],
        &SMALL,
        extra,
    ]
    .concat();
    ok(&args)
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn of_kind<'a>(recs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["kind"] == kind).collect()
}

fn finite(v: &Value) -> bool {
    v.as_f64().is_some_and(f64::is_finite)
}

/// The log has one `step` record per step (the old fields kept), one `epoch` record per epoch
/// with the validation's figures, and a `test` record last; `--csv-log` has Keras's header and
/// the same figures.
#[test]
fn log_records_have_kinds_and_csv_log_matches() {
    let dir = scratch("kinds");
    let (log, csv) = (dir.join("run.jsonl"), dir.join("run.csv"));
    let out = train_text(&dir, "3", &["--log", p(&log), "--csv-log", p(&csv)]);
    let recs = records(&log);
    let steps = of_kind(&recs, "step");
    let epochs = of_kind(&recs, "epoch");
    assert_eq!(epochs.len(), 3, "{out}");
    assert_eq!(of_kind(&recs, "test").len(), 1);
    assert_eq!(recs.last().unwrap()["kind"], "test");
    assert_eq!(steps.len() + 4, recs.len(), "no other kinds");
    for key in [
        "step",
        "epoch",
        "loss",
        "ppl",
        "lr",
        "grad_norm",
        "tokens_per_s",
    ] {
        assert!(!steps[0][key].is_null(), "{key} in {}", steps[0]);
    }
    let per_epoch = steps.len() / 3;
    for (k, e) in epochs.iter().enumerate() {
        assert_eq!(e["epoch"], k + 1);
        assert_eq!(e["step"], (k + 1) * per_epoch);
        for key in ["loss", "ppl", "val_loss", "val_ppl", "lr", "elapsed_s"] {
            assert!(finite(&e[key]), "{key} in {e}");
        }
        // the printed line's validation loss
        let line = out
            .lines()
            .filter(|l| l.starts_with("epoch"))
            .nth(k)
            .unwrap();
        let printed = number_after(line, "valid loss");
        assert!(
            (e["val_loss"].as_f64().unwrap() - printed).abs() < 1e-4,
            "{line} vs {e}"
        );
        let ppl = e["val_ppl"].as_f64().unwrap();
        assert!((ppl - e["val_loss"].as_f64().unwrap().exp()).abs() < 1e-9 * ppl);
    }
    let test = &recs.last().unwrap();
    let test_line = out.lines().find(|l| l.starts_with("test:")).unwrap();
    assert!((test["loss"].as_f64().unwrap() - number_after(test_line, "loss")).abs() < 1e-4);

    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "epoch,loss,ppl,val_loss,val_ppl,lr");
    assert_eq!(rows.len(), 4, "{text}");
    for (row, e) in rows[1..].iter().zip(&epochs) {
        let cells: Vec<f64> = row.split(',').map(|c| c.parse().unwrap()).collect();
        assert_eq!(cells[0], e["epoch"].as_f64().unwrap(), "{row}");
        for (c, key) in cells[1..]
            .iter()
            .zip(["loss", "ppl", "val_loss", "val_ppl", "lr"])
        {
            // the JSON reader may round the last bit
            let want = e[key].as_f64().unwrap();
            assert!((c - want).abs() <= 1e-12 * want.abs(), "{key}: {row}");
        }
    }
}

/// A resumed run appends to both logs: the CSV keeps one header.
#[test]
fn resume_appends_to_the_csv_log() {
    let dir = scratch("csvresume");
    let (csv, ck) = (dir.join("r.csv"), dir.join("r.safetensors"));
    train_text(&dir, "2", &["--csv-log", p(&csv), "--checkpoint", p(&ck)]);
    ok(&["train", "--resume", p(&ck), "--epochs", "3", "--quiet"]);
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(rows[0].starts_with("epoch,"));
    let epochs: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs, ["1", "2", "3"]);
}

/// `recur plot` writes non-empty PNG and SVG files of two runs overlaid; bad arguments and bad
/// logs are one-line errors.
#[test]
fn plot_writes_png_and_svg_of_several_runs() {
    let dir = scratch("plot");
    let (a, b) = (dir.join("sgd.jsonl"), dir.join("adam.jsonl"));
    train_text(&dir, "2", &["--log", p(&a)]);
    train_text(
        &dir,
        "2",
        &["--log", p(&b), "--optimizer", "adam", "--lr", "0.01"],
    );
    let png = dir.join("runs.png");
    let out = ok(&["plot", p(&a), p(&b), "-o", p(&png), "--log-y"]);
    assert!(out.contains("2 run(s); loss, perplexity"), "{out}");
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    let svg = dir.join("runs.svg");
    ok(&[
        "plot",
        p(&a),
        p(&b),
        "--output",
        p(&svg),
        "--label",
        "first",
        "--label",
        "second",
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..50]);
    for want in ["first train", "second valid", "perplexity", "epoch"] {
        assert!(text.contains(want), "{want} missing from the SVG");
    }

    let pdf = dir.join("runs.pdf");
    let bad_line = dir.join("bad.jsonl");
    std::fs::write(
        &bad_line,
        "{\"kind\":\"step\",\"step\":1,\"loss\":1}\nnot json\n{}\n",
    )
    .unwrap();
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    for (args, want) in [
        (vec!["plot", p(&a), "-o", p(&pdf)], ".png or .svg"),
        (
            vec!["plot", p(&a), p(&b), "-o", p(&png), "--label", "x"],
            "1 label(s) for 2 log(s)",
        ),
        (
            vec!["plot", p(&bad_line), "-o", p(&png)],
            "bad.jsonl:2: not a JSON object",
        ),
        (
            vec!["plot", p(&empty), "-o", p(&png)],
            "no training records",
        ),
        (
            vec!["plot", "missing.jsonl", "-o", p(&png)],
            "missing.jsonl",
        ),
    ] {
        let err = one_line_error(&args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// Sequences whose label is their mean (training) or minus their mean (validation and test):
/// the better the model fits the training set, the worse it does on validation.
fn opposed_sets(dir: &Path) -> [PathBuf; 2] {
    let mut train = String::new();
    let mut other = String::new();
    for i in 0..64 {
        let vals: Vec<f64> = (0..5)
            .map(|t| ((i * 7 + t * 3) % 11) as f64 / 10.0 - 0.5)
            .collect();
        let mean = vals.iter().sum::<f64>() / 5.0;
        let steps: Vec<String> = vals.iter().map(|v| format!("{v:.2}")).collect();
        train.push_str(&format!("{mean:.4}\t{}\n", steps.join(" ")));
        other.push_str(&format!("{:.4}\t{}\n", -mean, steps.join(" ")));
    }
    [("train.txt", train), ("other.txt", other)].map(|(name, body)| {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    })
}

/// `--early-stopping N` stops N epochs after the best validation, tests the best weights and
/// keeps them in the checkpoint.
#[test]
fn early_stopping_stops_and_keeps_the_best() {
    let dir = scratch("early");
    let [train, other] = opposed_sets(&dir);
    let (ck, log) = (dir.join("e.safetensors"), dir.join("e.jsonl"));
    let out = ok(&[
        "train",
        "--sequences",
        p(&train),
        "--valid-sequences",
        p(&other),
        "--test-sequences",
        p(&other),
        "--target",
        "regression",
        "--hidden-size",
        "8",
        "--batch-size",
        "8",
        "--epochs",
        "40",
        "--lr",
        "0.01",
        "--early-stopping",
        "3",
        "--checkpoint",
        p(&ck),
        "--log",
        p(&log),
        "--quiet",
    ]);
    let recs = records(&log);
    let epochs = of_kind(&recs, "epoch");
    let losses: Vec<f64> = epochs
        .iter()
        .map(|e| e["val_loss"].as_f64().unwrap())
        .collect();
    let best = (0..losses.len())
        .min_by(|&i, &j| losses[i].total_cmp(&losses[j]))
        .unwrap();
    assert!(epochs.len() < 40, "it stopped early:\n{out}");
    assert_eq!(
        epochs.len(),
        best + 1 + 3,
        "three epochs after the best:\n{out}"
    );
    assert!(
        out.contains("early stopping: no lower validation loss in 3"),
        "{out}"
    );
    assert!(out.contains("restored the best weights"), "{out}");
    // the test ran on the best weights: the test set is the validation set
    let test = &recs.last().unwrap();
    assert_eq!(test["kind"], "test");
    assert!((test["loss"].as_f64().unwrap() - losses[best]).abs() < 1e-9 * losses[best].max(1.0));
    // and the checkpoint kept is the best one
    let best_file = dir.join("e.best.safetensors");
    assert_eq!(
        std::fs::read(&ck).unwrap(),
        std::fs::read(&best_file).unwrap()
    );
    let json = ok(&["eval", "--checkpoint", p(&ck), "--json"]);
    let v: Value = serde_json::from_str(json.trim()).expect("eval --json is JSON");
    assert!((v["loss"].as_f64().unwrap() - losses[best]).abs() < 1e-6 * losses[best].max(1.0));
    assert!(finite(&v["mae"]));
    assert_eq!(v["sequences"], 64);
    assert_eq!(v["checkpoint"], p(&ck));

    let err = one_line_error(&["train", "--sequences", p(&train), "--early-stopping", "0"]);
    assert!(err.contains("--early-stopping must be at least 1"), "{err}");
}

/// With `--optimizer adam` a text keeps a constant learning rate and the mean loss (SGD's step
/// decay and summed loss are for SGD at lr 1), and the header says so.
#[test]
fn adam_on_a_text_gets_adams_defaults() {
    let dir = scratch("adam");
    let log = dir.join("a.jsonl");
    let out = train_text(&dir, "6", &["--optimizer", "adam", "--log", p(&log)]);
    for want in ["Adam lr 0.001", "schedule Const", "loss mean"] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let recs = records(&log);
    assert!(of_kind(&recs, "step").iter().all(|r| r["lr"] == 0.001));
    // SGD keeps Zaremba's
    let out = train_text(&dir, "1", &[]);
    for want in ["SGD lr 1", "schedule Step", "loss sum over time"] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
}

/// `recur eval --json` of a language model: one object with the loss, perplexity and count.
#[test]
fn eval_json_of_a_language_model() {
    let dir = scratch("evaljson");
    let ck = dir.join("lm.safetensors");
    train_text(&dir, "1", &["--checkpoint", p(&ck)]);
    let text = ok(&["eval", "--checkpoint", p(&ck)]);
    let json = ok(&["eval", "--checkpoint", p(&ck), "--json"]);
    let v: Value = serde_json::from_str(json.trim()).expect("JSON");
    assert_eq!(json.trim().lines().count(), 1);
    assert!((v["loss"].as_f64().unwrap() - number_after(&text, "loss")).abs() < 1e-4);
    assert!(finite(&v["ppl"]));
    assert!(v["tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["data"], "the test part");
}

/// `recur summary` of a checkpoint, a model file, a state_dict and an ONNX model: the table
/// by layer with the parameter count training printed, and the configuration.
#[test]
fn summary_of_each_file_kind() {
    let dir = scratch("summary");
    let ck = dir.join("lm.safetensors");
    let out = train_text(&dir, "1", &["--checkpoint", p(&ck)]);
    // training printed the table of the model it trained
    let total = out
        .lines()
        .find(|l| l.starts_with("total"))
        .expect("a total line at the start of training");
    assert!(total.contains("7 tensor(s)"), "{out}");
    let params = out
        .lines()
        .find(|l| l.contains("parameters"))
        .and_then(|l| l.split(" parameters").next())
        .and_then(|l| l.rsplit(' ').next())
        .expect("the header's parameter count")
        .to_string();
    let with_commas = |n: &str| {
        let n: usize = n.parse().unwrap();
        format!("{},{:03}", n / 1000, n % 1000)
    };
    let summary = ok(&["summary", p(&ck)]);
    assert!(summary.contains("recur training checkpoint"), "{summary}");
    assert!(summary.contains(total), "the same table:\n{summary}\n{out}");
    assert!(total.contains(&with_commas(&params)), "{total} vs {params}");
    for want in [
        "embedding    embedding.weight  18 × 16",
        "rnn layer 0  rnn.weight_ih_l0",
        "head         head.weight",
        "\"hidden_size\": 16",
        "run settings given: {",
    ] {
        assert!(summary.contains(want), "{want:?} missing:\n{summary}");
    }

    let model = dir.join("model.safetensors");
    ok(&["convert", p(&ck), p(&model), "--to", "model"]);
    let s = ok(&["summary", p(&model)]);
    assert!(s.contains("recur model file") && s.contains(total), "{s}");

    let sd = dir.join("sd.safetensors");
    ok(&[
        "convert",
        p(&ck),
        p(&sd),
        "--to",
        "state-dict",
        "--dtype",
        "f64",
    ]);
    let s = ok(&["summary", p(&sd)]);
    assert!(s.contains("PyTorch state_dict"), "{s}");
    let row = s
        .lines()
        .find(|l| l.contains("weight_ih_l0"))
        .expect("a row");
    assert!(
        row.contains("64 × 16  f64") && row.contains(" 1,024 ") && row.ends_with("8.0 KiB"),
        "{s}"
    );
    assert!(s.contains("\"hidden_size\": 16"), "{s}");

    let onnx = dir.join("lm.onnx");
    ok(&["convert", p(&ck), p(&onnx)]);
    let s = ok(&["summary", p(&onnx)]);
    assert!(s.contains("ONNX model, opset"), "{s}");
    assert!(s.contains("LSTM × 1"), "{s}");

    let pt = dir.join("model.pt");
    std::fs::write(&pt, b"PK\x03\x04\x00\x00\x08\x08\x00\x00archive/data.pkl").unwrap();
    for args in [
        vec!["summary", p(&pt)],
        vec!["convert", p(&pt), p(&onnx)],
        vec!["eval", "--checkpoint", p(&pt)],
    ] {
        let err = one_line_error(&args);
        assert!(
            err.contains("torch.save's zip archive")
                && err.contains("safetensors.torch.save_file(model.state_dict()"),
            "{args:?}: {err}"
        );
    }
}

/// Every on/off flag takes the same forms: `--flag`, `--flag=true`, `--flag=false`.
#[test]
fn on_off_flags_have_one_style() {
    let dir = scratch("flags");
    let ck = dir.join("lm.safetensors");
    train_text(&dir, "1", &["--checkpoint", p(&ck), "--nesterov=false"]);
    let text = ok(&["eval", "--checkpoint", p(&ck), "--json=false"]);
    assert!(text.contains("over"), "{text}");
    let json = ok(&["eval", "--checkpoint", p(&ck), "--json=true"]);
    assert!(json.trim().starts_with('{'), "{json}");
    for cmd in [
        "train", "eval", "predict", "bench", "convert", "plot", "summary", "sample",
    ] {
        let help = ok(&[cmd, "--help"]);
        // clap's option lines: `      --flag …` or `  -o, --flag …` (descriptions are
        // indented further)
        let options = help.lines().filter(|l| {
            (l.starts_with("      --") && !l.starts_with("       ")) || l.starts_with("  -")
        });
        // `-o, --output …` → `--output …`
        let options = options.map(|l| {
            let l = l.trim();
            l.split_once(", --")
                .map_or(l, |(_, rest)| &l[l.len() - rest.len() - 2..])
        });
        for line in options {
            let flag = line.split_whitespace().next().unwrap();
            // a flag without a value would be an on/off switch that cannot be turned off
            let takes_value = line[flag.len()..].trim_start().starts_with('<')
                || line[flag.len()..].trim_start().starts_with('[');
            assert!(
                takes_value || ["--help", "--version"].contains(&flag),
                "recur {cmd}: {flag} is a bare switch: {line}"
            );
        }
    }
    let bench = ok(&["bench", "--help"]);
    assert!(bench.contains("--batch-size <BATCH>"), "{bench}");
}

/// A generated task logs as the others do: the adding problem's `--log` has its step
/// records, a `valid` record per validation (the validation MSE and the fraction solved) and
/// a `test` record; `--csv-log` a row per validation. Its model is still not saved.
#[test]
fn the_adding_problem_logs_like_the_other_tasks() {
    let dir = scratch("adding-log");
    let (log, csv) = (dir.join("a.jsonl"), dir.join("a.csv"));
    let base = [
        "train",
        "--task",
        "adding",
        "--seq-len",
        "8",
        "--hidden-size",
        "8",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--quiet",
    ];
    let logs = ["--log", p(&log), "--csv-log", p(&csv)];
    ok(&[&base[..], &logs].concat());
    let recs = records(&log);
    assert_eq!(of_kind(&recs, "step").len(), 20);
    let valid = of_kind(&recs, "valid");
    assert_eq!(valid.len(), 2);
    for (r, step) in valid.iter().zip([10, 20]) {
        assert_eq!(r["step"], step);
        for key in ["loss", "val_loss", "val_solved", "lr"] {
            assert!(finite(&r[key]), "{key}: {r}");
        }
        let solved = r["val_solved"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&solved), "{r}");
    }
    let test = of_kind(&recs, "test");
    assert_eq!(test.len(), 1);
    assert!(
        finite(&test[0]["loss"]) && finite(&test[0]["solved"]),
        "{}",
        test[0]
    );
    assert_eq!(recs.last().unwrap()["kind"], "test");
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "step,loss,val_loss,val_solved,lr");
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[2].starts_with("20,"), "{text}");
    let ck = dir.join("a.safetensors");
    let e = one_line_error(&[&base[..], &["--checkpoint", p(&ck)]].concat());
    assert!(
        e.contains("--checkpoint and --resume are not offered"),
        "{e}"
    );
}
