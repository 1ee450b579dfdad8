//! Whole-model files (`recur::io::save_model` / `load_model`) against PyTorch.
//!
//! `tests/fixtures/model/<case>.safetensors` are `RecurModel`s (`scripts/recur_torch.py`)
//! trained a few SGD steps in PyTorch and saved by it; `<case>.expected.safetensors` hold the
//! module's eval outputs on a ragged batch (`scripts/gen_model_fixtures.py`). recur loads each
//! and must give the same outputs. `fixtures/model/recur/` holds the other direction: each
//! case trained three more steps by recur and saved by recur (written by the ignored test
//! `write_recur_model_fixtures`), which the generator's `--check-recur` loads into PyTorch
//! with `load_state_dict(strict=True)`; here recur checks that it still reads them, still
//! computes the outputs stored beside them, and that its training still gives those weights.

mod common;

use std::path::{Path, PathBuf};

use recur::io::{SaveDtype, load_model, load_model_bytes, model_bytes, save_model};
use recur::model::{Input, ModelInput, ModelOutput, SequenceModel};
use recur::optim::{Optimizer, Sgd, SgdConfig};
use recur::{BatchLayout, Call, Error, Tensor};

/// Both sides compute in f64 from the same weights (the float32 case's weights are the
/// float32 values, widened exactly); only the summation order of the matrix products differs
/// (observed ≤ 9.1e-14 relative, on outputs near the floor below). 1e-10 is the tolerance of the recurrent-stack parity tests.
const MODEL_TOL: f64 = 1e-10;

/// Below this magnitude the comparison is absolute (outputs near zero).
const MODEL_FLOOR: f64 = 1e-6;

/// recur's three SGD steps, rerun here, against the weights committed from an earlier run:
/// the same f64 operations, but the GEMM kernel may block differently on another CPU
/// (a few ulps per product, amplified by three steps).
const RETRAIN_TOL: f64 = 1e-12;

fn model_dir() -> PathBuf {
    common::fixture_dir().join("model")
}

fn case_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(model_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".expected.safetensors")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 4, "only {} model fixtures", names.len());
    names
}

/// The case's input and lengths, from its expected file.
struct Batch {
    ids: Vec<usize>,
    features: Option<Tensor<f64>>,
    shape: [usize; 2],
    lengths: Vec<usize>,
}

impl Batch {
    fn of(model: &SequenceModel<f64>, f: &common::Fixture) -> Self {
        let input = f.tensor("input");
        let lengths = f.lengths().expect("lengths");
        let shape = [input.shape()[0], input.shape()[1]];
        match model.config().input {
            Input::Embedding(_) => Batch {
                ids: input.data().iter().map(|&v| v as usize).collect(),
                features: None,
                shape,
                lengths,
            },
            Input::Dense => Batch {
                ids: Vec::new(),
                features: Some(input),
                shape,
                lengths,
            },
        }
    }

    fn input(&self) -> ModelInput<'_, f64> {
        match &self.features {
            Some(x) => ModelInput::Features(x.view()),
            None => ModelInput::Ids {
                ids: &self.ids,
                shape: self.shape,
            },
        }
    }

    fn batch(&self, layout: BatchLayout) -> usize {
        match layout {
            BatchLayout::SeqFirst => self.shape[1],
            BatchLayout::BatchFirst => self.shape[0],
        }
    }
}

fn close(what: &str, got: &[f64], want: &[f64], tol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = 0.0f64;
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(MODEL_FLOOR);
        assert!(
            err <= tol,
            "{what}[{k}]: recur {g:e}, expected {w:e}, rel err {err:e}"
        );
        worst = worst.max(err);
    }
    worst
}

fn compare(what: &str, out: &ModelOutput<f64>, want: &common::Fixture, tol: f64) -> f64 {
    let mut worst = close(
        &format!("{what} output"),
        out.output.data(),
        want.tensor("output").data(),
        tol,
    );
    assert_eq!(out.output.shape(), want.tensor("output").shape(), "{what}");
    worst = worst.max(close(
        &format!("{what} h_n"),
        out.state.h.data(),
        want.tensor("h_n").data(),
        tol,
    ));
    match (&out.state.c, want.has("c_n")) {
        (Some(c), true) => {
            worst = worst.max(close(
                &format!("{what} c_n"),
                c.data(),
                want.tensor("c_n").data(),
                tol,
            ))
        }
        (None, false) => {}
        (c, has) => panic!("{what}: recur c_n {}, fixture c_n {has}", c.is_some()),
    }
    worst
}

