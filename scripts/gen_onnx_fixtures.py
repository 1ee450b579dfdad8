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
crates/recur/tests/fixtures/onnx/external/<case>/
    torch.onnx.export(..., external_data=True) of an nn.LSTM by the dynamo exporter: the
    weights are in model.onnx.data beside model.onnx (`location`, `offset`, `length` entries).
    Expected outputs come from PyTorch; ONNX Runtime, reading the model from its path, must
    agree.
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
    """(name, module, example inputs, input names, output names, dynamic axes or None).

    Cases with dynamic axes are exported a second time with those axes symbolic
    (`*_legacy_dynamic`: dynamic_axes; `*_dynamo_dynamic`: dynamic_shapes)."""
    cases = []
    torch.manual_seed(20261127)
    T, B, I, H = 5, 3, 4, 5
    m = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True)
    dyn = {"x": {0: "T", 1: "B"}}
    cases.append(("lstm_2layer_bidir", m, (torch.randn(T, B, I),), ["x"], ["y", "h_n", "c_n"], dyn))
    m = torch.nn.GRU(I, H, num_layers=2, bidirectional=True)
    cases.append(("gru_2layer_bidir", m, (torch.randn(T, B, I),), ["x"], ["y", "h_n"], None))
    m = torch.nn.RNN(I, H, num_layers=2, bidirectional=True, nonlinearity="tanh")
    cases.append(("rnn_tanh_2layer_bidir", m, (torch.randn(T, B, I),), ["x"], ["y", "h_n"], None))
    m = StateModel()
    args = (torch.randn(2, 6, 3), torch.randn(1, 2, 5), torch.randn(1, 2, 5))
    cases.append(("lstm_batch_first_h0c0", m, args, ["x", "h0", "c0"], ["y", "h_n", "c_n"], None))
    m = CharModel()
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 20, (6, 2), generator=g, dtype=torch.int64)
    cases.append(("char_lstm", m, (tokens,), ["tokens"], ["logits"], {"tokens": {0: "T", 1: "B"}}))
    return cases


def export_legacy(m, args, in_names, out_names, dynamic=None):
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
            dynamic_axes=dynamic,
        )
    return onnx.load_from_string(buf.getvalue())


def export_dynamo(m, args, in_names, out_names, dynamic=None):
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
            dynamic_shapes=None
            if dynamic is None
            else tuple(
                {ax: torch.export.Dim(nm) for ax, nm in dynamic.get(n, {}).items()} or None
                for n in in_names
            ),
        )
    return onnx.load_from_string(prog.model_proto.SerializeToString())


RECURRENT = ("LSTM", "GRU", "RNN")
PT_NOTES = []


def make_pytorch():
    base = os.path.join(OUT, "pytorch")
    if os.path.exists(base):
        shutil.rmtree(base)
    for name, m, args, in_names, out_names, dyn in pytorch_cases():
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
        variants = [("legacy", export_legacy, None), ("dynamo", export_dynamo, None)]
        if dyn is not None:
            variants += [("legacy_dynamic", export_legacy, dyn),
                         ("dynamo_dynamic", export_dynamo, dyn)]
        for exporter, fn, dynamic in variants:
            case = f"{name}_{exporter}"
            try:
                model = fn(m, args, in_names, out_names, dynamic)
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
# Generated one-node cases: numpy reference (float64) of ONNX LSTM / GRU / RNN as ORT does it
# ---------------------------------------------------------------------------------------

# Which activations take alpha / beta, and their defaults, as ONNX Runtime implements them
# (onnxruntime/core/providers/cpu/rnn/rnn_helpers.cc): the activation_alpha / activation_beta
# lists are consumed in order, one value per activation that *takes* that parameter; when
# a list runs out, the default applies (LeakyRelu 0.01, HardSigmoid 0.2 / 0.5, Elu 1.0;
# ORT uses 0 for the others, so Affine, ScaledTanh and ThresholdedRelu are only ever given
# explicit values here).
TAKES = {
    "Affine": (True, True),
    "Relu": (False, False),
    "LeakyRelu": (True, False),
    "ThresholdedRelu": (True, False),
    "Tanh": (False, False),
    "ScaledTanh": (True, True),
    "Sigmoid": (False, False),
    "HardSigmoid": (True, True),
    "Elu": (True, False),
    "Softsign": (False, False),
    "Softplus": (False, False),
}
DEFAULTS = {"LeakyRelu": (0.01, None), "HardSigmoid": (0.2, 0.5), "Elu": (1.0, None)}
ALL_ACTS = list(TAKES)


def resolve_activations(acts, alphas, betas):
    """[(name, alpha, beta, explicit_alpha, explicit_beta)] following ORT's consumption."""
    alphas = list(alphas or [])
    betas = list(betas or [])
    out = []
    for a in acts:
        ta, tb = TAKES[a]
        d = DEFAULTS.get(a, (None, None))
        al = be = None
        ea = eb = False
        if ta:
            if alphas:
                al, ea = alphas.pop(0), True
            else:
                assert d[0] is not None, f"{a} needs an explicit alpha"
                al = d[0]
        if tb:
            if betas:
                be, eb = betas.pop(0), True
            else:
                assert d[1] is not None, f"{a} needs an explicit beta"
                be = d[1]
        out.append((a, al, be, ea, eb))
    assert not alphas and not betas, "unconsumed activation_alpha/beta values"
    return out


