#!/usr/bin/env python3
"""Generate recur's ONNX fixtures (float32, ONNX backend-test folder format).

What it makes
-------------
crates/recur/tests/fixtures/onnx/generated/<case>/
    One-node LSTM / GRU / RNN models (opset 22) built with onnx.helper from seeded random
    weights, covering every attribute and optional input/output of the three operators.
    Expected outputs come from ONNX Runtime and are cross-checked against an independent
    numpy implementation written in this script (the `ref_*` functions below).
crates/recur/tests/fixtures/onnx/pytorch/<case>/
    torch.onnx.export of nn.LSTM / nn.GRU / nn.RNN stacks and a small char-level model, by
    the legacy TorchScript exporter (dynamo=False) and by the default dynamo exporter.
    Expected outputs come from PyTorch (eval mode, float32); ONNX Runtime must agree.
crates/recur/tests/fixtures/onnx/README.md
    Written by this script: what each folder holds, versions, and the census of operator
    types and recurrent-node attributes of every model (backend/ included).

Each case folder is laid out as ONNX's backend node tests are:
    model.onnx
    test_data_set_0/input_<i>.pb   serialized onnx.TensorProto, named after graph input i
    test_data_set_0/output_<j>.pb  serialized onnx.TensorProto, named after graph output j
and is meant to pass with ONNX's backend-test tolerances (rtol 1e-3, atol 1e-7).

crates/recur/tests/fixtures/onnx/backend/ (the 12 vendored ONNX node tests) is not written
here; the script only reads it for the census.

How to run
----------
    pip install torch onnx==1.22.0 onnxruntime onnxscript numpy
    python3 scripts/gen_onnx_fixtures.py      # from the repository root, CPU only, ~30 s

Everything is seeded; a rerun with the same package versions reproduces every file byte for
byte (exporter metadata that would carry local paths, e.g. stack traces, is stripped).
The script exits 1 with `MISMATCH ...` if ONNX Runtime disagrees with PyTorch or with the
numpy reference beyond the tolerances.
"""

import collections
import os
import shutil
import sys
import warnings
import zlib

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "crates", "recur", "tests", "fixtures", "onnx")
OPSET = 22
RTOL = 1e-3  # ONNX backend-test tolerances
ATOL = 1e-7
REF_TOL = 1e-5  # numpy float64 reference vs ONNX Runtime float32 (max abs error)

FAILED = []


def check_close(what, got, want, rtol=RTOL, atol=ATOL):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        FAILED.append(f"MISMATCH {what}: shape {got.shape} vs {want.shape}")
        return float("inf")
    err = np.abs(got - want)
    bad = err > atol + rtol * np.abs(want)
    worst = float(err.max()) if err.size else 0.0
    if bad.any():
        FAILED.append(f"MISMATCH {what}: max abs err {worst:.3g}")
    return worst


# ---------------------------------------------------------------------------------------
# Writing a case folder
# ---------------------------------------------------------------------------------------


def strip_metadata(model):
    """Drop doc strings and metadata_props (exporters put stack traces with paths there)."""
    model.doc_string = ""
    del model.metadata_props[:]

    def graph(g):
        g.doc_string = ""
        del g.metadata_props[:]
        for coll in (g.input, g.output, g.value_info):
            for v in coll:
                v.doc_string = ""
                del v.metadata_props[:]
        for t in g.initializer:
            t.doc_string = ""
            del t.metadata_props[:]
        for n in g.node:
            n.doc_string = ""
            del n.metadata_props[:]
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    graph(a.g)
                for sub in a.graphs:
                    graph(sub)

    graph(model.graph)
    for f in model.functions:
        f.doc_string = ""
        del f.metadata_props[:]
        for n in f.node:
            n.doc_string = ""
            del n.metadata_props[:]


