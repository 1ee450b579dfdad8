#!/usr/bin/env python3
"""PyTorch counterpart of `recur bench` (crates/recur-cli/src/cmd/bench.rs).

Times one torch.nn.LSTM / GRU / RNN (tanh) stack on the CPU in float32, with the same flags,
defaults, output lines and JSON keys as `recur bench`:

  --cell lstm|gru|rnn  --seq-len 100  --batch 64  --input-size 256  --hidden-size 256
  --num-layers 1  --bidirectional  --proj-size 0 (LSTM only)  --mode train|infer|stream
  (default: train, then infer)  --ragged  --threads (default: the available cores)
  --iters (default 20; stream 1000)  --warmup (default 3; stream 100)  --seed 0  --json

Modes, each timed as the median wall time of --iters iterations after --warmup untimed ones:

  train   model.zero_grad(set_to_none=False), forward, output.sum().backward(): the gradient
          of sum() is the all-ones output gradient recur uses. The input requires grad, as
          recur's backward always returns the input gradient.
  infer   forward under torch.inference_mode()
  stream  one call of the nn module on a single step [1, batch, input_size] with the (h, c)
          state carried from the previous call, under torch.inference_mode() (no
          nn.LSTMCell, so it is the module users would call; one step per iteration)

--ragged draws per-sequence lengths uniformly in [max(1, seq_len // 2), seq_len] from
--seed (the same distribution as recur's, not the same draw) and runs the batch as a
PackedSequence: pack_padded_sequence(x, lengths, enforce_sorted=False) is inside the timed
iteration, as it is in a user's loop; train sums the packed output's data.

Reported per mode: ms_per_iter, tokens_per_s = tokens / time with tokens = seq_len*batch
(--ragged: the sum of the lengths; stream: batch, with us_per_step too) and gflops = FLOP/s
/ 1e9 with FLOPs counted per layer and direction as 2*N*G*H*(I + R) for the forward (N
tokens, G = 4 LSTM, 3 GRU, 1 RNN; I = input_size for layer 0, D*R above it; R = proj_size
with a projection, which adds 2*N*P*H, else hidden_size) and three times that for train.
JSON objects carry "engine": "torch" where recur's carry "engine": "recur".

--autocast-bf16 runs the train and infer modes' forward under
torch.autocast("cpu", dtype=torch.bfloat16) (the weights stay float32; autocast casts the
operands of the module's products to bfloat16 each call): PyTorch's own bf16 training, the
twin of `recur bench --bf16`. Its JSON objects carry "bf16": true.

How to run and compare (from the repository root; `pip install torch`)
-----------------------------------------------------------------------
    cargo build --release -p recur-cli
    target/release/recur bench --cell lstm --threads 2 --json
    python3 scripts/bench_pytorch.py --cell lstm --threads 2 --json

Pass both the same flags (and the same --threads: recur sizes rayon's pool, this script
calls torch.set_num_threads). Divide the ms_per_iter of the same mode, recur / PyTorch:
below 1 means recur is faster. Single runs on a shared machine vary by 15-30%: run each
configuration several times, alternating the two programs, and compare medians.
scripts/compare_bench.py does that for the performance issue's configurations, with ONNX
Runtime as a third engine, and prints the ratio table.
"""

import argparse
import json
import os
import statistics
import time