class Recorder:
    """Collects every pre-activation value per activation function (for the coverage check)."""

    def __init__(self):
        self.seen = collections.defaultdict(list)

    def __call__(self, spec, x):
        name, al, be, _, _ = spec
        self.seen[(name, al, be)].append(np.array(x, dtype=np.float64).ravel())
        return apply_act(name, x, al, be)


def apply_act(name, x, al, be):
    if name == "Relu":
        return np.maximum(x, 0.0)
    if name == "Tanh":
        return np.tanh(x)
    if name == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "Affine":
        return al * x + be
    if name == "LeakyRelu":
        return np.where(x >= 0, x, al * x)
    if name == "ThresholdedRelu":
        return np.where(x > al, x, 0.0)
    if name == "ScaledTanh":
        return al * np.tanh(be * x)
    if name == "HardSigmoid":
        return np.clip(al * x + be, 0.0, 1.0)
    if name == "Elu":
        return np.where(x >= 0, x, al * (np.exp(x) - 1.0))
    if name == "Softsign":
        return x / (1.0 + np.abs(x))
    if name == "Softplus":
        return np.log1p(np.exp(x))
    raise ValueError(name)


def ref_run(c, X, W, R, Bias, seq, h0, c0, P, rec):
    """float64 reference. X [T, B, I] (layout 0), returns Y [T, D, B, H], Y_h, Y_c [D, B, H]."""
    op, H = c["op"], c["H"]
    T, Bn, _ = X.shape
    D = 2 if c["direction"] == "bidirectional" else 1
    n_f = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    acts = c["resolved"]
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    clip = c.get("clip")
    cl = (lambda v: np.clip(v, -clip, clip)) if clip is not None else (lambda v: v)
    lens = seq if seq is not None else np.full(Bn, T)
    Y = np.zeros((T, D, Bn, H))
    Yh = np.zeros((D, Bn, H))
    Yc = np.zeros((D, Bn, H))
    for d in range(D):
        rev = c["direction"] == "reverse" or d == 1
        fa = acts[d * n_f:(d + 1) * n_f]
        Wd, Rd = W[d], R[d]
        Wb = Bias[d, : G * H] if Bias is not None else np.zeros(G * H)
        Rb = Bias[d, G * H:] if Bias is not None else np.zeros(G * H)
        for b in range(Bn):
            L = int(lens[b])
            h = h0[d, b].copy() if h0 is not None else np.zeros(H)
            cc = c0[d, b].copy() if c0 is not None else np.zeros(H)
            steps = range(L - 1, -1, -1) if rev else range(L)
            for t in steps:
                x = X[t, b]
                if op == "LSTM":
                    g = Wd @ x + Rd @ h + Wb + Rb
                    gi, go, gf, gc = (g[k * H:(k + 1) * H] for k in range(4))
                    if P is not None:
                        pi, po, pf = P[d, :H], P[d, H:2 * H], P[d, 2 * H:]
                    else:
                        pi = po = pf = np.zeros(H)
                    i = rec(fa[0], cl(gi + pi * cc))
                    if c.get("input_forget"):
                        f = 1.0 - i
                    else:
                        f = rec(fa[0], cl(gf + pf * cc))
                    ct = rec(fa[1], cl(gc))
                    cc = f * cc + i * ct
                    o = rec(fa[0], cl(go + po * cc))
                    h = o * rec(fa[2], cc)
                elif op == "GRU":
                    xw = Wd @ x + Wb
                    z = rec(fa[0], cl(xw[:H] + Rd[:H] @ h + Rb[:H]))
                    r = rec(fa[0], cl(xw[H:2 * H] + Rd[H:2 * H] @ h + Rb[H:2 * H]))
                    if c.get("linear_before_reset"):
                        pre = xw[2 * H:] + r * (Rd[2 * H:] @ h + Rb[2 * H:])
                    else:
                        pre = xw[2 * H:] + Rd[2 * H:] @ (r * h) + Rb[2 * H:]
                    ht = rec(fa[1], cl(pre))
                    h = (1.0 - z) * ht + z * h
                else:
                    h = rec(fa[0], cl(Wd @ x + Rd @ h + Wb + Rb))
                Y[t, d, b] = h
            Yh[d, b] = h
            Yc[d, b] = cc
    return Y, Yh, Yc


# Each case: op, name, direction, sizes and every attribute / optional input it uses.
# x / w: uniform ranges of X and of W, R (B and P use w / 2, initial states x / 2).
def C(name, op, **kw):
    c = dict(
        name=name,
        op=op,
        direction="forward",
        layout=0,
        T=4,
        B=2,
        I=3,
        H=4,
        x=1.0,
        w=0.6,
        bias=True,
        seq=None,
        init_h=False,
        init_c=False,
        P=False,
        outputs=None,  # default: all
        weights_as_inputs=False,
    )
    c.update(kw)
    return c


