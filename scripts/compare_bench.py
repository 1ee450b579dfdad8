#!/usr/bin/env python3
"""recur against PyTorch and ONNX Runtime on the performance issue's configurations.

For each configuration (all float32, CPU) this runs, --repeats times in turn:

  recur        `recur bench ... --mode M --json` (crates/recur-cli/src/cmd/bench.rs), a fresh
               process each time;
  PyTorch      the same flags through scripts/bench_pytorch.py's own functions (parse_args,
               measure), in this process;
  ONNX Runtime (infer and stream only) the same torch module, exported once by
               torch.onnx.export (the legacy TorchScript exporter, dynamo=False, opset 22, one
               in-memory model without external data) and run by onnxruntime's CPU provider
               with intra_op_num_threads = --threads, inter_op_num_threads = 1 and sequential
               execution. infer runs the [T, B, I] sequence; stream runs one [1, B, I] step per
               iteration with initial_h / initial_c fed from the previous step's Y_h / Y_c.
               Timed by bench_pytorch.median_time with the warmup and iterations of the other
               two engines; GFLOP/s by bench_pytorch.forward_flops. The exported graph's
               outputs are checked against PyTorch's once per configuration.

and prints a Markdown table of the medians over the repeats (min–max after them when
--repeats > 1): ms per iteration (stream: µs per step), recur's GFLOP/s, and speed = the
other engine's time per token / recur's time per token, so above 1 means recur is faster.
With equal token counts that is the ratio of the times; --ragged rows differ because
recur and bench_pytorch draw their lengths from the same distribution but not the same
draw, so tokens are counted per engine (each engine's JSON carries tokens_per_iter).

    pip install torch onnx onnxruntime
    cargo build --release
    python3 scripts/compare_bench.py                       # the issue's table, ~5-15 min
    python3 scripts/compare_bench.py --quick               # tiny sizes: a smoke check
    python3 scripts/compare_bench.py --only stream --repeats 5 --json runs.json
    python3 scripts/compare_bench.py --report run1.json run2.json   # saved runs, side by side

It is a benchmark, not a test: CI never runs it. On a shared machine single runs vary by
15-30%; medians of several alternating runs are what to compare.
"""

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import torch
except ModuleNotFoundError:
    sys.exit("error: PyTorch is not installed: pip install torch onnxruntime")
import bench_pytorch  # noqa: E402  (needs torch, checked above)

try:
    import numpy as np
    import onnxruntime as ort
except ModuleNotFoundError:
    np = ort = None

OPSET = 22
# float32 ONNX Runtime against PyTorch on the same module and input: both run the same
# equations in a different order, so they agree to a few ulps per step; a graph that is
# wrong (a gate order, a missing state) is off by far more than this.
ORT_CHECK_ATOL = 1e-4
DEFAULT_STREAM_ITERS = 2000


@dataclass(frozen=True)
class Config:
    """One row of the table: a `recur bench` configuration and one mode."""

    name: str
    mode: str  # train | infer | stream
    cell: str
    batch: int
    hidden_size: int
    seq_len: int = 100
    input_size: int = 0  # 0: equal to hidden_size
    proj_size: int = 0
    ragged: bool = False
    iters: int = 20  # timed iterations (stream: steps)
    bf16: bool = False  # a bf16 row: recur --bf16 and PyTorch autocast beside both in f32

    def flags(self, threads, iters):
        """The flags both `recur bench` and bench_pytorch.py take (warmup: their default)."""
        f = ["--cell", self.cell, "--seq-len", str(self.seq_len), "--batch", str(self.batch),
             "--input-size", str(self.input_size or self.hidden_size),
             "--hidden-size", str(self.hidden_size), "--mode", self.mode,
             "--threads", str(threads), "--iters", str(iters or self.iters), "--json"]
        if self.proj_size:
            f += ["--proj-size", str(self.proj_size)]
        if self.ragged:
            f.append("--ragged")
        return f


def _rows(cell, modes, seq_len, batch, hidden, iters, suffix="", **kw):
    name = f"{cell}-T{seq_len}-B{batch}-H{hidden}{suffix}"
    return [Config(name, m, cell, batch, hidden, seq_len=seq_len, iters=iters, **kw)
            for m in modes]


