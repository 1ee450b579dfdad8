//! ONNX conformance: every case folder under `tests/fixtures/onnx/{backend,generated,pytorch}`
//! (see that folder's README: ONNX's own backend node tests, one-node models covering every
//! attribute / input / output of LSTM, GRU and RNN with ONNX Runtime's outputs, and
//! `torch.onnx.export` models with PyTorch's outputs) runs through `recur::onnx` and matches
//! within ONNX's backend-runner tolerances (rtol 1e-3, atol 1e-7). Every folder is counted,
//! so a missing fixture fails too.

#![cfg(feature = "onnx")]

use std::path::{Path, PathBuf};

use recur::Call;
use recur::onnx::conformance::{ATOL, RTOL, run_case};

fn root(part: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(part)
}

fn case_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Runs every case under `part`; checks there are `expected` of them and returns the
/// largest absolute difference seen.
fn run_all(part: &str, expected: usize) -> f64 {
    let dirs = case_dirs(&root(part));
    assert_eq!(dirs.len(), expected, "case folders under {part}");
    let mut failures = Vec::new();
    let mut worst = 0.0f64;
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        match run_case(dir) {
            Ok(report) if report.passed() => {
                let (a, r) = report.max_diffs();
                worst = worst.max(a);
                eprintln!("ok   {part}/{name}: max abs {a:.2e}, max rel {r:.2e}");
            }
            Ok(report) => failures.push(format!("{report:#?}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases under {part} fail (rtol {RTOL}, atol {ATOL}):\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
    eprintln!(
        "{part}: {} cases, worst abs difference {worst:.2e}",
        dirs.len()
    );
    worst
}

#[test]
fn onnx_backend_node_tests_pass() {
    run_all("backend", 12);
}

#[test]
fn generated_one_node_cases_pass() {
    run_all("generated", 63);
}

#[test]
fn pytorch_exports_pass() {
    run_all("pytorch", 13);
}

/// `torch.onnx.export(..., external_data=True)` (dynamo exporter): the weights are read from
/// model.onnx.data beside the model, and the outputs are PyTorch's.
#[test]
fn pytorch_export_with_external_data_passes() {
    run_all("external", 1);
}

/// The `torch.onnx.export`ed stacks import as `Recurrent`s (`onnx::import_recurrent`) that
/// reproduce PyTorch's outputs from the fixtures; the char model (embedding and head) is
/// refused as not a plain stack.
#[test]
fn pytorch_exports_import_as_stacks() {
    use recur::onnx::{OnnxModel, import_recurrent, read_tensor};
    use recur::{BatchLayout, Error, State, Tensor};
    let mut imported = 0;
    for dir in case_dirs(&root("pytorch")) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let model = OnnxModel::load(dir.join("model.onnx")).unwrap();
        let stack = match import_recurrent(&model) {
            Err(Error::Unsupported(msg)) if name.starts_with("char_") => {
                assert!(msg.contains("not a FLOAT sequence"), "{msg}");
                continue;
            }
            other => other.unwrap_or_else(|e| panic!("{name}: {e}")),
        };
        let data = dir.join("test_data_set_0");
        let tensor = |file: &str| {
            let (_, v) = read_tensor(data.join(file)).unwrap();
            Tensor::new(v.as_f32().unwrap().to_vec(), v.shape()).unwrap()
        };
        let x = tensor("input_0.pb");
        let state = data.join("input_1.pb").exists().then(|| State {
            h: tensor("input_1.pb"),
            c: Some(tensor("input_2.pb")),
        });
        assert_eq!(
            stack.config().layout == BatchLayout::BatchFirst,
            name.contains("batch_first"),
            "{name}"
        );
        let out = stack
            .forward(&x, Call::new().state(state.as_ref().map(State::view)))
            .unwrap();
        let mut got = vec![&out.output, &out.state.h];
        got.extend(out.state.c.as_ref());
        for (k, g) in got.into_iter().enumerate() {
            let want = tensor(&format!("output_{k}.pb"));
            assert_eq!(g.shape(), want.shape(), "{name} output {k}");
            for (a, e) in g.data().iter().zip(want.data()) {
                assert!(
                    f64::from((a - e).abs()) <= ATOL + RTOL * f64::from(e.abs()),
                    "{name} output {k}: {a} vs {e}"
                );
            }
        }
        imported += 1;
    }
    assert_eq!(imported, 9);
}
