#!/usr/bin/env python3
"""An independent numpy twin of recur's Mackey-Glass experiment (Jaeger & Haas 2004).

Jaeger & Haas ("Harnessing nonlinearity", Science 304, 78-80, 2004) predict the
Mackey-Glass series (tau = 17) 84 steps ahead with a 1000-unit echo state network running
free on its own output and report NRMSE84 = 10^-4.2. This script rebuilds the experiment
from the equations alone (numpy only, float64, seeded) so that each of the choices the paper
makes, and each one where recur's example departs from it, can be switched on and off and
its effect measured:

  the series   dx/dt = 0.2 x(t-17) / (1 + x(t-17)^10) - 0.1 x(t), constant history 1.2,
               integrated with step 1/10 by explicit Euler (--integrator euler, the paper's
               discretisation) or classical Runge-Kutta (--integrator rk4, recur's
               `MackeyGlass`), sampled once per time unit, squashed as d = tanh(x - 1);
  the reservoir N tanh units (--n), 1% connectivity, weights uniform in (-1, 1), scaled to
               spectral radius 0.8; the teacher d(n) fed back with weights uniform in
               +-0.56; a bias: either a column of weights uniform in +-0.2 on a constant 1
               (--bias column, recur's example) or a constant input of 0.02 on weights
               uniform in +-1 (--bias input);
                   x(n) = tanh(W x(n-1) + w_back d(n) + w_bias) + nu(n)
               where nu(n) is uniform in +-noise (--noise) during the teacher-forced
               training run only;
  the readout  y(n) = w_out . z(n) predicts d(n+1) from z(n) = [1; d(n); x(n)]
               (--features full, recur's) or [1; x(n)] (--features state); fitted on the
               3000 - 1000 training rows after a washout of 1000, by ridge regression with
               lambda chosen by the 84-step error on 20 validation points from --ridge (a
               comma list; one value: no validation), solved from the SVD of Z (--solver
               svd, recur's; lambda = 0 is numpy's lstsq) or by a Cholesky factorisation of
               the normal equations (--solver normal, recur's route before);
  the test     from a teacher-forced state at a test point, the network runs free for 84
               steps feeding its output back; the error is taken at step 84 in the series'
               original scale (x = 1 + atanh(y)); NRMSE84 = sqrt(mean e^2 / var(x)).

--runs R draws R independent reservoirs (seeds seed .. seed + R - 1), each trained on its
own stretch of the series, and tests each on --points test points after its training
stretch; the NRMSE pools every squared error (the paper: 100 independent runs).

    python3 scripts/mackey_glass_ref.py                          # recur's example's setup
    python3 scripts/mackey_glass_ref.py --solver normal          # recur's readout before
    python3 scripts/mackey_glass_ref.py --ridge 0 --runs 10      # least squares, 10 reservoirs
    python3 scripts/mackey_glass_ref.py --table                  # the table in docs/family.md
"""

import argparse
import time

import numpy as np

TRAIN = 3000
WASHOUT = 1000
HORIZON = 84
SPACING = 20
PUBLISHED_LOG10 = -4.2


def mackey_glass(length, discard, integrator="rk4", subdivisions=10, tau=17, x0=1.2):
    """`length` samples, one per time unit, after `discard` units (see the module doc)."""
    s = subdivisions
    h = 1.0 / s
    lag = tau * s
    steps = (length + discard) * s
    x = np.empty(lag + steps + 1)
    x[: lag + 1] = x0

    def f(v, d):
        return 0.2 * d / (1.0 + d**10) - 0.1 * v

    for i in range(steps):
        now = lag + i
        d0, d1 = x[now - lag], x[now - lag + 1]
        xi = x[now]
        if integrator == "euler":
            x[now + 1] = xi + h * f(xi, d0)
        else:
            dm = 0.5 * (d0 + d1)
            k1 = f(xi, d0)
            k2 = f(xi + 0.5 * h * k1, dm)
            k3 = f(xi + 0.5 * h * k2, dm)
            k4 = f(xi + h * k3, d1)
            x[now + 1] = xi + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    sampled = x[lag + s :: s]  # x at t = 1, 2, ...
    return sampled[discard : discard + length].copy()