def _stream(cell, hidden, iters):
    return Config(f"{cell}-B1-H{hidden}", "stream", cell, 1, hidden, seq_len=1, iters=iters)


def default_configs():
    """The performance issue's table (one layer, I = H unless noted)."""
    c = []
    c += _rows("lstm", ["infer"], 100, 64, 256, 10)
    c += _rows("lstm", ["infer", "train"], 100, 64, 512, 10)
    c += _rows("lstm", ["train"], 100, 64, 256, 10)
    c += _rows("gru", ["train"], 100, 64, 512, 10)
    c += _rows("rnn", ["train"], 100, 64, 512, 10)
    c += _rows("gru", ["infer"], 100, 64, 256, 10)
    c += _rows("gru", ["infer"], 100, 64, 512, 10)
    c += _rows("lstm", ["train"], 1000, 1, 256, 10)
    c += _rows("gru", ["train"], 1000, 1, 256, 10)
    for batch in (1, 4):
        for cell in ("lstm", "gru", "rnn"):
            c += _rows(cell, ["train", "infer"], 100, batch, 256, 20)
    for cell in ("lstm", "gru"):
        for hidden in (256, 512):
            c.append(_stream(cell, hidden, DEFAULT_STREAM_ITERS))
    c += _rows("lstm", ["train"], 100, 64, 256, 10, "-ragged", ragged=True)
    c += _rows("lstm", ["train"], 100, 64, 256, 10, "-P128", proj_size=128)
    c += bf16_configs()
    return c


def bf16_configs():
    """bf16 training (`recur bench --bf16`), timed beside recur f32, PyTorch f32 and PyTorch
    under torch.autocast("cpu", dtype=torch.bfloat16); their own table."""
    c = []
    for cell, hidden in (("lstm", 512), ("lstm", 256), ("gru", 512), ("rnn", 512)):
        c += _rows(cell, ["train"], 100, 64, hidden, 10, "-bf16", bf16=True)
    return c


def quick_configs():
    """Tiny sizes, every path of the script once: a smoke check of a few seconds."""
    c = []
    c += _rows("lstm", ["train", "infer"], 10, 4, 32, 5)
    c += _rows("gru", ["infer"], 10, 4, 32, 5)
    c += _rows("rnn", ["train"], 10, 4, 32, 5)
    c += [_stream("lstm", 32, 200), _stream("gru", 32, 200)]
    c += _rows("lstm", ["train"], 10, 4, 32, 5, "-ragged", ragged=True)
    c += _rows("lstm", ["train"], 10, 4, 32, 5, "-P16", proj_size=16)
    c += _rows("lstm", ["train"], 10, 4, 32, 5, "-bf16", bf16=True)
    return c


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recur", default=os.path.join("target", "release", "recur"),
                   help="the recur binary (default: target/release/recur)")
    p.add_argument("--threads", type=int, default=2,
                   help="threads of every engine (default: 2)")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs of each configuration, alternating recur / PyTorch / ONNX "
                   "Runtime; the table shows medians and min-max (default: 3)")
    p.add_argument("--iters", type=int, default=None,
                   help="timed iterations of every configuration, stream: steps (default: "
                   f"per configuration, 10 or 20; stream {DEFAULT_STREAM_ITERS})")
    p.add_argument("--quick", action="store_true",
                   help="a tiny configuration set (T=10 B=4 H=32) for a smoke check")
    p.add_argument("--only", default=None, metavar="SUBSTRING",
                   help="run the configurations whose 'name mode' contains SUBSTRING")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="write every raw measurement to FILE")
    p.add_argument("--markdown", default=None, metavar="FILE",
                   help="write the table (with its notes) to FILE")
    p.add_argument("--report", nargs="+", default=None, metavar="FILE",
                   help="run nothing: print the table of runs saved by --json, the first "
                   "file's medians with every file's speeds beside them")
    a = p.parse_args()
    for flag in ("threads", "repeats", "iters"):
        v = getattr(a, flag)
        if v is not None and v < 1:
            p.error(f"--{flag} must be at least 1, got {v}")
    return a


# ---------------------------------------------------------------------------------------
# The three engines; each returns the JSON object of `recur bench --json`'s keys
# ---------------------------------------------------------------------------------------


