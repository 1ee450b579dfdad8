#!/usr/bin/env python3
"""One training step of recur.torch.LSTM/GRU against torch.nn.LSTM/GRU, in one process.

A step is forward + backward + optimizer.step() (SGD) of the module alone, with the loss
mean(output²) (a PackedSequence in and out for the ragged row), on the training shapes of
scripts/compare_bench.py's table. The two modules start from the same weights and are
timed alternately, step by step, so that both see the same machine load; Python's overhead
(the autograd.Function, gathering the parameters, numpy views) is part of recur's time. It
prints the median step of each and the ratio torch / recur (above 1: recur is faster).

    pip install ./crates/recur-py[torch]
    python3 scripts/bench_torch_dropin.py            # the table's training rows
    python3 scripts/bench_torch_dropin.py --quick    # tiny sizes, a few seconds
"""

import argparse
import importlib.util
import pathlib
import statistics
import time

import torch

import recur.torch as rt


def compare_bench():
    path = pathlib.Path(__file__).with_name("compare_bench.py")
    spec = importlib.util.spec_from_file_location("compare_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step_fn(module, opt, x, lengths):
    def step():
        opt.zero_grad(set_to_none=True)
        if lengths is None:
            out, _ = module(x)
            loss = out.pow(2).mean()
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
            out, _ = module(packed)
            loss = out.data.pow(2).mean()
        loss.backward()
        opt.step()
    return step


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="compare_bench.py's quick sizes")
    p.add_argument("--iters", type=int, default=0,
                   help="timed steps of each (default: the table's)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--only", default="", help="rows whose name contains this")
    a = p.parse_args()
    cb = compare_bench()
    configs = cb.quick_configs() if a.quick else cb.default_configs()
    # compare_bench's bf16 rows time `recur bench --bf16`; recur.torch trains in f32 only
    rows = [c for c in configs
            if c.mode == "train" and c.cell in ("lstm", "gru") and not c.bf16
            and a.only in c.name]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          "median ms per training step (forward + backward + SGD step)")
    print("| configuration | recur.torch ms | torch.nn ms | torch / recur |")
    print("|---|---:|---:|---:|")
    for c in rows:
        i = c.input_size or c.hidden_size
        kw = {"proj_size": c.proj_size} if c.proj_size else {}
        torch.manual_seed(0)
        ref = getattr(torch.nn, c.cell.upper())(i, c.hidden_size, **kw)
        ours = getattr(rt, c.cell.upper())(i, c.hidden_size, **kw)
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(c.seq_len, c.batch, i)
        lengths = None
        if c.ragged:
            g = torch.Generator().manual_seed(0)
            lo = max(1, c.seq_len // 2)
            lengths = torch.randint(lo, c.seq_len + 1, (c.batch,), generator=g).tolist()
        steps = {}
        for name, m in (("recur", ours), ("torch", ref)):
            steps[name] = step_fn(m, torch.optim.SGD(m.parameters(), lr=1e-3), x, lengths)
        times = {"recur": [], "torch": []}
        for _ in range(a.warmup):
            for s in steps.values():
                s()
        for _ in range(a.iters or c.iters):
            for name, s in steps.items():
                t0 = time.perf_counter()
                s()
                times[name].append(time.perf_counter() - t0)
        r, t = (statistics.median(times[n]) * 1e3 for n in ("recur", "torch"))
        print(f"| {c.name} | {r:.2f} | {t:.2f} | {t / r:.2f} |", flush=True)


if __name__ == "__main__":
    main()
