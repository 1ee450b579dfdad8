//! An ONNX model: load and check it, import it as a recurrent stack, and run it on inputs of
//! its declared shapes (unknown dims 2) within a memory budget.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::onnx::proto::data_type;
use recur::onnx::{OnnxModel, Value, import_recurrent};

/// The most a fuzzed run may hold (libFuzzer's -malloc_limit_mb is above it).
const BUDGET: u64 = 256 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = OnnxModel::from_bytes("fuzz.onnx", data) else {
        return;
    };
    let _ = import_recurrent(&model);
    let mut inputs = Vec::new();
    for input in model.inputs() {
        let dims: Vec<usize> = match &input.shape {
            Some(d) => d.iter().map(|d| d.unwrap_or(2).min(64)).collect(),
            None => vec![2, 1, 2],
        };
        let n: usize = dims.iter().product();
        if n > 1 << 16 {
            return;
        }
        let value = match input.elem_type {
            data_type::INT64 => Value::i64(vec![0; n], &dims),
            data_type::INT32 => Value::i32(vec![1; n], &dims),
            _ => Value::f32(vec![0.5; n], &dims),
        };
        let Ok(value) = value else { return };
        inputs.push((input.name.as_str(), value));
    }
    let _ = model.run_within(&inputs, BUDGET);
});