def run_recur(binary, flags):
    cmd = [binary, "bench", *flags]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        raise SystemExit(f"error: `{' '.join(cmd)}` failed: {why}")
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def run_torch(flags, autocast=False):
    a = bench_pytorch.parse_args(flags + (["--autocast-bf16"] if autocast else []))
    [(mode, secs, tokens, flops)] = bench_pytorch.measure(a)
    return bench_pytorch.result(a, mode, secs, tokens, flops)


class OrtModel:
    """One configuration's torch module exported to ONNX, with its inputs and PyTorch's
    outputs on them; `measure` times a fresh onnxruntime session on it."""

    def __init__(self, flags):
        a = bench_pytorch.parse_args(flags)
        torch.set_num_threads(a.threads)
        self.a, self.mode = a, a.mode
        model = bench_pytorch.build_model(a).eval()
        lstm = a.cell == "lstm"
        x = bench_pytorch.random_input(a, a.mode)
        if a.mode == "stream":
            state = bench_pytorch.initial_state(a)
            args, self.inputs = (x, state), ["X", "initial_h"] + (["initial_c"] if lstm else [])
            feeds = [x] + list(state if lstm else [state])
        else:
            args, self.inputs, feeds = (x,), ["X"], [x]
        self.outputs = ["Y", "Y_h"] + (["Y_c"] if lstm else [])
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, buf, dynamo=False, opset_version=OPSET,
                              input_names=self.inputs, output_names=self.outputs,
                              do_constant_folding=True)
        self.onnx = buf.getvalue()
        self.feeds = {n: t.numpy() for n, t in zip(self.inputs, feeds)}
        with torch.inference_mode():
            y, state = model(*args)
        self.expected = [y.numpy()] + [s.numpy() for s in (state if lstm else [state])]

    def session(self):
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.a.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(self.onnx, so, providers=["CPUExecutionProvider"])
        got = [i.name for i in sess.get_inputs()]
        if got != self.inputs:
            raise RuntimeError(f"the exported graph takes {got}, expected {self.inputs}")
        return sess

    def check(self):
        """Raises unless onnxruntime's outputs equal PyTorch's within ORT_CHECK_ATOL."""
        outs = self.session().run(self.outputs, self.feeds)
        for name, got, want in zip(self.outputs, outs, self.expected):
            err = float(np.max(np.abs(got - want)))
            if got.shape != want.shape or not err <= ORT_CHECK_ATOL:
                raise RuntimeError(f"onnxruntime's {name} {got.shape} differs from PyTorch's "
                                   f"{want.shape} by {err:.3g} (> {ORT_CHECK_ATOL})")

    def measure(self):
        a, mode = self.a, self.mode
        sess = self.session()
        feeds = dict(self.feeds)
        if mode == "stream":
            def f():
                outs = sess.run(self.outputs, feeds)
                feeds["initial_h"] = outs[1]
                if a.cell == "lstm":
                    feeds["initial_c"] = outs[2]
            tokens = a.batch
        else:
            def f():
                sess.run(self.outputs, feeds)
            tokens = a.seq_len * a.batch
        secs = bench_pytorch.median_time(bench_pytorch.warmup_for(a, mode),
                                         bench_pytorch.iters_for(a, mode), f)
        del sess  # joins its threads before the next engine runs
        obj = bench_pytorch.result(a, mode, secs, tokens, bench_pytorch.forward_flops(a, tokens))
        obj["engine"], obj["threads"] = "onnxruntime", a.threads
        return obj


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------


def time_of(obj):
    """ms per iteration, or µs per step for stream."""
    return obj["us_per_step"] if obj["mode"] == "stream" else obj["ms_per_iter"]


def fmt(v):
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def cell_of(runs, repeats):
    if not runs:
        return "—"
    times = [time_of(r) for r in runs]
    s = fmt(statistics.median(times))
    if repeats > 1:
        s += f" ({fmt(min(times))}–{fmt(max(times))})"
    return s


def speed(recur, other):
    """other's median time per token / recur's: above 1, recur is faster."""
    if not recur or not other:
        return "—"
    per_token = [statistics.median(time_of(r) / r["tokens_per_iter"] for r in runs)
                 for runs in (recur, other)]
    v = per_token[1] / per_token[0]
    return f"{v:.2f}×" if v < 100 else f"{v:,.0f}×"