class Reservoir:
    def __init__(self, n, seed, bias):
        rng = np.random.default_rng(seed)
        w = rng.uniform(-1, 1, (n, n)) * (rng.random((n, n)) < 0.01)
        w *= 0.8 / np.max(np.abs(np.linalg.eigvals(w)))
        self.w = w
        self.w_back = rng.uniform(-0.56, 0.56, n)
        if bias == "column":
            self.w_bias = rng.uniform(-0.2, 0.2, n)
        else:
            self.w_bias = 0.02 * rng.uniform(-1, 1, n)
        self.rng = rng

    def run(self, d, noise=0.0):
        """Teacher-forced states x(n) after reading d(n), n = 0 .. len(d) - 1."""
        n = self.w.shape[0]
        x = np.zeros(n)
        out = np.empty((len(d), n))
        drive = np.outer(d, self.w_back) + self.w_bias
        if noise > 0:
            drive_noise = self.rng.uniform(-noise, noise, (len(d), n))
        for t in range(len(d)):
            x = np.tanh(self.w @ x + drive[t])
            if noise > 0:
                x = x + drive_noise[t]
            out[t] = x
        return out

    def free(self, x, d, w_out, features, horizon):
        """Batched free runs from states x [B, N] after reading d [B]: y at the horizon."""
        x = x.copy()
        u = d.copy()
        for step in range(horizon):
            if step > 0:
                x = np.tanh(x @ self.w.T + np.outer(u, self.w_back) + self.w_bias)
            z = design(x, u, features)
            u = z @ w_out
        return u


def design(x, d, features):
    ones = np.ones((x.shape[0], 1))
    if features == "full":
        return np.hstack([ones, d[:, None], x])
    return np.hstack([ones, x])


class Solver:
    """Ridge regression of y on z at any lambda.

    normal: (Z^T Z + lambda I)^-1 Z^T y by a Cholesky factorisation, recur's route before
            (a lambda whose matrix is not positive definite is skipped);
    svd:    Z = U S V^T, w = V diag(s / (s^2 + lambda)) U^T y; lambda = 0 is numpy's lstsq
            (singular values below eps * max(rows, F) * s_max left out).
    """

    def __init__(self, z, y, kind):
        self.kind = kind
        if kind == "normal":
            self.ztz, self.zty = z.T @ z, z.T @ y
        else:
            self.u, self.s, self.vt = np.linalg.svd(z, full_matrices=False)
            self.uty = self.u.T @ y
            self.cutoff = np.finfo(float).eps * max(z.shape) * self.s[0]

    def solve(self, lam):
        if self.kind == "normal":
            try:
                c = np.linalg.cholesky(self.ztz + lam * np.eye(len(self.ztz)))
            except np.linalg.LinAlgError:
                return None
            return np.linalg.solve(c.T, np.linalg.solve(c, self.zty))
        s = self.s
        if lam == 0:
            g = np.where(s > self.cutoff, 1.0 / np.where(s > 0, s, 1.0), 0.0)
        else:
            g = s / (s * s + lam)
        return self.vt.T @ (g * self.uty)


def one_run(args, x_series, d, res, start, lambdas, valid_points):
    """Train on d[start : start + TRAIN] and test: the squared errors at step 84."""
    var = np.var(x_series)
    train = d[start : start + TRAIN + 1]
    states = res.run(train[:-1], noise=args.noise)
    z = design(states[WASHOUT:], train[WASHOUT:-1], args.features)
    y = train[WASHOUT + 1 :]
    # a clean teacher-forced run over everything after the start, for the test points
    tail = d[start:]
    clean = res.run(tail[: len(tail) - HORIZON - 1])
    points = [TRAIN + i * SPACING for i in range(valid_points + args.points)]
    p = np.array(points)
    best = None
    solver = Solver(z, y, args.solver)
    for lam in lambdas:
        w_out = solver.solve(lam)
        if w_out is None:
            continue
        pred = res.free(clean[p - 1], tail[p - 1], w_out, args.features, HORIZON)
        pred = np.clip(pred, -1 + 1e-15, 1 - 1e-15)
        err = 1.0 + np.arctanh(pred) - x_series[start + p - 1 + HORIZON]
        v = np.mean(err[:valid_points] ** 2) / var if valid_points else 0.0
        if best is None or v < best[0]:
            best = (v, lam, err[valid_points:])
    return best[1], best[2]