def gen_cases():
    L = "LSTM"
    G = "GRU"
    R = "RNN"
    cases = [
        # ---- LSTM -------------------------------------------------------------------
        C("lstm_forward_no_bias_Y_only", L, bias=False, outputs=["Y"]),
        C("lstm_reverse", L, direction="reverse", T=5, B=3, init_h=True, init_c=True),
        C("lstm_bidirectional", L, direction="bidirectional", T=5, B=3, I=4, H=5),
        C("lstm_bidirectional_peepholes", L, direction="bidirectional", T=5, B=3, I=4,
          H=5, P=True, init_h=True, init_c=True),
        C("lstm_peepholes_no_bias", L, bias=False, P=True, init_c=True, T=3),
        C("lstm_clip", L, clip=0.7, w=1.2, x=1.5, P=True, outputs=["Y_h", "Y_c"]),
        C("lstm_clip_bidirectional_seq_lens", L, direction="bidirectional", clip=1.1,
          w=1.0, x=1.5, T=5, B=3, seq=[5, 1, 3], init_h=True, init_c=True),
        C("lstm_clip_large_cell", L, clip=0.5, w=1.0, x=3.0, init_h=True, init_c=True,
          T=3, outputs=["Y", "Y_c"]),
        C("lstm_input_forget", L, input_forget=1, T=5, B=3, init_h=True, init_c=True),
        C("lstm_input_forget_peepholes_bidirectional", L, direction="bidirectional",
          input_forget=1, P=True, T=4, B=2, init_c=True),
        C("lstm_seq_lens_forward", L, T=6, B=3, seq=[6, 1, 4], init_h=True, init_c=True),
        C("lstm_seq_lens_reverse", L, direction="reverse", T=6, B=3, seq=[3, 6, 1],
          init_h=True, init_c=True, P=True),
        C("lstm_seq_lens_bidirectional", L, direction="bidirectional", T=6, B=3, I=4,
          H=5, seq=[1, 6, 4], init_h=True, init_c=True, P=True),
        C("lstm_layout1", L, layout=1, T=5, B=3, init_h=True, init_c=True),
        C("lstm_layout1_bidirectional_seq_lens", L, layout=1, direction="bidirectional",
          T=5, B=3, seq=[2, 5, 1], init_h=True, init_c=True, P=True),
        C("lstm_weights_as_inputs", L, direction="bidirectional", P=True, init_h=True,
          init_c=True, seq=[4, 2], weights_as_inputs=True),
        C("lstm_no_Y_h", L, direction="reverse", outputs=["Y", "Y_c"], init_h=True),
        C("lstm_no_Y_c", L, outputs=["Y", "Y_h"], init_h=True, init_c=True),
        C("lstm_initial_h_only_peepholes", L, init_h=True, P=True, outputs=["Y_h", "Y_c"]),
        C("lstm_initial_c_only", L, direction="bidirectional", init_c=True),
        C("lstm_activations_hardsigmoid_leakyrelu_softsign", L, w=1.0, x=2.0,
          acts=["HardSigmoid", "LeakyRelu", "Softsign"], alpha=[0.3, 0.2], beta=[0.45]),
        C("lstm_activations_bidirectional_defaults", L, direction="bidirectional", w=1.0,
          x=2.5, T=5, B=3, init_h=True, init_c=True, acts=["HardSigmoid", "Elu", "Softplus",
                                 "Sigmoid", "LeakyRelu", "Relu"]),
        C("lstm_activations_scaledtanh_affine", L, direction="reverse", w=0.8, x=1.5,
          acts=["Sigmoid", "ScaledTanh", "Affine"], alpha=[1.5, 0.8], beta=[0.7, 0.1]),
        C("lstm_activations_thresholdedrelu_elu", L, w=0.9, x=1.5, init_h=True,
          init_c=True, acts=["Sigmoid", "ThresholdedRelu", "Elu"], alpha=[0.4, 0.7]),
        C("lstm_activations_alpha_order", L, direction="bidirectional", w=1.0, x=2.5,
          T=5, B=3, acts=["Sigmoid", "Elu", "Tanh", "HardSigmoid", "Tanh", "LeakyRelu"],
          alpha=[0.5, 0.25], beta=[0.6]),
        # ---- GRU --------------------------------------------------------------------
        C("gru_lbr0", G, linear_before_reset=0, T=5, B=3),
        C("gru_lbr1", G, linear_before_reset=1, T=5, B=3),
        C("gru_no_bias_Y_only", G, bias=False, outputs=["Y"]),
        C("gru_Y_h_only", G, linear_before_reset=1, outputs=["Y_h"], init_h=True),
        C("gru_reverse_lbr0", G, direction="reverse", init_h=True, T=5, B=3),
        C("gru_reverse_lbr1", G, direction="reverse", linear_before_reset=1, init_h=True),
        C("gru_bidirectional_lbr0", G, direction="bidirectional", I=4, H=5, init_h=True),
        C("gru_bidirectional_lbr1", G, direction="bidirectional", linear_before_reset=1,
          T=5, B=3, I=4, H=5),
        C("gru_clip", G, clip=0.6, w=1.2, x=1.5, init_h=True),
        C("gru_clip_lbr1", G, clip=0.6, w=1.2, x=1.5, linear_before_reset=1, init_h=True,
          direction="bidirectional"),
        C("gru_seq_lens_forward_lbr1", G, linear_before_reset=1, T=6, B=3, seq=[6, 2, 1],
          init_h=True),
        C("gru_seq_lens_reverse_lbr0", G, direction="reverse", T=6, B=3, seq=[1, 4, 6],
          init_h=True),
        C("gru_seq_lens_bidirectional_lbr0", G, direction="bidirectional", T=6, B=3,
          seq=[5, 1, 6], init_h=True),
        C("gru_seq_lens_bidirectional_lbr1", G, direction="bidirectional", T=6, B=3,
          seq=[3, 6, 1], linear_before_reset=1),
        C("gru_layout1", G, layout=1, T=5, B=3, init_h=True, linear_before_reset=1),
        C("gru_layout1_bidirectional_seq_lens", G, layout=1, direction="bidirectional",
          T=5, B=3, seq=[1, 5, 3], init_h=True),
        C("gru_weights_as_inputs", G, weights_as_inputs=True, init_h=True, seq=[2, 4],
          direction="reverse"),
        C("gru_activations_hardsigmoid_softplus", G, linear_before_reset=1, w=1.0, x=2.5,
          T=5, B=3, acts=["HardSigmoid", "Softplus"]),
        C("gru_activations_bidirectional_explicit", G, direction="bidirectional", w=1.3,
          x=2.0, acts=["Affine", "ScaledTanh", "HardSigmoid", "ThresholdedRelu"],
          alpha=[0.4, 1.2, 0.25, 0.3], beta=[0.5, 0.8, 0.55]),
        C("gru_activations_leakyrelu_softsign_elu", G, direction="bidirectional", w=1.0,
          x=2.0, linear_before_reset=1, acts=["Sigmoid", "LeakyRelu", "Softsign", "Elu"],
          alpha=[0.1]),
        C("gru_activations_relu_tanh", G, init_h=True, acts=["Relu", "Tanh"], w=0.5),
        # ---- RNN --------------------------------------------------------------------
        C("rnn_tanh_no_bias", R, bias=False),
        C("rnn_relu", R, acts=["Relu"], w=0.5, T=5, B=3),
        C("rnn_reverse", R, direction="reverse", init_h=True, T=5, B=3),
        C("rnn_bidirectional", R, direction="bidirectional", acts=["Tanh", "Relu"],
          w=0.5, I=4, H=5),
        C("rnn_bidir_seq_lens", R, direction="bidirectional", T=6, B=3, seq=[6, 1, 3],
          init_h=True),
        C("rnn_seq_lens_reverse", R, direction="reverse", T=6, B=3, seq=[2, 1, 6]),
        C("rnn_clip", R, clip=0.5, w=1.2, x=1.5, direction="bidirectional", init_h=True),
        C("rnn_layout1", R, layout=1, direction="bidirectional", T=5, B=3, seq=[5, 1, 2],
          init_h=True),
        C("rnn_Y_only", R, outputs=["Y"], init_h=True),
        C("rnn_Y_h_only", R, outputs=["Y_h"], direction="bidirectional", seq=[3, 4]),
        C("rnn_weights_as_inputs", R, weights_as_inputs=True, init_h=True, seq=[4, 1]),
        C("rnn_activations_leakyrelu_elu", R, direction="bidirectional", w=0.6, x=1.5,
          acts=["LeakyRelu", "Elu"], alpha=[0.15, 0.6]),
        C("rnn_activations_leakyrelu_elu_defaults", R, direction="bidirectional", w=0.6,
          x=1.5, acts=["LeakyRelu", "Elu"]),
        C("rnn_activations_thresholdedrelu_softsign", R, direction="bidirectional",
          w=0.7, x=1.5, acts=["ThresholdedRelu", "Softsign"], alpha=[0.3]),
        C("rnn_activations_hardsigmoid_sigmoid", R, direction="bidirectional", w=1.0,
          x=3.0, acts=["HardSigmoid", "Sigmoid"]),
        C("rnn_activations_hardsigmoid_explicit_softplus", R, direction="bidirectional",
          w=0.6, x=2.0, acts=["HardSigmoid", "Softplus"], alpha=[0.4], beta=[0.45]),
        C("rnn_activations_affine_scaledtanh", R, direction="bidirectional", w=0.6,
          x=1.5, acts=["Affine", "ScaledTanh"], alpha=[0.7, 1.3], beta=[-0.2, 0.9]),
    ]
    return cases


DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


def build_case(c):
    rng = np.random.default_rng(zlib.crc32(c["name"].encode()))
    op, T, Bn, I, H = c["op"], c["T"], c["B"], c["I"], c["H"]
    D = 2 if c["direction"] == "bidirectional" else 1
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    n_f = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    u = lambda shape, s: rng.uniform(-s, s, size=shape).astype(np.float32)  # noqa: E731
    X = u((T, Bn, I), c["x"])
    W = u((D, G * H, I), c["w"])
    R = u((D, G * H, H), c["w"])
    Bias = u((D, 2 * G * H), c["w"] / 2) if c["bias"] else None
    seq = np.array(c["seq"], dtype=np.int32) if c["seq"] is not None else None
    h0 = u((D, Bn, H), c["x"] / 2) if c["init_h"] else None
    c0 = u((D, Bn, H), c["x"] / 2) if c["init_c"] else None
    P = u((D, 3 * H), c["w"] / 2) if c["P"] else None
    acts = c.get("acts")
    if acts is not None and c["direction"] == "bidirectional":
        assert len(acts) == 2 * n_f, c["name"]
    elif acts is not None:
        assert len(acts) == n_f, c["name"]
    eff = acts if acts is not None else DEFAULT_ACTS[op] * D
    c["resolved"] = resolve_activations(eff, c.get("alpha"), c.get("beta"))

    # node inputs / graph inputs / initializers
    layout = c["layout"]

    def tr(a):  # layout 1 puts batch first in X and the states
        return np.ascontiguousarray(np.swapaxes(a, 0, 1)) if layout == 1 else a

    names = LSTM_INPUTS if op == "LSTM" else GRU_INPUTS
    values = {"X": tr(X), "W": W, "R": R, "B": Bias, "sequence_lens": seq,
              "initial_h": tr(h0) if h0 is not None else None,
              "initial_c": tr(c0) if c0 is not None else None, "P": P}
    runtime = {"X", "sequence_lens", "initial_h", "initial_c"}
    if c["weights_as_inputs"]:
        runtime |= {"W", "R", "B", "P"}
    node_inputs = [n if values[n] is not None else "" for n in names]
    while node_inputs and node_inputs[-1] == "":
        node_inputs.pop()
    g_inputs, inits, feed = [], [], []
    for n in node_inputs:
        if not n:
            continue
        a = values[n]
        if n in runtime:
            dt = TensorProto.INT32 if a.dtype == np.int32 else TensorProto.FLOAT
            g_inputs.append(helper.make_tensor_value_info(n, dt, list(a.shape)))
            feed.append(a)
        else:
            inits.append(numpy_helper.from_array(a, n))
    outs = c["outputs"] or OUT_NAMES[op]
    node_outputs = [n if n in outs else "" for n in OUT_NAMES[op]]
    while node_outputs and node_outputs[-1] == "":
        node_outputs.pop()
    attrs = {"hidden_size": H}
    if c["direction"] != "forward":
        attrs["direction"] = c["direction"]
    if layout:
        attrs["layout"] = 1
    if acts is not None:
        attrs["activations"] = acts
    if c.get("alpha"):
        attrs["activation_alpha"] = c["alpha"]
    if c.get("beta"):
        attrs["activation_beta"] = c["beta"]
    if c.get("clip") is not None:
        attrs["clip"] = c["clip"]
    if "input_forget" in c:
        attrs["input_forget"] = c["input_forget"]
    if "linear_before_reset" in c:
        attrs["linear_before_reset"] = c["linear_before_reset"]
    node = helper.make_node(op, node_inputs, node_outputs, name=c["name"], **attrs)

    # expected shapes of the outputs
    if layout == 0:
        shapes = {"Y": [T, D, Bn, H], "Y_h": [D, Bn, H], "Y_c": [D, Bn, H]}
    else:
        shapes = {"Y": [Bn, T, D, H], "Y_h": [Bn, D, H], "Y_c": [Bn, D, H]}
    g_outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n])
                 for n in node_outputs if n]
    graph = helper.make_graph([node], c["name"], g_inputs, g_outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="recur scripts/gen_onnx_fixtures.py")
    model.ir_version = 10

    rec = Recorder()
    f64 = lambda a: None if a is None else a.astype(np.float64)  # noqa: E731
    Y, Yh, Yc = ref_run(c, f64(X), f64(W), f64(R), f64(Bias), seq, f64(h0), f64(c0),
                        f64(P), rec)
    if layout == 1:
        Y = np.transpose(Y, (2, 0, 1, 3))
        Yh = np.swapaxes(Yh, 0, 1)
        Yc = np.swapaxes(Yc, 0, 1)
    ref = {"Y": Y, "Y_h": Yh, "Y_c": Yc}
    ref_outs = [ref[n] for n in node_outputs if n]
    return model, feed, ref_outs, rec