def graph_input_names(model):
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def write_case(folder, model, inputs, outputs):
    """inputs / outputs: lists of numpy arrays in graph input / output order."""
    if os.path.exists(folder):
        shutil.rmtree(folder)
    data = os.path.join(folder, "test_data_set_0")
    os.makedirs(data)
    onnx.checker.check_model(model, full_check=True)
    with open(os.path.join(folder, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    in_names = graph_input_names(model)
    out_names = [o.name for o in model.graph.output]
    assert len(in_names) == len(inputs), (folder, in_names, len(inputs))
    assert len(out_names) == len(outputs), (folder, out_names, len(outputs))
    for i, (n, a) in enumerate(zip(in_names, inputs)):
        t = numpy_helper.from_array(np.ascontiguousarray(a), n)
        with open(os.path.join(data, f"input_{i}.pb"), "wb") as f:
            f.write(t.SerializeToString(deterministic=True))
    for j, (n, a) in enumerate(zip(out_names, outputs)):
        t = numpy_helper.from_array(np.ascontiguousarray(a), n)
        with open(os.path.join(data, f"output_{j}.pb"), "wb") as f:
            f.write(t.SerializeToString(deterministic=True))


def run_ort(model, inputs):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(
        model.SerializeToString(), so, providers=["CPUExecutionProvider"]
    )
    feeds = dict(zip(graph_input_names(model), inputs))
    return sess.run(None, feeds)


# ---------------------------------------------------------------------------------------
# PyTorch exports
# ---------------------------------------------------------------------------------------


class CharModel(torch.nn.Module):
    """Embedding(V=20, 8) -> 2-layer LSTM(8, 16) -> Linear(16, 20) on every step."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)
        self.rnn = torch.nn.LSTM(8, 16, num_layers=2)
        self.head = torch.nn.Linear(16, 20)

    def forward(self, tokens):  # tokens [T, B] int64
        y, _ = self.rnn(self.emb(tokens))
        return self.head(y)  # [T, B, 20]


class StateModel(torch.nn.Module):
    """1-layer batch_first LSTM taking (h0, c0) explicitly."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(3, 5, batch_first=True)

    def forward(self, x, h0, c0):
        y, (h, c) = self.rnn(x, (h0, c0))
        return y, h, c


def pytorch_cases():
    """(name, module, example inputs, input names, output names)."""
    cases = []
    torch.manual_seed(20261127)
    T, B, I, H = 5, 3, 4, 5
    m = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True)
    cases.append(("lstm_2layer_bidir", m, (torch.randn(T, B, I),), ["x"], ["y", "h_n", "c_n"]))
    m = torch.nn.GRU(I, H, num_layers=2, bidirectional=True)
    cases.append(("gru_2layer_bidir", m, (torch.randn(T, B, I),), ["x"], ["y", "h_n"]))
    m = torch.nn.RNN(I, H, num_layers=2, bidirectional=True, nonlinearity="tanh")
    cases.append(("rnn_tanh_2layer_bidir", m, (torch.randn(T, B, I),), ["x"], ["y", "h_n"]))
    m = StateModel()
    args = (torch.randn(2, 6, 3), torch.randn(1, 2, 5), torch.randn(1, 2, 5))
    cases.append(("lstm_batch_first_h0c0", m, args, ["x", "h0", "c0"], ["y", "h_n", "c_n"]))
    m = CharModel()
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 20, (6, 2), generator=g, dtype=torch.int64)
    cases.append(("char_lstm", m, (tokens,), ["tokens"], ["logits"]))
    return cases


def export_legacy(m, args, in_names, out_names):
    import io

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m,
            args,
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=in_names,
            output_names=out_names,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def export_dynamo(m, args, in_names, out_names):
    import contextlib
    import io

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            m,
            args,
            dynamo=True,
            opset_version=OPSET,
            input_names=in_names,
            output_names=out_names,
            verbose=False,
        )
    return onnx.load_from_string(prog.model_proto.SerializeToString())


RECURRENT = ("LSTM", "GRU", "RNN")
PT_NOTES = []


