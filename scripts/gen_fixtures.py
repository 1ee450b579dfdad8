#!/usr/bin/env python3
"""Generate recur's reference fixtures (forward values and BPTT gradients, float64).

What it makes
-------------
crates/recur/tests/fixtures/pytorch/<case>.safetensors
    Cases run through PyTorch's own nn.LSTM / nn.GRU / nn.RNN in float64 (module.double()),
    forward, then backward with autograd.
crates/recur/tests/fixtures/reference/<case>.safetensors
    Cells PyTorch lacks (peephole and coupled input-forget LSTM, reset-before GRU, leaky RNN,
    ONNX's other activations and its gate pre-activation clip),
    written below as explicit per-step torch ops in float64 (autograd gives the gradients),
    with the equations of docs/equations.md section 2. Before anything is saved:
      * the same per-step implementation, run on every pytorch/ case, must reproduce
        nn.LSTM / nn.GRU / nn.RNN forward AND every gradient (this validates the harness:
        multi-layer stacking, directions, projection, ragged lengths, batch_first);
      * each reference case that ONNX can express has its forward checked against a one-node
        ONNX model (LSTM with P / input_forget, GRU linear_before_reset=0, non-default
        `activations` with `activation_alpha/beta`, `clip`) run in onnxruntime; a case with
        clip must also change its forward when the clip is removed (the clamp bites);
      * leaky RNN cases are checked at alpha = 1 against nn.RNN (ONNX has no leaky RNN);
      * the peephole + CIFG + projection case is checked by ORT without the projection
        (ONNX has no projection); its projected forward relies on the torch reference, which
        the nn.LSTM(proj_size=...) comparison validates.
    Any disagreement raises an AssertionError, and nothing more is written.

The file format is described in crates/recur/tests/fixtures/README.md (safetensors, every
tensor float64 and row-major, configuration in the string metadata).

How to run
----------
    pip install torch onnx==1.22.0 onnxruntime safetensors numpy
    python3 scripts/gen_fixtures.py          # from the repository root; CPU only

Last run with torch 2.15.0+cu132, onnxruntime 1.32.0, onnx 1.22.0, safetensors 0.8.0,
numpy 2.4.6, Python 3.11.7. The versions in use are also written into every file's
`generator` metadata. Every case draws from its own fixed seed, so a rerun with the same
versions reproduces the files byte for byte.
"""

import json
import math
import os
import struct
import sys
import zlib
from collections import OrderedDict

import numpy as np
import onnx
import onnxruntime as ort
import safetensors
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "crates", "recur", "tests", "fixtures")

TORCH_GEN = f"torch {torch.__version__}"
ORT_GEN = f"{TORCH_GEN} + onnxruntime {ort.__version__} forward check"

# Tolerances. float64 vs float64 (two torch implementations of the same math, differing
# only in summation order; observed <= 2.2e-15): 1e-10. onnxruntime: double is tried
# first, but ORT 1.32 computes LSTM/GRU/RNN only in float32, whose rounding (~6e-8 per
# operation, a few steps deep) stays far below 1e-5 (observed <= 5e-7).
TOL_F64 = 1e-10
TOL_ORT_F32 = 1e-5

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


# --------------------------------------------------------------------------------------
# Case configuration
# --------------------------------------------------------------------------------------

def cfg(cell, input_size, hidden_size, seq_len, batch, num_layers=1, bidirectional=False,
        bias=True, batch_first=False, proj_size=0, lengths=None, peepholes="",
        coupled=False, gru_reset="after", leak=None, acts=None, clip=None,
        ort_defaults=False):
    """`acts`: the cell's activations in ONNX's order (LSTM f, g, h; GRU f, g; RNN f), each
    (ONNX name, alpha or None, beta or None); None = the defaults (sigmoid/tanh). `clip`:
    ONNX's gate pre-activation clip, None = off. `ort_defaults`: the ONNX model given to
    onnxruntime leaves activation_alpha/beta out, so the check also confirms that the values
    written here are ORT's defaults."""
    return dict(cell=cell, input_size=input_size, hidden_size=hidden_size, seq_len=seq_len,
                batch=batch, num_layers=num_layers, bidirectional=bidirectional, bias=bias,
                batch_first=batch_first, proj_size=proj_size, lengths=lengths,
                peepholes=peepholes, coupled=coupled, gru_reset=gru_reset, leak=leak,
                acts=acts, clip=clip, ort_defaults=ort_defaults)