def coverage_problems(c, rec):
    """Each kinked activation must see inputs on every side of its kinks, away from jumps."""
    probs = []
    clip = c.get("clip")
    for (name, al, be), xs in rec.seen.items():
        x = np.concatenate(xs)
        if clip is not None:
            continue  # clipped cases test the clip, not the kinks
        if name in ("Relu", "LeakyRelu", "Elu"):
            if not ((x < -0.05).any() and (x > 0.05).any()):
                probs.append(f"{name}: inputs only on one side of 0")
        if name == "ThresholdedRelu":
            if not ((x < al - 0.05).any() and (x > al + 0.05).any()):
                probs.append(f"{name}: inputs only on one side of alpha")
            if np.abs(x - al).min() < 1e-3:
                probs.append(f"{name}: an input within 1e-3 of the jump at alpha")
        if name == "HardSigmoid":
            y = al * x + be
            if not ((y < -0.02).any() and (y > 1.02).any() and ((y > 0.02) & (y < 0.98)).any()):
                probs.append(f"{name}: not all three pieces hit "
                             f"(alpha*x+beta in [{y.min():.2f}, {y.max():.2f}])")
    if clip is not None:
        allx = np.concatenate([np.concatenate(v) for v in rec.seen.values()])
        if not (np.isclose(np.abs(allx), clip).sum() >= 2 and (np.abs(allx) < clip * 0.9).any()):
            probs.append("clip: not both clamped and unclamped pre-activations")
    return probs


