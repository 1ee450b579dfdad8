//! A NumPy `.npy` tensor file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::onnx::{TensorFormat, tensor_from_bytes};

fuzz_target!(|data: &[u8]| {
    let _ = tensor_from_bytes("fuzz.npy", data, TensorFormat::Npy);
});
