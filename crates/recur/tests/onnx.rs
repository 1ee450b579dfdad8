//! ONNX: every case folder under `tests/fixtures/onnx/{backend,generated,pytorch}` runs
//! through `recur::onnx` and matches within ONNX's backend-runner tolerances.

use std::path::{Path, PathBuf};

use recur::onnx::conformance::{ATOL, RTOL, run_case};

fn case_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("model.onnx").is_file())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Runs every case under `root`; returns how many ran.
fn run_all(root: &Path) -> usize {
    let dirs = case_dirs(root);
    let mut failures = Vec::new();
    for dir in &dirs {
        match run_case(dir) {
            Ok(report) if report.passed() => {
                let (a, r) = report.max_diffs();
                eprintln!("ok   {}: max abs {a:.2e}, max rel {r:.2e}", dir.display());
            }
            Ok(report) => failures.push(format!("{report:#?}")),
            Err(e) => failures.push(format!("{}: {e}", dir.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail (rtol {RTOL}, atol {ATOL}):\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
    dirs.len()
}

#[test]
fn local_cases() {
    if let Ok(root) = std::env::var("RECUR_ONNX_CASES") {
        let n = run_all(Path::new(&root));
        assert!(n > 0, "no case under {root}");
    }
}