def table(rows, repeats):
    mode_names = {"train": "forward+backward", "infer": "inference",
                  "stream": "stream, µs per step"}
    spread = " (min–max)" if repeats > 1 else ""
    lines = [f"| configuration | mode | recur ms{spread} | PyTorch ms{spread} | ORT ms{spread} "
             "| recur GFLOP/s | speed vs PyTorch | speed vs ORT |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        cfg, m = row["config"], row["measurements"]
        gflops = fmt(statistics.median(r["gflops"] for r in m["recur"]))
        lines.append(
            f"| {cfg['name']} | {mode_names[cfg['mode']]} | {cell_of(m['recur'], repeats)} | "
            f"{cell_of(m['torch'], repeats)} | {cell_of(m['onnxruntime'], repeats)} | "
            f"{gflops} | {speed(m['recur'], m['torch'])} | "
            f"{speed(m['recur'], m['onnxruntime'])} |")
    return "\n".join(lines)


def bf16_table(rows, repeats):
    """The bf16 rows: recur's bf16 training beside recur f32, PyTorch f32 and PyTorch's
    autocast bf16, each speed the other's time per token / recur bf16's."""
    spread = " (min–max)" if repeats > 1 else ""
    lines = [f"| configuration | mode | recur bf16 ms{spread} | recur f32 ms{spread} "
             f"| PyTorch f32 ms{spread} | PyTorch autocast bf16 ms{spread} "
             "| recur bf16 GFLOP/s | speed vs recur f32 | speed vs PyTorch f32 "
             "| speed vs PyTorch autocast |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        cfg, m = row["config"], row["measurements"]
        gflops = fmt(statistics.median(r["gflops"] for r in m["recur"]))
        lines.append(
            f"| {cfg['name']} | forward+backward | {cell_of(m['recur'], repeats)} | "
            f"{cell_of(m['recur_f32'], repeats)} | {cell_of(m['torch'], repeats)} | "
            f"{cell_of(m['torch_bf16'], repeats)} | {gflops} | "
            f"{speed(m['recur'], m['recur_f32'])} | {speed(m['recur'], m['torch'])} | "
            f"{speed(m['recur'], m['torch_bf16'])} |")
    return "\n".join(lines)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(files):
    """The first saved run's table, with a last column of each row's speeds in every saved
    run (the first included), in the order of the files."""
    runs = []
    for name in files:
        try:
            with open(name) as f:
                runs.append(json.load(f))
        except (OSError, ValueError) as e:
            sys.exit(f"error: {name}: not a run saved by --json ({e})")
    key = lambda row: (row["config"]["name"], row["config"]["mode"])  # noqa: E731
    by_key = [{key(r): r for r in run["rows"]} for run in runs]
    first = dict(runs[0])
    bf16_rows = [r for r in first["rows"] if r["config"].get("bf16")]
    first["rows"] = [r for r in first["rows"] if not r["config"].get("bf16")]
    lines = table(first["rows"], first["meta"]["repeats"]).split("\n")
    lines[0] += f" speed in runs 1–{len(runs)} vs PyTorch (vs ORT) |"
    lines[1] += "---:|"
    for i, row in enumerate(first["rows"]):
        speeds = []
        for run in by_key:
            other = run.get(key(row))
            if other is None:
                speeds.append("—")
                continue
            m = other["measurements"]
            vs_torch, vs_ort = speed(m["recur"], m["torch"]), speed(m["recur"], m["onnxruntime"])
            speeds.append(vs_torch if vs_ort == "—" else f"{vs_torch} ({vs_ort})")
        lines[i + 2] += " " + ", ".join(speeds) + " |"
    meta = first["meta"]
    print(f"recur vs PyTorch {meta['torch']} and ONNX Runtime {meta['onnxruntime']}, "
          f"{meta['threads']} threads ({meta['cpu']}): the table of {files[0]}; the last "
          f"column gives each row's speeds in {', '.join(files)}.\n")
    print("\n".join(lines))
    if bf16_rows:
        print("\nbf16 training (the first file's):\n")
        print(bf16_table(bf16_rows, first["meta"]["repeats"]))


def main():
    a = parse_args()
    if a.report:
        report(a.report)
        return
    if not (os.path.isfile(a.recur) and os.access(a.recur, os.X_OK)):
        sys.exit(f"error: no recur binary at {a.recur}: run `cargo build --release` first "
                 "(or pass --recur PATH)")
    configs = quick_configs() if a.quick else default_configs()
    if a.only:
        configs = [c for c in configs if a.only in f"{c.name} {c.mode}"]
        if not configs:
            sys.exit(f"error: --only {a.only!r} matches no configuration")

    notes = []
    if ort is None:
        notes.append("ONNX Runtime is not installed (`pip install torch onnxruntime`): "
                     "its column shows —.")
    if any(c.mode == "train" for c in configs):
        notes.append("ORT is timed for inference and streaming only (no training graph).")
    meta = {
        "recur": a.recur,
        "threads": a.threads,
        "repeats": a.repeats,
        "iters": a.iters,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__ if ort else None,
        "cpu": cpu_name(),
        "cores": bench_pytorch.available_cores(),
    }
    print(f"recur ({a.recur}) vs PyTorch {torch.__version__} and ONNX Runtime "
          f"{meta['onnxruntime'] or '(not installed)'}: float32, {a.threads} threads, "
          f"{meta['cpu']}, {len(configs)} configurations × {a.repeats} runs", file=sys.stderr)

    rows = []
    for k, cfg in enumerate(configs, 1):
        flags = cfg.flags(a.threads, a.iters)
        ort_model = None
        if ort is not None and cfg.mode != "train" and not cfg.bf16:
            try:
                ort_model = OrtModel(flags)
                ort_model.check()
            except Exception as e:  # the ORT column is a comparison, not the subject
                notes.append(f"{cfg.name} {cfg.mode}: ONNX Runtime not run: {e}")
                ort_model = None
        m = {"recur": [], "torch": [], "onnxruntime": []}
        if cfg.bf16:
            m.update(recur_f32=[], torch_bf16=[])
        for _ in range(a.repeats):
            if cfg.bf16:
                m["recur"].append(run_recur(a.recur, flags + ["--bf16"]))
                m["recur_f32"].append(run_recur(a.recur, flags))
                m["torch"].append(run_torch(flags))
                m["torch_bf16"].append(run_torch(flags, autocast=True))
                continue
            m["recur"].append(run_recur(a.recur, flags))
            m["torch"].append(run_torch(flags))
            if ort_model is not None:
                m["onnxruntime"].append(ort_model.measure())
        row = {"config": asdict(cfg), "flags": flags, "measurements": m}
        rows.append(row)
        unit = "µs/step" if cfg.mode == "stream" else "ms"
        medians = ", ".join(
            f"{e} {fmt(statistics.median(time_of(r) for r in runs))}"
            for e, runs in m.items() if runs)
        print(f"[{k}/{len(configs)}] {cfg.name} {cfg.mode}: {medians} {unit}", file=sys.stderr)

    header = (f"recur vs PyTorch {torch.__version__} and ONNX Runtime "
              f"{meta['onnxruntime'] or '(not installed)'}, CPU float32, {a.threads} threads "
              f"({meta['cpu']}, {meta['cores']} cores), one layer, I = H; "
              + (f"medians of {a.repeats} alternating runs. " if a.repeats > 1 else "one run. ")
              + "Speed = the other engine's time per token / recur's (above 1: recur faster).")
    f32_rows = [r for r in rows if not r["config"].get("bf16")]
    bf16_rows = [r for r in rows if r["config"].get("bf16")]
    text = header + "\n\n" + (table(f32_rows, a.repeats) + "\n" if f32_rows else "")
    if bf16_rows:
        text += ("\nbf16 training: recur's products with bf16 operands and f32 sums "
                 "(`recur bench --bf16`, the weights repacked every iteration) beside recur "
                 "f32, PyTorch f32 and PyTorch under torch.autocast(\"cpu\", "
                 "dtype=torch.bfloat16); speed = the other's time per token / recur bf16's."
                 "\n\n" + bf16_table(bf16_rows, a.repeats) + "\n")
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "notes": notes, "rows": rows}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