#[test]
fn pytorch_models_load_and_reproduce_their_outputs() {
    let mut worst = 0.0f64;
    for name in case_names() {
        let model = load_model::<f64>(model_dir().join(format!("{name}.safetensors")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = common::load(&model_dir().join(format!("{name}.expected.safetensors")));
        let batch = Batch::of(&model, &want);
        assert_eq!(batch.lengths.len(), batch.batch(model.config().rnn.layout));
        let out = model
            .forward(batch.input(), Call::new().lengths(&batch.lengths))
            .unwrap();
        worst = worst.max(compare(&name, &out, &want, MODEL_TOL));
    }
    println!("PyTorch-written models: worst rel err {worst:e}");
}

/// Three SGD steps (lr 0.1) of recur's own backward pass on L = ½ mean(z²), dropout seeded by
/// the step: the training that produced the committed recur-written files.
fn recur_trained(name: &str) -> (SequenceModel<f64>, Batch) {
    let mut model = load_model::<f64>(model_dir().join(format!("{name}.safetensors"))).unwrap();
    let want = common::load(&model_dir().join(format!("{name}.expected.safetensors")));
    let batch = Batch::of(&model, &want);
    let mut sgd = Sgd::<f64>::new(
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
        model.param_len(),
    )
    .unwrap();
    for step in 0..3 {
        let (out, tape) = model
            .forward_train(
                batch.input(),
                Call::new().lengths(&batch.lengths).seed(step),
            )
            .unwrap();
        let n = out.output.data().len() as f64;
        let dz = Tensor::new(
            out.output.data().iter().map(|&z| z / n).collect(),
            out.output.shape(),
        )
        .unwrap();
        let mut grads = vec![0.0; model.param_len()];
        model.backward(&tape, &dz, &mut grads).unwrap();
        let mut params = model.params();
        sgd.step(&mut params, &grads).unwrap();
        model.set_params(&params).unwrap();
    }
    (model, batch)
}

/// The dtype each recur-written fixture is saved in: the float32 PyTorch case goes back as
/// float32, the others as float64.
fn recur_dtype(name: &str) -> SaveDtype {
    if name == "lstm_proj_last" {
        SaveDtype::F32
    } else {
        SaveDtype::F64
    }
}

fn recur_path(name: &str, what: &str) -> PathBuf {
    model_dir()
        .join("recur")
        .join(format!("{name}{what}.safetensors"))
}

#[test]
fn recur_written_models_are_what_recur_writes_and_computes() {
    let mut worst = 0.0f64;
    for name in case_names() {
        let (trained, batch) = recur_trained(&name);
        let committed = load_model::<f64>(recur_path(&name, "")).unwrap();
        assert_eq!(committed.config(), trained.config(), "{name}");
        // The weights: recur's training, rounded as saved.
        let reloaded = load_model_bytes::<f64>(&model_bytes(&trained, recur_dtype(&name))).unwrap();
        let tol = match recur_dtype(&name) {
            SaveDtype::F64 => RETRAIN_TOL,
            // a float32 rounding may land on the neighbouring float when the retrained value
            // differs in the last f64 bits: one f32 ulp
            SaveDtype::F32 => 2f64.powi(-23),
        };
        close(
            &format!("{name} weights"),
            &reloaded.params(),
            &committed.params(),
            tol,
        );
        assert!(
            committed.params()
                != load_model::<f64>(model_dir().join(format!("{name}.safetensors")))
                    .unwrap()
                    .params(),
            "{name}: recur's training changed nothing"
        );
        // The outputs recur computes from the committed file are the ones stored beside it
        // (which the generator's --check-recur compares with PyTorch's).
        let out = committed
            .forward(batch.input(), Call::new().lengths(&batch.lengths))
            .unwrap();
        let want = common::load(&recur_path(&name, ".outputs"));
        worst = worst.max(compare(&name, &out, &want, MODEL_TOL));
    }
    println!("recur-written models: worst rel err {worst:e}");
}

/// Writes `fixtures/model/recur/*`: run with
/// `cargo test -p recur --test model_files -- --ignored write_recur_model_fixtures`, then
/// `python3 scripts/gen_model_fixtures.py --check-recur`.
#[test]
#[ignore]
fn write_recur_model_fixtures() {
    std::fs::create_dir_all(model_dir().join("recur")).unwrap();
    for name in case_names() {
        let (trained, batch) = recur_trained(&name);
        let path = recur_path(&name, "");
        save_model(&trained, &path, recur_dtype(&name)).unwrap();
        let saved = load_model::<f64>(&path).unwrap();
        let out = saved
            .forward(batch.input(), Call::new().lengths(&batch.lengths))
            .unwrap();
        let mut tensors = vec![
            (
                "output",
                out.output.shape().to_vec(),
                out.output.data().to_vec(),
            ),
            (
                "h_n",
                out.state.h.shape().to_vec(),
                out.state.h.data().to_vec(),
            ),
        ];
        if let Some(c) = &out.state.c {
            tensors.push(("c_n", c.shape().to_vec(), c.data().to_vec()));
        }
        write_f64(&recur_path(&name, ".outputs"), &tensors);
    }
}

/// A safetensors file of F64 tensors (sorted keys, no metadata).
fn write_f64(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f64>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let data: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            (
                name.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F64, shape.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(data, None, path).unwrap();
}

/// Saving and loading gives the same model bit for bit (f64 as F64, f32 as F32), for every
/// case; a tied model writes its table under both names.
#[test]
fn save_then_load_is_exact() {
    let dir = std::env::temp_dir().join(format!("recur-model-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in case_names() {
        let model = load_model::<f64>(model_dir().join(format!("{name}.safetensors"))).unwrap();
        let path = dir.join(format!("{name}.safetensors"));
        save_model(&model, &path, SaveDtype::F64).unwrap();
        let back = load_model::<f64>(&path).unwrap();
        assert_eq!(back.params(), model.params(), "{name}");
        assert_eq!(back.config(), model.config(), "{name}");
        let small = load_model::<f32>(model_dir().join(format!("{name}.safetensors"))).unwrap();
        let bytes = model_bytes(&small, SaveDtype::F32);
        assert_eq!(
            load_model_bytes::<f32>(&bytes).unwrap().params(),
            small.params()
        );
        assert_eq!(bytes, model_bytes(&small, SaveDtype::F32), "deterministic");
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<&str> = st.names();
        names.sort();
        let mut want: Vec<&str> = model
            .param_layout()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        if model.config().tie_weights == recur::model::TieWeights::Tied {
            want.push("head.weight");
        }
        want.sort();
        assert_eq!(names, want, "{name}");
    }
    // only the files themselves: no temporary file is left behind
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tensor's name, shape and values.
type NamedTensor = (String, Vec<usize>, Vec<f64>);

/// A file whose tensors, metadata or configuration contradict each other is a typed error
/// naming the file and the tensor or key, never a panic.
#[test]
fn hostile_model_files_are_typed_errors() {
    let path = model_dir().join("lm_lstm_tied.safetensors");
    let good = std::fs::read(&path).unwrap();
    let model = load_model::<f64>(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&good).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&good).unwrap();
    let meta = header.metadata().clone().unwrap();
    let json = meta["recur.model"].clone();

    // Rebuilds the file with some tensors replaced or dropped and the metadata changed.
    let rebuild = |edit: &dyn Fn(&mut Vec<NamedTensor>),
                   meta_edit: &dyn Fn(&mut std::collections::HashMap<String, String>)|
     -> Vec<u8> {
        let mut tensors: Vec<NamedTensor> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| {
                let data = v
                    .data()
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                (n, v.shape().to_vec(), data)
            })
            .collect();
        edit(&mut tensors);
        let mut m = meta.clone();
        meta_edit(&mut m);
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .zip(&bytes)
            .map(|((n, s, _), b)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F64, s.clone(), b)
                        .unwrap(),
                )
            })
            .collect();
        safetensors::serialize(views, Some(m)).unwrap()
    };
    let keep = |_: &mut Vec<NamedTensor>| {};
    let same = |_: &mut std::collections::HashMap<String, String>| {};
    assert_eq!(
        load_model_bytes::<f64>(&rebuild(&keep, &same))
            .unwrap()
            .params(),
        model.params()
    );

    let err = |bytes: Vec<u8>| load_model_bytes::<f64>(&bytes).unwrap_err();
    // tensors
    let e = err(rebuild(
        &|t| t.retain(|(n, _, _)| n != "rnn.weight_hh_l1"),
        &same,
    ));
    assert!(
        matches!(&e, Error::MissingTensor { name, .. } if name == "rnn.weight_hh_l1"),
        "{e}"
    );
    let e = err(rebuild(
        &|t| t.push(("rnn.weight_hr_l0".into(), vec![1], vec![0.0])),
        &same,
    ));
    assert!(
        matches!(&e, Error::UnexpectedTensor { name, .. } if name == "rnn.weight_hr_l0"),
        "{e}"
    );
    let e = err(rebuild(
        &|t| {
            let b = t.iter_mut().find(|(n, _, _)| n == "head.bias").unwrap();
            b.1 = vec![1, 11];
        },
        &same,
    ));
    assert_eq!(
        e.to_string(),
        "<memory>: tensor `head.bias`: expected shape [11], got [1, 11]"
    );
    let e = err(rebuild(
        &|t| {
            let w = t.iter_mut().find(|(n, _, _)| n == "head.weight").unwrap();
            w.2[5] += 1.0;
        },
        &same,
    ));
    assert!(
        matches!(&e, Error::UnexpectedTensor { name, reason, .. } if name == "head.weight" && reason.contains("ties")),
        "{e}"
    );
    // metadata
    let e = err(rebuild(&keep, &|m| {
        m.remove("recur.format");
    }));
    assert!(
        matches!(&e, Error::Metadata { key, .. } if key == "recur.format"),
        "{e}"
    );
    let e = err(rebuild(&keep, &|m| {
        m.insert("recur.format".into(), "checkpoint-1".into());
    }));
    assert!(
        matches!(&e, Error::Metadata { key, .. } if key == "recur.format"),
        "{e}"
    );
    for bad in [
        "".to_string(),
        "{".into(),
        "null".into(),
        json.replace("\"hidden_size\": 6", "\"hidden_size\": 7"),
        json.replace("\"hidden_size\": 6", "\"hidden_size\": \"6\""),
        json.replace("\"num_layers\": 2", "\"num_layers\": 99999999999"),
        json.replace("\"kind\": \"lstm\"", "\"kind\": \"transformer\""),
        json.replace("\"out_features\": 11", "\"out_features\": 12"),
    ] {
        let e = err(rebuild(&keep, &|m| {
            m.insert("recur.model".into(), bad.clone());
        }));
        assert!(
            matches!(&e, Error::Metadata { key, .. } if key == "recur.model")
                // a consistent configuration of another size: the tensors then disagree
                || matches!(&e, Error::TensorShape { .. }),
            "{bad}: {e}"
        );
    }
    // A configuration of millions of layers (valid, and under the parameter bound at this
    // width) is refused by counting the tensors it needs against the file's, before a layout
    // of an entry per tensor is built: at 10^7 layers that layout alone took gigabytes.
    for layers in ["1000000", "10000000"] {
        let e = err(rebuild(&keep, &|m| {
            m.insert(
                "recur.model".into(),
                json.replace("\"num_layers\": 2", &format!("\"num_layers\": {layers}")),
            );
        }));
        let msg = e.to_string();
        assert!(
            matches!(&e, Error::Metadata { key, .. } if key == "recur.model")
                && msg.contains(&format!("{layers} layers"))
                && msg.contains("the file holds only"),
            "{msg}"
        );
    }
    // truncated and garbage bytes
    for cut in [0, 7, 8, 100, good.len() - 1] {
        assert!(matches!(
            load_model_bytes::<f64>(&good[..cut]),
            Err(Error::Format { .. })
        ));
    }
    let mut flipped = good.clone();
    for k in (8..flipped.len()).step_by(97) {
        flipped[k] ^= 0x5a;
        let _ = load_model_bytes::<f64>(&flipped); // any error, no panic
    }
    let e = load_model::<f64>(model_dir().join("no-such-file.safetensors")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    // a bare nn.LSTM state_dict is not a model file
    let lstm = common::fixture_dir().join("pytorch");
    let any = std::fs::read_dir(lstm)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let e = load_model::<f64>(&any).unwrap_err();
    assert!(
        matches!(&e, Error::Metadata { key, .. } if key == "recur.format"),
        "{e}"
    );
}
