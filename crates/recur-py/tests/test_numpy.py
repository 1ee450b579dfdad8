"""The numpy models: recur.load on the library's fixtures, predict, the stepper, errors, and
the GIL released while recur computes."""

import json
import pathlib
import threading
import time

import numpy as np
import pytest

import recur

safetensors_numpy = pytest.importorskip("safetensors.numpy")
from safetensors import safe_open  # noqa: E402

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "recur" / "tests" / "fixtures"
# What the library's own tests allow against these fixtures (model_files.rs MODEL_TOL,
# parity.rs's 1e-10 in float64).
MODEL_REL_TOL = 1e-10
F64_REL_TOL = 1e-10
# Streaming against a whole-sequence call in float32 (docs: within 1.2e-7 relative per step).
STEP_F32_TOL = 1e-5


def fixture(path):
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
    return safetensors_numpy.load_file(str(path)), meta


def rel_err(got, want):
    return np.abs(got - want).max() / max(1.0, np.abs(want).max())


MODEL_CASES = sorted(p.name[: -len(".expected.safetensors")]
                     for p in (FIXTURES / "model").glob("*.expected.safetensors"))


@pytest.mark.parametrize("name", MODEL_CASES)
def test_model_files_predict_pytorchs_outputs(name):
    model = recur.load(FIXTURES / "model" / f"{name}.safetensors", dtype=np.float64)
    assert isinstance(model, recur.Model)
    want, meta = fixture(FIXTURES / "model" / f"{name}.expected.safetensors")
    lengths = [int(n) for n in meta["lengths"].split(",")]
    x = want["input"]
    source = json.loads(model.config_json)["input"]
    if isinstance(source, dict) and source["kind"] == "embedding":
        x = x.astype(np.int64)
    out = model.predict(x, lengths=lengths)
    assert out.shape == want["output"].shape
    assert rel_err(out, want["output"]) <= MODEL_REL_TOL


def test_checkpoints_load_as_models():
    model = recur.load(FIXTURES / "legacy" / "lstm.checkpoint.safetensors")
    assert isinstance(model, recur.Model)
    assert dict(model.metadata)["recur.format"].startswith("checkpoint")
    assert isinstance(model.rnn(), recur._recur.Layer)


STATE_DICT_CASES = ["lstm_2layer_bidir_proj", "lstm_batch_first", "gru_packed", "rnn_relu",
                    "lstm_nobias"]


def layer_from_fixture(name, tmp_path):
    """The fixture's parameters, as a state_dict file, through recur.load."""
    values, meta = fixture(FIXTURES / "pytorch" / f"{name}.safetensors")
    cell = meta["cell"]
    kw = dict(num_layers=int(meta["num_layers"]), bias=meta["bias"] == "true",
              batch_first=meta["batch_first"] == "true",
              bidirectional=meta["bidirectional"] == "true", dtype=np.float64)
    args = (int(meta["input_size"]), int(meta["hidden_size"]))
    if cell == "lstm":
        net = recur.LSTM(*args, proj_size=int(meta["proj_size"]), **kw)
    elif cell == "gru":
        net = recur.GRU(*args, **kw)
    else:
        net = recur.RNN(*args, nonlinearity=cell.split("_")[1], **kw)
    net.load_state_dict({k: v for k, v in values.items() if k in net.state_dict()})
    net.save(tmp_path / f"{name}.safetensors")
    loaded = recur.load(tmp_path / f"{name}.safetensors", dtype=np.float64)
    lengths = [int(n) for n in meta["lengths"].split(",")] if "lengths" in meta else None
    return loaded, values, lengths


@pytest.mark.parametrize("name", STATE_DICT_CASES)
def test_state_dicts_forward_as_pytorch(name, tmp_path):
    net, want, lengths = layer_from_fixture(name, tmp_path)
    hx = (want["h0"], want["c0"]) if "c0" in want else want["h0"]
    out, hn = net.forward(want["input"], hx, lengths=lengths)
    assert rel_err(out, want["output"]) <= F64_REL_TOL
    h = hn[0] if isinstance(hn, tuple) else hn
    assert rel_err(h, want["h_n"]) <= F64_REL_TOL
    if isinstance(hn, tuple):
        assert rel_err(hn[1], want["c_n"]) <= F64_REL_TOL