def experiment(args, series_cache={}):
    lambdas = [float(v) for v in args.ridge.split(",")]
    valid_points = 20 if len(lambdas) > 1 else 0
    per_run = TRAIN + (valid_points + args.points) * SPACING + HORIZON + 2
    length = per_run * args.runs
    key = (args.integrator, length)
    if key not in series_cache:
        series_cache[key] = mackey_glass(length, 1000, args.integrator)
    x = series_cache[key]
    d = np.tanh(x - 1.0)
    errs, chosen = [], []
    for r in range(args.runs):
        res = Reservoir(args.n, args.seed + r, args.bias)
        start = r * per_run
        lam, e = one_run(args, x[: start + per_run], d[: start + per_run], res, start, lambdas,
                         valid_points)
        errs.append(e)
        chosen.append(lam)
    per_run = [np.sqrt(np.mean(e**2) / np.var(x)) for e in errs]
    if len(errs) > 1:
        print("  per run: " + " ".join(f"{v:.2e}" for v in per_run)
              + f"; median {np.median(per_run):.2e}", flush=True)
    e = np.concatenate(errs)
    return np.sqrt(np.mean(e**2) / np.var(x)), chosen


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="reservoir units")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=1, help="independent reservoirs")
    p.add_argument("--points", type=int, default=100, help="test points per run")
    p.add_argument("--noise", type=float, default=0.0, help="state noise amplitude")
    p.add_argument("--ridge", default="0,1e-12,1e-10,1e-8,1e-6,1e-4",
                   help="lambda grid (comma list; one value: no validation)")
    p.add_argument("--solver", choices=["svd", "normal"], default="svd",
                   help="svd: stable, lambda = 0 is lstsq; normal: Cholesky of Z^T Z + lambda I")
    p.add_argument("--integrator", choices=["rk4", "euler"], default="rk4")
    p.add_argument("--bias", choices=["column", "input"], default="column")
    p.add_argument("--features", choices=["full", "state"], default="full")
    p.add_argument("--table", action="store_true", help="run the table of docs/family.md")
    return p


NORMAL = {"solver": "normal", "ridge": "1e-12,1e-10,1e-8,1e-6,1e-4"}
TABLE = [
    # (what, overrides)
    ("normal equations (recur before), lambda on validation", NORMAL),
    ("  + Euler series", {**NORMAL, "integrator": "euler"}),
    ("  + bias +-0.02", {**NORMAL, "bias": "input"}),
    ("  + features [1; x] only", {**NORMAL, "features": "state"}),
    ("  + noise 1e-5", {**NORMAL, "noise": 1e-5}),
    ("SVD, lambda on validation (0 included)", {}),
    ("SVD, lambda = 0 (lstsq)", {"ridge": "0"}),
    ("  + Euler series", {"ridge": "0", "integrator": "euler"}),
    ("  + bias +-0.02", {"ridge": "0", "bias": "input"}),
    ("  + noise 1e-10", {"ridge": "0", "noise": 1e-10}),
    ("  + noise 1e-8", {"ridge": "0", "noise": 1e-8}),
    ("  + noise 1e-6", {"ridge": "0", "noise": 1e-6}),
    ("  + noise 1e-4", {"ridge": "0", "noise": 1e-4}),
]


def main():
    args = parser().parse_args()
    rows = TABLE if args.table else [("as given", {})]
    print(f"N = {args.n}, runs {args.runs} from seed {args.seed}, {args.points} test points each;"
          f" Jaeger & Haas 2004: NRMSE84 = {10**PUBLISHED_LOG10:.1e} (log10 {PUBLISHED_LOG10})")
    for what, over in rows:
        a = argparse.Namespace(**{**vars(args), **over})
        t0 = time.time()
        nrmse, chosen = experiment(a)
        lam = ",".join(sorted({f"{v:g}" for v in chosen}))
        print(f"{what:56s} {a.solver:6s} noise {a.noise:<6g} lambda {lam:<7s} {a.integrator:5s} "
              f"bias {a.bias:6s} features {a.features:5s} NRMSE84 {nrmse:.3e} "
              f"(log10 {np.log10(nrmse):.2f}) {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
