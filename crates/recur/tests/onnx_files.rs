//! Hostile and broken ONNX inputs give typed errors, never a panic or a runaway allocation:
//! truncated and corrupted models, tensors whose data disagrees with their dims, negative,
//! huge and overflowing dims, unsupported element types, bad external data, missing
//! initializers, cycles, unknown ops, wrong graph inputs; and the tensor files (`.pb`,
//! `.npy`) round-trip and refuse what they cannot hold.

#![cfg(feature = "onnx")]

use prost::Message;
use recur::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, ValueInfoProto, attribute_type, data_type,
};
use recur::onnx::{
    Data, ExportOptions, MAX_ELEMENTS, OnnxModel, TensorFormat, Value, export_recurrent,
    tensor_from_bytes, tensor_to_bytes,
};
use recur::{CellKind, Direction, Error, Recurrent, RecurrentConfig};

fn exported() -> Vec<u8> {
    let lstm = Recurrent::<f32>::new(
        RecurrentConfig {
            cell: CellKind::lstm(),
            input_size: 3,
            hidden_size: 4,
            num_layers: 2,
            direction: Direction::Bidirectional,
            ..Default::default()
        },
        1,
    )
    .unwrap();
    export_recurrent(
        &lstm,
        &ExportOptions {
            sequence_lens: true,
            initial_state: true,
        },
    )
    .unwrap()
}

fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn input(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: format!("the_{op}"),
        op_type: op.into(),
        ..Default::default()
    }
}

fn model(graph: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A graph `y = x + w` with initializer `w` as given.
fn add_graph(w: TensorProto) -> Vec<u8> {
    model(GraphProto {
        node: vec![node("Add", &["x", "w"], &["y"])],
        initializer: vec![w],
        input: vec![input("x")],
        output: vec![input("y")],
        ..Default::default()
    })
}

fn format_reason(r: recur::Result<OnnxModel>) -> String {
    match r {
        Err(Error::OnnxFormat { reason, .. }) => reason,
        other => panic!("expected OnnxFormat, got {other:?}"),
    }
}

#[test]
fn every_truncation_of_a_model_is_an_error() {
    let bytes = exported();
    assert!(OnnxModel::from_bytes("m", &bytes).is_ok());
    for len in 0..bytes.len() {
        // some prefixes are well-formed protobuf (a model cut between fields); none may panic,
        // and none may load as a complete model with the original's outputs
        if let Ok(m) = OnnxModel::from_bytes("m", &bytes[..len]) {
            assert!(
                m.outputs().len() < 3,
                "prefix of {len} bytes loads as a whole model"
            );
        }
    }
}

#[test]
fn corrupted_models_never_panic() {
    let bytes = exported();
    let mut s = 0x9e3779b97f4a7c15u64;
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..4 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let at = (s % b.len() as u64) as usize;
            b[at] ^= (s >> 32) as u8 | 1;
        }
        if let Ok(m) = OnnxModel::from_bytes("m", &b) {
            // whatever loads must also run (or refuse) without panicking
            let x = Value::f32(vec![0.5; 2 * 2 * 3], &[2, 2, 3]).unwrap();
            let _ = m.run(&[("input", x)]);
        }
    }
}

#[test]
fn not_a_model() {
    for bytes in [
        &b""[..],
        b"\x08\x01",
        b"hello world, not protobuf",
        &[0xff; 64],
    ] {
        assert!(
            matches!(
                OnnxModel::from_bytes("x", bytes),
                Err(Error::OnnxFormat { .. })
            ),
            "{bytes:?}"
        );
    }
}

#[test]
fn raw_data_disagreeing_with_dims() {
    let mut w = f32_tensor("w", &[2, 3], &[1.0; 5]);
    let reason = format_reason(OnnxModel::from_bytes("m", &add_graph(w.clone())));
    assert!(
        reason.contains("`w`") && reason.contains("need 6 elements"),
        "{reason}"
    );
    w.raw_data.push(0); // 21 bytes: not whole f32s
    let reason = format_reason(OnnxModel::from_bytes("m", &add_graph(w)));
    assert!(reason.contains("whole number"), "{reason}");
    // typed field too short
    let t = TensorProto {
        dims: vec![4],
        data_type: data_type::FLOAT,
        name: "w".into(),
        float_data: vec![1.0, 2.0],
        ..Default::default()
    };
    let reason = format_reason(OnnxModel::from_bytes("m", &add_graph(t)));
    assert!(reason.contains("float_data holds 2"), "{reason}");
}

