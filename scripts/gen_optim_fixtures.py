#!/usr/bin/env python3
"""Generate recur's optimizer and cross-entropy parity fixtures (float64, PyTorch).

What it makes
-------------
crates/recur/tests/fixtures/optim/<case>.safetensors, one per optimizer and option set:
    N = 10 steps of torch.optim.<Optimizer> (single-tensor CPU path, foreach=False) on one
    float64 parameter vector of P = 6 elements, fed a fixed, pre-drawn sequence of gradients.
    Tensors (all F64, row-major):
        params0  [P]      the parameters before the first step
        grads    [N, P]   the gradient given at each step (row t is step t + 1)
        params   [N, P]   the parameters after each step
    Metadata (string -> string): `optimizer` (adam | adamw | rmsprop | adagrad), every
    hyperparameter passed to the constructor under its PyTorch keyword (`lr`, `beta1`,
    `beta2`, `eps`, `weight_decay`, `amsgrad`, `alpha`, `momentum`, `centered`, `lr_decay`,
    `initial_accumulator_value`; floats as Python's shortest round-trip repr, booleans as
    true | false), `steps`, `generator`.
crates/recur/tests/fixtures/optim/schedule_<case>.safetensors, one per learning-rate schedule:
    torch.optim.lr_scheduler run over E epochs of B batches on a torch.optim.SGD; the rate is
    read before every optimizer step. The epoch scheduler is stepped after each epoch
    (ReduceLROnPlateau with that epoch's metric), a LinearLR warm-up after each batch.
    Tensors: lr [E * B] (the rate of each step), metrics [E] (plateau cases only).
    Metadata: `schedule` (the same schedule as recur's ScheduleConfig JSON), `base_lr`,
    `epochs`, `batches`, `torch` (the PyTorch construction, for the reader), `generator`.
crates/recur/tests/fixtures/optim/cross_entropy.safetensors
    F.cross_entropy on logits [N = 8, C = 5] with integer targets, some equal to the
    ignore index (0, a padding id), for reduction mean and sum, and autograd's gradient.
    Tensors: logits [8, 5], targets [8] (class ids stored as F64), loss_mean [], loss_sum [],
    grad_mean [8, 5], grad_sum [8, 5]. Metadata: ignore_index, generator.

The gradients are drawn once from a seeded generator and varied in scale (including a step
with zero gradient and sign flips), so that AMSGrad's maximum, the centered variance and the
lr decay all matter. recur's tests/optim_parity.rs replays every file and requires agreement
to 1e-12 relative.

How to run
----------
    pip install torch safetensors numpy
    python3 scripts/gen_optim_fixtures.py    # from anywhere; CPU only, < 2 s

Last run with torch 2.15.0+cu132, safetensors 0.8.0, numpy 2.4.6 (Python 3.11.7). The files
are written byte for byte deterministically (own safetensors writer with sorted keys; fixed
seeds), and each is read back with the safetensors library before the script goes on.
"""

import json
import os
import struct
import zlib

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "recur", "tests", "fixtures", "optim")
GENERATOR = f"torch {torch.__version__}"

STEPS = 10
P = 6

# (file name, torch class, keyword arguments)
CASES = [
    ("adam", "Adam", dict(lr=0.05)),
    ("adam_weight_decay", "Adam", dict(lr=0.05, weight_decay=0.1)),
    ("adam_amsgrad", "Adam", dict(lr=0.05, betas=(0.8, 0.95), amsgrad=True)),
    ("adamw", "AdamW", dict(lr=0.05, weight_decay=0.1)),
    ("adamw_defaults", "AdamW", dict()),
    ("rmsprop", "RMSprop", dict(lr=0.01)),
    ("rmsprop_momentum", "RMSprop", dict(lr=0.01, momentum=0.9)),
    ("rmsprop_centered", "RMSprop", dict(lr=0.01, centered=True)),
    (
        "rmsprop_centered_momentum_wd",
        "RMSprop",
        dict(lr=0.005, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.05),
    ),
    ("adagrad", "Adagrad", dict(lr=0.1)),
    (
        "adagrad_lr_decay",
        "Adagrad",
        dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1, weight_decay=0.01),
    ),
]


def meta_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(float(v))