PYTORCH_CASES = OrderedDict([
    ("lstm_basic", cfg("lstm", 3, 4, 5, 2)),
    ("lstm_nobias", cfg("lstm", 3, 4, 5, 2, bias=False)),
    ("lstm_proj", cfg("lstm", 4, 5, 5, 3, proj_size=3)),
    ("lstm_2layer_bidir", cfg("lstm", 3, 4, 5, 2, num_layers=2, bidirectional=True)),
    ("lstm_2layer_bidir_proj",
     cfg("lstm", 3, 5, 4, 2, num_layers=2, bidirectional=True, proj_size=3)),
    ("lstm_batch_first", cfg("lstm", 2, 3, 6, 3, batch_first=True)),
    ("lstm_packed", cfg("lstm", 3, 4, 6, 4, num_layers=2, bidirectional=True,
                        lengths=[6, 2, 5, 1])),
    ("lstm_packed_proj", cfg("lstm", 3, 5, 5, 3, proj_size=2, lengths=[3, 5, 2])),
    ("gru_basic", cfg("gru", 3, 4, 5, 2)),
    ("gru_2layer_bidir", cfg("gru", 4, 3, 5, 2, num_layers=2, bidirectional=True)),
    # seq_len 7 > max length 6: output rows past every sequence's end are all zero.
    ("gru_packed", cfg("gru", 3, 4, 7, 4, bidirectional=True, lengths=[4, 6, 1, 3])),
    ("rnn_tanh", cfg("rnn_tanh", 3, 4, 5, 2, num_layers=2, bidirectional=True)),
    ("rnn_relu", cfg("rnn_relu", 3, 5, 6, 3)),
    ("rnn_packed", cfg("rnn_tanh", 2, 4, 6, 3, bidirectional=True, lengths=[2, 6, 4])),
])

# `check`: how the forward is independently confirmed (see run_reference_checks).
REFERENCE_CASES = OrderedDict([
    ("lstm_peephole_ifo", (cfg("lstm", 3, 4, 5, 2, peepholes="ifo"), "ort")),
    ("lstm_peephole_if", (cfg("lstm", 3, 4, 5, 2, peepholes="if"), "ort")),
    ("lstm_peephole_o", (cfg("lstm", 3, 4, 5, 2, peepholes="o"), "ort")),
    ("lstm_peephole_bidir",
     (cfg("lstm", 3, 4, 5, 2, bidirectional=True, peepholes="ifo"), "ort")),
    ("lstm_cifg", (cfg("lstm", 3, 4, 5, 3, coupled=True), "ort")),
    ("lstm_peephole_cifg_proj",
     (cfg("lstm", 3, 5, 5, 2, proj_size=3, peepholes="io", coupled=True), "ort_noproj")),
    ("gru_reset_before", (cfg("gru", 3, 4, 5, 2, gru_reset="before"), "ort")),
    ("gru_reset_before_bidir",
     (cfg("gru", 3, 4, 6, 3, bidirectional=True, gru_reset="before"), "ort")),
    ("rnn_leaky", (cfg("rnn_tanh", 3, 4, 6, 2, num_layers=2, leak=0.3), "alpha1")),
    ("rnn_leaky_relu",
     (cfg("rnn_relu", 2, 4, 5, 3, bidirectional=True, leak=0.5), "alpha1")),
    # ONNX activations and clip (ONNX's gate pre-activation clip, as ORT applies it)
    ("lstm_onnx_acts_clip_peephole",
     (cfg("lstm", 3, 4, 6, 3, peepholes="ifo", clip=0.9,
          acts=[("HardSigmoid", 0.3, 0.45), ("Softsign", None, None), ("Elu", 0.7, None)]),
      "ort")),
    ("lstm_onnx_acts_clip_ragged",
     (cfg("lstm", 3, 4, 6, 3, peepholes="io", coupled=True, clip=1.1, lengths=[4, 6, 2],
          acts=[("ScaledTanh", 1.1, 0.9), ("LeakyRelu", 0.2, None), ("Softplus", None, None)]),
      "ort")),
    ("gru_reset_after_onnx_acts_clip",
     (cfg("gru", 3, 4, 6, 3, gru_reset="after", clip=0.8,
          acts=[("Softplus", None, None), ("Affine", 0.8, -0.1)]), "ort")),
    ("gru_reset_before_onnx_acts_clip",
     (cfg("gru", 3, 4, 6, 3, gru_reset="before", clip=0.8,
          acts=[("HardSigmoid", 0.2, 0.5), ("LeakyRelu", 0.01, None)], ort_defaults=True),
      "ort")),
    ("gru_reset_before_onnx_acts_clip_bidir",
     (cfg("gru", 3, 4, 5, 2, gru_reset="before", bidirectional=True, clip=1.2,
          acts=[("ThresholdedRelu", 0.1, None), ("Elu", 1.3, None)]), "ort")),
    ("rnn_scaled_tanh_clip",
     (cfg("rnn_tanh", 3, 4, 6, 2, clip=0.7, acts=[("ScaledTanh", 1.4, 0.6)]), "ort")),
    ("rnn_softsign_bidir",
     (cfg("rnn_tanh", 3, 4, 5, 3, bidirectional=True, lengths=[5, 2, 4],
          acts=[("Softsign", None, None)]), "ort")),
])


