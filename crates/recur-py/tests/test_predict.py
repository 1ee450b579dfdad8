"""Model.predict / predict_proba / forecast in the user's terms: each kind of model round-trips
against `recur predict`'s CSV output on the same checkpoint. The checkpoints are trained here
by the `recur` binary that cargo builds (`cargo build -p recur-cli`, or `cargo test
--workspace` as CI runs it first); RECUR_BIN names another one."""

import csv
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import recur

ROOT = pathlib.Path(__file__).resolve().parents[3]
# Predictions written to a file (shortest round-trip decimals) against the same computation
# here, as the CLI's own tests allow (crates/recur-cli/tests/predict.rs SAME_PREDICTION);
# batches of other sizes may round differently in float32.
SAME_PREDICTION = 1e-5


def recur_bin() -> str:
    if os.environ.get("RECUR_BIN"):
        return os.environ["RECUR_BIN"]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    found = [p for p in (target / "debug" / "recur", target / "release" / "recur") if p.exists()]
    if not found:
        pytest.skip("the recur binary is not built: cargo build -p recur-cli (or set RECUR_BIN)")
    return str(max(found, key=lambda p: p.stat().st_mtime))


def cli(*args) -> str:
    out = subprocess.run([recur_bin(), *map(str, args)], capture_output=True, text=True)
    assert out.returncode == 0, f"recur {' '.join(map(str, args))}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def sequence_files(tmp):
    """Rising ("up") and falling ("down") sequences of 2 features, as in the CLI's tests;
    the regression label is the mean of the first feature."""
    cls, reg, bare, seqs = [], [], [], []
    for i in range(40):
        up = i % 2 == 0
        n = 3 + i % 5
        vals = [(t / n + 0.05 * ((i * 7 + t) % 5)) * (1 if up else -1) for t in range(n)]
        steps = [(round(v, 3), round(v * 0.5, 3)) for v in vals]
        text = " ".join(f"{a:.3f},{b:.3f}" for a, b in steps)
        cls.append(f"{'up' if up else 'down'}\t{text}")
        reg.append(f"{sum(vals) / n:.4f}\t{text}")
        bare.append(text)
        seqs.append(steps)
    paths = []
    for name, lines in (("cls.txt", cls), ("reg.txt", reg), ("bare.txt", bare)):
        (tmp / name).write_text("\n".join(lines) + "\n")
        paths.append(tmp / name)
    # the same steps as a padded batch [seq_len, batch, 2] and their lengths
    lengths = [len(s) for s in seqs]
    x = np.zeros((max(lengths), len(seqs), 2), np.float32)
    for j, s in enumerate(seqs):
        x[: len(s), j] = s
    return paths, x, lengths


