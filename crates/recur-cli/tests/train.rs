//! `recur train`, `recur eval` and `recur sample` end to end on tiny data written to a temp
//! folder: every data path, the config file, the JSONL log, checkpoints and exact resume,
//! Ctrl-C, and every kind of bad input as a one-line error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use recur::Call;

use common::{number_after, ok, one_line_error, p, scratch, stdout};

/// A small deterministic "language": lines of words from a 16-word list with a simple
/// grammar (every word is followed by one of two), so that a model can learn it.
fn corpus(lines: usize, seed: u64) -> String {
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "from", "home",
        "to", "see", "friends",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = String::new();
    for _ in 0..lines {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        let len = 3 + (x >> 60) as usize % 6;
        let mut w = (x >> 40) as usize % 16;
        for k in 0..len {
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

/// The lines of a run's output without their timing columns.
fn figures(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("epoch") || l.starts_with("test:"))
        .map(|l| {
            l.split("; ")
                .next()
                .unwrap_or_default()
                .split("  ")
                .filter(|f| !f.contains("tok/s") && !f.ends_with(" s"))
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect()
}

/// Every JSONL record of training (steps and validations) without its timing fields; a
/// run stopped partway and resumed logs a test at each stop.
fn log_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("log")
        .lines()
        .filter(|l| !l.contains(r#""kind":"test""#))
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let o = v.as_object_mut().expect("an object");
            o.remove("tokens_per_s");
            o.remove("elapsed_s");
            v
        })
        .collect()
}

fn word_files(dir: &Path) -> [PathBuf; 3] {
    let files = [
        ("train.txt", corpus(300, 1)),
        ("valid.txt", corpus(30, 2)),
        ("test.txt", corpus(30, 3)),
    ];
    files.map(|(name, body)| {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("write");
        path
    })
}

const SMALL: [&str; 10] = [
    "--hidden-size",
    "24",
    "--num-layers",
    "1",
    "--batch-size",
    "4",
    "--bptt",
    "8",
    "--seed",
    "3",
];

/// Word level from three files, Zaremba's settings (the text defaults): validation perplexity
/// falls well below the vocabulary size, the log has one record per step with every key.
#[test]
fn word_level_from_three_files_learns_and_logs_every_step() {
    let dir = scratch("word");
    let [train, valid, test] = word_files(&dir);
    let log = dir.join("log.jsonl");
    let out = ok(&[
        &[
            "train",
            "--train",
            p(&train),
            "--valid",
            p(&valid),
            "--test",
            p(&test),
            "--level",
            "word",
            "--epochs",
            "3",
            "--log",
            p(&log),
        ][..],
        &SMALL,
    ]
    .concat());
    let epochs: Vec<&str> = out.lines().filter(|l| l.starts_with("epoch")).collect();
    assert_eq!(epochs.len(), 3, "{out}");
    let first = number_after(epochs[0], "valid loss");
    let last = number_after(epochs[2], "valid loss");
    assert!(last < first, "{out}");
    // 18 tokens (16 words, <eos>, <unk>): uniform is ppl 18, the unigram ~17 (measured 6.1)
    let test_line = out
        .lines()
        .find(|l| l.starts_with("test:"))
        .expect("test line");
    assert!(number_after(test_line, "ppl") < 8.0, "{out}");
    let records = log_records(&log);
    let steps = out
        .lines()
        .find(|l| l.contains("epoch(s) of"))
        .and_then(|l| l.split("epoch(s) of ").nth(1))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("steps per epoch");
    let records: Vec<_> = records.iter().filter(|r| r["kind"] == "step").collect();
    assert_eq!(records.len(), 3 * steps);
    for (k, r) in records.iter().enumerate() {
        assert_eq!(r["step"], k + 1);
        assert_eq!(r["epoch"], k / steps + 1);
        for key in ["loss", "ppl", "lr", "grad_norm"] {
            assert!(r[key].as_f64().is_some_and(f64::is_finite), "{key} in {r}");
        }
    }
    let raw = std::fs::read_to_string(&log).unwrap();
    let one: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert!(one["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(one["elapsed_s"].as_f64().unwrap() >= 0.0);
    // lr: 1 for epochs 1..=3 (decay after 4)
    assert!(records.iter().all(|r| r["lr"] == 1.0));
}

/// A text's defaults are Zaremba et al.'s small configuration: 2 × 200 LSTM, embedding 200,
/// batch 20, TBPTT 20, SGD lr 1 halved each epoch after the 4th, clip 5, summed loss.
#[test]
fn text_defaults_are_zarembas_small_configuration() {
    let dir = scratch("zaremba");
    let [train, valid, test] = word_files(&dir);
    let log = dir.join("z.jsonl");
    let out = ok(&[
        "train",
        "--train",
        p(&train),
        "--valid",
        p(&valid),
        "--test",
        p(&test),
        "--level",
        "word",
        "--epochs",
        "6",
        "--log",
        p(&log),
    ]);
    for want in [
        "embedding 200 → lstm 200 × 2 layer(s) → 18 outputs",
        "(batch 20, bptt 20)",
        "SGD lr 1 momentum 0 weight decay 0",
        "clip norm 5",
        "loss sum over time",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let records = log_records(&log);
    let lr_of = |epoch: u64| {
        records
            .iter()
            .find(|r| r["epoch"] == epoch)
            .map(|r| r["lr"].as_f64().unwrap())
            .unwrap()
    };
    assert_eq!(
        (1..=6).map(lr_of).collect::<Vec<_>>(),
        [1.0, 1.0, 1.0, 1.0, 0.5, 0.25]
    );
}

/// Character level from one file cut by --split, with a step schedule that bites.
#[test]
fn char_level_from_one_file_with_a_split_and_schedule() {
    let dir = scratch("char");
    let file = dir.join("all.txt");
    std::fs::write(&file, corpus(200, 7)).unwrap();
    let log = dir.join("log.jsonl");
    let out = ok(&[
        &[
            "train",
            "--text",
            p(&file),
            "--split",
            "0.8,0.1,0.1",
            "--epochs",
            "2",
            "--decay-after",
            "1",
            "--decay-factor",
            "0.25",
            "--log",
            p(&log),
        ][..],
        &SMALL,
    ]
    .concat());
    assert!(out.contains("character level"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("test:") && l.contains("bpc")),
        "{out}"
    );
    let records = log_records(&log);
    assert_eq!(records.first().unwrap()["lr"], 1.0);
    assert_eq!(records.last().unwrap()["lr"], 0.25);
}

/// A config file gives settings; a flag overrides it; an unknown key is a one-line error
/// naming the file, its line and the key.
#[test]
fn config_file_settings_and_overrides() {
    let dir = scratch("config");
    let [train, valid, test] = word_files(&dir);
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "# Zaremba-like, small\ntrain = {:?}\nvalid = {:?}\ntest = {:?}\nlevel = \"word\"\n\
             hidden-size = 16\nnum-layers = 1\nbatch-size = 4\nbptt = 8\nepochs = 1\n\
             optimizer = \"adam\"\nlr = 0.01\n",
            p(&train),
            p(&valid),
            p(&test)
        ),
    )
    .unwrap();
    let out = ok(&["train", "--config", p(&cfg)]);
    assert!(out.contains("lstm 16 × 1 layer(s)"), "{out}");
    assert!(out.contains("Adam lr 0.01"), "{out}");
    let out = ok(&[
        "train",
        "--config",
        p(&cfg),
        "--hidden-size",
        "20",
        "--lr",
        "0.005",
    ]);
    assert!(out.contains("lstm 20 × 1 layer(s)"), "{out}");
    assert!(out.contains("Adam lr 0.005"), "{out}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "epochs = 1\nhiden-size = 16\n").unwrap();
    let err = one_line_error(&["train", "--config", p(&bad)]);
    assert!(err.contains(&format!("{}:2:", p(&bad))), "{err}");
    assert!(err.contains("unknown key `hiden-size`"), "{err}");
    let typed = dir.join("typed.toml");
    std::fs::write(&typed, "epochs = \"many\"\n").unwrap();
    let err = one_line_error(&["train", "--config", p(&typed)]);
    assert!(err.contains(p(&typed)), "{err}");
}

/// A run stopped by --steps inside an epoch, then resumed with more epochs, prints and logs
/// exactly what one uninterrupted run does (Adam state, plateau scheduler, carried state,
/// embedding, output and recurrent dropout).
#[test]
fn resume_continues_exactly() {
    let dir = scratch("resume");
    let [train, valid, test] = word_files(&dir);
    let data = [
        "train",
        "--train",
        p(&train),
        "--valid",
        p(&valid),
        "--test",
        p(&test),
        "--level",
        "word",
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--schedule",
        "plateau",
        "--patience",
        "0",
        "--embedding-dropout",
        "0.2",
        "--output-dropout",
        "0.1",
        "--recurrent-dropout",
        "0.2",
    ];
    let base = [&data[..], &SMALL].concat();
    let (full_log, part_log) = (dir.join("full.jsonl"), dir.join("part.jsonl"));
    let ck = dir.join("run.safetensors");
    let full = ok(&[&base[..], &["--epochs", "3", "--log", p(&full_log)]].concat());
    let first = ok(&[
        &base[..],
        &[
            "--steps",
            "100",
            "--log",
            p(&part_log),
            "--checkpoint",
            p(&ck),
        ],
    ]
    .concat());
    assert!(first.contains("(part)"), "{first}");
    let second = ok(&[
        "train",
        "--resume",
        p(&ck),
        "--epochs",
        "3",
        "--log",
        p(&part_log),
    ]);
    assert!(second.contains("resumed from"), "{second}");
    assert_eq!(log_records(&full_log), log_records(&part_log));
    let full_figures = figures(&full);
    let resumed = figures(&second);
    assert_eq!(
        full_figures[full_figures.len() - resumed.len()..],
        resumed[..],
        "\n{full}\n{second}"
    );

    // eval on the checkpoint gives the training run's test figure (same streams)
    let eval = ok(&["eval", "--checkpoint", p(&ck)]);
    let trained = second.lines().find(|l| l.starts_with("test:")).unwrap();
    assert_eq!(
        number_after(&eval, "loss"),
        number_after(trained, "loss"),
        "{eval}\n{trained}"
    );
    let eval_file = ok(&["eval", "--checkpoint", p(&ck), "--text", p(&test)]);
    assert!(eval_file.contains("ppl"), "{eval_file}");
}

/// A checkpoint of another shape, or a non-checkpoint, is a one-line error naming the file.
#[test]
fn resuming_another_shape_is_an_error() {
    let dir = scratch("shape");
    let [train, valid, test] = word_files(&dir);
    let ck = dir.join("a.safetensors");
    let data = [
        "train",
        "--train",
        p(&train),
        "--valid",
        p(&valid),
        "--test",
        p(&test),
        "--level",
        "word",
        "--steps",
        "5",
    ];
    ok(&[&data[..], &SMALL, &["--checkpoint", p(&ck)]].concat());
    let err = one_line_error(
        &[
            &data[..],
            &SMALL,
            &["--resume", p(&ck), "--embedding-size", "30"],
        ]
        .concat(),
    );
    assert!(err.contains(p(&ck)) && err.contains("shape"), "{err}");
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let err = one_line_error(&["train", "--resume", p(&junk)]);
    assert!(err.contains(p(&junk)), "{err}");
    let err = one_line_error(&["eval", "--checkpoint", p(&junk)]);
    assert!(err.contains(p(&junk)), "{err}");
}

/// Samples are a function of the seed.
#[test]
fn sample_is_deterministic_by_seed() {
    let dir = scratch("sample");
    let file = dir.join("all.txt");
    std::fs::write(&file, corpus(200, 9)).unwrap();
    let ck = dir.join("c.safetensors");
    ok(&[
        &[
            "train",
            "--text",
            p(&file),
            "--epochs",
            "1",
            "--checkpoint",
            p(&ck),
        ][..],
        &SMALL,
    ]
    .concat());
    let args = |seed: &str| {
        ok(&[
            "sample",
            "--checkpoint",
            p(&ck),
            "--length",
            "60",
            "--temperature",
            "0.8",
            "--top-k",
            "5",
            "--prime",
            "the ",
            "--seed",
            seed,
        ])
    };
    let (a, b, c) = (args("1"), args("1"), args("2"));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.starts_with("the "));
    assert!(a.trim_end().chars().count() >= 60);
    let greedy = |seed: &str| {
        ok(&[
            "sample",
            "--checkpoint",
            p(&ck),
            "--length",
            "30",
            "--temperature",
            "0",
            "--seed",
            seed,
        ])
    };
    assert_eq!(greedy("1"), greedy("2"), "temperature 0 ignores the seed");
}

/// Labelled sequences in the simple format (classification and regression) and in `.ts`,
/// with separate valid/test files and `recur eval` on a file.
#[test]
fn labelled_sequences_classification_regression_and_ts() {
    let dir = scratch("seq");
    // class "up": values rise; class "down": they fall
    let mut simple = String::from("# label<TAB>steps\n");
    let mut reg = String::new();
    let mut ts =
        String::from("@problemName Toy\n@univariate true\n@classLabel true up down\n@data\n");
    for i in 0..120 {
        let up = i % 2 == 0;
        let len = 3 + i % 7;
        let vals: Vec<f64> = (0..len)
            .map(|t| {
                let v = t as f64 / len as f64 + 0.05 * ((i * 7 + t) % 5) as f64;
                if up { v } else { -v }
            })
            .collect();
        let label = if up { "up" } else { "down" };
        let steps: Vec<String> = vals
            .iter()
            .map(|v| format!("{v:.3},{:.3}", v * 0.5))
            .collect();
        simple.push_str(&format!("{label}\t{}\n", steps.join(" ")));
        let mean = vals.iter().sum::<f64>() / len as f64;
        let one: Vec<String> = vals.iter().map(|v| format!("{v:.3}")).collect();
        reg.push_str(&format!("{mean:.4}\t{}\n", one.join(" ")));
        ts.push_str(&format!("{}:{label}\n", one.join(",")));
    }
    let (f_simple, f_reg, f_ts) = (dir.join("a.txt"), dir.join("r.txt"), dir.join("t.ts"));
    std::fs::write(&f_simple, &simple).unwrap();
    std::fs::write(&f_reg, &reg).unwrap();
    std::fs::write(&f_ts, &ts).unwrap();
    let ck = dir.join("s.safetensors");
    let out = ok(&[
        "train",
        "--sequences",
        p(&f_simple),
        "--valid-sequences",
        p(&f_simple),
        "--test-sequences",
        p(&f_simple),
        "--hidden-size",
        "16",
        "--epochs",
        "30",
        "--lr",
        "0.01",
        "--checkpoint",
        p(&ck),
        "--quiet",
    ]);
    let test_line = out
        .lines()
        .find(|l| l.starts_with("test:"))
        .expect("test line");
    assert!(number_after(test_line, "acc") >= 95.0, "{out}");
    let eval = ok(&["eval", "--checkpoint", p(&ck), "--sequences", p(&f_simple)]);
    assert_eq!(
        number_after(&eval, "acc"),
        number_after(test_line, "acc"),
        "{eval}"
    );

    let out = ok(&[
        "train",
        "--sequences",
        p(&f_reg),
        "--target",
        "regression",
        "--hidden-size",
        "16",
        "--epochs",
        "20",
        "--lr",
        "0.01",
    ]);
    let test_line = out
        .lines()
        .find(|l| l.starts_with("test:"))
        .expect("test line");
    assert!(number_after(test_line, "mse") < 0.05, "{out}");

    let out = ok(&[
        "train",
        "--sequences",
        p(&f_ts),
        "--hidden-size",
        "16",
        "--epochs",
        "30",
        "--lr",
        "0.01",
        "--bidirectional",
        "--cell",
        "gru",
    ]);
    assert!(
        out.contains("2 classes") && out.contains("1 feature(s)"),
        "{out}"
    );
    let test_line = out
        .lines()
        .find(|l| l.starts_with("test:"))
        .expect("test line");
    assert!(number_after(test_line, "acc") >= 90.0, "{out}");
}

/// Sequences and the copy task resume exactly too (shuffles from (seed, epoch), the copy
/// generator replayed).
#[test]
fn sequence_and_copy_runs_resume_exactly() {
    let dir = scratch("seqresume");
    let mut lines = String::new();
    for i in 0..50 {
        let len = 2 + i % 5;
        let steps: Vec<String> = (0..len).map(|t| format!("{}", (i * t) % 7)).collect();
        lines.push_str(&format!("c{}\t{}\n", i % 3, steps.join(" ")));
    }
    let file = dir.join("s.txt");
    std::fs::write(&file, lines).unwrap();
    let ck = dir.join("s.safetensors");
    let (full_log, part_log) = (dir.join("full.jsonl"), dir.join("part.jsonl"));
    let base = [
        "train",
        "--sequences",
        p(&file),
        "--hidden-size",
        "8",
        "--batch-size",
        "8",
        "--optimizer",
        "rmsprop",
        "--momentum",
        "0.5",
        "--quiet",
    ];
    ok(&[&base[..], &["--epochs", "3", "--log", p(&full_log)]].concat());
    ok(&[
        &base[..],
        &[
            "--steps",
            "7",
            "--log",
            p(&part_log),
            "--checkpoint",
            p(&ck),
        ],
    ]
    .concat());
    ok(&[
        "train",
        "--resume",
        p(&ck),
        "--epochs",
        "3",
        "--log",
        p(&part_log),
    ]);
    assert_eq!(log_records(&full_log), log_records(&part_log));

    let ck = dir.join("c.safetensors");
    let (full_log, part_log) = (dir.join("cfull.jsonl"), dir.join("cpart.jsonl"));
    let base = [
        "train",
        "--task",
        "copy",
        "--seq-len",
        "2",
        "--hidden-size",
        "8",
        "--eval-every",
        "5",
        "--quiet",
    ];
    ok(&[&base[..], &["--steps", "20", "--log", p(&full_log)]].concat());
    ok(&[
        &base[..],
        &[
            "--steps",
            "10",
            "--log",
            p(&part_log),
            "--checkpoint",
            p(&ck),
        ],
    ]
    .concat());
    ok(&[
        "train",
        "--resume",
        p(&ck),
        "--steps",
        "20",
        "--log",
        p(&part_log),
    ]);
    assert_eq!(log_records(&full_log), log_records(&part_log));
}

/// The copy task runs, reports recall and beats its loss at the start.
#[test]
fn copy_task_runs() {
    let out = ok(&[
        "train",
        "--task",
        "copy",
        "--seq-len",
        "3",
        "--steps",
        "200",
        "--eval-every",
        "100",
        "--hidden-size",
        "32",
        "--lr",
        "0.01",
    ]);
    let steps: Vec<&str> = out.lines().filter(|l| l.starts_with("step")).collect();
    assert_eq!(steps.len(), 2, "{out}");
    assert!(out.contains("recalled"), "{out}");
}

/// Ctrl-C stops after the current batch, saves a checkpoint, evaluates on the test part and
/// exits 0.
#[cfg(unix)]
#[test]
fn ctrl_c_saves_evaluates_and_exits_zero() {
    let dir = scratch("ctrlc");
    let [train, valid, test] = word_files(&dir);
    let (ck, log) = (dir.join("c.safetensors"), dir.join("c.jsonl"));
    let child = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args([
            "train",
            "--train",
            p(&train),
            "--valid",
            p(&valid),
            "--test",
            p(&test),
            "--level",
            "word",
            "--epochs",
            "100000",
            "--checkpoint",
            p(&ck),
            "--log",
            p(&log),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // wait for training to be under way (the log flushes each epoch)
    let start = Instant::now();
    while !std::fs::metadata(&log).is_ok_and(|m| m.len() > 0) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "training never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let stdout = stdout(&out);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("interrupted at epoch"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("test:")), "{stdout}");
    let eval = ok(&["eval", "--checkpoint", p(&ck)]);
    assert!(eval.contains("ppl"), "{eval}");
}

/// Missing, empty, non-UTF-8 and malformed files: one-line errors naming the file (and line).
#[test]
fn bad_input_files_are_one_line_errors() {
    let dir = scratch("bad");
    let [train, valid, test] = word_files(&dir);
    let missing = dir.join("missing.txt");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, b"good line\ncaf\xe9\n").unwrap();
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, "a\t1 2 3\nb\t1 2 x\n").unwrap();
    let no_tab = dir.join("notab.txt");
    std::fs::write(&no_tab, "a\t1 2 3\nb 1 2 3\n").unwrap();

    let err = one_line_error(&["train", "--text", p(&missing)]);
    assert!(err.contains(p(&missing)), "{err}");
    let err = one_line_error(&["train", "--text", p(&empty)]);
    assert!(err.contains(p(&empty)), "{err}");
    let err = one_line_error(&["train", "--text", p(&latin1)]);
    assert!(err.contains(&format!("{}:2", p(&latin1))), "{err}");
    let err = one_line_error(&[
        "train",
        "--train",
        p(&train),
        "--valid",
        p(&missing),
        "--test",
        p(&test),
    ]);
    assert!(err.contains(p(&missing)), "{err}");
    let err = one_line_error(&["train", "--sequences", p(&labels)]);
    assert!(err.contains(&format!("{}:2", p(&labels))), "{err}");
    let err = one_line_error(&["train", "--sequences", p(&no_tab)]);
    assert!(err.contains(&format!("{}:2", p(&no_tab))), "{err}");
    let short = dir.join("short.txt");
    std::fs::write(&short, "\n").unwrap();
    let err = one_line_error(&[
        "train",
        "--train",
        p(&train),
        "--valid",
        p(&short),
        "--test",
        p(&test),
        "--level",
        "word",
        "--epochs",
        "1",
        "--hidden-size",
        "8",
    ]);
    assert!(err.contains(p(&short)) && err.contains("too few"), "{err}");
    let err = one_line_error(&["train", "--config", p(&missing)]);
    assert!(err.contains(p(&missing)), "{err}");
    let err = one_line_error(&["eval", "--checkpoint", p(&missing)]);
    assert!(err.contains(p(&missing)), "{err}");
    let err = one_line_error(&["train", "--text", p(&valid), "--split", "0.5,0.5"]);
    assert!(err.contains("--split"), "{err}");
    for args in [
        &["train", "--task", "copy", "--epochs", "2"][..],
        &["train", "--text", p(&train), "--bidirectional"],
        &[
            "train",
            "--text",
            p(&train),
            "--tied",
            "--embedding-size",
            "10",
        ],
        &["train", "--text", p(&train), "--dropout", "1"],
        &[
            "train",
            "--text",
            p(&train),
            "--optimizer",
            "adam",
            "--nesterov",
        ],
        &["train", "--text", p(&train), "--betas", "0.9"],
        &["sample", "--checkpoint", p(&missing), "--temperature", "-1"],
    ] {
        one_line_error(args);
    }
}

/// The largest difference allowed between `recur onnx run` on an exported model and recur's
/// own forward pass (the existing ONNX round trips measure exactly 0 here; this bounds a
/// different summation order in the interpreter).
const ONNX_RUN_TOL: f32 = 1e-6;

/// A checkpoint written by `recur train` is the library's checkpoint: `recur convert` turns
/// it into ONNX and into a whole-model file, and both compute what the trained model does.
#[test]
#[cfg(feature = "onnx")]
fn a_training_checkpoint_converts_to_onnx_and_a_model_file() {
    use recur::io::{load_checkpoint, load_model};
    use recur::model::ModelInput;
    use recur::onnx::{Value, read_tensor, write_tensor};

    let dir = scratch("convert");
    let file = dir.join("all.txt");
    std::fs::write(&file, corpus(200, 5)).unwrap();
    let ck = dir.join("c.safetensors");
    ok(&[
        &[
            "train",
            "--text",
            p(&file),
            "--steps",
            "3",
            "--checkpoint",
            p(&ck),
        ][..],
        &SMALL,
    ]
    .concat());
    let trained = load_checkpoint::<f32>(&ck, None).unwrap().model;
    assert!(!trained.parts()[0].is_empty(), "an embedding model");

    // the whole-model file holds the trained model
    let whole = dir.join("whole.safetensors");
    ok(&["convert", p(&ck), p(&whole), "--to", "model"]);
    let again = load_model::<f32>(&whole).unwrap();
    assert_eq!(again.config(), trained.config());
    assert_eq!(again.params(), trained.params());

    // the ONNX graph computes what recur does
    let onnx = dir.join("c.onnx");
    let out = ok(&["convert", p(&ck), p(&onnx)]);
    assert!(out.contains("sequence model, lstm"), "{out}");
    let vocab = trained.config().out_features;
    let (seq_len, batch) = (6, 2);
    let ids: Vec<usize> = (0..seq_len * batch).map(|k| (k * 7 + 3) % vocab).collect();
    let ids_file = dir.join("ids.npy");
    let value = Value::i64(ids.iter().map(|&i| i as i64).collect(), &[seq_len, batch]).unwrap();
    write_tensor(&ids_file, "", &value).unwrap();
    let out_dir = dir.join("out");
    ok(&[
        "onnx",
        "run",
        p(&onnx),
        "--input",
        &format!("ids={}", ids_file.display()),
        "--output-dir",
        p(&out_dir),
    ]);
    let want = trained
        .forward(
            ModelInput::Ids {
                ids: &ids,
                shape: [seq_len, batch],
            },
            Call::new(),
        )
        .unwrap();
    let (_, got) = read_tensor(out_dir.join("output.npy")).unwrap();
    assert_eq!(got.shape(), want.output.shape());
    assert_eq!(got.shape(), [seq_len, batch, vocab]);
    let worst = got
        .as_f32()
        .unwrap()
        .iter()
        .zip(want.output.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= ONNX_RUN_TOL, "{worst}");
}

/// `--chrono-init` trains the adding problem (seeded: two runs print the same figures) and
/// is refused for a plain RNN and for a T_MAX of 2 or less.
#[test]
fn chrono_init_trains_and_refuses_what_it_cannot_do() {
    let args = [
        "train",
        "--seq-len",
        "20",
        "--steps",
        "40",
        "--eval-every",
        "20",
        "--hidden-size",
        "8",
        "--chrono-init",
        "25",
    ];
    let a = ok(&args);
    assert!(a.contains("test: 2560 fresh sequences"), "{a}");
    assert_eq!(figures(&a), figures(&ok(&args)));
    // chrono replaces the forget-bias default: a different start than the default run's
    let default = ok(&args[..args.len() - 2]);
    assert_ne!(figures(&a), figures(&default));
    let err = one_line_error(&["train", "--cell", "rnn", "--chrono-init", "25"]);
    assert!(err.contains("--chrono-init"), "{err}");
    let err = one_line_error(&["train", "--chrono-init", "2"]);
    assert!(err.contains("--chrono-init"), "{err}");
}

/// `--layer-norm` and `--zoneout-h/-c` train the adding problem (seeded: two runs print the
/// same figures, which differ from the plain cell's), and are refused where they do not apply.
#[test]
fn layer_norm_and_zoneout_train_and_refuse_what_they_cannot_do() {
    let plain = [
        "train",
        "--seq-len",
        "20",
        "--steps",
        "40",
        "--eval-every",
        "20",
        "--hidden-size",
        "8",
    ];
    for extra in [
        &["--layer-norm"][..],
        &["--cell", "gru", "--layer-norm", "--zoneout-h", "0.1"],
        &[
            "--zoneout-h",
            "0.1",
            "--zoneout-c",
            "0.05",
            "--init-range",
            "0.1",
        ],
    ] {
        let args = [&plain[..], extra].concat();
        let a = ok(&args);
        assert!(a.contains("test: 2560 fresh sequences"), "{a}");
        assert_eq!(figures(&a), figures(&ok(&args)), "{extra:?}");
        assert_ne!(figures(&a), figures(&ok(&plain)), "{extra:?}");
    }
    for (args, flag) in [
        (
            &["train", "--cell", "rnn", "--layer-norm"][..],
            "--layer-norm",
        ),
        (
            &["train", "--cell", "rnn", "--zoneout-h", "0.1"],
            "--zoneout-h",
        ),
        (
            &["train", "--cell", "gru", "--zoneout-c", "0.1"],
            "--zoneout-c",
        ),
        (&["train", "--zoneout-h", "1"], "--zoneout-h"),
        (
            &["train", "--layer-norm", "--proj-size", "2"],
            "--layer-norm",
        ),
    ] {
        let err = one_line_error(args);
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

/// `--precision bf16` (or `precision = "bf16"` in the config file) trains the adding problem
/// and a character-level model on bf16 products (seeded: two runs print the same figures,
/// which differ from f32's); a layer-normalised cell, an echo state network and a CPU
/// without AVX-512 BF16 get a one-line error naming the flag.
#[test]
fn precision_bf16_trains_and_refuses_what_it_cannot_do() {
    let plain = [
        "train",
        "--seq-len",
        "20",
        "--steps",
        "40",
        "--eval-every",
        "20",
        "--hidden-size",
        "16",
    ];
    let bf16 = [&plain[..], &["--precision", "bf16"]].concat();
    if !cpu_has_bf16() {
        let err = one_line_error(&bf16);
        assert!(
            err.contains("--precision") && err.contains("AVX-512 BF16"),
            "{err}"
        );
        return;
    }
    let a = ok(&bf16);
    assert!(a.contains("test: 2560 fresh sequences"), "{a}");
    assert_eq!(figures(&a), figures(&ok(&bf16)));
    assert_ne!(figures(&a), figures(&ok(&plain)));
    assert_eq!(
        figures(&ok(&[&plain[..], &["--precision", "f32"]].concat())),
        figures(&ok(&plain))
    );

    let dir = scratch("bf16");
    let file = dir.join("all.txt");
    std::fs::write(&file, corpus(100, 3)).unwrap();
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, "precision = \"bf16\"\n").unwrap();
    let char_run = [
        &[
            "train",
            "--text",
            p(&file),
            "--split",
            "0.8,0.1,0.1",
            "--epochs",
            "1",
        ][..],
        &SMALL,
    ]
    .concat();
    let f = ok(&char_run);
    let b = ok(&[&char_run[..], &["--config", p(&cfg)]].concat());
    assert!(
        b.lines()
            .any(|l| l.starts_with("test:") && l.contains("bpc")),
        "{b}"
    );
    assert_ne!(figures(&f), figures(&b));

    for (extra, what) in [
        (&["--layer-norm"][..], "layer-normalised"),
        (&["--cell", "esn"][..], "echo state"),
    ] {
        let err = one_line_error(&[&bf16[..], extra].concat());
        assert!(
            err.contains("--precision") && err.contains(what),
            "{extra:?}: {err}"
        );
    }
}

fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
