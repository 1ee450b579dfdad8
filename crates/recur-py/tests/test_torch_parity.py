"""recur.torch's modules against torch.nn's own: outputs and every gradient, for LSTM, GRU
and RNN, 1-2 layers, bidirectional, proj_size, bias=False, batch_first, packed and padded."""

import itertools

import pytest

torch = pytest.importorskip("torch")
import recur.torch as rt  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

# Largest difference from torch.nn, relative to the largest magnitude of torch's value.
F64_REL_TOL = 1e-10
F32_REL_TOL = 1e-5

CELLS = {
    "lstm": (torch.nn.LSTM, rt.LSTM, {}),
    "gru": (torch.nn.GRU, rt.GRU, {}),
    "rnn_tanh": (torch.nn.RNN, rt.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, rt.RNN, {"nonlinearity": "relu"}),
}

I, H, P, T, B = 3, 5, 3, 6, 4
LENGTHS = [6, 2, 5, 3]


def twins(cell, dtype, **kw):
    nn_cls, rt_cls, extra = CELLS[cell]
    torch.manual_seed(0)
    ref = nn_cls(I, H, **extra, **kw).to(dtype)
    torch.manual_seed(0)
    ours = rt_cls(I, H, **extra, **kw).to(dtype)
    # the same torch.manual_seed gives torch.nn's initial weights
    for name, value in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name
    return ref, ours


def close(name, got, want, tol):
    scale = max(1.0, want.abs().max().item())
    err = (got - want).abs().max().item() / scale
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:g}"


def run(module, x, h0, c0, packed, batch_first, lengths):
    hx = (h0, c0) if c0 is not None else h0
    if packed:
        inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
        out, hn = module(inp, hx)
        assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
        out = pad_packed_sequence(out, batch_first=batch_first, total_length=T)[0]
    else:
        out, hn = module(x, hx)
    h, c = hn if isinstance(hn, tuple) else (hn, None)
    return out, h, c


CASES = [
    dict(num_layers=nl, bidirectional=bd, bias=bias, batch_first=bf)
    for nl, bd, bias, bf in itertools.product([1, 2], [False, True], [True, False],
                                              [False, True])
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(
    f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("cell,proj", [(c, 0) for c in CELLS] + [("lstm", P)],
                         ids=list(CELLS) + ["lstm_proj"])
def test_matches_torch_nn(cell, proj, case, packed, dtype):
    kw = dict(case)
    if proj:
        kw["proj_size"] = proj
    ref, ours = twins(cell, dtype, **kw)
    tol = F64_REL_TOL if dtype == torch.float64 else F32_REL_TOL
    nd = 2 if kw["bidirectional"] else 1
    hout = proj or H
    g = torch.Generator().manual_seed(1)
    shape = (B, T, I) if kw["batch_first"] else (T, B, I)
    x = torch.randn(shape, generator=g, dtype=dtype)
    h0 = torch.randn(kw["num_layers"] * nd, B, hout, generator=g, dtype=dtype)
    c0 = torch.randn(kw["num_layers"] * nd, B, H, generator=g, dtype=dtype) \
        if cell == "lstm" else None
    wy = torch.randn((B, T, nd * hout) if kw["batch_first"] else (T, B, nd * hout),
                     generator=g, dtype=dtype)
    wh = torch.randn(h0.shape, generator=g, dtype=dtype)
    wc = torch.randn(c0.shape, generator=g, dtype=dtype) if c0 is not None else None
    results = []
    for module in (ref, ours):
        leaves = [t.clone().requires_grad_() for t in (x, h0, c0) if t is not None]
        xs, hs = leaves[0], leaves[1]
        cs = leaves[2] if c0 is not None else None
        out, h, c = run(module, xs, hs, cs, packed, kw["batch_first"], LENGTHS)
        loss = (out * wy).sum() + (h * wh).sum() + ((c * wc).sum() if c is not None else 0)
        grads = torch.autograd.grad(loss, leaves + list(module.parameters()))
        results.append(([out, h] + ([c] if c is not None else []), grads))
    names = ["output", "h_n", "c_n"]
    for name, got, want in zip(names, results[1][0], results[0][0]):
        close(name, got, want, tol)
    gnames = ["grad x", "grad h0", "grad c0"][: 2 + (c0 is not None)] + [
        f"grad {n}" for n, _ in ref.named_parameters()]
    for name, got, want in zip(gnames, results[1][1], results[0][1]):
        close(name, got, want, tol)


@pytest.mark.parametrize("cell", list(CELLS))
def test_no_hx_and_unbatched_input(cell):
    ref, ours = twins(cell, torch.float64, num_layers=2)
    x = torch.randn(T, I, dtype=torch.float64)
    for a, b in zip(ref(x)[0:1], ours(x)[0:1]):
        close("unbatched output", b, a, F64_REL_TOL)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        close("inference output", ours(x)[0], ref(x)[0], F64_REL_TOL)


def test_dropout_is_reproducible_with_torch_manual_seed():
    m = rt.LSTM(I, H, num_layers=2, dropout=0.5, recurrent_dropout=0.3)
    x = torch.randn(T, B, I)
    torch.manual_seed(7)
    a = m(x)[0]
    torch.manual_seed(7)
    b = m(x)[0]
    c = m(x)[0]
    assert torch.equal(a, b)
    assert not torch.equal(b, c)
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])


def test_torch_errors_are_clear():
    m = rt.LSTM(I, H)
    with pytest.raises(TypeError, match="float64"):
        m(torch.zeros(T, B, I, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        m.half()(torch.zeros(T, B, I, dtype=torch.float16))
    m = rt.GRU(I, H)
    with pytest.raises(Exception, match=r"input: expected shape"):
        m(torch.zeros(T, B, I + 1))
    with pytest.raises(Exception, match=r"h0"):
        m(torch.zeros(T, B, I), torch.zeros(1, B + 1, H))
