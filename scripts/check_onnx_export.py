#!/usr/bin/env python3
"""Checks recur's ONNX export against onnxruntime (and PyTorch where PyTorch has the cell).

For each model below: draw the weights (seeded), save them as a PyTorch state_dict
safetensors file, convert it with `recur convert model.safetensors model.onnx
--sequence-lens --initial-state [options]`, then run the exported graph

  * in recur: `recur onnx run model.onnx --input ... --output-dir out` (recur's engine;
    crates/recur/tests/onnx_roundtrip.rs shows that this equals Recurrent::forward),
  * in onnxruntime (CPU), and
  * for the cells PyTorch has, in torch.nn.LSTM / GRU / RNN on a PackedSequence of the same
    ragged batch (padded back with zeros),

on a ragged batch (lengths T, T-1, T-3, 1, ...) with random initial states, and prints the
largest absolute difference of each output between each pair. Exits 1 when any pair differs
beyond ONNX's backend-test tolerances (|a - b| <= 1e-7 + 1e-3 |b|).

Models: a 2-layer bidirectional LSTM; an LSTM with all three peepholes (recur's
`peephole_{i,f,o}_l{k}` tensors); a coupled input-forget LSTM (`--coupled`); a 2-layer
GRU (reset after, PyTorch's); a bidirectional GRU with the reset before the product
(`--gru-reset before`, ONNX's default form); a batch-first ReLU RNN; a reverse-only
3-layer tanh RNN is left out (PyTorch has no reverse-only stack), its ONNX path is the
bidirectional one's second direction.

One more model goes the other way round, to cover what a PyTorch state_dict cannot carry:
a bidirectional one-node ONNX LSTM with peepholes, `clip` and ONNX's parameterised
activations (HardSigmoid, Softsign, ScaledTanh) plus the Transpose/Reshape glue, built here
with onnx.helper, is read by `recur convert in.onnx out.onnx` (import, then recur's own
export); onnxruntime's outputs of the original graph are the reference for recur's and
onnxruntime's outputs of the re-exported one.

    pip install torch onnxruntime safetensors numpy
    python3 scripts/check_onnx_export.py            # builds target/release/recur first
    python3 scripts/check_onnx_export.py --recur target/debug/recur
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import save_file

ATOL, RTOL = 1e-7, 1e-3
T, B, I, H = 7, 4, 5, 6


def build(root):
    subprocess.run(["cargo", "build", "--release", "-p", "recur-cli"], cwd=root, check=True)
    return os.path.join(root, "target", "release", "recur")


def save_npy(path, array):
    np.save(path, array)
    return path


def torch_outputs(module, kind, x, lengths, h0, c0, batch_first):
    """PyTorch's outputs on the ragged batch, padded with zeros past each length."""
    xt = torch.from_numpy(x)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
    )
    with torch.no_grad():
        if kind == "lstm":
            y, (h, c) = module(packed, (torch.from_numpy(h0), torch.from_numpy(c0)))
        else:
            y, h = module(packed, torch.from_numpy(h0))
            c = None
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=batch_first, total_length=T)
    out = {"output": y.numpy(), "h_n": h.numpy()}
    if c is not None:
        out["c_n"] = c.numpy()
    return out