def make_pytorch():
    base = os.path.join(OUT, "pytorch")
    if os.path.exists(base):
        shutil.rmtree(base)
    for name, m, args, in_names, out_names in pytorch_cases():
        m.eval()
        with torch.no_grad():
            want = m(*args)
        if isinstance(want, torch.Tensor):
            want = (want,)
        else:
            flat = []
            for w in want:
                if isinstance(w, tuple):
                    flat.extend(w)
                else:
                    flat.append(w)
            want = tuple(flat)
        want = [w.detach().numpy().astype(np.float32) for w in want]
        inputs = [a.numpy() for a in args]
        for exporter, fn in (("legacy", export_legacy), ("dynamo", export_dynamo)):
            case = f"{name}_{exporter}"
            try:
                model = fn(m, args, in_names, out_names)
            except Exception as e:  # noqa: BLE001 - recorded in the README
                PT_NOTES.append(f"{case}: export failed: {type(e).__name__}: {e}")
                continue
            strip_metadata(model)
            ops = collections.Counter(n.op_type for n in model.graph.node)
            if not any(op in ops for op in RECURRENT):
                PT_NOTES.append(
                    f"{case}: skipped, no LSTM/GRU/RNN node (ops: {dict(ops)})"
                )
                continue
            got = run_ort(model, inputs)
            worst = 0.0
            for k, (g, w) in enumerate(zip(got, want)):
                worst = max(worst, check_close(f"{case} output {k} (ORT vs PyTorch)", g, w))
            assert len(got) == len(want), (case, len(got), len(want))
            write_case(os.path.join(base, case), model, inputs, want)
            PT_NOTES.append(
                f"{case}: opset {model.opset_import[0].version}, ORT vs PyTorch max abs "
                f"error {worst:.2e}"
            )


# ---------------------------------------------------------------------------------------
# Census and README
# ---------------------------------------------------------------------------------------


def attr_value(a):
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [x.decode() if isinstance(x, bytes) else (round(x, 6) if isinstance(x, float) else x) for x in v]
    if isinstance(v, float):
        return round(v, 6)
    return v


LSTM_INPUTS = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
GRU_INPUTS = ["X", "W", "R", "B", "sequence_lens", "initial_h"]
OUT_NAMES = {"LSTM": ["Y", "Y_h", "Y_c"], "GRU": ["Y", "Y_h"], "RNN": ["Y", "Y_h"]}


