#!/usr/bin/env python3
"""Generate recur's echo state network fixture (float64, numpy only).

What it makes
-------------
crates/recur/tests/fixtures/esn/readout.safetensors: one small leaky ESN, its states on a
seeded input computed here from the equations of crates/recur/src/model/esn.rs, and the ridge
readout fitted by numpy's least squares on the augmented system

    [Z; sqrt(lambda) I] W = [Y; 0]      (np.linalg.lstsq, an SVD solve)

which minimises |Z W - Y|^2 + lambda |W|^2 without forming Z^T Z: an independent route to
the solution recur finds by a Cholesky factorisation of Z^T Z + lambda I.

Tensors (all F64, row-major):
    w_in     [N, 1 + K]      input weights, column 0 the bias
    w_raw    [N, N]          the reservoir before scaling
    w        [N, N]          w_raw scaled to spectral radius RHO by numpy's eigvals
    u        [T, 1, K]       input
    y        [T, 1, M]       target
    states   [T, 1, N]       x_t = (1 - a) x_{t-1} + a tanh(W_in [1; u_t] + W x_{t-1}), x_{-1} = 0
    w_out    [M, 1 + K + N]  the lstsq readout on the rows t >= WASHOUT, features [1; u_t; x_t]
    radius_raw []            max |eig(w_raw)|
Metadata: `config` (recur's EsnConfig JSON), `ridge` (lambda), `generator`.

crates/recur/tests/fixtures/esn/forecast.safetensors: the ESN as a forecaster of a CSV
series (`recur train --cell esn --csv`), every step written out here from
docs/forecasting.md and crates/recur/src/data/forecast.rs: a series of S rows (a target and
a feature), split chronologically (valid and test parts round(S * 0.15) rows each), each
column standardised with the mean and population deviation of the training rows, windows of
FW rows levelled by the mean of the window's scaled target (inputs and targets; recur's
windows are float32, so the scaled values are rounded to float32 here too), the reservoir
run from the zero state over each window, the readout fitted by lstsq on the augmented
system over the training windows' last-step features [1; u; x] with targets the FH scaled
future values, and the test windows' forecasts put back into the data's units.

Tensors (all F64):
    series      [S, 2]              the target and the feature, by row
    w_in        [FN, 1 + 2]         input weights
    w           [FN, FN]            the reservoir (already scaled)
    w_out       [FH, 1 + 2 + FN]    the readout
    forecasts   [test windows, FH]  in the data's units, origins in time order
Metadata: `config` (EsnConfig JSON, output "last"), `ridge`, `window`, `horizon`, `split`,
`generator`.

How to run
----------
    pip install numpy safetensors
    python3 scripts/gen_esn_fixtures.py     # from anywhere; < 1 s

Last run with numpy 2.4.6, safetensors 0.8.0 (Python 3.11.7). The writer sorts keys, so a
rerun with the same versions reproduces the file byte for byte.
"""

import json
import os
import struct

import numpy as np
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "recur", "tests", "fixtures", "esn")

N, K, M, T = 40, 2, 2, 300
RHO, LEAK, WASHOUT, RIDGE = 0.85, 0.7, 30, 1e-4
SPARSITY, INPUT_SCALING, BIAS_SCALING = 0.8, 0.6, 0.3