def seed_of(name):
    """A fixed per-case seed, stable across Python runs (unlike hash())."""
    return zlib.crc32(name.encode())


def dirs(c):
    return 2 if c["bidirectional"] else 1


def h_out(c):
    return c["proj_size"] or c["hidden_size"]


def param_names_shapes(c):
    """PyTorch state_dict names and shapes, in PyTorch's order, plus our peephole names."""
    G, H, P = GATES[c["cell"]], c["hidden_size"], c["proj_size"]
    D, Ho = dirs(c), h_out(c)
    out = []
    for k in range(c["num_layers"]):
        in_k = c["input_size"] if k == 0 else D * Ho
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d == 1 else "")
            out.append(("weight_ih" + s, (G * H, in_k)))
            out.append(("weight_hh" + s, (G * H, Ho)))
            if c["bias"]:
                out.append(("bias_ih" + s, (G * H,)))
                out.append(("bias_hh" + s, (G * H,)))
            if P:
                out.append(("weight_hr" + s, (P, H)))
            for gate in c["peepholes"]:
                out.append((f"peephole_{gate}" + s, (H,)))
    return out


def draw_case(c, gen):
    """Parameters ~ U(-1/sqrt(H), 1/sqrt(H)) (PyTorch's default init, drawn directly in
    float64), peepholes ~ U(-1, 1) (larger, so that a peephole read from the wrong cell
    state shows), inputs and initial states ~ N(0, 1)."""
    H, T, B = c["hidden_size"], c["seq_len"], c["batch"]
    k = 1.0 / math.sqrt(H)
    params = OrderedDict()
    for name, shape in param_names_shapes(c):
        bound = 1.0 if name.startswith("peephole_") else k
        params[name] = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
    x_shape = (B, T, c["input_size"]) if c["batch_first"] else (T, B, c["input_size"])
    x = torch.randn(x_shape, generator=gen, dtype=torch.float64)
    LD = c["num_layers"] * dirs(c)
    h0 = torch.randn((LD, B, h_out(c)), generator=gen, dtype=torch.float64)
    c0 = torch.randn((LD, B, H), generator=gen, dtype=torch.float64) \
        if c["cell"] == "lstm" else None
    return params, x, h0, c0


def draw_upstream(c, out_shape, gen):
    """Upstream gradients ~ N(0, 1); grad_output is zero at padded positions."""
    LD, B = c["num_layers"] * dirs(c), c["batch"]
    g_out = torch.randn(out_shape, generator=gen, dtype=torch.float64)
    if c["lengths"] is not None:
        mask = valid_mask(c).to(torch.float64).unsqueeze(2)  # [T, B, 1]
        if c["batch_first"]:
            mask = mask.transpose(0, 1)
        g_out = g_out * mask
    g_hn = torch.randn((LD, B, h_out(c)), generator=gen, dtype=torch.float64)
    g_cn = torch.randn((LD, B, c["hidden_size"]), generator=gen, dtype=torch.float64) \
        if c["cell"] == "lstm" else None
    return g_out, g_hn, g_cn


def valid_mask(c):
    """[T, B] bool: step t of sequence b is inside its length."""
    T, B = c["seq_len"], c["batch"]
    lengths = c["lengths"] or [T] * B
    return torch.tensor([[t < n for n in lengths] for t in range(T)])


# --------------------------------------------------------------------------------------
# The explicit reference: one step per cell, one driver for layers/directions/lengths
# --------------------------------------------------------------------------------------

def activation(name, alpha, beta):
    """ONNX's activation `name` as explicit torch ops (the definitions of ONNX Runtime's
    rnn_activation_functors.h; Softplus in its overflow-free form)."""
    a, b = alpha, beta
    return {
        "Sigmoid": torch.sigmoid,
        "Tanh": torch.tanh,
        "Relu": torch.relu,
        "Affine": lambda x: a * x + b,
        "LeakyRelu": lambda x: torch.where(x >= 0, x, a * x),
        "ThresholdedRelu": lambda x: torch.where(x > a, x, torch.zeros_like(x)),
        "ScaledTanh": lambda x: a * torch.tanh(b * x),
        "HardSigmoid": lambda x: torch.clamp(a * x + b, 0.0, 1.0),
        "Elu": lambda x: torch.where(x >= 0, x, a * torch.expm1(torch.clamp(x, max=0.0))),
        "Softsign": lambda x: x / (1 + torch.abs(x)),
        "Softplus": lambda x: torch.clamp(x, min=0.0) + torch.log1p(torch.exp(-torch.abs(x))),
    }[name]


