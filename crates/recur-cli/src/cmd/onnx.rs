//! `recur onnx`: run ONNX models on recur's engine.
//!
//! ```text
//! recur onnx run MODEL.onnx --input NAME=FILE ... --output-dir DIR [--format npy|pb]
//! recur onnx test CASE_DIR ...
//! ```
//! `run` reads each input from a `.pb` (ONNX TensorProto) or `.npy` file, chosen by
//! extension, and writes every graph output to DIR. `test` runs ONNX backend-test case
//! folders (`model.onnx` + `test_data_set_*/{input,output}_*.pb`) and compares as ONNX's
//! backend runner does (rtol 1e-3, atol 1e-7); it exits 0 only when every output of every
//! data set matches.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use recur::onnx::conformance::{ATOL, RTOL, run_case};
use recur::onnx::proto::data_type;
use recur::onnx::{OnnxModel, TensorFormat, Value, read_tensor, write_tensor};

/// `recur onnx` subcommands.
#[derive(Subcommand, Debug)]
pub enum OnnxCommand {
    /// Run a model on input tensor files and write every graph output
    Run(RunArgs),
    /// Run ONNX backend-test case folders and compare with their expected outputs
    Test(TestArgs),
}

/// Settings of `recur onnx run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The ONNX model file
    pub model: PathBuf,
    /// A graph input: NAME=FILE (.pb or .npy); just FILE when the graph has one input
    #[arg(long = "input", value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Folder the outputs are written to (created if missing), one file per graph output
    #[arg(long, value_name = "DIR")]
    pub output_dir: PathBuf,
    /// File format of the outputs
    #[arg(long, value_enum, default_value_t = Format::Npy)]
    pub format: Format,
    /// Also time the run: repeat it N times after one warm-up run and print the median
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub time: usize,
    /// The most memory the run's values may take at once (K, M, G, T suffixes) [default: the
    /// memory available, at most 8G]
    #[arg(long, value_name = "SIZE", value_parser = crate::limits::parse_size)]
    pub max_memory: Option<u64>,
}

/// Output file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// NumPy .npy
    Npy,
    /// ONNX TensorProto .pb
    Pb,
}

/// Settings of `recur onnx test`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// Case folders (each with model.onnx and test_data_set_*), or folders holding them
    #[arg(required = true, value_name = "CASE_DIR")]
    pub cases: Vec<PathBuf>,
}

pub fn run(cmd: &OnnxCommand) -> Result<()> {
    match cmd {
        OnnxCommand::Run(args) => run_model(args),
        OnnxCommand::Test(args) => test(args),
    }
}

/// A file name for an output (graph names may hold `/` or `:`).
fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("output{s}")
    } else {
        s
    }
}

fn run_model(args: &RunArgs) -> Result<()> {
    let model = OnnxModel::load(&args.model)?;
    let mut inputs: Vec<(String, Value)> = Vec::new();
    for spec in &args.inputs {
        let (name, file) = match spec.split_once('=') {
            Some((n, f)) => (n.to_string(), f),
            None => match model.inputs() {
                [only] => (only.name.clone(), spec.as_str()),
                _ => bail!(
                    "--input {spec}: the graph has {} inputs, so name it: --input NAME=FILE",
                    model.inputs().len()
                ),
            },
        };
        if TensorFormat::from_path(Path::new(file)).is_none() {
            bail!("--input {spec}: the file must end in .pb or .npy");
        }
        let (_, mut value) = read_tensor(file)?;
        // float64 arrays (NumPy's default) feed a FLOAT input, rounded
        if model
            .inputs()
            .iter()
            .any(|i| i.name == name && i.elem_type == data_type::FLOAT)
        {
            value = value.into_f32_if_f64();
        }
        inputs.push((name, value));
    }
    let refs: Vec<(&str, Value)> = inputs
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    let budget = args.max_memory.unwrap_or_else(|| {
        let default = recur::onnx::DEFAULT_RUN_BUDGET;
        crate::limits::available_memory().map_or(default, |a| a.min(default))
    });
    let outputs = model.run_within(&refs, budget)?;
    if args.time > 0 {
        let mut ms: Vec<f64> = (0..args.time)
            .map(|_| {
                let start = std::time::Instant::now();
                model
                    .run_within(&refs, budget)
                    .map(|_| start.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<recur::Result<_>>()?;
        ms.sort_by(f64::total_cmp);
        println!(
            "run: median {:.3} ms over {} runs (min {:.3}, max {:.3})",
            ms[ms.len() / 2],
            ms.len(),
            ms[0],
            ms[ms.len() - 1]
        );
    }
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("{}: cannot create the folder", args.output_dir.display()))?;
    let ext = match args.format {
        Format::Npy => "npy",
        Format::Pb => "pb",
    };
    for (name, value) in &outputs {
        let path = args.output_dir.join(format!("{}.{ext}", file_stem(name)));
        write_tensor(&path, name, value)?;
        println!(
            "{name}: {} {:?} -> {}",
            value.type_name(),
            value.shape(),
            path.display()
        );
    }
    Ok(())
}

/// The case folders under `dir`: itself when it holds `model.onnx`, else its children that do.
fn expand(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.join("model.onnx").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: not a case folder (no model.onnx)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    if found.is_empty() {
        bail!(
            "{}: no model.onnx in it or in its sub-folders",
            dir.display()
        );
    }
    found.sort();
    Ok(found)
}

fn test(args: &TestArgs) -> Result<()> {
    let mut dirs = Vec::new();
    for d in &args.cases {
        dirs.extend(expand(d)?);
    }
    let mut failed = 0;
    for dir in &dirs {
        match run_case(dir) {
            Ok(report) => {
                let (abs, rel) = report.max_diffs();
                let outputs: usize = report.data_sets.iter().map(|(_, o)| o.len()).sum();
                let verdict = if report.passed() { "PASS" } else { "FAIL" };
                println!(
                    "{verdict} {}: {} data set(s), {outputs} output(s), max abs diff {abs:.3e}, max rel diff {rel:.3e}",
                    dir.display(),
                    report.data_sets.len()
                );
                if !report.passed() {
                    failed += 1;
                    for (set, checks) in &report.data_sets {
                        for c in checks.iter().filter(|c| !c.passed()) {
                            match &c.problem {
                                Some(p) => println!("    {set}/{}: {p}", c.name),
                                None => println!(
                                    "    {set}/{}: {} of {} values outside atol {ATOL:e} + rtol {RTOL:e} (max abs {:.3e}, max rel {:.3e})",
                                    c.name, c.mismatches, c.count, c.max_abs, c.max_rel
                                ),
                            }
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {}: {e}", dir.display());
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} case(s) failed (rtol {RTOL:e}, atol {ATOL:e})",
            dirs.len()
        );
    }
    println!(
        "all {} case(s) passed (rtol {RTOL:e}, atol {ATOL:e})",
        dirs.len()
    );
    Ok(())
}