import torch

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
MODES = ("train", "infer", "stream")
MAX_TENSOR_VALUES = 1 << 32


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_args(argv=None):
    """The flags of `argv` (default: the command line), checked as `recur bench` checks them."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cell", choices=sorted(GATES), default="lstm",
                   help="recurrent cell (rnn = Elman RNN with tanh)")
    p.add_argument("--seq-len", type=int, default=100,
                   help="time steps T per sequence (the longest, with --ragged)")
    p.add_argument("--batch", type=int, default=64, help="sequences per batch B")
    p.add_argument("--input-size", type=int, default=256, help="input features I")
    p.add_argument("--hidden-size", type=int, default=256,
                   help="hidden units H per layer and direction")
    p.add_argument("--num-layers", type=int, default=1, help="stacked recurrent layers")
    p.add_argument("--bidirectional", action="store_true",
                   help="run each layer in both directions (train and infer only)")
    p.add_argument("--proj-size", type=int, default=0,
                   help="LSTM projection size P (0 = none; must be smaller than --hidden-size)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="what to time (default: train, then infer)")
    p.add_argument("--ragged", action="store_true",
                   help="random per-sequence lengths in [seq_len/2, seq_len], drawn from "
                   "--seed, run as a PackedSequence (train and infer only)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: the available cores)")
    p.add_argument("--iters", type=int, default=None,
                   help="timed iterations (default: 20; stream: 1000)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed iterations before them (default: 3; stream: 100)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the weights, the inputs and the --ragged lengths")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per mode instead of a line")
    p.add_argument("--autocast-bf16", action="store_true",
                   help='train and infer under torch.autocast("cpu", dtype=torch.bfloat16)')
    a = p.parse_args(argv)
    for flag in ("seq_len", "batch", "input_size", "hidden_size", "num_layers", "threads",
                 "iters"):
        v = getattr(a, flag)
        if v is not None and v < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1, got {v}")
    if a.warmup is not None and a.warmup < 0:
        p.error(f"--warmup must be at least 0, got {a.warmup}")
    if a.proj_size < 0:
        p.error(f"--proj-size must be at least 0, got {a.proj_size}")
    if a.proj_size > 0:
        if a.cell != "lstm":
            p.error(f"--proj-size needs --cell lstm (PyTorch has no projection for {a.cell})")
        if a.proj_size >= a.hidden_size:
            p.error(f"--proj-size must be smaller than --hidden-size ({a.hidden_size}), "
                    f"got {a.proj_size}")
    if a.autocast_bf16 and a.mode == "stream":
        p.error("--autocast-bf16 is for --mode train or infer")
    if a.mode == "stream":
        if a.bidirectional:
            p.error("--mode stream cannot run --bidirectional: the reverse direction needs "
                    "the whole sequence")
        if a.ragged:
            p.error("--mode stream takes one step of every sequence; --ragged applies to "
                    "train and infer")
    d = 2 if a.bidirectional else 1
    width = max(a.input_size, d * (a.proj_size or a.hidden_size))
    if a.seq_len * a.batch * width > MAX_TENSOR_VALUES:
        p.error(f"--seq-len x --batch x features ({a.seq_len} x {a.batch} x {width}) exceeds "
                f"{MAX_TENSOR_VALUES} values per tensor")
    if a.threads is None:
        a.threads = available_cores()
    return a


def iters_for(a, mode):
    return a.iters if a.iters is not None else (1000 if mode == "stream" else 20)


def warmup_for(a, mode):
    return a.warmup if a.warmup is not None else (100 if mode == "stream" else 3)


def ragged_lengths(seq_len, batch, seed):
    """batch lengths uniform in [max(1, seq_len // 2), seq_len] (recur's distribution)."""
    lo = max(1, seq_len // 2)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, seq_len + 1, (batch,), generator=g, dtype=torch.int64)


def forward_flops(a, tokens):
    """Forward FLOPs of the whole stack for `tokens` (sequence, step) pairs."""
    g, h, p = GATES[a.cell], a.hidden_size, a.proj_size
    r = p or h
    d = 2 if a.bidirectional else 1
    total = 0.0
    for layer in range(a.num_layers):
        i = a.input_size if layer == 0 else d * r
        total += d * (2.0 * tokens * g * h * (i + r) + 2.0 * tokens * p * h)
    return total


def median_time(warmup, iters, f):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def result(a, mode, secs, tokens, flops):
    """The JSON object of one timed mode (the keys of `recur bench --json`)."""
    obj = {
        "engine": "torch",
        "mode": mode,
        "cell": a.cell,
        "seq_len": a.seq_len,
        "batch": a.batch,
        "input_size": a.input_size,
        "hidden_size": a.hidden_size,
        "num_layers": a.num_layers,
        "bidirectional": a.bidirectional,
        "proj_size": a.proj_size,
        "ragged": a.ragged,
        "threads": torch.get_num_threads(),
        "iters": iters_for(a, mode),
        "warmup": warmup_for(a, mode),
        "seed": a.seed,
        "tokens_per_iter": tokens,
        "ms_per_iter": secs * 1e3,
        "tokens_per_s": tokens / secs,
        "gflops": flops / secs / 1e9,
    }
    if mode == "stream":
        obj["us_per_step"] = secs * 1e6
    if a.autocast_bf16:
        obj["bf16"] = True
    return obj


def report(a, mode, secs, tokens, flops):
    ms = secs * 1e3
    tokens_per_s = tokens / secs
    gflops = flops / secs / 1e9
    threads = torch.get_num_threads()
    if a.json:
        print(json.dumps(result(a, mode, secs, tokens, flops)), flush=True)
    else:
        step = f" ({secs * 1e6:.2f} µs/step)" if mode == "stream" else ""
        print(
            f"torch {mode:<6} {a.cell:<4} T={a.seq_len} B={a.batch} I={a.input_size} "
            f"H={a.hidden_size} L={a.num_layers} D={2 if a.bidirectional else 1} "
            f"P={a.proj_size}{' ragged' if a.ragged else ''}"
            f"{' autocast-bf16' if a.autocast_bf16 else ''} threads={threads}: "
            f"{ms:10.4f} ms/iter{step} {tokens_per_s:12.0f} tokens/s {gflops:8.2f} GFLOP/s",
            flush=True,
        )


def build_model(a):
    torch.manual_seed(a.seed)
    common = dict(num_layers=a.num_layers, bidirectional=a.bidirectional)
    if a.cell == "lstm":
        return torch.nn.LSTM(a.input_size, a.hidden_size, proj_size=a.proj_size, **common)
    if a.cell == "gru":
        return torch.nn.GRU(a.input_size, a.hidden_size, **common)
    return torch.nn.RNN(a.input_size, a.hidden_size, nonlinearity="tanh", **common)


def random_input(a, mode):
    """The seeded input of `mode`, uniform in [-1, 1): [seq_len, batch, input_size], for
    stream one step [1, batch, input_size]."""
    g = torch.Generator().manual_seed(a.seed)
    steps = 1 if mode == "stream" else a.seq_len
    return torch.rand(steps, a.batch, a.input_size, generator=g) * 2 - 1


def initial_state(a):
    """The zero state the stream mode starts from: h0, or (h0, c0) for the LSTM."""
    ld = a.num_layers  # stream is unidirectional
    h0 = torch.zeros(ld, a.batch, a.proj_size or a.hidden_size)
    return (h0, torch.zeros(ld, a.batch, a.hidden_size)) if a.cell == "lstm" else h0


def time_mode(a, model, mode, lengths):
    """(seconds per iteration, tokens per iteration, FLOPs per iteration)."""
    iters, warmup = iters_for(a, mode), warmup_for(a, mode)
    x = random_input(a, mode)
    if mode == "stream":
        state = [initial_state(a)]

        def step():
            with torch.inference_mode():
                _, state[0] = model(x, state[0])

        return median_time(warmup, iters, step), a.batch, forward_flops(a, a.batch)

    tokens = int(lengths.sum()) if lengths is not None else a.seq_len * a.batch
    fwd = forward_flops(a, tokens)

    def inputs(t):
        if lengths is None:
            return t
        return torch.nn.utils.rnn.pack_padded_sequence(t, lengths, enforce_sorted=False)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast_bf16)

    if mode == "infer":
        def infer():
            with torch.inference_mode(), autocast():
                model(inputs(x))

        return median_time(warmup, iters, infer), tokens, fwd

    xg = x.clone().requires_grad_(True)

    def train():
        model.zero_grad(set_to_none=False)
        xg.grad = None
        with autocast():
            out, _ = model(inputs(xg))
        (out.data if lengths is not None else out).float().sum().backward()

    train()  # allocate the .grad tensors once so that zero_grad zeroes them, as recur does
    return median_time(warmup, iters, train), tokens, 3.0 * fwd


def measure(a):
    """Times every mode of `a` (parse_args' result); yields (mode, seconds per iteration,
    tokens per iteration, FLOPs per iteration)."""
    torch.set_num_threads(a.threads)
    model = build_model(a)  # float32, CPU, seq-first
    lengths = ragged_lengths(a.seq_len, a.batch, a.seed) if a.ragged else None
    for mode in [a.mode] if a.mode else ["train", "infer"]:
        secs, tokens, flops = time_mode(a, model, mode, lengths)
        yield mode, secs, tokens, flops


def main():
    a = parse_args()
    for mode, secs, tokens, flops in measure(a):
        report(a, mode, secs, tokens, flops)


if __name__ == "__main__":
    main()
