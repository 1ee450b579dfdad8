#!/usr/bin/env python3
"""PyTorch counterpart of recur's throughput benchmark (crates/recur/examples/throughput.rs).

Measures one torch.nn.LSTM / GRU / RNN (tanh) layer on the CPU in float32 with
torch.set_num_threads(2), in two modes:

  inference  forward under torch.inference_mode()
  training   zero_grad(set_to_none=False), forward, output.sum().backward()
             (the gradient of sum() is the all-ones output gradient recur's example uses)

and reports, per mode, the median wall time per iteration over --iters iterations after
--warmup untimed ones, tokens/s = seq_len*batch / time, and GFLOP/s with FLOPs counted as
2*T*B*G*H*(I+H) for the forward (G = 4 LSTM, 3 GRU, 1 RNN) and three times that for training.
Output format and keys are the same as the Rust example's (one line per mode, or one JSON
object per mode with --json: mode, cell, seq_len, batch, input_size, hidden_size,
ms_per_iter, tokens_per_s, gflops).

How to run and compare (from the repository root)
-------------------------------------------------
    cargo build --release --example throughput
    cargo run --release --example throughput -- --cell lstm --seq-len 100 --batch 64 \
        --input-size 256 --hidden-size 256 --iters 20 --warmup 3 --json
    python3 scripts/bench_pytorch.py --cell lstm --seq-len 100 --batch 64 \
        --input-size 256 --hidden-size 256 --iters 20 --warmup 3 --json

Both default to LSTM, T=100, B=64, I=H=256, 20 iterations, 3 warm-up. Divide the two
ms_per_iter values of the same mode (recur / PyTorch: below 1 means recur is faster). On a
shared or noisy machine, run each configuration several times alternating the two programs
and compare medians. recur's GEMMs use rayon's global pool (all cores; set
RAYON_NUM_THREADS=2 to pin it to the same thread count as PyTorch on a bigger machine).
"""

import argparse
import json
import statistics
import time

import torch

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cell", choices=sorted(GATES), default="lstm")
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--input-size", type=int, default=256)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.iters < 1:
        p.error("--iters must be at least 1")
    return a


def median_time(warmup, iters, f):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(a, mode, secs, flops):
    tokens_per_s = a.seq_len * a.batch / secs
    gflops = flops / secs / 1e9
    ms = secs * 1e3
    if a.json:
        print(
            json.dumps(
                {
                    "mode": mode,
                    "cell": a.cell,
                    "seq_len": a.seq_len,
                    "batch": a.batch,
                    "input_size": a.input_size,
                    "hidden_size": a.hidden_size,
                    "ms_per_iter": round(ms, 4),
                    "tokens_per_s": round(tokens_per_s, 1),
                    "gflops": round(gflops, 3),
                }
            ),
            flush=True,
        )
    else:
        print(
            f"torch {mode:<9} {a.cell:<4} T={a.seq_len} B={a.batch} I={a.input_size} "
            f"H={a.hidden_size}: {ms:9.3f} ms/iter {tokens_per_s:12.0f} tokens/s "
            f"{gflops:8.2f} GFLOP/s",
            flush=True,
        )


def main():
    a = parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[a.cell]
    model = module(a.input_size, a.hidden_size)  # float32, CPU, seq-first, tanh for RNN
    x = torch.rand(a.seq_len, a.batch, a.input_size) * 2 - 1
    fwd_flops = 2.0 * a.seq_len * a.batch * GATES[a.cell] * a.hidden_size * (
        a.input_size + a.hidden_size
    )

    def inference():
        with torch.inference_mode():
            model(x)

    report(a, "inference", median_time(a.warmup, a.iters, inference), fwd_flops)

    def training():
        model.zero_grad(set_to_none=False)
        out, _ = model(x)
        out.sum().backward()

    # Allocate the .grad tensors once so that zero_grad zeroes them, as recur's example does.
    training()
    report(a, "training", median_time(a.warmup, a.iters, training), 3.0 * fwd_flops)


if __name__ == "__main__":
    main()