def write_safetensors(path, tensors, metadata):
    """Writes F64 tensors with sorted keys and sorted metadata (byte-for-byte reproducible)."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.array(tensors[name], dtype="<f8", order="C")  # keeps 0-d scalars 0-d
        b = a.tobytes()
        header[name] = {
            "dtype": "F64",
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)  # align the data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
    back = load_file(path)  # read back with the safetensors library
    for name, a in tensors.items():
        assert np.array_equal(back[name], np.asarray(a, dtype="<f8"), equal_nan=True), name


def gradient_sequence(rng):
    """[STEPS, P] gradients of mixed scale: a zero step, sign flips, a shrinking tail."""
    g = rng.standard_normal((STEPS, P))
    g[:, 1] *= 10.0  # a large-gradient coordinate
    g[:, 2] *= 0.01  # a tiny-gradient coordinate
    g[3, :] = 0.0  # a step with zero gradient (moments decay, AdamW still decays)
    g[6:, 4] *= 0.05  # gradients that shrink late, so AMSGrad's maximum differs from v
    g[5, 5] = 0.0  # a single zero element
    return g


def optimizer_case(name, cls, kwargs, seed):
    rng = np.random.default_rng(seed)
    params0 = rng.standard_normal(P)
    grads = gradient_sequence(rng)
    p = torch.tensor(params0, dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, cls)([p], foreach=False, **kwargs)
    defaults = dict(opt.defaults)
    after = []
    for t in range(STEPS):
        p.grad = torch.tensor(grads[t], dtype=torch.float64)
        opt.step()
        after.append(p.detach().clone().numpy())
    meta = {
        "optimizer": cls.lower(),
        "steps": str(STEPS),
        "generator": GENERATOR,
    }
    # Every hyperparameter the update reads, from the optimizer's own defaults, so that the
    # file says exactly what PyTorch ran with.
    keys = {
        "Adam": ["lr", "betas", "eps", "weight_decay", "amsgrad"],
        "AdamW": ["lr", "betas", "eps", "weight_decay", "amsgrad"],
        "RMSprop": ["lr", "alpha", "eps", "weight_decay", "momentum", "centered"],
        "Adagrad": ["lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"],
    }[cls]
    for k in keys:
        v = defaults[k]
        if k == "betas":
            meta["beta1"], meta["beta2"] = meta_value(v[0]), meta_value(v[1])
        else:
            meta[k] = meta_value(v)
    tensors = {"params0": params0, "grads": grads, "params": np.stack(after)}
    write_safetensors(os.path.join(OUT, f"{name}.safetensors"), tensors, meta)


# (file name, base lr, epochs E, batches per epoch B, recur ScheduleConfig JSON,
#  warm-up LinearLR kwargs or None, epoch scheduler (class, kwargs) with `MILESTONES_AFTER_k`
#  expanded below, plateau metrics or None)
def plateau_metrics(seed, epochs):
    """A loss that falls, stalls with noise below the threshold, dips, and stalls again."""
    rng = np.random.default_rng(seed)
    m = np.concatenate([
        np.linspace(5.0, 3.0, epochs // 4),
        3.0 + 1e-5 * rng.standard_normal(epochs // 4),  # changes below threshold 1e-4 rel
        np.linspace(2.9, 2.0, epochs // 4),
        2.0 + 0.5 * rng.random(epochs - 3 * (epochs // 4)),
    ])
    return m


SCHEDULE_CASES = [
    ("step", 0.1, 10, 2,
     {"schedule": {"kind": "step", "step_size": 3, "gamma": 0.3}, "warmup": None},
     None, ("StepLR", dict(step_size=3, gamma=0.3)), None),
    # Zaremba et al. (2014): lr 1, halved every epoch after the 4th, 13 epochs.
    ("decay_after", 1.0, 13, 1,
     {"schedule": {"kind": "decay_after", "epochs": 4, "gamma": 0.5}, "warmup": None},
     None, ("MultiStepLR", dict(milestones=list(range(4, 13)), gamma=0.5)), None),
    ("exponential", 0.05, 12, 3,
     {"schedule": {"kind": "exponential", "gamma": 0.9}, "warmup": None},
     None, ("ExponentialLR", dict(gamma=0.9)), None),
    # past T_max the cosine climbs back, as PyTorch's recursive form does
    ("cosine", 0.5, 16, 1,
     {"schedule": {"kind": "cosine", "t_max": 5, "eta_min": 0.01}, "warmup": None},
     None, ("CosineAnnealingLR", dict(T_max=5, eta_min=0.01)), None),
    ("cosine_warmup", 0.2, 10, 3,
     {"schedule": {"kind": "cosine", "t_max": 10, "eta_min": 0.0},
      "warmup": {"start_factor": 0.1, "steps": 7}},
     dict(start_factor=0.1, end_factor=1.0, total_iters=7),
     ("CosineAnnealingLR", dict(T_max=10, eta_min=0.0)), None),
    ("exponential_warmup", 1.0, 6, 4,
     {"schedule": {"kind": "exponential", "gamma": 0.5},
      "warmup": {"start_factor": 0.25, "steps": 10}},
     dict(start_factor=0.25, end_factor=1.0, total_iters=10),
     ("ExponentialLR", dict(gamma=0.5)), None),
    ("plateau_defaults", 0.1, 60, 1,
     {"schedule": {"kind": "plateau", "mode": "min", "factor": 0.1, "patience": 10,
                   "threshold": 1e-4, "threshold_mode": "rel", "cooldown": 0,
                   "min_lr": 0.0, "eps": 1e-8}, "warmup": None},
     None, ("ReduceLROnPlateau", dict()), "min"),
    ("plateau_cooldown", 0.1, 40, 2,
     {"schedule": {"kind": "plateau", "mode": "min", "factor": 0.5, "patience": 2,
                   "threshold": 1e-4, "threshold_mode": "rel", "cooldown": 1,
                   "min_lr": 0.004, "eps": 1e-8},
      "warmup": {"start_factor": 0.5, "steps": 2}},
     dict(start_factor=0.5, end_factor=1.0, total_iters=2),
     ("ReduceLROnPlateau", dict(factor=0.5, patience=2, cooldown=1, min_lr=0.004)), "min"),
    ("plateau_max_abs", 1.0, 40, 1,
     {"schedule": {"kind": "plateau", "mode": "max", "factor": 0.3, "patience": 1,
                   "threshold": 0.05, "threshold_mode": "abs", "cooldown": 0,
                   "min_lr": 0.02, "eps": 1e-8}, "warmup": None},
     None, ("ReduceLROnPlateau", dict(mode="max", factor=0.3, patience=1, threshold=0.05,
                                      threshold_mode="abs", min_lr=0.02)), "max"),
]


def schedule_case(name, base_lr, epochs, batches, config, warmup, epoch_sched, plateau, seed):
    p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    warm = torch.optim.lr_scheduler.LinearLR(opt, **warmup) if warmup else None
    cls, kwargs = epoch_sched
    sched = getattr(torch.optim.lr_scheduler, cls)(opt, **kwargs)
    metrics = None
    if plateau:
        metrics = plateau_metrics(seed, epochs)
        if plateau == "max":
            metrics = -metrics
    lrs = []
    for e in range(epochs):
        for _ in range(batches):
            lrs.append(opt.param_groups[0]["lr"])
            p.grad = torch.zeros_like(p)
            opt.step()
            if warm:
                warm.step()
        if plateau:
            sched.step(float(metrics[e]))
        else:
            sched.step()
    construction = f"{cls}({kwargs})" + (f" + LinearLR({warmup}) per batch" if warmup else "")
    meta = {
        "schedule": json.dumps(config, separators=(",", ":")),
        "base_lr": repr(float(base_lr)),
        "epochs": str(epochs),
        "batches": str(batches),
        "torch": construction,
        "generator": GENERATOR,
    }
    tensors = {"lr": np.array(lrs)}
    if metrics is not None:
        tensors["metrics"] = metrics
    distinct = len(set(lrs))
    write_safetensors(os.path.join(OUT, f"schedule_{name}.safetensors"), tensors, meta)
    return distinct


def cross_entropy_case(seed):
    rng = np.random.default_rng(seed)
    n, c, ignore = 8, 5, 0
    logits = rng.standard_normal((n, c)) * 2.0
    logits[2, 3] = 40.0  # a large logit: the log-sum-exp path must stay exact
    targets = np.array([3, 0, 3, 1, 4, 0, 2, 1])  # rows 1 and 5 are padding
    tensors = {"logits": logits, "targets": targets.astype(np.float64)}
    for red in ["mean", "sum"]:
        x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        loss = F.cross_entropy(
            x, torch.tensor(targets), ignore_index=ignore, reduction=red
        )
        loss.backward()
        tensors[f"loss_{red}"] = loss.detach().numpy()
        tensors[f"grad_{red}"] = x.grad.numpy()
    meta = {"ignore_index": str(ignore), "generator": GENERATOR}
    write_safetensors(os.path.join(OUT, "cross_entropy.safetensors"), tensors, meta)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, cls, kwargs in CASES:
        # Each case's seed comes from its name, so adding a case changes no other file.
        optimizer_case(name, cls, kwargs, seed=zlib.crc32(name.encode()))
    cross_entropy_case(seed=7)
    for case in SCHEDULE_CASES:
        distinct = schedule_case(*case, seed=zlib.crc32(case[0].encode()))
        print(f"schedule_{case[0]}: {distinct} distinct rates")
    total = sum(
        os.path.getsize(os.path.join(OUT, f))
        for f in os.listdir(OUT)
        if f.endswith(".safetensors")
    )
    print(f"wrote {len(CASES) + 1 + len(SCHEDULE_CASES)} files to {OUT}, {total} bytes (safetensors {safetensors.__version__})")


if __name__ == "__main__":
    main()