DEFAULT_ACTS = {"lstm": [("Sigmoid", None, None), ("Tanh", None, None), ("Tanh", None, None)],
                "gru": [("Sigmoid", None, None), ("Tanh", None, None)],
                "rnn_tanh": [("Tanh", None, None)], "rnn_relu": [("Relu", None, None)]}


def acts_of(c):
    return c["acts"] or DEFAULT_ACTS[c["cell"]]


def cell_fns(c):
    """The cell's activation functions (ONNX order) and its clip: x -> clamp(x) or x."""
    fns = [activation(*a) for a in acts_of(c)]
    clip = c["clip"]
    clamp = (lambda x: torch.clamp(x, -clip, clip)) if clip is not None else (lambda x: x)
    return fns, clamp


def lstm_step(c, p, s, x, h, cs):
    """docs/equations.md §2: gates stacked i, f, g, o; peepholes p_i, p_f read c_prev, p_o
    reads the new c; coupled input-forget f = 1 - i; projection h = W_hr (o * tanh(c)).
    Activations (ONNX f, g, h) in place of sigmoid, tanh, tanh; clip clamps each gate's
    pre-activation (biases and peephole term included) before its activation, as ORT does; c
    is not clipped."""
    (fa, ga, ha), clamp = cell_fns(c)
    gates = F.linear(x, p["weight_ih" + s], p.get("bias_ih" + s)) \
        + F.linear(h, p["weight_hh" + s], p.get("bias_hh" + s))
    a_i, a_f, a_g, a_o = gates.chunk(4, dim=1)
    if "i" in c["peepholes"]:
        a_i = a_i + p["peephole_i" + s] * cs
    i = fa(clamp(a_i))
    if c["coupled"]:
        f = 1 - i
    else:
        if "f" in c["peepholes"]:
            a_f = a_f + p["peephole_f" + s] * cs
        f = fa(clamp(a_f))
    g = ga(clamp(a_g))
    c_new = f * cs + i * g
    if "o" in c["peepholes"]:
        a_o = a_o + p["peephole_o" + s] * c_new
    o = fa(clamp(a_o))
    h_new = o * ha(c_new)
    if c["proj_size"]:
        h_new = F.linear(h_new, p["weight_hr" + s])
    return h_new, c_new


def gru_step(c, p, s, x, h):
    """docs/equations.md §2: gates stacked r, z, n; reset after (PyTorch) or before (Cho).
    Activations (ONNX f, g) in place of sigmoid, tanh; clip clamps the pre-activations of r,
    z and the whole one of n (after r is applied, both n biases included), as ORT does."""
    (fa, ga), clamp = cell_fns(c)
    H = c["hidden_size"]
    gi = F.linear(x, p["weight_ih" + s], p.get("bias_ih" + s))
    w_hh, b_hh = p["weight_hh" + s], p.get("bias_hh" + s)
    gh = F.linear(h, w_hh, b_hh)
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = fa(clamp(i_r + h_r))
    z = fa(clamp(i_z + h_z))
    if c["gru_reset"] == "after":
        n = ga(clamp(i_n + r * h_n))
    else:
        n = ga(clamp(i_n + F.linear(r * h, w_hh[2 * H:],
                                    None if b_hh is None else b_hh[2 * H:])))
    return (1 - z) * n + z * h


def rnn_step(c, p, s, x, h, alpha):
    """h = (1 - alpha) h_prev + alpha act(clip(W_ih x + b_ih + W_hh h_prev + b_hh))."""
    (fa,), clamp = cell_fns(c)
    a = F.linear(x, p["weight_ih" + s], p.get("bias_ih" + s)) \
        + F.linear(h, p["weight_hh" + s], p.get("bias_hh" + s))
    a = fa(clamp(a))
    return (1 - alpha) * h + alpha * a  # alpha = 1 gives exactly act(...)