def max_diff(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def close(a, b):
    return bool(np.all(np.abs(a.astype(np.float64) - b) <= ATOL + RTOL * np.abs(b.astype(np.float64))))


def case(name, recur, tmp, module, kind, extra_tensors=None, convert_flags=(), torch_ref=True,
         batch_first=False, seed=0):
    rng = np.random.default_rng(seed)
    d = os.path.join(tmp, name.replace(" ", "_"))
    os.makedirs(d, exist_ok=True)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    for k, shape in (extra_tensors or {}).items():
        state[k] = torch.from_numpy(rng.uniform(-0.5, 0.5, shape).astype(np.float32))
    st = os.path.join(d, "model.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, st)
    onnx_path = os.path.join(d, "model.onnx")
    subprocess.run(
        [recur, "convert", st, onnx_path, "--sequence-lens", "--initial-state", *convert_flags],
        check=True, stdout=subprocess.DEVNULL,
    )
    layers = module.num_layers
    dirs = 2 if module.bidirectional else 1
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    lengths = np.array([T, T - 1, T - 3, 1][:B], dtype=np.int32)
    h0 = (0.5 * rng.standard_normal((layers * dirs, B, H))).astype(np.float32)
    c0 = (0.5 * rng.standard_normal((layers * dirs, B, H))).astype(np.float32)
    feeds = {"input": x, "sequence_lens": lengths, "h0": h0}
    if kind == "lstm":
        feeds["c0"] = c0

    args = [recur, "onnx", "run", onnx_path, "--output-dir", os.path.join(d, "out")]
    for k, v in feeds.items():
        args += ["--input", f"{k}={save_npy(os.path.join(d, k + '.npy'), v)}"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    ours = {k: np.load(os.path.join(d, "out", k + ".npy")) for k in ("output", "h_n", "c_n")
            if os.path.exists(os.path.join(d, "out", k + ".npy"))}

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    theirs = dict(zip(names, sess.run(None, feeds)))

    rows, ok = [], True
    ref = torch_outputs(module, kind, x, lengths.tolist(), h0, c0, batch_first) if torch_ref else None
    for k in names:
        r = [name, k, max_diff(ours[k], theirs[k])]
        ok &= close(ours[k], theirs[k])
        if ref is not None:
            r += [max_diff(ours[k], ref[k]), max_diff(theirs[k], ref[k])]
            ok &= close(ours[k], ref[k])
        else:
            r += [None, None]
        rows.append(r)
    return rows, ok


def onnx_roundtrip(recur, tmp, seed=10):
    """A hand-built ONNX LSTM with clip and parameterised activations, through recur convert."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    d = os.path.join(tmp, "onnx_lstm_clip_activations")
    os.makedirs(d, exist_ok=True)
    D = 2
    w = lambda *shape: numpy_helper.from_array(rng.uniform(-0.6, 0.6, shape).astype(np.float32))
    inits = []
    for name, shape in [("W", (D, 4 * H, I)), ("R", (D, 4 * H, H)), ("B", (D, 8 * H)), ("P", (D, 3 * H))]:
        t = w(*shape)
        t.name = name
        inits.append(t)
    inits.append(numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "shape"))
    lstm = helper.make_node(
        "LSTM", ["input", "W", "R", "B", "sequence_lens", "h0", "c0", "P"], ["Y", "h_n", "c_n"],
        hidden_size=H, direction="bidirectional", clip=0.8,
        activations=["HardSigmoid", "Softsign", "ScaledTanh"] * 2,
        activation_alpha=[0.25, 1.5, 0.25, 1.5], activation_beta=[0.5, 0.75, 0.5, 0.75])
    nodes = [lstm,
             helper.make_node("Transpose", ["Y"], ["Yt"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["Yt", "shape"], ["output"])]
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "lstm", [
            helper.make_tensor_value_info("input", f, ["T", "B", I]),
            helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]),
            helper.make_tensor_value_info("h0", f, [D, "B", H]),
            helper.make_tensor_value_info("c0", f, [D, "B", H])],
        [helper.make_tensor_value_info(n, f, None) for n in ("output", "h_n", "c_n")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src = os.path.join(d, "in.onnx")
    onnx.save(model, src)
    out = os.path.join(d, "out.onnx")
    subprocess.run([recur, "convert", src, out, "--sequence-lens", "--initial-state"],
                   check=True, stdout=subprocess.DEVNULL)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    feeds = {"input": x, "sequence_lens": np.array([T, T - 1, T - 3, 1][:B], dtype=np.int32),
             "h0": (0.5 * rng.standard_normal((D, B, H))).astype(np.float32),
             "c0": (0.5 * rng.standard_normal((D, B, H))).astype(np.float32)}
    ref = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, feeds)
    again = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, feeds)
    args = [recur, "onnx", "run", out, "--output-dir", os.path.join(d, "res")]
    for k, v in feeds.items():
        args += ["--input", f"{k}={save_npy(os.path.join(d, k + '.npy'), v)}"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    rows, ok = [], True
    for k, name in enumerate(("output", "h_n", "c_n")):
        ours = np.load(os.path.join(d, "res", name + ".npy"))
        ok &= close(ours, ref[k]) and close(again[k], ref[k])
        # columns: recur(out) - ORT(out), recur(out) - ORT(in), ORT(out) - ORT(in)
        rows.append(["onnx lstm clip+activations", name, max_diff(ours, again[k]),
                     max_diff(ours, ref[k]), max_diff(again[k], ref[k])])
    return rows, ok


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recur", help="the recur binary (default: build target/release/recur)")
    args = p.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    recur = args.recur or build(root)
    torch.manual_seed(0)
    peep = {f"peephole_{g}_l0": (H,) for g in "ifo"}
    cases = [
        ("lstm 2-layer bidirectional", torch.nn.LSTM(I, H, num_layers=2, bidirectional=True), "lstm", {}),
        ("lstm peepholes i,f,o", torch.nn.LSTM(I, H), "lstm",
         dict(extra_tensors=peep, torch_ref=False)),
        ("lstm coupled input-forget", torch.nn.LSTM(I, H), "lstm",
         dict(convert_flags=["--coupled"], torch_ref=False)),
        ("gru 2-layer (reset after)", torch.nn.GRU(I, H, num_layers=2), "gru", {}),
        ("gru bidirectional reset before", torch.nn.GRU(I, H, bidirectional=True), "gru",
         dict(convert_flags=["--gru-reset", "before"], torch_ref=False)),
        ("rnn relu batch-first", torch.nn.RNN(I, H, nonlinearity="relu", batch_first=True), "rnn",
         dict(convert_flags=["--rnn-nonlinearity", "relu", "--batch-first"], batch_first=True)),
    ]
    all_ok = True
    print(f"T={T} B={B} I={I} H={H}, lengths {[T, T - 1, T - 3, 1][:B]}, random h0/c0; onnxruntime "
          f"{ort.__version__}, torch {torch.__version__}")
    print(f"{'model':32} {'output':7} {'recur-ORT':>10} {'recur-torch':>12} {'ORT-torch':>10}")
    fmt = lambda v: "-" if v is None else f"{v:.2e}"
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, module, kind, opts) in enumerate(cases):
            rows, ok = case(name, recur, tmp, module.eval(), kind, seed=k, **opts)
            all_ok &= ok
            for r in rows:
                print(f"{r[0]:32} {r[1]:7} {fmt(r[2]):>10} {fmt(r[3]):>12} {fmt(r[4]):>10}")
        rows, ok = onnx_roundtrip(recur, tmp)
        all_ok &= ok
        print("(below: the reference is onnxruntime on the original graph, not torch)")
        for r in rows:
            print(f"{r[0]:32} {r[1]:7} {fmt(r[2]):>10} {fmt(r[3]):>12} {fmt(r[4]):>10}")
    print("all within rtol 1e-3, atol 1e-7" if all_ok else "MISMATCH beyond rtol 1e-3, atol 1e-7")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
