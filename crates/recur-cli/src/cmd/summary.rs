//! `recur summary FILE`: the tensors of a training checkpoint, a whole-model file, an echo
//! state network, a PyTorch state_dict (safetensors) or an ONNX model, by layer, with
//! parameter counts and bytes, then the configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use recur::io::{
    CHECKPOINT_FORMAT, ESN_FORMAT, LoadOptions, MODEL_FORMAT, load_checkpoint, load_esn,
    load_model, load_state_dict, model_config_to_json,
};
use safetensors::{Dtype, SafeTensors};

use crate::summary::{Row, human_bytes, model_rows, table};

/// Settings of `recur summary`.
#[derive(Args, Debug, Clone)]
pub struct SummaryArgs {
    /// A checkpoint, model file, echo state network or state_dict (.safetensors), or an ONNX
    /// model (.onnx)
    pub file: PathBuf,
}

/// Runs `recur summary`.
pub fn run(args: &SummaryArgs) -> Result<()> {
    let path = &args.file;
    let is_onnx = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    if is_onnx {
        return onnx(path);
    }
    safetensors_file(path)
}

/// The element type and width of every tensor of a safetensors file, by name.
fn stored_types(bytes: &[u8]) -> BTreeMap<String, (String, usize)> {
    SafeTensors::deserialize(bytes)
        .map(|st| {
            st.iter()
                .map(|(name, view)| {
                    let d = view.dtype();
                    (name.to_string(), (dtype_name(d), d.bitsize() / 8))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}").to_ascii_lowercase()
}

fn safetensors_file(path: &Path) -> Result<()> {
    let name = path.display().to_string();
    // the library's loaders check the file (and name a PyTorch pickle); the header is read
    // again here for the stored element types
    let format = recur_format(path)?;
    let bytes = std::fs::read(path).with_context(|| name.clone())?;
    match format.as_deref() {
        Some(f) if f.starts_with("checkpoint") => {
            let ck = load_checkpoint::<f32>(path, None)?;
            let stored = stored_types(&bytes);
            println!("{name}: recur training checkpoint ({CHECKPOINT_FORMAT})");
            print!("{}", table(&model_rows(&ck.model, &stored)));
            let (n, opt_bytes) = SafeTensors::deserialize(&bytes)
                .map(|st| {
                    st.iter()
                        .filter(|(k, _)| k.starts_with("optimizer."))
                        .fold((0, 0), |(n, b), (_, v)| (n + 1, b + v.data().len()))
                })
                .unwrap_or((0, 0));
            println!("optimizer state: {n} tensor(s), {}", human_bytes(opt_bytes));
            println!(
                "model: {}",
                pretty(&model_config_to_json(ck.model.config()))?
            );
            // the flags the run was given (the rest took the task's defaults)
            let mut run: serde_json::Value =
                serde_json::from_str(&ck.run_config).context("the run's settings")?;
            if let Some(m) = run.as_object_mut() {
                m.retain(|_, v| !v.is_null());
            }
            println!("run settings given: {run}");
        }
        Some(f) if f == recur::io::FEEDBACK_FORMAT => {
            let saved = crate::train::feedback::load(path)?;
            let config = saved.net.config();
            let stored = stored_types(&bytes);
            let rows: Vec<Row> = config
                .layout()
                .iter()
                .map(|(n, shape)| {
                    let (dtype, width) =
                        stored.get(*n).cloned().unwrap_or_else(|| ("f64".into(), 8));
                    // grouped as the hidden units (fed x_t and the output fed back) and the
                    // output layer
                    let part = if n.ends_with('y') { "output" } else { "hidden" };
                    Row::new(format!("{part}.{n}"), shape, &dtype, width)
                })
                .collect();
            println!("{name}: recur output-to-hidden network ({f})");
            print!("{}", table(&rows));
            println!("model: {}", serde_json::to_string_pretty(config)?);
            if let Some(spec) = &saved.spec {
                println!(
                    "forecast: {} after {} rows of {} ({} series)",
                    spec.horizon,
                    spec.window,
                    spec.targets.join(","),
                    spec.scaling.len()
                );
            }
            let mut run = serde_json::to_value(&saved.args)?;
            if let Some(m) = run.as_object_mut() {
                m.retain(|_, v| !v.is_null());
            }
            println!("run settings given: {run}");
        }
        Some(f) if f.starts_with("sequence-model") => {
            let model = load_model::<f32>(path)?;
            println!("{name}: recur model file ({MODEL_FORMAT})");
            print!("{}", table(&model_rows(&model, &stored_types(&bytes))));
            println!("model: {}", pretty(&model_config_to_json(model.config()))?);
        }
        Some(ESN_FORMAT) => {
            let (esn, extra) = load_esn(path)?;
            let stored = stored_types(&bytes);
            let shapes = recur::model::Esn::part_shapes(esn.config());
            let rows: Vec<Row> = ["w_in", "w", "w_out"]
                .iter()
                .zip(shapes)
                .map(|(n, shape)| {
                    let (dtype, width) =
                        stored.get(*n).cloned().unwrap_or_else(|| ("f64".into(), 8));
                    // grouped as the reservoir (fixed) and the readout (fitted)
                    let part = if *n == "w_out" {
                        "readout"
                    } else {
                        "reservoir"
                    };
                    Row::new(format!("{part}.{n}"), &shape, &dtype, width)
                })
                .collect();
            println!("{name}: recur echo state network ({ESN_FORMAT})");
            print!("{}", table(&rows));
            let config = serde_json::to_string(esn.config()).context("the configuration")?;
            println!("esn: {}", pretty(&config)?);
            println!("readout λ: {:e}", esn.ridge());
            let kind_key = format!("{}kind", recur::io::predict::SAFETENSORS_META_PREFIX);
            if let Some(kind) = extra.get(&kind_key) {
                println!("kind: {kind}");
            }
            if let Some(run) = extra.get(crate::train::esn::RUN_KEY) {
                let mut run: serde_json::Value =
                    serde_json::from_str(run).context("the run's settings")?;
                if let Some(m) = run.as_object_mut() {
                    m.retain(|_, v| !v.is_null());
                }
                println!("run settings given: {run}");
            }
        }
        _ => {
            let stack = load_state_dict::<f32>(path, &LoadOptions::default())?;
            let stored = stored_types(&bytes);
            let rows: Vec<Row> = stack
                .layout()
                .entries()
                .iter()
                .map(|p| {
                    let (dtype, width) = stored
                        .get(&p.name)
                        .cloned()
                        .unwrap_or_else(|| ("f32".into(), 4));
                    Row::new(p.name.clone(), &p.shape, &dtype, width)
                })
                .collect();
            println!("{name}: PyTorch state_dict of a recurrent stack");
            print!("{}", table(&rows));
            println!(
                "config: {}",
                serde_json::to_string_pretty(stack.config()).context("the configuration")?
            );
        }
    }
    Ok(())
}

fn pretty(json: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(json).context("a configuration")?;
    Ok(serde_json::to_string_pretty(&v)?)
}

/// The `recur.format` metadata of a safetensors file, if its header has one (read with the
/// safetensors crate's own bounds; a file that is not safetensors is left to the loader).
fn recur_format(path: &Path) -> Result<Option<String>> {
    use std::io::Read;
    let name = path.display();
    let mut f = std::fs::File::open(path).with_context(|| format!("{name}"))?;
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return Ok(None);
    }
    let n = u64::from_le_bytes(len);
    // safetensors' own bound on the header
    if n > 100_000_000 {
        return Ok(None);
    }
    let mut header = vec![0u8; n as usize];
    if f.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let v: serde_json::Value = match serde_json::from_slice(&header) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    Ok(v["__metadata__"]["recur.format"]
        .as_str()
        .map(str::to_string))
}

fn onnx(path: &Path) -> Result<()> {
    #[cfg(feature = "onnx")]
    {
        use recur::onnx::{Data, OnnxModel};
        let model = OnnxModel::load(path)?;
        let rows: Vec<Row> = model
            .initializers()
            .into_iter()
            .map(|(name, v)| {
                let (dtype, width) = match v.data() {
                    Data::F32(_) => ("f32", 4),
                    Data::F64(_) => ("f64", 8),
                    Data::I64(_) => ("i64", 8),
                    Data::I32(_) => ("i32", 4),
                };
                Row::new(name, v.shape(), dtype, width)
            })
            .collect();
        println!(
            "{}: ONNX model, opset {}, producer `{}`",
            path.display(),
            model.opset(),
            model.producer()
        );
        print!("{}", table(&rows));
        let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
        for op in model.op_types() {
            *ops.entry(op).or_default() += 1;
        }
        let ops: Vec<String> = ops.iter().map(|(k, n)| format!("{k} × {n}")).collect();
        println!("nodes: {}", ops.join(", "));
        let io = |vs: &[recur::onnx::ValueInfo]| {
            vs.iter()
                .map(|v| {
                    let dims = v.shape.as_ref().map_or("?".into(), |s| {
                        s.iter()
                            .map(|d| d.map_or("?".into(), |n| n.to_string()))
                            .collect::<Vec<_>>()
                            .join(" × ")
                    });
                    format!("{} [{dims}]", v.name)
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!("inputs: {}", io(model.inputs()));
        println!("outputs: {}", io(model.outputs()));
        Ok(())
    }
    #[cfg(not(feature = "onnx"))]
    {
        anyhow::bail!(
            "{}: ONNX needs recur built with its `onnx` feature",
            path.display()
        )
    }
}