def run_layout1_via_layout0(model, feed):
    """ONNX Runtime's CPU kernels refuse layout=1 ("Batchwise recurrent operations (layout
    == 1) are not supported"), so a layout-1 case is run as the same node with layout 0 on
    inputs transposed to [T, B, ...] / [D, B, H], and the outputs are transposed back."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = m.graph.node[0]
    for a in node.attribute:
        if a.name == "layout":
            a.i = 0
    swap = {node.input[0]} | {n for k, n in enumerate(node.input) if k in (5, 6) and n}
    feed0 = []
    for gi, a in zip(m.graph.input, feed):
        if gi.name in swap:
            a = np.ascontiguousarray(np.swapaxes(a, 0, 1))
            dims = gi.type.tensor_type.shape.dim
            d0, d1 = dims[0].dim_value, dims[1].dim_value
            dims[0].dim_value, dims[1].dim_value = d1, d0
        feed0.append(a)
    for go in m.graph.output:
        go.type.tensor_type.ClearField("shape")
    got = run_ort(m, feed0)
    out = []
    for k, (name, g) in enumerate(zip([o.name for o in m.graph.output], got)):
        if name == node.output[0]:
            out.append(np.ascontiguousarray(np.transpose(g, (2, 0, 1, 3))))
        else:
            out.append(np.ascontiguousarray(np.swapaxes(g, 0, 1)))
    return out


def read_case(folder):
    model = onnx.load(os.path.join(folder, "model.onnx"))
    data = os.path.join(folder, "test_data_set_0")

    def load(prefix):
        out = []
        k = 0
        while os.path.exists(os.path.join(data, f"{prefix}_{k}.pb")):
            t = TensorProto()
            with open(os.path.join(data, f"{prefix}_{k}.pb"), "rb") as f:
                t.ParseFromString(f.read())
            out.append(t)
            k += 1
        return out

    return model, load("input"), load("output")


def verify_folder(folder):
    """Re-read a written case the way a backend-test runner does and re-run it in ORT."""
    model, ins, outs = read_case(folder)
    onnx.checker.check_model(model, full_check=True)
    in_names = graph_input_names(model)
    out_names = [o.name for o in model.graph.output]
    what = os.path.relpath(folder, OUT)
    if [t.name for t in ins] != in_names or [t.name for t in outs] != out_names:
        FAILED.append(f"MISMATCH {what}: tensor names do not follow the graph's inputs/outputs")
        return
    feed = [numpy_helper.to_array(t) for t in ins]
    layout1 = any(
        a.name == "layout" and a.i == 1 for n in model.graph.node for a in n.attribute
    )
    got = run_layout1_via_layout0(model, feed) if layout1 else run_ort(model, feed)
    for k, (g, t) in enumerate(zip(got, outs)):
        check_close(f"{what} output {k} (re-read, ORT)", g, numpy_helper.to_array(t))


def make_generated():
    base = os.path.join(OUT, "generated")
    if os.path.exists(base):
        shutil.rmtree(base)
    notes = []
    cov = collections.defaultdict(set)
    worst_all = 0.0
    worst_ratio = 0.0
    refused = 0
    for c in gen_cases():
        model, feed, ref_outs, rec = build_case(c)
        try:
            if c["layout"] == 1:
                got = run_layout1_via_layout0(model, feed)
            else:
                got = run_ort(model, feed)
        except Exception as e:  # noqa: BLE001 - recorded in the README
            notes.append(f"`{c['name']}`: ONNX Runtime refused it ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]}); skipped")
            refused += 1
            continue
        for k, (g, r) in enumerate(zip(got, ref_outs)):
            # half the backend-test tolerance, so an implementation as accurate as
            # ORT's float32 one is sure to pass against these expected values
            check_close(f"{c['name']} output {k} (ORT vs numpy reference)", g, r,
                        rtol=RTOL / 2, atol=ATOL / 2)
            worst_all = max(worst_all, float(np.abs(g - r).max()))
            ratio = np.abs(g - r) / (ATOL + RTOL * np.abs(r))
            worst_ratio = max(worst_ratio, float(ratio.max()))
        for p in coverage_problems(c, rec):
            FAILED.append(f"MISMATCH coverage {c['name']}: {p}")
        for (name, al, be, ea, eb) in c["resolved"]:
            takes = TAKES[name] != (False, False)
            tag = "explicit" if (ea or eb) else ("defaults" if takes else "")
            cov[name].add(f"`{c['name']}`" + (f" ({tag})" if tag else ""))
        write_case(os.path.join(base, c["name"]), model, feed, got)
    notes.append(f"{len(gen_cases()) - refused} cases written; ONNX Runtime refused "
                 f"{refused} of them as built (the layout-1 cases are run through the "
                 "layout-0 route described below).")
    notes.append(f"ONNX Runtime (float32) vs the float64 numpy reference: worst abs error "
                 f"{worst_all:.2e} over all outputs of all generated cases; worst "
                 f"|error| / (atol + rtol·|expected|) with the backend-test tolerances "
                 f"{worst_ratio:.3f} (the script requires ≤ 0.5, so an implementation as "
                 f"accurate as ORT's passes against these expected values).")
    for a in ALL_ACTS:
        if a not in cov:
            FAILED.append(f"MISMATCH coverage: activation {a} appears in no generated case")
    notes.append("Activation coverage, the cases that use each function (`explicit` = given "
                 "activation_alpha/beta, `defaults` = takes parameters but relies on the "
                 "defaults):\n"
                 + "\n".join(f"  - {a}: " + ", ".join(sorted(cov[a])[:5])
                              + (f" (+{len(cov[a]) - 5} more)" if len(cov[a]) > 5 else "")
                              for a in ALL_ACTS))
    return notes


# ---------------------------------------------------------------------------------------
# Census and README
# ---------------------------------------------------------------------------------------


def attr_value(a):
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [
            x.decode() if isinstance(x, bytes) else (round(x, 6) if isinstance(x, float) else x)
            for x in v
        ]
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
    attrs = collections.defaultdict(set)
    for n in m.graph.node:
        if n.op_type in RECURRENT:
            for a in n.attribute:
                attrs[f"{n.op_type}.{a.name}"].add(str(attr_value(a)))
    return lines, ops, attrs


def write_readme(gen_notes):
    total = collections.Counter()
    all_attrs = collections.defaultdict(set)
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
            ls, ops, attrs = census_lines(p)
            total.update(ops)
            for k, vals in attrs.items():
                all_attrs[k] |= vals
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
    text += ORT_NOTES
    text += CENSUS_HEAD
    text += "All models together use: " + ", ".join(
        f"{op}×{c}" for op, c in sorted(total.items())
    ) + ".\n\nRecurrent-node attributes set anywhere, with the values seen:\n\n"
    for k in sorted(all_attrs):
        vals = sorted(all_attrs[k])
        shown = ", ".join(vals[:8]) + (f", … ({len(vals)} values)" if len(vals) > 8 else "")
        text += f"- `{k}`: {shown}\n"
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
  operators (see the census below); case names say what each exercises. Expected outputs
  are ONNX Runtime's, and every output is also checked against a float64 numpy
  implementation in the script, to within half the backend-test tolerances. The script
  also checks that each kinked activation sees inputs on every side of its kinks (Relu,
  LeakyRelu, Elu: both signs; ThresholdedRelu: both sides of α and none within 1e-3 of the
  jump; HardSigmoid: all three pieces) and that clipped cases clamp some pre-activations
  and leave others alone.
- `pytorch/` — `torch.onnx.export` of PyTorch models by the legacy TorchScript exporter
  (`*_legacy`, `dynamo=False`) and the default dynamo exporter (`*_dynamo`), opset 22.
  Expected outputs are PyTorch's (eval mode, float32); ONNX Runtime must agree within the
  backend-test tolerances. Models: 2-layer bidirectional `nn.LSTM`, `nn.GRU` and `nn.RNN`
  (tanh) (I=4, H=5, T=5, B=3); a 1-layer `batch_first` `nn.LSTM(3, 5)` fed explicit
  `(h0, c0)`; a char model `Embedding(20, 8) → 2-layer LSTM(8, 16) → Linear(16, 20)` on every
  step (int64 tokens [T=6, B=2] → logits [6, 2, 20]). The 2-layer LSTM and the char model
  are also exported with symbolic time and batch axes (`*_legacy_dynamic`: `dynamic_axes`;
  `*_dynamo_dynamic`: `dynamic_shapes`; the dynamo exporter keeps the batch axis symbolic
  but specialises the time axis to the example's length). Doc strings and metadata_props
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

ORT_NOTES = """
## What ONNX Runtime refuses or leaves to interpretation