def write_safetensors(path, tensors, metadata):
    """F64 tensors with sorted keys and sorted metadata (byte-for-byte reproducible)."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.array(tensors[name], dtype="<f8", order="C")
        b = a.tobytes()
        header[name] = {"dtype": "F64", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
    back = load_file(path)
    for name, a in tensors.items():
        assert np.array_equal(back[name], np.asarray(a, dtype="<f8")), name


FS, FN, FW, FH = 160, 30, 12, 3
F_RIDGE, F_SPLIT = 1e-3, (0.7, 0.15, 0.15)


def forecast_fixture():
    """The ESN forecaster of a short series, from scratch (see the module's docstring)."""
    rng = np.random.default_rng(20261208)
    t = np.arange(FS)
    target = 100 + 0.3 * t + 8 * np.sin(2 * np.pi * t / 11) + rng.normal(0, 1, FS)
    feature = np.cos(2 * np.pi * t / 7) + rng.normal(0, 0.1, FS)
    series = np.stack([target, feature], axis=1)
    w_raw = rng.uniform(-1, 1, (FN, FN)) * (rng.uniform(0, 1, (FN, FN)) >= SPARSITY)
    w = w_raw * (RHO / np.max(np.abs(np.linalg.eigvals(w_raw))))
    w_in = np.concatenate(
        [BIAS_SCALING * rng.uniform(-1, 1, (FN, 1)), INPUT_SCALING * rng.uniform(-1, 1, (FN, 2))], axis=1
    )

    n_valid = int(round(FS * F_SPLIT[1]))
    n_test = int(round(FS * F_SPLIT[2]))
    train_end, valid_end = FS - n_valid - n_test, FS - n_test
    mean = series[:train_end].mean(axis=0)
    std = series[:train_end].std(axis=0)  # population deviation
    z = (series - mean) / std

    def window(o):
        """Input [FW, 2] (float32 values), target [FH] (float32 values), level."""
        level = z[o - FW:o, 0].mean()
        x = z[o - FW:o].copy()
        x[:, 0] -= level
        y = z[o:o + FH, 0] - level
        return x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64), level

    def last_features(x):
        s = np.zeros(FN)
        for row in x:
            s = (1 - LEAK) * s + LEAK * np.tanh(w_in @ np.concatenate([[1.0], row]) + w @ s)
        return np.concatenate([[1.0], x[-1], s])

    train = [window(o) for o in range(FW, train_end - FH + 1)]
    zz = np.array([last_features(x) for x, _, _ in train])
    yy = np.array([y for _, y, _ in train])
    f = zz.shape[1]
    w_out, *_ = np.linalg.lstsq(
        np.concatenate([zz, np.sqrt(F_RIDGE) * np.eye(f)]),
        np.concatenate([yy, np.zeros((f, FH))]),
        rcond=None,
    )
    w_out = w_out.T  # [FH, F]
    assert np.allclose((zz.T @ zz + F_RIDGE * np.eye(f)) @ w_out.T, zz.T @ yy, rtol=1e-10, atol=1e-10)
    forecasts = []
    for o in range(valid_end, FS - FH + 1):
        x, _, level = window(o)
        forecasts.append((w_out @ last_features(x) + level) * std[0] + mean[0])
    forecasts = np.array(forecasts)
    # a sanity check of the reference: far better than the naive forecast on the test part
    truth = np.array([series[o:o + FH, 0] for o in range(valid_end, FS - FH + 1)])
    naive = np.array([[series[o - 1, 0]] * FH for o in range(valid_end, FS - FH + 1)])
    assert np.abs(forecasts - truth).mean() < np.abs(naive - truth).mean()

    config = {
        "input_size": 2,
        "reservoir_size": FN,
        "output_size": FH,
        "spectral_radius": RHO,
        "input_scaling": INPUT_SCALING,
        "bias_scaling": BIAS_SCALING,
        "leak_rate": LEAK,
        "sparsity": SPARSITY,
        "washout": 0,
        "output": "last",
    }
    path = os.path.join(OUT, "forecast.safetensors")
    write_safetensors(
        path,
        {"series": series, "w_in": w_in, "w": w, "w_out": w_out, "forecasts": forecasts},
        {"config": json.dumps(config, separators=(",", ":")), "ridge": repr(F_RIDGE),
         "window": str(FW), "horizon": str(FH), "split": json.dumps(F_SPLIT),
         "generator": f"numpy {np.__version__}"},
    )
    print("wrote", os.path.relpath(path, ROOT))


def main():
    rng = np.random.default_rng(20261207)
    w_raw = rng.uniform(-1, 1, (N, N)) * (rng.uniform(0, 1, (N, N)) >= SPARSITY)
    radius_raw = float(np.max(np.abs(np.linalg.eigvals(w_raw))))
    w = w_raw * (RHO / radius_raw)
    w_in = np.concatenate(
        [BIAS_SCALING * rng.uniform(-1, 1, (N, 1)), INPUT_SCALING * rng.uniform(-1, 1, (N, K))], axis=1
    )
    u = rng.uniform(-1, 1, (T, 1, K))
    # targets: a delayed product and a smoothed input, things a reservoir can fit in part
    y = np.zeros((T, 1, M))
    y[2:, 0, 0] = u[:-2, 0, 0] * u[1:-1, 0, 1]
    y[:, 0, 1] = np.convolve(u[:, 0, 1], np.ones(5) / 5, mode="full")[:T]

    x = np.zeros(N)
    states = np.zeros((T, 1, N))
    for t in range(T):
        pre = w_in @ np.concatenate([[1.0], u[t, 0]]) + w @ x
        x = (1 - LEAK) * x + LEAK * np.tanh(pre)
        states[t, 0] = x

    rows = range(WASHOUT, T)
    z = np.array([np.concatenate([[1.0], u[t, 0], states[t, 0]]) for t in rows])
    yy = np.array([y[t, 0] for t in rows])
    f = z.shape[1]
    za = np.concatenate([z, np.sqrt(RIDGE) * np.eye(f)])
    ya = np.concatenate([yy, np.zeros((f, M))])
    w_out, *_ = np.linalg.lstsq(za, ya, rcond=None)
    w_out = w_out.T  # [M, F]
    # the normal equations hold to rounding: a check of the reference itself
    lhs = (z.T @ z + RIDGE * np.eye(f)) @ w_out.T
    assert np.allclose(lhs, z.T @ yy, rtol=1e-10, atol=1e-10)

    config = {
        "input_size": K,
        "reservoir_size": N,
        "output_size": M,
        "spectral_radius": RHO,
        "input_scaling": INPUT_SCALING,
        "bias_scaling": BIAS_SCALING,
        "leak_rate": LEAK,
        "sparsity": SPARSITY,
        "washout": WASHOUT,
        "output": "every_step",
    }
    os.makedirs(OUT, exist_ok=True)
    write_safetensors(
        os.path.join(OUT, "readout.safetensors"),
        {
            "w_in": w_in,
            "w_raw": w_raw,
            "w": w,
            "u": u,
            "y": y,
            "states": states,
            "w_out": w_out,
            "radius_raw": np.array(radius_raw),
        },
        {"config": json.dumps(config, separators=(",", ":")), "ridge": repr(RIDGE),
         "generator": f"numpy {np.__version__}"},
    )
    print("wrote", os.path.relpath(os.path.join(OUT, "readout.safetensors"), ROOT))
    forecast_fixture()


if __name__ == "__main__":
    main()