def reference_forward(c, p, x, h0, c0, alpha=None):
    """Runs the whole stack. x in the caller's layout; returns output (caller's layout,
    zero past each sequence's end), h_n, c_n (PyTorch layout: index = layer*D + dir).
    Ragged sequences: the forward direction stops at each length; the reverse direction
    starts at each sequence's own last step (steps past the length leave the state alone)."""
    if alpha is None:
        alpha = 1.0 if c["leak"] is None else c["leak"]
    if c["batch_first"]:
        x = x.transpose(0, 1)
    T = x.shape[0]
    D = dirs(c)
    mask = valid_mask(c).unsqueeze(2)  # [T, B, 1]
    layer_in = x
    h_n, c_n = [], []
    for k in range(c["num_layers"]):
        outs = []
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d == 1 else "")
            idx = k * D + d
            h = h0[idx]
            cs = c0[idx] if c["cell"] == "lstm" else None
            ys = [None] * T
            for t in (range(T) if d == 0 else reversed(range(T))):
                if c["cell"] == "lstm":
                    h_new, c_new = lstm_step(c, p, s, layer_in[t], h, cs)
                    cs = torch.where(mask[t], c_new, cs)
                elif c["cell"] == "gru":
                    h_new = gru_step(c, p, s, layer_in[t], h)
                else:
                    h_new = rnn_step(c, p, s, layer_in[t], h, alpha)
                h = torch.where(mask[t], h_new, h)
                ys[t] = torch.where(mask[t], h_new, torch.zeros_like(h_new))
            outs.append(torch.stack(ys))
            h_n.append(h)
            c_n.append(cs)
        layer_in = torch.cat(outs, dim=2)
    out = layer_in.transpose(0, 1) if c["batch_first"] else layer_in
    return out, torch.stack(h_n), (torch.stack(c_n) if c["cell"] == "lstm" else None)


# --------------------------------------------------------------------------------------
# PyTorch modules
# --------------------------------------------------------------------------------------

def torch_module(c):
    kw = dict(input_size=c["input_size"], hidden_size=c["hidden_size"],
              num_layers=c["num_layers"], bias=c["bias"], batch_first=c["batch_first"],
              dropout=0.0, bidirectional=c["bidirectional"])
    if c["cell"] == "lstm":
        m = nn.LSTM(proj_size=c["proj_size"], **kw)
    elif c["cell"] == "gru":
        m = nn.GRU(**kw)
    else:
        m = nn.RNN(nonlinearity=c["cell"][4:], **kw)
    return m.double()


def module_forward(c, m, x, h0, c0):
    hx = (h0, c0) if c["cell"] == "lstm" else h0
    if c["lengths"] is not None:
        packed = pack_padded_sequence(x, torch.tensor(c["lengths"]),
                                      batch_first=c["batch_first"], enforce_sorted=False)
        out, hn = m(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=c["batch_first"],
                                     total_length=c["seq_len"])
    else:
        out, hn = m(x, hx)
    if c["cell"] == "lstm":
        return out, hn[0], hn[1]
    return out, hn, None


def run_with_grads(forward, c, params, x, h0, c0, gen):
    """Forward, draw upstream gradients, backward; returns the fixture's tensors."""
    leaves = [x, h0] + ([c0] if c0 is not None else []) + list(params.values())
    for t in leaves:
        t.requires_grad_(True)
    out, h_n, c_n = forward()
    g_out, g_hn, g_cn = draw_upstream(c, out.shape, gen)
    loss = (out * g_out).sum() + (h_n * g_hn).sum()
    if c_n is not None:
        loss = loss + (c_n * g_cn).sum()
    loss.backward()

    def grad_of(t):
        return t.grad if t.grad is not None else torch.zeros_like(t)

    ts = OrderedDict()
    for name, v in params.items():
        ts[name] = v.detach()
    ts["input"], ts["h0"] = x.detach(), h0.detach()
    if c0 is not None:
        ts["c0"] = c0.detach()
    ts["output"], ts["h_n"] = out.detach(), h_n.detach()
    if c_n is not None:
        ts["c_n"] = c_n.detach()
    ts["grad_output"], ts["grad_h_n"] = g_out, g_hn
    if c_n is not None:
        ts["grad_c_n"] = g_cn
    ts["grad.input"], ts["grad.h0"] = grad_of(x), grad_of(h0)
    if c0 is not None:
        ts["grad.c0"] = grad_of(c0)
    for name, v in params.items():
        ts["grad." + name] = grad_of(v)
    return ts


def make_pytorch_case(c, seed):
    gen = torch.Generator().manual_seed(seed)
    params, x, h0, c0 = draw_case(c, gen)
    m = torch_module(c)
    mod_params = OrderedDict(m.named_parameters())
    assert list(mod_params) == list(params), (list(mod_params), list(params))
    with torch.no_grad():
        for name, v in params.items():
            mod_params[name].copy_(v)
    return run_with_grads(lambda: module_forward(c, m, x, h0, c0), c, mod_params,
                          x, h0, c0, gen)


def make_reference_case(c, seed, alpha=None):
    gen = torch.Generator().manual_seed(seed)
    params, x, h0, c0 = draw_case(c, gen)
    return run_with_grads(lambda: reference_forward(c, params, x, h0, c0, alpha), c,
                          params, x, h0, c0, gen)


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------

def max_diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def assert_close(what, a, b, tol):
    d = max_diff(a, b)
    if not d < tol:
        raise AssertionError(f"MISMATCH {what}: max abs diff {d:.3e} >= {tol:.0e}")
    return d


