//! `recur onnx run`, `recur onnx test` and `recur convert` end to end: outputs match the
//! fixtures' and recur's own numbers, a mismatch or an unsupported model fails with a
//! non-zero exit and a clear line, and bad arguments are one-line errors.

#![cfg(feature = "onnx")]

mod common;

use std::path::{Path, PathBuf};

use common::{check_one_line_error, outputs, recur, scratch};

use recur::io::{LoadOptions, SaveDtype, SaveOptions, load_state_dict, save_state_dict};
use recur::onnx::{Data, Value, read_tensor, write_tensor};
use recur::{Call, CellKind, Direction, Recurrent, RecurrentConfig, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../recur/tests/fixtures/onnx")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn onnx_test_passes_the_backend_cases() {
    let out = recur(&["onnx", "test", s(&fixtures().join("backend"))]);
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PASS")).count(),
        12,
        "{stdout}"
    );
    assert!(stdout.contains("max abs diff"), "{stdout}");
    assert!(stdout.contains("all 12 case(s) passed"), "{stdout}");
}

#[test]
fn onnx_test_fails_on_a_wrong_expected_output() {
    let dir = scratch("mismatch");
    let case = dir.join("test_lstm_defaults");
    copy_dir(&fixtures().join("backend/test_lstm_defaults"), &case);
    let out_file = case.join("test_data_set_0/output_0.pb");
    let (name, v) = read_tensor(&out_file).unwrap();
    let Data::F32(mut vals) = v.data().clone() else {
        panic!("float output")
    };
    vals[0] += 0.01;
    write_tensor(&out_file, &name, &Value::f32(vals, v.shape()).unwrap()).unwrap();
    let out = recur(&["onnx", "test", s(&case)]);
    let (stdout, stderr) = outputs(&out);
    assert!(!out.status.success());
    assert!(stdout.starts_with("FAIL"), "{stdout}");
    assert!(stdout.contains("1 of 9 values outside"), "{stdout}");
    assert!(
        stderr.starts_with("error: 1 of 1 case(s) failed"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn onnx_test_names_an_unsupported_op() {
    let dir = scratch("unsupported");
    let case = dir.join("case");
    copy_dir(&fixtures().join("pytorch/lstm_2layer_bidir_legacy"), &case);
    // rename every Transpose node's op type in place (same length: the protobuf stays valid)
    let model = case.join("model.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    let (from, to) = (b"Transpose", b"Transposx");
    let mut hits = 0;
    for k in 0..bytes.len() - from.len() {
        if &bytes[k..k + from.len()] == from {
            bytes[k..k + from.len()].copy_from_slice(to);
            hits += 1;
        }
    }
    assert!(hits > 0);
    std::fs::write(&model, bytes).unwrap();
    let out = recur(&["onnx", "test", s(&case)]);
    let (stdout, _) = outputs(&out);
    assert!(!out.status.success());
    assert!(
        stdout.contains("FAIL") && stdout.contains("op type Transposx is not one recur runs"),
        "{stdout}"
    );
}

#[test]
fn onnx_run_writes_every_output_from_npy_and_pb_inputs() {
    let dir = scratch("run");
    let case = fixtures().join("pytorch/lstm_batch_first_h0c0_legacy");
    let data = case.join("test_data_set_0");
    // input_0 as .npy, the others as the fixture's .pb
    let (n0, x) = read_tensor(data.join("input_0.pb")).unwrap();
    let npy = dir.join("x.npy");
    write_tensor(&npy, "", &x).unwrap();
    let mut args = vec![
        "onnx".to_string(),
        "run".into(),
        case.join("model.onnx").display().to_string(),
        "--input".into(),
        format!("{n0}={}", npy.display()),
    ];
    for k in 1..3 {
        let p = data.join(format!("input_{k}.pb"));
        let (n, _) = read_tensor(&p).unwrap();
        args.push("--input".into());
        args.push(format!("{n}={}", p.display()));
    }
    let out_dir = dir.join("out");
    args.extend(["--output-dir".into(), out_dir.display().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = recur(&refs);
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    for k in 0..3 {
        let (name, want) = read_tensor(data.join(format!("output_{k}.pb"))).unwrap();
        let stem: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let (_, got) = read_tensor(out_dir.join(format!("{stem}.npy"))).unwrap();
        assert_eq!(got.shape(), want.shape(), "{name}");
        let (Data::F32(g), Data::F32(w)) = (got.data(), want.data()) else {
            panic!("float outputs")
        };
        for (a, b) in g.iter().zip(w) {
            // ONNX's backend-runner tolerances
            assert!((a - b).abs() <= 1e-7 + 1e-3 * b.abs(), "{name}: {a} vs {b}");
        }
    }
}

#[test]
fn convert_safetensors_to_onnx_and_back() {
    let dir = scratch("convert");
    let model = Recurrent::<f32>::new(
        RecurrentConfig {
            cell: CellKind::gru(),
            input_size: 3,
            hidden_size: 4,
            num_layers: 2,
            direction: Direction::Bidirectional,
            ..Default::default()
        },
        5,
    )
    .unwrap();
    let st = dir.join("gru.safetensors");
    save_state_dict(
        &model,
        &st,
        &SaveOptions {
            prefix: String::new(),
            dtype: SaveDtype::F32,
        },
    )
    .unwrap();
    let onnx = dir.join("gru.onnx");
    let out = recur(&["convert", s(&st), s(&onnx), "--sequence-lens"]);
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("gru, 2 layer(s)"), "{stdout}");

    // run the exported graph with the CLI, compare with recur's forward
    let x: Vec<f32> = (0..4 * 2 * 3).map(|k| (k as f32 * 0.37).sin()).collect();
    let xf = dir.join("x.npy");
    write_tensor(&xf, "", &Value::f32(x.clone(), &[4, 2, 3]).unwrap()).unwrap();
    let lf = dir.join("lens.pb");
    write_tensor(&lf, "sequence_lens", &Value::i32(vec![4, 2], &[2]).unwrap()).unwrap();
    let out_dir = dir.join("out");
    let out = recur(&[
        "onnx",
        "run",
        s(&onnx),
        "--input",
        &format!("input={}", xf.display()),
        "--input",
        &format!("sequence_lens={}", lf.display()),
        "--output-dir",
        s(&out_dir),
        "--format",
        "pb",
        "--time",
        "3",
    ]);
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("run: median"), "{stdout}");
    let want = model
        .forward(
            &Tensor::new(x, &[4, 2, 3]).unwrap(),
            Call::new().lengths(&[4, 2]),
        )
        .unwrap();
    let (_, got) = read_tensor(out_dir.join("output.pb")).unwrap();
    let g = got.as_f32().unwrap();
    let worst = g
        .iter()
        .zip(want.output.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-6, "{worst}");

    // and back to safetensors: the same parameters
    let back = dir.join("back.safetensors");
    let out = recur(&["convert", s(&onnx), s(&back)]);
    assert!(out.status.success(), "{:?}", outputs(&out));
    let again = load_state_dict::<f32>(&back, &LoadOptions::default()).unwrap();
    assert_eq!(again.config(), model.config());
    assert_eq!(again.params(), model.params());
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let dir = scratch("bad");
    let model = fixtures().join("backend/test_rnn_seq_length/model.onnx");
    let cases: Vec<Vec<String>> = vec![
        // missing --output-dir (clap)
        vec!["onnx".into(), "run".into(), model.display().to_string()],
        // unknown extension
        vec![
            "onnx".into(),
            "run".into(),
            model.display().to_string(),
            "--input".into(),
            "X=x.txt".into(),
            "--output-dir".into(),
            dir.display().to_string(),
        ],
        // an input the graph does not have
        vec![
            "onnx".into(),
            "run".into(),
            model.display().to_string(),
            "--input".into(),
            format!(
                "nope={}",
                fixtures()
                    .join("backend/test_rnn_seq_length/test_data_set_0/input_0.pb")
                    .display()
            ),
            "--output-dir".into(),
            dir.display().to_string(),
        ],
        // not a model
        vec!["onnx".into(), "test".into(), dir.display().to_string()],
        vec!["convert".into(), "a.bin".into(), "b.onnx".into()],
    ];
    for args in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        check_one_line_error(&args, &recur(&refs));
    }
}

/// A whole model file (embedding → LSTM → head) converts to ONNX, whose outputs on token ids
/// (through `recur onnx run`) are the model's; its stack converts to a state_dict.
#[test]
fn convert_a_whole_model_to_onnx() {
    use recur::io::save_model;
    use recur::model::{
        EmbeddingConfig, Input, ModelInput, OutputForm, SequenceModel, SequenceModelConfig,
    };
    let dir = scratch("whole");
    let config = SequenceModelConfig {
        input: Input::Embedding(EmbeddingConfig {
            num_embeddings: 9,
            embedding_dim: 3,
            padding_idx: None,
        }),
        rnn: RecurrentConfig {
            cell: CellKind::lstm(),
            input_size: 3,
            hidden_size: 4,
            num_layers: 2,
            ..Default::default()
        },
        output: OutputForm::EveryStep,
        out_features: 9,
        ..Default::default()
    };
    let model = SequenceModel::<f32>::new(config, 11).unwrap();
    let file = dir.join("model.safetensors");
    save_model(&model, &file, SaveDtype::F32).unwrap();
    let onnx = dir.join("model.onnx");
    let out = recur(&["convert", s(&file), s(&onnx), "--sequence-lens"]);
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("sequence model, lstm"), "{stdout}");

    let ids: Vec<usize> = (0..5 * 2).map(|k| (k * 4 + 1) % 9).collect();
    let ids_file = dir.join("ids.npy");
    let ids_value = Value::i64(ids.iter().map(|&i| i as i64).collect(), &[5, 2]).unwrap();
    write_tensor(&ids_file, "", &ids_value).unwrap();
    let lens_file = dir.join("lens.npy");
    write_tensor(&lens_file, "", &Value::i32(vec![5, 3], &[2]).unwrap()).unwrap();
    let out_dir = dir.join("out");
    let out = recur(&[
        "onnx",
        "run",
        s(&onnx),
        "--input",
        &format!("ids={}", ids_file.display()),
        "--input",
        &format!("sequence_lens={}", lens_file.display()),
        "--output-dir",
        s(&out_dir),
    ]);
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let want = model
        .forward(
            ModelInput::Ids {
                ids: &ids,
                shape: [5, 2],
            },
            Call::new().lengths(&[5, 3]),
        )
        .unwrap();
    let (_, got) = read_tensor(out_dir.join("output.npy")).unwrap();
    assert_eq!(got.shape(), want.output.shape());
    let worst = got
        .as_f32()
        .unwrap()
        .iter()
        .zip(want.output.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-6, "{worst}");

    // the stack alone, as a state_dict
    let stack = dir.join("stack.safetensors");
    let out = recur(&["convert", s(&file), s(&stack), "--to", "state-dict"]);
    assert!(out.status.success(), "{:?}", outputs(&out));
    let back = load_state_dict::<f32>(&stack, &LoadOptions::default()).unwrap();
    assert_eq!(back.params(), model.rnn().params());
    // a stack cannot become a whole model
    let out = recur(&[
        "convert",
        s(&stack),
        s(&dir.join("x.safetensors")),
        "--to",
        "model",
    ]);
    let (_, stderr) = outputs(&out);
    assert!(
        !out.status.success() && stderr.contains("no embedding or head"),
        "{stderr}"
    );
}