- **`layout=1` is refused** by ORT's CPU kernels for all three operators (`Batchwise
  recurrent operations (layout == 1) are not supported`). The layout-1 cases
  (`generated/*layout1*`, and the vendored `backend/test_*_batchwise`) are therefore run by
  the script as the same node with `layout=0` on inputs transposed to `[T, B, ...]` (and
  `initial_h`/`initial_c` to `[D, B, H]`), outputs transposed back to `[B, T, D, H]` /
  `[B, D, H]`; the generated ones are also checked against the numpy reference, which
  implements layout 1 directly.
- **A sequence length of 0** is accepted by ORT but gives `Y_h = Y_c = 0` for that batch
  entry, not `initial_h`/`initial_c`; ONNX does not define this, so no fixture has a
  zero length (length 1 is covered: `*_seq_lens_*`, `rnn_layout1`, ...).
- **Activation parameters.** ORT consumes `activation_alpha` / `activation_beta` in order,
  one value per activation that takes that parameter (Affine α β, LeakyRelu α,
  ThresholdedRelu α, ScaledTanh α β, HardSigmoid α β, Elu α); activations without parameters
  consume nothing. When a list runs out, ORT's defaults are LeakyRelu 0.01, HardSigmoid
  0.2 / 0.5, Elu 1.0, and **0 for Affine, ScaledTanh and ThresholdedRelu** (so a defaulted
  ThresholdedRelu uses threshold 0 in ORT, not the ThresholdedRelu operator's 1.0, and a
  defaulted Affine or ScaledTanh outputs 0). The ONNX text says "default values are the
  same as of corresponding ONNX operators": ORT's ThresholdedRelu default contradicts it,
  and Affine and ScaledTanh are no longer ONNX operators, so the fixtures give these three
  explicit values only; `lstm_activations_alpha_order` pins the
  consumption order (Elu, HardSigmoid get explicit values, the LeakyRelu after them falls
  back to 0.01).
- Facts the numpy reference confirms (it agrees with ORT on every generated case):
  `clip` clamps each gate's full pre-activation (input and recurrent products, both biases,
  and for LSTM the peephole term) to [−clip, clip] before the activation, for every gate
  including the LSTM cell candidate and the GRU candidate; neither the LSTM cell state nor
  the input of its `h(c)` is clipped (`lstm_clip_large_cell`: |c| reaches 0.84 with
  clip 0.5). LSTM `input_forget=1` gives f = 1 − i and ignores the forget peephole. The LSTM
  output gate's peephole uses the new cell state. Reverse directions with `sequence_lens`
  run each sequence from its own last valid step, write `Y` in the original time order,
  zero `Y` past each length, and `Y_h`/`Y_c` hold the state after the last step processed.
"""

CENSUS_HEAD = """
## Census

For each model: opset, runtime inputs (dtype[shape]), number of initializers, and node op
types with counts; then for each recurrent node the attributes it sets (absent = ONNX
default), which inputs it is given (init = initializer, const = Constant node output,
dyn = computed or a graph input) and which outputs it produces (omitted = empty name).

"""


def make_external():
    """An nn.LSTM exported by the dynamo exporter with external_data=True: model.onnx and
    model.onnx.data, with the expected outputs of PyTorch (ORT must agree)."""
    import contextlib
    import io
    import tempfile

    base = os.path.join(OUT, "external")
    if os.path.exists(base):
        shutil.rmtree(base)
    torch.manual_seed(20261207)
    m = torch.nn.LSTM(4, 16)
    m.eval()
    x = torch.randn(5, 2, 4)
    with torch.no_grad():
        y, (h, c) = m(x)
    want = [t.detach().numpy().astype(np.float32) for t in (y, h, c)]
    case = os.path.join(base, "lstm_dynamo_external")
    data = os.path.join(case, "test_data_set_0")
    os.makedirs(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (x,), path, dynamo=True, external_data=True,
                              opset_version=OPSET, input_names=["x"],
                              output_names=["y", "h_n", "c_n"])
        model = onnx.load(path, load_external_data=False)
        shutil.copy(os.path.join(tmp, "model.onnx.data"), os.path.join(case, "model.onnx.data"))
    strip_metadata(model)
    external = [t.name for t in model.graph.initializer
                if t.data_location == TensorProto.EXTERNAL]
    assert len(external) >= 3, external
    model_path = os.path.join(case, "model.onnx")
    with open(model_path, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    onnx.checker.check_model(model_path, full_check=True)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})
    for k, (g, w) in enumerate(zip(got, want)):
        check_close(f"external output {k} (ORT vs PyTorch)", g, w)
    for i, (n, a) in enumerate([("x", x.numpy())]):
        with open(os.path.join(data, f"input_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(a, n).SerializeToString(deterministic=True))
    for j, (n, a) in enumerate(zip(["y", "h_n", "c_n"], want)):
        with open(os.path.join(data, f"output_{j}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(a, n).SerializeToString(deterministic=True))
    PT_NOTES.append(f"external/lstm_dynamo_external: initializers {', '.join(external)} in "
                    "model.onnx.data")


def main():
    os.makedirs(OUT, exist_ok=True)
    make_pytorch()
    make_external()
    gen_notes = make_generated()
    n = 0
    for sub in ("backend", "generated", "pytorch"):
        d = os.path.join(OUT, sub)
        for case in sorted(os.listdir(d)):
            if os.path.isfile(os.path.join(d, case, "model.onnx")):
                verify_folder(os.path.join(d, case))
                n += 1
    gen_notes.append(f"Every case folder ({n}, backend/ included) is re-read from disk in the "
                     "backend-test format and re-run in ONNX Runtime by the script; all pass "
                     "with rtol 1e-3, atol 1e-7 (layout-1 models as described above).")
    write_readme(gen_notes)
    if FAILED:
        for f in FAILED:
            print(f)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