def test_onnx_files_load_as_stacks():
    path = FIXTURES / "onnx" / "pytorch" / "lstm_2layer_bidir_legacy" / "model.onnx"
    net = recur.load(path)
    assert isinstance(net, recur.Recurrent)
    assert net.config["num_layers"] == 2 and net.config["direction"] == "bidirectional"


@pytest.mark.parametrize("make", [
    lambda: recur.LSTM(3, 8, num_layers=2, proj_size=4, peepholes=True),
    lambda: recur.GRU(3, 8, reset="before"),
    lambda: recur.RNN(3, 8, nonlinearity="relu", num_layers=2)],
    ids=["lstm", "gru", "rnn"])
def test_stepper_equals_whole_sequence(make):
    net = make()
    x = np.random.default_rng(0).standard_normal((9, 2, 3)).astype(np.float32)
    want, hn = net.forward(x)
    s = net.stepper(2)
    steps = np.stack([s.step(x[t]) for t in range(9)])
    assert rel_err(steps, want) <= STEP_F32_TOL
    h, c = s.state()
    assert rel_err(h, hn[0] if isinstance(hn, tuple) else hn) <= STEP_F32_TOL
    # the state carries: stepping on from a saved state equals stepping straight through
    s.reset()
    for t in range(4):
        s.step(x[t])
    saved = s.state()
    s2 = net.stepper(2)
    s2.set_state(*saved)
    assert rel_err(np.stack([s2.step(x[t]) for t in range(4, 9)]), want[4:]) <= STEP_F32_TOL


def test_wrong_dtype_shape_and_layout_are_clear_errors():
    net = recur.LSTM(3, 4)
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(TypeError, match="expected dtype float32, got float64"):
        net.predict(x.astype(np.float64))
    with pytest.raises(TypeError, match="numpy array"):
        net.predict([[[0.0] * 3]])
    with pytest.raises(ValueError, match="not C-contiguous"):
        net.predict(np.zeros((3, 2, 5), np.float32).transpose(2, 1, 0))
    with pytest.raises(recur.RecurError, match=r"input: expected shape \[5, 2, 3\], got"):
        net.predict(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(recur.RecurError, match="expected 3 dimensions"):
        net.predict(np.zeros((5, 3), np.float32))
    with pytest.raises(recur.RecurError, match="length"):
        net.predict(x, lengths=[6, 2])
    with pytest.raises(ValueError, match="negative"):
        net.predict(x, lengths=[-1, 2])
    with pytest.raises(recur.RecurError):
        recur.GRU(3, 4, bidirectional=True).stepper(1)
    with pytest.raises(recur.RecurError, match="x"):
        net.stepper(2).step(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="peepholes: unknown gate"):
        recur.LSTM(3, 4, peepholes=("input", "cell"))
    with pytest.raises(recur.RecurError, match="recurrent_dropout"):
        recur.GRU(3, 4, recurrent_dropout=1.5)
    assert issubclass(recur.RecurError, ValueError)


def test_file_errors_carry_the_librarys_message(tmp_path):
    with pytest.raises(recur.RecurError, match="nothing-here"):
        recur.load(tmp_path / "nothing-here.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(recur.RecurError, match="bad.safetensors"):
        recur.load(bad)


def test_the_gil_is_released_while_recur_computes():
    """A Python thread counts while recur runs a long forward; with the GIL held it could
    not run at all until the call returned."""
    net = recur.LSTM(64, 256, num_layers=2)
    x = np.ones((2000, 8, 64), np.float32)
    net.predict(x[:2])  # packs the weights
    start = time.perf_counter()
    net.predict(x)
    alone = time.perf_counter() - start
    ticks = []
    stop = threading.Event()
    started = threading.Event()

    def count():
        started.set()
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=count)
    t.start()
    started.wait()
    n0 = len(ticks)
    begin = time.perf_counter()
    net.predict(x)
    end = time.perf_counter()
    during = [tk for tk in ticks[n0:] if begin < tk < end]
    stop.set()
    t.join()
    assert alone > 0.05, f"the forward took {alone:.3f} s, too short to tell"
    # the counting thread ran all through the call, not only before and after it
    assert during, "no Python ran while recur computed"
    assert during[-1] - during[0] > 0.5 * (end - begin), \
        f"Python ran for {during[-1] - during[0]:.3f} s of a {end - begin:.3f} s call"