def test_a_classifier_predicts_class_names_and_probabilities_as_recur_predict(tmp_path):
    (cls, _, bare), x, lengths = sequence_files(tmp_path)
    ck = tmp_path / "c.safetensors"
    cli("train", "--sequences", cls, "--hidden-size", 8, "--epochs", 3, "--seed", 0,
        "--checkpoint", ck, "--quiet")
    out = tmp_path / "p.csv"
    cli("predict", "--checkpoint", ck, "--sequences", bare, "-o", out, "--proba")
    header, rows = read_csv(out)
    model_file = tmp_path / "m.safetensors"
    cli("convert", ck, model_file)
    for path in (ck, model_file):
        m = recur.load(path)
        assert isinstance(m, recur.Model)
        assert (m.kind, m.role) == ("sequences", "classifier")
        assert m.classes == header[1:] == ["down", "up"]
        labels = m.predict(x, lengths=lengths)
        proba = m.predict_proba(x, lengths=lengths)
        assert labels.shape == (40,) and proba.shape == (40, 2) and proba.dtype == np.float64
        want = np.array([[float(v) for v in r[1:]] for r in rows])
        np.testing.assert_allclose(proba, want, rtol=0, atol=SAME_PREDICTION)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
        # the same names, but where the two classes are too close to call at this tolerance
        clear = np.abs(want[:, 0] - want[:, 1]) > 2 * SAME_PREDICTION
        assert clear.sum() > 30
        assert list(labels[clear]) == [r[0] for r, c in zip(rows, clear) if c]
        assert list(labels) == [m.classes[i] for i in proba.argmax(axis=1)]
        # the raw outputs are the logits the probabilities are a softmax of
        z = m.predict_raw(x, lengths=lengths).astype(np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        np.testing.assert_allclose(proba, e / e.sum(axis=1, keepdims=True), rtol=0, atol=1e-7)
        with pytest.raises(recur.RecurError, match="not a forecaster"):
            m.forecast({"x": [1.0]})


def test_a_regressor_predicts_values_in_the_datas_units_as_recur_predict(tmp_path):
    (_, reg, bare), x, lengths = sequence_files(tmp_path)
    ck = tmp_path / "r.safetensors"
    cli("train", "--sequences", reg, "--target", "regression", "--hidden-size", 8,
        "--epochs", 3, "--seed", 0, "--checkpoint", ck, "--quiet")
    out = tmp_path / "p.csv"
    cli("predict", "--checkpoint", ck, "--sequences", bare, "-o", out)
    header, rows = read_csv(out)
    assert header == ["prediction"]
    m = recur.load(ck)
    assert (m.kind, m.role, m.classes) == ("sequences", "regressor", None)
    got = m.predict(x, lengths=lengths)
    assert got.shape == (40,)
    np.testing.assert_allclose(got, [float(r[0]) for r in rows], rtol=0, atol=SAME_PREDICTION)
    with pytest.raises(recur.RecurError, match="not a classifier"):
        m.predict_proba(x, lengths=lengths)


def monthly(n, series=None):
    """A monthly series with a season of 12, a trend and a feature (the CLI tests' shape);
    with `series`, several of them in long format."""
    cols = {"month": [], "sales": [], "promo": []}
    if series:
        cols = {"store": [], **cols}
    for t in range(n):
        for k, s in enumerate(series or [None]):
            y = 10_000.0 * (k + 1) + 40.0 * t + 2_000.0 * np.sin(2 * np.pi * t / 12)
            if s is not None:
                cols["store"].append(s)
            cols["month"].append(f"{2000 + t // 12}-{t % 12 + 1:02}")
            cols["sales"].append(round(float(y), 1))
            cols["promo"].append(t % 3)
    return cols


def write_csv(path, cols):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(zip(*cols.values()))


@pytest.mark.parametrize("series", [None, ["a", "b"]])
def test_a_forecaster_forecasts_in_the_datas_units_as_recur_predict(tmp_path, series):
    data = tmp_path / "sales.csv"
    write_csv(data, monthly(96, series))
    ck = tmp_path / "f.safetensors"
    extra = ["--series-column", "store"] if series else []
    cli("train", "--csv", data, "--target", "sales", "--features", "promo", "--time-column",
        "month", *extra, "--window", 12, "--horizon", 4, "--hidden-size", 8, "--epochs", 2,
        "--seed", 0, "--checkpoint", ck, "--quiet")
    history = monthly(90, series)
    hist_file = tmp_path / "history.csv"
    write_csv(hist_file, history)
    out = tmp_path / "f.csv"
    cli("predict", "--checkpoint", ck, "--csv", hist_file, "-o", out)
    header, rows = read_csv(out)
    m = recur.load(ck)
    assert (m.kind, m.role) == ("forecast", "forecaster")
    spec = m.forecast_spec
    assert (spec["window"], spec["horizon"], spec["targets"]) == (12, 4, ["sales"])
    # from the file, and from a dict of columns (numpy arrays and lists)
    as_arrays = {k: (np.asarray(v) if k in ("sales", "promo") else v) for k, v in history.items()}
    for got in (m.forecast(hist_file), m.forecast(as_arrays)):
        assert list(got) == header
        for j, name in enumerate(header):
            col = [r[j] for r in rows]
            if name == "sales":
                assert got[name].dtype == np.float64 and got[name].shape == (len(rows),)
                want = np.array([float(v) for v in col])
                np.testing.assert_allclose(got[name], want, rtol=SAME_PREDICTION, atol=0)
            else:
                assert got[name] == col
    assert got["month"][:4] == ["2007-07", "2007-08", "2007-09", "2007-10"]
    if series:
        assert got["store"] == ["a"] * 4 + ["b"] * 4
    # bad history: the library's message, naming the row and column
    broken = {k: list(v) for k, v in history.items()}
    broken["sales"][3] = None
    with pytest.raises(recur.RecurError, match=r"row 5, column \d \(`sales`\): missing value"):
        m.forecast(broken)
    with pytest.raises(recur.RecurError, match="no column 'promo'"):
        m.forecast({k: v for k, v in history.items() if k != "promo"})
    with pytest.raises(recur.RecurError, match="forecast"):
        m.predict(np.zeros((12, 1, 2), np.float32))
    assert m.predict_raw(np.zeros((12, 1, 2), np.float32)).shape == (1, 4)


def test_an_esn_forecaster_forecasts_as_recur_predict(tmp_path):
    """An echo state network forecaster (`recur train --cell esn --csv`) loads through the
    library's ESN reader and forecasts what `recur predict` writes."""
    data = tmp_path / "sales.csv"
    write_csv(data, monthly(96, ["a", "b"]))
    ck = tmp_path / "esn.safetensors"
    cli("train", "--cell", "esn", "--csv", data, "--target", "sales", "--features", "promo",
        "--time-column", "month", "--series-column", "store", "--window", 12, "--horizon", 4,
        "--hidden-size", 40, "--seed", 0, "--checkpoint", ck)
    hist_file = tmp_path / "history.csv"
    write_csv(hist_file, monthly(90, ["a", "b"]))
    out = tmp_path / "f.csv"
    cli("predict", "--checkpoint", ck, "--csv", hist_file, "-o", out)
    header, rows = read_csv(out)
    m = recur.load(ck)
    assert (m.kind, m.role) == ("forecast", "forecaster")
    assert json.loads(m.config_json)["reservoir_size"] == 40
    got = m.forecast(hist_file)
    assert list(got) == header == ["store", "month", "sales"]
    want = np.array([float(r[2]) for r in rows])
    np.testing.assert_allclose(got["sales"], want, rtol=SAME_PREDICTION, atol=0)
    assert got["store"] == ["a"] * 4 + ["b"] * 4
    # the readout's raw outputs read float64 windows [window, batch, targets + features]
    assert m.predict_raw(np.zeros((12, 3, 2))).shape == (3, 4)
    with pytest.raises(TypeError, match="float64"):
        m.predict_raw(np.zeros((12, 3, 2), np.float32))
    with pytest.raises(recur.RecurError, match="echo state network"):
        m.rnn()


def test_models_without_a_kind_predict_their_raw_outputs():
    fixtures = ROOT / "crates" / "recur" / "tests" / "fixtures" / "model"
    path = sorted(fixtures.glob("*.expected.safetensors"))[0]
    m = recur.load(str(path).replace(".expected", ""))
    assert (m.kind, m.role, m.classes, m.forecast_spec) == (None, "unknown", None, None)