def census_lines(folder):
    m = onnx.load(os.path.join(folder, "model.onnx"))
    ops = collections.Counter(n.op_type for n in m.graph.node)
    inits = {t.name for t in m.graph.initializer}
    const_outs = {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    name = os.path.basename(folder)
    opsets = ", ".join(
        f"{o.domain or 'ai.onnx'} {o.version}" for o in m.opset_import
    )
    ins = []
    for i in m.graph.input:
        if i.name in inits:
            continue
        tt = i.type.tensor_type
        dims = [d.dim_param or str(d.dim_value) for d in tt.shape.dim]
        ins.append(f"{i.name}:{TensorProto.DataType.Name(tt.elem_type).lower()}[{','.join(dims)}]")
    lines = [
        f"- `{name}` (opset {opsets}; inputs {' '.join(ins)}; "
        f"{len(m.graph.initializer)} initializers): "
        + ", ".join(f"{op}×{c}" for op, c in sorted(ops.items()))
    ]
    for n in m.graph.node:
        if n.op_type not in RECURRENT:
            continue
        names = LSTM_INPUTS if n.op_type == "LSTM" else GRU_INPUTS
        present = []
        for k, s in enumerate(n.input):
            if s:
                src = "init" if s in inits else ("const" if s in const_outs else "dyn")
                present.append(f"{names[k]}({src})")
        outs = [OUT_NAMES[n.op_type][k] for k, s in enumerate(n.output) if s]
        attrs = ", ".join(f"{a.name}={attr_value(a)}" for a in n.attribute)
        lines.append(
            f"  - {n.op_type}: attrs {{{attrs}}}; inputs {' '.join(present)}; "
            f"outputs {' '.join(outs)}"
        )
    return lines, ops


def write_readme(gen_notes):
    total = collections.Counter()
    sections = []
    for sub in ("backend", "generated", "pytorch"):
        d = os.path.join(OUT, sub)
        if not os.path.isdir(d):
            continue
        lines = []
        for case in sorted(os.listdir(d)):
            p = os.path.join(d, case)
            if not os.path.isfile(os.path.join(p, "model.onnx")):
                continue
            ls, ops = census_lines(p)
            total.update(ops)
            lines.extend(ls)
        sections.append((sub, lines))
    v = dict(
        onnx=onnx.__version__,
        ort=ort.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        py=sys.version.split()[0],
    )
    try:
        import onnxscript

        v["onnxscript"] = onnxscript.__version__
    except ImportError:
        v["onnxscript"] = "not installed"
    text = README_HEAD.format(**v)
    text += "\n## Notes on the PyTorch exports\n\n"
    text += "\n".join(f"- {n}" for n in PT_NOTES) + "\n"
    if gen_notes:
        text += "\n## Notes on the generated cases\n\n"
        text += "\n".join(f"- {n}" for n in gen_notes) + "\n"
    text += CENSUS_HEAD
    text += "All models together use: " + ", ".join(
        f"{op}×{c}" for op, c in sorted(total.items())
    ) + ".\n"
    for sub, lines in sections:
        text += f"\n### {sub}/\n\n" + "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write(text)


README_HEAD = """\
# ONNX fixtures

Models and expected outputs for recur's ONNX loader, all in the layout of ONNX's backend
node tests: `model.onnx` plus `test_data_set_0/input_<i>.pb` and `output_<j>.pb` (serialized
`onnx.TensorProto`, named after graph input/output i/j; inputs are the graph inputs that are
not initializers). Every case is meant to pass with ONNX's backend-test tolerances
(rtol 1e-3, atol 1e-7), e.g. `recur onnx test crates/recur/tests/fixtures/onnx/*/*/`.

- `backend/` — the 12 recurrent node tests of the ONNX backend test suite
  (`test_lstm_*`, `test_gru_*`, `test_rnn_*`, `test_simple_rnn_*`), copied unmodified from
  the onnx 1.22.0 package (`onnx/backend/test/data/node/`); Apache-2.0, see
  `backend/LICENSE` and `backend/NOTICE`. Not produced by the script.
- `generated/` — one-node LSTM / GRU / RNN models (opset 22, float32) with seeded random
  weights, covering every attribute, optional input and optional output of the three
  operators (see the census below). Expected outputs are ONNX Runtime's, and every output
  is also checked against a float64 numpy implementation in the script (max abs error
  ≤ 1e-5 required).
- `pytorch/` — `torch.onnx.export` of PyTorch models by the legacy TorchScript exporter
  (`*_legacy`, `dynamo=False`) and the default dynamo exporter (`*_dynamo`), opset 22.
  Expected outputs are PyTorch's (eval mode, float32); ONNX Runtime must agree within the
  backend-test tolerances. Models: 2-layer bidirectional `nn.LSTM`, `nn.GRU` and `nn.RNN`
  (tanh) (I=4, H=5, T=5, B=3); a 1-layer `batch_first` `nn.LSTM(3, 5)` fed explicit
  `(h0, c0)`; a char model `Embedding(20, 8) → 2-layer LSTM(8, 16) → Linear(16, 20)` on every
  step (int64 tokens [T=6, B=2] → logits [6, 2, 20]). Doc strings and metadata_props
  (stack traces with local paths) are stripped from the exported models.

Everything except `backend/` (and this README, which the script writes) is made by

```
pip install torch onnx==1.22.0 onnxruntime onnxscript numpy
python3 scripts/gen_onnx_fixtures.py        # from the repository root, CPU only
```

Last generated with onnx {onnx}, onnxruntime {ort}, torch {torch}, onnxscript {onnxscript}
(needed by the dynamo exporter), numpy {numpy} (Python {py}). All randomness is seeded; a
rerun with the same versions reproduces every file byte for byte.
"""

CENSUS_HEAD = """
## Census

For each model: opset, runtime inputs (dtype[shape]), number of initializers, and node op
types with counts; then for each recurrent node the attributes it sets (absent = ONNX
default), which inputs it is given (init = initializer, const = Constant node output,
dyn = computed or a graph input) and which outputs it produces (omitted = empty name).

"""


def main():
    os.makedirs(OUT, exist_ok=True)
    make_pytorch()
    gen_notes = make_generated() if "make_generated" in globals() else []
    write_readme(gen_notes)
    if FAILED:
        for f in FAILED:
            print(f)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