def compare_all(label, ts_a, ts_b, tol=TOL_F64):
    assert set(ts_a) == set(ts_b), f"{label}: tensor sets differ: " \
        f"{sorted(set(ts_a) ^ set(ts_b))}"
    worst = 0.0
    for k in ts_a:
        worst = max(worst, assert_close(f"{label} [{k}]", ts_a[k], ts_b[k], tol))
    return worst


def check_reference_matches_torch():
    """The explicit reference reproduces nn.LSTM/GRU/RNN on every pytorch/ case, forward
    and every gradient: validates the driver (layers, directions, lengths, projection,
    batch_first) and the PyTorch-form cells on which the reference cases build."""
    for name, c in PYTORCH_CASES.items():
        a = make_pytorch_case(c, seed_of(name))
        b = make_reference_case(c, seed_of(name))
        d = compare_all(f"reference vs nn module, {name}", a, b)
        print(f"  check  reference == nn module      {name:24s} max|diff| {d:.1e}")


def ort_dtype_run(make_model, feeds):
    """Runs in float64 where the ORT CPU kernel computes it, else float32. (With ORT 1.32
    all three ops end up in float32: GRU and RNN have no double kernel, and LSTM has one
    registered that fails at run time with "LSTM operator does not support double yet".)
    Returns (outputs, dtype name, tolerance)."""
    so = ort.SessionOptions()
    so.log_severity_level = 4  # the float64 attempt's failure is expected; keep it quiet
    last = None
    for np_t, onnx_t, tol in ((np.float64, TensorProto.DOUBLE, TOL_F64),
                              (np.float32, TensorProto.FLOAT, TOL_ORT_F32)):
        model = make_model(onnx_t)
        onnx.checker.check_model(model)
        fd = {k: (v.astype(np_t) if v.dtype.kind == "f" else v) for k, v in feeds.items()}
        try:
            sess = ort.InferenceSession(model.SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
            return sess.run(None, fd), np.dtype(np_t).name, tol
        except Exception as e:  # no working kernel for this type
            last = e
    raise last


def onnx_model(op, inputs, out_shapes, attrs, onnx_t):
    names = [n for n, _ in inputs]
    vi = [helper.make_tensor_value_info(
        n, TensorProto.INT32 if n == "sequence_lens" else onnx_t, list(v.shape))
        for n, v in inputs]
    outs = ["Y", "Y_h", "Y_c"][:len(out_shapes)]
    node = helper.make_node(op, names, outs, **attrs)
    graph = helper.make_graph([node], f"{op.lower()}_check", vi,
                              [helper.make_tensor_value_info(o, onnx_t, list(sh))
                               for o, sh in zip(outs, out_shapes)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8  # accepted by every onnxruntime that has opset 14
    return model


def ort_forward(c, p, x, h0, c0):
    """One-node ONNX LSTM/GRU/RNN with recur/PyTorch tensors mapped to ONNX order
    (LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h; B = [Wb, Rb]; P = [p_i, p_o, p_f]).
    Single layer only. Returns output [T, B, D*H] and h_n, c_n [D, B, H] as numpy."""
    assert c["num_layers"] == 1 and c["proj_size"] == 0 and not c["batch_first"]
    H, D, T, B = c["hidden_size"], dirs(c), c["seq_len"], c["batch"]
    G = GATES[c["cell"]]
    order = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}.get(c["cell"], [0])
    sfx = ["_l0", "_l0_reverse"][:D]

    def reorder(w):
        w = w.detach().numpy()
        return np.concatenate([w[j * H:(j + 1) * H] for j in order], axis=0)

    W = np.stack([reorder(p["weight_ih" + s]) for s in sfx])
    R = np.stack([reorder(p["weight_hh" + s]) for s in sfx])
    if c["bias"]:
        Bb = np.stack([np.concatenate([reorder(p["bias_ih" + s]), reorder(p["bias_hh" + s])])
                       for s in sfx])
    else:
        Bb = np.zeros((D, 2 * G * H))
    inputs = [("X", x.detach().numpy()), ("W", W), ("R", R), ("B", Bb),
              ("sequence_lens", np.array(c["lengths"] or [T] * B, dtype=np.int32)),
              ("initial_h", h0.detach().numpy())]
    attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if c["acts"] is not None:
        # one list per direction; alpha/beta consumed in order by the functions that take
        # them (ORT's LSTM/GRU; its RNN reads alpha/beta per direction, which for one
        # function per direction is the same)
        attrs["activations"] = [name for name, _, _ in c["acts"]] * D
        if not c["ort_defaults"]:
            alphas = [a for _, a, _ in c["acts"] if a is not None] * D
            betas = [b for _, _, b in c["acts"] if b is not None] * D
            if alphas:
                attrs["activation_alpha"] = alphas
            if betas:
                attrs["activation_beta"] = betas
    if c["clip"] is not None:
        attrs["clip"] = float(c["clip"])
    if c["cell"] == "lstm":
        inputs.append(("initial_c", c0.detach().numpy()))
        Pp = np.zeros((D, 3 * H))
        for di, s in enumerate(sfx):
            for j, gate in enumerate("iof"):  # ONNX P order: p_i, p_o, p_f
                if gate in c["peepholes"]:
                    Pp[di, j * H:(j + 1) * H] = p[f"peephole_{gate}" + s].detach().numpy()
        inputs.append(("P", Pp))
        attrs["input_forget"] = 1 if c["coupled"] else 0
        op, n_out = "LSTM", 3
    elif c["cell"] == "gru":
        attrs["linear_before_reset"] = 1 if c["gru_reset"] == "after" else 0
        op, n_out = "GRU", 2
    else:
        if c["acts"] is None:
            attrs["activations"] = ["Tanh" if c["cell"] == "rnn_tanh" else "Relu"] * D
        op, n_out = "RNN", 2
    feeds = dict(inputs)
    out_shapes = [(T, D, B, H), (D, B, H), (D, B, H)][:n_out]
    res, dt, tol = ort_dtype_run(lambda t: onnx_model(op, inputs, out_shapes, attrs, t),
                                 feeds)
    Y = res[0].astype(np.float64)  # [T, D, B, H]
    out = Y.transpose(0, 2, 1, 3).reshape(T, B, D * H)  # directions on the last axis
    return (out, res[1].astype(np.float64),
            res[2].astype(np.float64) if n_out == 3 else None, dt, tol)


def check_against_ort(label, c, ts):
    p = {k: v for k, v in ts.items() if k.startswith(("weight_", "bias_", "peephole_"))}
    out, hn, cn, dt, tol = ort_forward(c, p, ts["input"], ts["h0"], ts.get("c0"))
    d = assert_close(f"{label} output vs ORT", ts["output"], out, tol)
    d = max(d, assert_close(f"{label} h_n vs ORT", ts["h_n"], hn, tol))
    if cn is not None:
        d = max(d, assert_close(f"{label} c_n vs ORT", ts["c_n"], cn, tol))
    print(f"  check  forward == onnxruntime ({dt}) {label:24s} max|diff| {d:.1e}")


def check_extra_ort():
    """ORT harness sanity: nn.LSTM / nn.GRU / nn.RNN against ORT (gate reordering, bias
    layout, direction axis, reset-after GRU = linear_before_reset=1), and ragged
    bidirectional batches (sequence_lens) against the reference driver: confirms
    docs/equations.md §3 (reverse direction within each sequence's own length, zeros past
    it, Y_h at each sequence's own last step)."""
    for name in ["lstm_basic", "lstm_nobias", "gru_basic", "rnn_relu"]:
        c = PYTORCH_CASES[name]
        check_against_ort(f"{name} (nn)", c, make_pytorch_case(c, seed_of(name)))
    for name, c in [("lstm_bidir_x", cfg("lstm", 3, 4, 5, 2, bidirectional=True)),
                    ("gru_bidir_x", cfg("gru", 3, 4, 5, 2, bidirectional=True)),
                    ("rnn_tanh_bidir_x", cfg("rnn_tanh", 3, 4, 5, 2, bidirectional=True))]:
        check_against_ort(f"{name} (nn)", c, make_pytorch_case(c, seed_of(name)))
    for name, c in [
            ("lstm_peep_ragged_x", cfg("lstm", 3, 4, 6, 4, bidirectional=True,
                                       peepholes="ifo", lengths=[6, 2, 5, 1])),
            ("gru_before_ragged_x", cfg("gru", 3, 4, 6, 3, bidirectional=True,
                                        gru_reset="before", lengths=[3, 6, 1])),
            ("rnn_ragged_x", cfg("rnn_tanh", 3, 4, 5, 3, bidirectional=True,
                                 lengths=[5, 2, 4]))]:
        check_against_ort(f"{name} (ref)", c, make_reference_case(c, seed_of(name)))


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

def metadata(c, generator):
    md = {
        "cell": c["cell"],
        "input_size": str(c["input_size"]),
        "hidden_size": str(c["hidden_size"]),
        "num_layers": str(c["num_layers"]),
        "proj_size": str(c["proj_size"]),
        "seq_len": str(c["seq_len"]),
        "batch": str(c["batch"]),
        "bidirectional": str(c["bidirectional"]).lower(),
        "bias": str(c["bias"]).lower(),
        "batch_first": str(c["batch_first"]).lower(),
        "generator": generator,
    }
    if c["lengths"] is not None:
        md["lengths"] = ",".join(str(n) for n in c["lengths"])
    if c["cell"] == "gru":
        md["gru_reset"] = c["gru_reset"]
    if c["cell"] == "lstm":
        md["peepholes"] = c["peepholes"]
        md["coupled_input_forget"] = str(c["coupled"]).lower()
    if c["leak"] is not None:
        md["leak"] = repr(float(c["leak"]))
    if c["acts"] is not None:
        md["activations"] = ",".join(
            ":".join([name] + [repr(float(v)) for v in (a, b) if v is not None])
            for name, a, b in c["acts"])
    if c["clip"] is not None:
        md["clip"] = repr(float(c["clip"]))
    return md


def serialize_safetensors(tensors, md):
    """The safetensors format (8-byte little-endian header length, JSON header, raw
    little-endian data), written here rather than with safetensors.torch.save_file because
    that one emits the metadata keys in a random (Rust HashMap) order, so reruns would not
    be byte-identical. Here keys are sorted; the header is space-padded to 8 bytes as
    safetensors does. Every written file is read back with the safetensors library."""
    header, blobs, offset = {"__metadata__": dict(sorted(md.items()))}, [], 0
    for name in sorted(tensors):
        data = tensors[name].numpy().astype("<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + b"".join(blobs)


def write(kind, name, c, ts, generator):
    folder = os.path.join(FIXTURES, kind)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".safetensors")
    tensors = {k: v.detach().to(torch.float64).contiguous().clone() for k, v in ts.items()}
    assert all(torch.isfinite(v).all() for v in tensors.values()), name
    md = metadata(c, generator)
    with open(path, "wb") as f:
        f.write(serialize_safetensors(tensors, md))
    back = load_file(path)  # the safetensors library must read back exactly what we meant
    assert set(back) == set(tensors), name
    assert all(torch.equal(back[k], tensors[k]) for k in tensors), name
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == md, name
    return path


def self_check(paths):
    """Reload every written file; print case, tensor count, byte size."""
    total = 0
    print("\nwritten fixtures:")
    for path in paths:
        with safe_open(path, framework="pt") as f:
            keys = list(f.keys())
            md = f.metadata()
            for k in keys:
                assert f.get_tensor(k).dtype == torch.float64, (path, k)
        size = os.path.getsize(path)
        total += size
        rel = os.path.relpath(path, FIXTURES)
        print(f"  {rel:48s} {len(keys):3d} tensors {size:7d} bytes  cell={md['cell']}")
    print(f"  total {len(paths)} files, {total} bytes")
    return total


def main():
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, onnx {onnx.__version__}, "
          f"safetensors {safetensors.__version__}, numpy {np.__version__}")

    print("validating the reference implementation against PyTorch:")
    check_reference_matches_torch()
    print("validating the ONNX Runtime harness against PyTorch:")
    check_extra_ort()

    written = []
    print("pytorch/ cases (nn modules):")
    for name, c in PYTORCH_CASES.items():
        ts = make_pytorch_case(c, seed_of(name))
        written.append(write("pytorch", name, c, ts, TORCH_GEN))

    print("reference/ cases (explicit torch ops), forward checks:")
    for name, (c, check) in REFERENCE_CASES.items():
        ts = make_reference_case(c, seed_of(name))
        if c["clip"] is not None:
            # The clip must bite, or the checks below say nothing about it: the same case
            # without clip gives another forward.
            off = make_reference_case(dict(c, clip=None), seed_of(name))
            d = max_diff(ts["output"], off["output"])
            assert d > 1e-3, f"{name}: clip {c['clip']} changes the output by only {d:.1e}"
            print(f"  check  clip changes the forward     {name:24s} max|diff| {d:.1e}")
        if check == "ort":
            check_against_ort(name, c, ts)
            gen_str = ORT_GEN
        elif check == "ort_noproj":
            # Same cell without the projection: ORT can express that one.
            c_np = dict(c, proj_size=0)
            check_against_ort(name + " w/o proj", c_np,
                              make_reference_case(c_np, seed_of(name + "/noproj")))
            gen_str = (f"{TORCH_GEN} (forward checked against onnxruntime "
                       f"{ort.__version__} without the projection only)")
        elif check == "alpha1":
            c1 = dict(c, leak=None)
            a = make_reference_case(c1, seed_of(name), alpha=1.0)
            b = make_pytorch_case(c1, seed_of(name))
            d = compare_all(f"{name} at alpha=1 vs nn.RNN", a, b)
            print(f"  check  alpha=1 == nn.RNN           {name:24s} max|diff| {d:.1e}")
            gen_str = f"{TORCH_GEN} (alpha=1 checked against nn.RNN)"
        else:
            raise ValueError(check)
        written.append(write("reference", name, c, ts, gen_str))

    total = self_check(written)
    assert total < 1_000_000, f"fixtures too large: {total} bytes"
    print("all checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
