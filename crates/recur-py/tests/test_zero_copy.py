"""Arrays cross into recur without a copy: the library reads numpy's own buffers.

`recur._recur.engine_pointers()` gives the address of every buffer the library read in the
thread's last call; for an array that crossed without a copy it is the array's own
`ctypes.data` (a copy would live elsewhere). The numbers themselves are checked by the
parity tests; here the same calls are also compared with the values they must give."""

import json
import pathlib

import numpy as np
import pytest

import recur
from recur import _recur

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "recur" / "tests" / "fixtures"


def addr(a):
    return a.ctypes.data


def rng_array(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_reads_x_and_the_state_in_place(dtype):
    net = recur.LSTM(3, 4, num_layers=2, dtype=dtype)
    # a slice of a larger array: contiguous, its data not at the start of the allocation
    big = rng_array((9, 2, 3), dtype)
    x = big[2:7]
    assert x.flags.c_contiguous and addr(x) != addr(big)
    h0, c0 = rng_array((2, 2, 4), dtype, 1), rng_array((2, 2, 4), dtype, 2)
    out, (hn, cn) = net.forward(x, (h0, c0))
    seen = _recur.engine_pointers()
    assert seen == {"x": addr(x), "h0": addr(h0), "c0": addr(c0)}
    # the same numbers as from a fresh copy of each array
    out2, (hn2, cn2) = net.forward(x.copy(), (h0.copy(), c0.copy()))
    assert _recur.engine_pointers()["x"] != addr(x)
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(hn, hn2)
    np.testing.assert_array_equal(cn, cn2)


def test_training_forward_and_backward_read_every_array_in_place():
    layer = recur.GRU(3, 5, bidirectional=True, dtype=np.float64)._layer
    params = layer.get_params()
    x = rng_array((6, 2, 3), np.float64)
    h0 = rng_array((2, 2, 5), np.float64, 1)
    out, hn, cn, tape = layer.forward_train(params, x, h0)
    assert cn is None
    assert _recur.engine_pointers() == {"params": addr(params), "x": addr(x), "h0": addr(h0)}
    dy = rng_array(out.shape, np.float64, 2)
    dh = rng_array(hn.shape, np.float64, 3)
    dx, dh0, dc0, dparams = layer.backward(tape, params, dy, dh)
    assert _recur.engine_pointers() == {
        "params": addr(params), "grad_output": addr(dy), "grad_h": addr(dh)}
    assert dx.shape == x.shape and dh0.shape == h0.shape and dparams.shape == params.shape
    # the gradient of <dy, out> + <dh, hn> against a finite difference along x
    eps = 1e-6
    d = rng_array(x.shape, np.float64, 4)
    plus = layer.forward(x + eps * d, h0)
    minus = layer.forward(x - eps * d, h0)
    fd = (np.sum(dy * (plus[0] - minus[0])) + np.sum(dh * (plus[1] - minus[1]))) / (2 * eps)
    assert abs(fd - np.sum(dx * d)) <= 1e-6 * max(1.0, abs(fd))


def test_the_stepper_reads_x_and_the_state_in_place():
    net = recur.LSTM(3, 4)
    s = net.stepper(2)
    x = rng_array((2, 3), np.float32)
    s.step(x)
    assert _recur.engine_pointers() == {"x": addr(x)}
    h, c = rng_array((1, 2, 4), np.float32, 1), rng_array((1, 2, 4), np.float32, 2)
    s.set_state(h, c)
    assert _recur.engine_pointers() == {"h0": addr(h), "c0": addr(c)}
    got_h, got_c = s.state()
    np.testing.assert_array_equal(got_h, h)
    np.testing.assert_array_equal(got_c, c)


def test_a_models_features_cross_in_place():
    def dense(path):
        source = json.loads(recur.load(path).config_json)["input"]
        return not (isinstance(source, dict) and source["kind"] == "embedding")

    files = [p for p in sorted((FIXTURES / "model").glob("*.safetensors"))
             if not p.name.endswith(".expected.safetensors") and dense(p)]
    assert files, "no model file with dense input among the fixtures"
    m = recur.load(files[0])
    n_in = json.loads(m.rnn().config_json)["input_size"]
    x = rng_array((4, 3, n_in), np.float32)
    m.predict_raw(x)
    assert _recur.engine_pointers() == {"x": addr(x)}


def test_refused_arrays_are_not_copied_behind_the_callers_back():
    net = recur.LSTM(3, 4)
    x = rng_array((3, 2, 5), np.float32).transpose(2, 1, 0)
    with pytest.raises(ValueError, match="not C-contiguous"):
        net.predict(x)
    with pytest.raises(TypeError, match="expected dtype float32, got float64"):
        net.predict(np.zeros((5, 2, 3), np.float64))
    with pytest.raises(recur.RecurError, match=r"h0: expected shape \[1, 2, 4\], got"):
        net.forward(np.zeros((5, 2, 3), np.float32),
                    (np.zeros((1, 3, 4), np.float32), np.zeros((1, 2, 4), np.float32)))


def test_recur_torch_hands_contiguous_tensors_over_in_place():
    torch = pytest.importorskip("torch")
    import recur.torch as rt

    lstm = rt.LSTM(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    h0, c0 = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    with torch.no_grad():
        lstm(x, (h0, c0))
    seen = _recur.engine_pointers()
    assert (seen["x"], seen["h0"], seen["c0"]) == (x.data_ptr(), h0.data_ptr(), c0.data_ptr())
    x.requires_grad_(True)
    out, _ = lstm(x, (h0, c0))
    assert _recur.engine_pointers()["x"] == x.data_ptr()
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    # a non-contiguous tensor is accepted, as torch.nn.LSTM accepts it: it is copied
    xt = torch.randn(5, 2, 3).transpose(0, 1)
    with torch.no_grad():
        a, _ = lstm(xt)
        b, _ = lstm(xt.contiguous())
    assert _recur.engine_pointers()["x"] != xt.data_ptr()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