#[test]
fn negative_huge_and_overflowing_dims() {
    for dims in [
        vec![-1i64, 3],
        vec![1 << 40],
        vec![i64::MAX, i64::MAX],
        vec![(MAX_ELEMENTS + 1) as i64],
        vec![1; 40],
    ] {
        let t = TensorProto {
            dims: dims.clone(),
            data_type: data_type::FLOAT,
            name: "w".into(),
            raw_data: vec![0; 16],
            ..Default::default()
        };
        let reason = format_reason(OnnxModel::from_bytes("m", &add_graph(t)));
        assert!(
            reason.contains("negative") || reason.contains("bound"),
            "{dims:?}: {reason}"
        );
    }
}

#[test]
fn unsupported_element_types() {
    for (t, name) in [
        (10, "FLOAT16"),
        (8, "STRING"),
        (9, "BOOL"),
        (16, "BFLOAT16"),
    ] {
        let w = TensorProto {
            dims: vec![2],
            data_type: t,
            name: "w".into(),
            raw_data: vec![0; 4],
            ..Default::default()
        };
        match OnnxModel::from_bytes("m", &add_graph(w)) {
            Err(Error::TensorDtype { dtype, name: n, .. }) => {
                assert_eq!(dtype, name);
                assert_eq!(n, "w");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// `w` stored as external data with these `external_data` entries.
fn external(dims: &[i64], entries: &[(&str, &str)]) -> TensorProto {
    let mut w = f32_tensor("w", dims, &[]);
    w.raw_data.clear();
    w.data_location = 1;
    w.external_data = entries
        .iter()
        .map(|(k, v)| StringStringEntryProto {
            key: (*k).into(),
            value: (*v).into(),
        })
        .collect();
    w
}

/// External data is read from the model's folder, checked before it is read: the model's
/// bytes alone, paths out of the folder, a missing file, wrong lengths and ranges past the end
/// are typed errors; a good one runs.
#[test]
fn external_data_beside_the_model() {
    let dir = std::env::temp_dir().join(format!("recur-external-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    // 4 bytes of padding, then w = [1.5, -2]
    let mut data = vec![0u8; 4];
    data.extend([1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.join("sub/w.bin"), &data).unwrap();
    let write = |name: &str, w: TensorProto| {
        let path = dir.join(name);
        std::fs::write(&path, add_graph(w)).unwrap();
        path
    };

    let good = [("location", "sub/w.bin"), ("offset", "4"), ("length", "8")];
    let path = write("good.onnx", external(&[2], &good));
    let m = OnnxModel::load(&path).unwrap();
    let x = Value::f32(vec![1.0, 1.0], &[2]).unwrap();
    let y = m.run(&[("x", x)]).unwrap();
    assert_eq!(y[0].1.as_f32().unwrap(), &[2.5, -1.0]);
    // `length` may be left out; `./` is inside the folder
    let path = write(
        "no_length.onnx",
        external(&[2], &[("location", "./sub/w.bin"), ("offset", "4")]),
    );
    assert!(OnnxModel::load(&path).is_ok());

    // bytes have no folder
    let reason = format_reason(OnnxModel::from_bytes(
        "m",
        &add_graph(external(&[2], &good)),
    ));
    assert!(reason.contains("load the model from its file"), "{reason}");

    let refused = |case: &str, dims: &[i64], entries: &[(&str, &str)], want: &str| {
        let path = write(&format!("{case}.onnx"), external(dims, entries));
        let reason = format_reason(OnnxModel::load(&path));
        assert!(reason.contains("external data"), "{case}: {reason}");
        assert!(reason.contains(want), "{case}: {reason}");
    };
    refused(
        "dotdot",
        &[2],
        &[("location", "../w.bin")],
        "absolute paths and `..` are refused",
    );
    refused(
        "inner_dotdot",
        &[2],
        &[("location", "sub/../sub/w.bin")],
        "`..` are refused",
    );
    refused(
        "absolute",
        &[2],
        &[("location", "/etc/passwd")],
        "not a relative path",
    );
    refused("empty", &[2], &[("location", "")], "not a relative path");
    refused("no_location", &[2], &[("offset", "0")], "no `location`");
    refused(
        "bad_offset",
        &[2],
        &[("location", "sub/w.bin"), ("offset", "-1")],
        "not a byte count",
    );
    refused(
        "wrong_length",
        &[2],
        &[("location", "sub/w.bin"), ("length", "4")],
        "length 4 is not the 8 bytes",
    );
    refused(
        "past_end",
        &[3],
        &[("location", "sub/w.bin"), ("offset", "4")],
        "run past the end of the 12-byte",
    );
    refused(
        "offset_overflow",
        &[2],
        &[("location", "sub/w.bin"), ("offset", &u64::MAX.to_string())],
        "run past the end",
    );
    // a huge tensor is refused from its dims, before any file is opened
    refused(
        "huge",
        &[1 << 40],
        &[("location", "missing.bin")],
        "exceed the bound",
    );
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc", dir.join("sub/link")).unwrap();
        refused(
            "link_out",
            &[2],
            &[("location", "sub/link/passwd")],
            "leads out of the model's folder",
        );
    }
    let path = write(
        "missing.onnx",
        external(&[2], &[("location", "missing.bin")]),
    );
    match OnnxModel::load(&path) {
        Err(Error::Io { file, .. }) => assert!(file.ends_with("missing.bin"), "{file}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_initializer_and_cycles() {
    let missing = model(GraphProto {
        node: vec![node("Add", &["x", "w"], &["y"])],
        input: vec![input("x")],
        output: vec![input("y")],
        ..Default::default()
    });
    let reason = format_reason(OnnxModel::from_bytes("m", &missing));
    assert!(
        reason.contains("`w`") && reason.contains("missing initializer"),
        "{reason}"
    );

    let cycle = model(GraphProto {
        node: vec![
            node("Add", &["x", "b"], &["a"]),
            node("Add", &["a", "x"], &["b"]),
        ],
        input: vec![input("x")],
        output: vec![input("b")],
        ..Default::default()
    });
    let reason = format_reason(OnnxModel::from_bytes("m", &cycle));
    assert!(reason.contains("topological"), "{reason}");

    let unproduced = model(GraphProto {
        node: vec![node("Identity", &["x"], &["y"])],
        input: vec![input("x")],
        output: vec![input("z")],
        ..Default::default()
    });
    let reason = format_reason(OnnxModel::from_bytes("m", &unproduced));
    assert!(reason.contains("`z`"), "{reason}");

    let twice = model(GraphProto {
        node: vec![
            node("Identity", &["x"], &["y"]),
            node("Identity", &["x"], &["y"]),
        ],
        input: vec![input("x")],
        output: vec![input("y")],
        ..Default::default()
    });
    let reason = format_reason(OnnxModel::from_bytes("m", &twice));
    assert!(reason.contains("already has a value"), "{reason}");
}

#[test]
fn unknown_ops_and_domains_are_named() {
    let conv = model(GraphProto {
        node: vec![node("Conv", &["x", "x"], &["y"])],
        input: vec![input("x")],
        output: vec![input("y")],
        ..Default::default()
    });
    match OnnxModel::from_bytes("m", &conv) {
        Err(Error::Unsupported(msg)) => {
            assert!(
                msg.contains("the_Conv") && msg.contains("op type Conv"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
    let mut custom = node("LSTM", &["x"], &["y"]);
    custom.domain = "com.example".into();
    let custom = model(GraphProto {
        node: vec![custom],
        input: vec![input("x")],
        output: vec![input("y")],
        ..Default::default()
    });
    match OnnxModel::from_bytes("m", &custom) {
        Err(Error::Unsupported(msg)) => assert!(msg.contains("com.example"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn runaway_shapes_from_the_graph_are_refused() {
    // Expand to a shape of 2^40 elements: refused before allocating
    let shape = TensorProto {
        dims: vec![2],
        data_type: data_type::INT64,
        name: "shape".into(),
        int64_data: vec![1 << 20, 1 << 20],
        ..Default::default()
    };
    let bytes = model(GraphProto {
        node: vec![node("Expand", &["x", "shape"], &["y"])],
        initializer: vec![shape],
        input: vec![input("x")],
        output: vec![input("y")],
        ..Default::default()
    });
    let m = OnnxModel::from_bytes("m", &bytes).unwrap();
    let x = Value::f32(vec![1.0], &[1, 1]).unwrap();
    match m.run(&[("x", x)]) {
        Err(Error::OnnxNode { node, reason, .. }) => {
            assert_eq!(node, "the_Expand");
            assert!(reason.contains("bound"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// A run's values together are held to a memory budget, checked before each allocation: a
/// few hundred bytes of graph (a `ConstantOfShape` of 2^28 elements, copies of it kept as
/// outputs) are refused, naming the node, instead of taking gigabytes.
#[test]
fn a_run_is_held_to_its_memory_budget() {
    let graph = |elements: i64, copies: usize| {
        let shape = TensorProto {
            dims: vec![1],
            data_type: data_type::INT64,
            name: "shape".into(),
            int64_data: vec![elements],
            ..Default::default()
        };
        let mut nodes = vec![node("ConstantOfShape", &["shape"], &["c"])];
        let mut outputs = vec![input("c")];
        for k in 0..copies {
            let y = format!("y{k}");
            let mut n = node("Add", &["c", "x"], &[&y]);
            n.name = format!("add_{k}");
            nodes.push(n);
            outputs.push(input(&y));
        }
        let bytes = model(GraphProto {
            node: nodes,
            initializer: vec![shape],
            input: vec![input("x")],
            output: outputs,
            ..Default::default()
        });
        OnnxModel::from_bytes("m", &bytes).unwrap()
    };
    let x = || Value::f32(vec![1.0], &[1]).unwrap();
    // 1 + 8 tensors of 4 MiB: 36 MiB
    let m = graph(1 << 20, 8);
    assert_eq!(m.run_within(&[("x", x())], 40 << 20).unwrap().len(), 9);
    match m.run_within(&[("x", x())], 16 << 20) {
        Err(Error::OnnxNode { node, reason, .. }) => {
            // c and y0, y1 (12 MiB and x's 4 bytes) are held: y2 would pass 16 MiB
            assert_eq!(node, "add_2", "{reason}");
            assert!(
                reason.contains("memory budget of 16777216 bytes"),
                "{reason}"
            );
            assert!(reason.contains("--max-memory"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // the example: 2^28 elements (1 GiB) against a budget of 256 MiB, refused
    // before the first is allocated
    let m = graph(1 << 28, 4);
    match m.run_within(&[("x", x())], 256 << 20) {
        Err(Error::OnnxNode { node, reason, .. }) => {
            assert_eq!(node, "the_ConstantOfShape", "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // inputs alone over the budget
    let big = Value::f32(vec![0.0; 1 << 10], &[1 << 10]).unwrap();
    assert!(matches!(
        graph(4, 1).run_within(&[("x", big)], 1000),
        Err(Error::Unsupported(_))
    ));
    // and the budget is the run's only: a plain run afterwards has the default
    assert_eq!(graph(1 << 20, 8).run(&[("x", x())]).unwrap().len(), 9);
}

#[test]
fn wrong_graph_inputs_are_typed_errors() {
    let m = OnnxModel::from_bytes("m", &exported()).unwrap();
    let x = Value::f32(vec![0.0; 2 * 2 * 3], &[2, 2, 3]).unwrap();
    let h0 = Value::f32(vec![0.0; 4 * 2 * 4], &[4, 2, 4]).unwrap();
    let lens = Value::i32(vec![2, 1], &[2]).unwrap();
    let all = |x: Value, lens: Value| {
        vec![
            ("input", x),
            ("sequence_lens", lens),
            ("h0", h0.clone()),
            ("c0", h0.clone()),
        ]
    };
    assert!(m.run(&all(x.clone(), lens.clone())).is_ok());
    // wrong element type
    let xi = Value::i64(vec![0; 12], &[2, 2, 3]).unwrap();
    assert!(matches!(
        m.run(&all(xi, lens.clone())),
        Err(Error::TensorDtype { .. })
    ));
    // wrong fixed dim (input_size 3)
    let xw = Value::f32(vec![0.0; 2 * 2 * 5], &[2, 2, 5]).unwrap();
    assert!(matches!(
        m.run(&all(xw, lens.clone())),
        Err(Error::Shape { .. })
    ));
    // a length of 0 and one past seq_len: the node refuses them
    for bad in [vec![2, 0], vec![3, 1]] {
        match m.run(&all(x.clone(), Value::i32(bad, &[2]).unwrap())) {
            Err(Error::OnnxNode {
                op_type, reason, ..
            }) => {
                assert_eq!(op_type, "LSTM");
                assert!(reason.contains("sequence_lens"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
    // missing and unknown inputs
    assert!(matches!(
        m.run(&[("input", x.clone())]),
        Err(Error::Unsupported(_))
    ));
    let mut extra = all(x, lens);
    extra.push(("nope", h0.clone()));
    assert!(matches!(m.run(&extra), Err(Error::Unsupported(_))));
}

#[test]
fn bad_recurrent_attributes_are_node_errors() {
    let w = f32_tensor("W", &[1, 4, 2], &[0.1; 8]);
    let r = f32_tensor("R", &[1, 4, 4], &[0.1; 16]);
    let with = |attrs: Vec<AttributeProto>, w: TensorProto| {
        let mut n = node("RNN", &["x", "W", "R"], &["y"]);
        n.attribute = attrs;
        OnnxModel::from_bytes(
            "m",
            &model(GraphProto {
                node: vec![n],
                initializer: vec![w, r.clone()],
                input: vec![input("x")],
                output: vec![input("y")],
                ..Default::default()
            }),
        )
        .unwrap()
    };
    let x = Value::f32(vec![0.2; 3 * 2 * 2], &[3, 2, 2]).unwrap();
    let s = |name: &str, v: &str| AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRING,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    };
    let i = |name: &str, v: i64| AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: v,
        ..Default::default()
    };
    assert!(with(vec![], w.clone()).run(&[("x", x.clone())]).is_ok());
    for (attrs, needle) in [
        (vec![s("direction", "sideways")], "sideways"),
        (vec![i("layout", 2)], "layout 2"),
        (vec![i("hidden_size", 5)], "hidden_size = 5"),
    ] {
        match with(attrs, w.clone()).run(&[("x", x.clone())]) {
            Err(Error::OnnxNode { reason, .. }) => assert!(reason.contains(needle), "{reason}"),
            other => panic!("{needle}: {other:?}"),
        }
    }
    let f = |name: &str, v: f32| AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f: v,
        ..Default::default()
    };
    match with(vec![f("clip", -1.0)], w.clone()).run(&[("x", x.clone())]) {
        Err(Error::OnnxNode { reason, .. }) => assert!(reason.contains("clip"), "{reason}"),
        other => panic!("clip: {other:?}"),
    }
    let swish = AttributeProto {
        name: "activations".into(),
        r#type: attribute_type::STRINGS,
        strings: vec![b"Swish".to_vec()],
        ..Default::default()
    };
    match with(vec![swish], w.clone()).run(&[("x", x.clone())]) {
        Err(Error::Unsupported(msg)) => {
            assert!(msg.contains("the_RNN") && msg.contains("Swish"), "{msg}")
        }
        other => panic!("Swish: {other:?}"),
    }
    // W for another input size
    let w3 = f32_tensor("W", &[1, 4, 3], &[0.1; 12]);
    assert!(matches!(
        with(vec![], w3).run(&[("x", x)]),
        Err(Error::OnnxNode { .. })
    ));
}

#[test]
fn tensor_files_round_trip() {
    let values = [
        Value::f32(vec![1.5, -2.0, 3.25, 0.0, 7.0, 8.0], &[2, 3]).unwrap(),
        Value::new(Data::F64(vec![0.1, 0.2]), &[2]).unwrap(),
        Value::i64(vec![-1, 1 << 40, 3], &[3, 1]).unwrap(),
        Value::i32(vec![5, 2], &[2]).unwrap(),
        Value::f32(vec![4.0], &[]).unwrap(),
        Value::f32(vec![], &[0, 3]).unwrap(),
    ];
    for v in &values {
        for format in [TensorFormat::Proto, TensorFormat::Npy] {
            let bytes = tensor_to_bytes("t", v, format);
            let (name, back) = tensor_from_bytes("t", &bytes, format).unwrap();
            assert_eq!(&back, v, "{format:?}");
            if format == TensorFormat::Proto {
                assert_eq!(name, "t");
            } else {
                // header padded so that the data starts on a 64-byte boundary
                assert_eq!(
                    (bytes.len()
                        - v.len()
                            * if matches!(v.data(), Data::F64(_) | Data::I64(_)) {
                                8
                            } else {
                                4
                            })
                        % 64,
                    0
                );
            }
        }
    }
}

#[test]
fn bad_tensor_files() {
    let v = Value::f32(vec![1.0, 2.0, 3.0], &[3]).unwrap();
    let npy = tensor_to_bytes("", &v, TensorFormat::Npy);
    let pb = tensor_to_bytes("t", &v, TensorFormat::Proto);
    for len in 0..npy.len() {
        assert!(
            tensor_from_bytes("f", &npy[..len], TensorFormat::Npy).is_err(),
            "{len}"
        );
    }
    for len in 0..pb.len() {
        // a TensorProto cut short either fails to decode or disagrees with its dims
        if let Ok((_, t)) = tensor_from_bytes("f", &pb[..len], TensorFormat::Proto) {
            assert_ne!(t, v, "{len}");
        }
    }
    let header = |descr: &str, fortran: &str, shape: &str| {
        let mut h =
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&[0u8; 12]);
        out
    };
    for (bytes, want) in [
        (header(">f4", "False", "(3,)"), "dtype"),
        (header("<f2", "False", "(6,)"), "dtype"),
        (header("|b1", "False", "(12,)"), "dtype"),
        (header("<f4", "True", "(3,)"), "Fortran"),
        (header("<f4", "False", "(4,)"), "needs 16 data bytes"),
        (
            header("<f4", "False", "(1099511627776, 1099511627776)"),
            "bound",
        ),
        (header("<f4", "False", "(-3,)"), "not a size"),
    ] {
        let e = tensor_from_bytes("f.npy", &bytes, TensorFormat::Npy).unwrap_err();
        let msg = e.to_string();
        let ok = match want {
            "dtype" => matches!(e, Error::TensorDtype { .. }),
            w => msg.contains(w),
        };
        assert!(ok, "{want}: {msg}");
    }
}

/// A node that declares an output it does not compute (an RNN has two) and a consumer of it:
/// a node error at run time, not a panic.
#[test]
fn an_uncomputed_output_is_a_node_error() {
    let w = f32_tensor("W", &[1, 4, 2], &[0.1; 8]);
    let r = f32_tensor("R", &[1, 4, 4], &[0.1; 16]);
    let bytes = model(GraphProto {
        node: vec![
            node("RNN", &["x", "W", "R"], &["y", "y_h", "extra"]),
            node("Identity", &["extra"], &["z"]),
        ],
        initializer: vec![w, r],
        input: vec![input("x")],
        output: vec![input("z")],
        ..Default::default()
    });
    let m = OnnxModel::from_bytes("m", &bytes).unwrap();
    let x = Value::f32(vec![0.2; 3 * 2 * 2], &[3, 2, 2]).unwrap();
    match m.run(&[("x", x)]) {
        Err(Error::OnnxNode { node, reason, .. }) => {
            assert_eq!(node, "the_Identity");
            assert!(reason.contains("`extra`"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
