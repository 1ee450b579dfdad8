#!/usr/bin/env python3
"""Whole training jobs, recur against PyTorch: tokens per second of real language-model runs.

Two jobs, each with an LSTM, a GRU and an Elman RNN (tanh), trained for --batches batches
(default 600) by `recur train` and by a PyTorch twin, one after the other and alternating
(recur, PyTorch, recur, PyTorch, ...), --repeats times, both on --threads threads (default 2):

  ptb   Zaremba et al.'s small Penn Treebank model, the README's command
        `recur train --train ptb.train.txt --valid ptb.valid.txt --test ptb.test.txt
        --level word`: embedding 200, 2 × 200 cells, vocabulary 10,000, batch 20, TBPTT 20,
        SGD lr 1, clipping to norm 5, the loss summed over time.
  char  a character-level model of Shakespeare's works (scripts/fetch_shakespeare.py, 84
        distinct characters; --text FILE): embedding 64, 2 × 256 cells, batch 32, TBPTT 100,
        Adam lr 0.002, clipping to norm 5, the mean loss (docs/cli.md's Hamlet command).

recur runs `recur train ... --steps N --threads T --quiet --log FILE` in a fresh process and
its speed is read from the log's step records: the tokens of batches W+1..N over the time
between the end of batch W and the end of batch N (W = --warmup, default 20), so the start,
the data loading and the validation after the last batch are not counted. Validation and
test run on short files the script cuts from the parts (the training is the command's).

The PyTorch twin (this script with --worker torch, a fresh process each time) is written as
PyTorch's examples/word_language_model/main.py writes it: nn.Embedding → nn.LSTM / nn.GRU /
nn.RNN → nn.Linear, the data batchified into [steps, batch] columns, the hidden state
detached between chunks, nn.CrossEntropyLoss, model.zero_grad(), loss.backward(),
clip_grad_norm_, then the example's manual SGD (p.data.add_(p.grad, alpha=-lr)) or
torch.optim.Adam. It is timed the same way (time.perf_counter around batches W+1..N).

Reported per job and cell: tokens/s of each engine (median over the repeats, min–max), the
speed ratio recur / PyTorch (the median of the repeats' ratios: each repeat's pair ran back to
back), and the share of the FMA peak each engine reaches, counted over all its products:

  FLOPs per batch = 3 × 2·N·(Σ_layers G·H·(I_l + H) + H·V)

with N = batch × TBPTT tokens, G = 4 (LSTM), 3 (GRU), 1 (RNN), I_l the layer's input width
(the embedding for layer 0, H above), V the vocabulary: the forward's products (the input
and recurrent gate products, the head) and twice that for the backward (the input / state
gradients and the weight gradients). The embedding's gather and scatter, the gates'
elementwise passes, the softmax's exponentials, clipping and the optimizer are memory
passes and are not counted. The peak is `--peak-gflops` (the FMA peak of both threads, from
`cargo bench -p recur -- machine`, which times 24 independent chains of 16-lane FMAs per
thread); without it the share column is left out.

    python3 scripts/fetch_ptb.py data/ptb && python3 scripts/fetch_shakespeare.py shakespeare.txt
    cargo build --release -p recur-cli
    python3 scripts/bench_jobs.py --ptb data/ptb --text shakespeare.txt --peak-gflops 220
    python3 scripts/bench_jobs.py --ptb data/ptb --only ptb-lstm --batches 200 --repeats 3

Without PyTorch installed only recur runs (the PyTorch columns show —). It is a benchmark,
not a test; on a shared machine runs vary by 15-30%, so compare the paired ratios.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import torch
    from torch import nn
except ModuleNotFoundError:
    torch = nn = None

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
CELLS = ("lstm", "gru", "rnn")
# lines of the validation and test parts kept (word level) / characters (char level): the
# runs validate once after the timed batches, and the full parts would only cost time
EVAL_LINES = 200
EVAL_CHARS = 20000

JOBS = {
    # name: recur's flags beyond the data's, and the shapes the twin builds
    "ptb": dict(level="word", emb=200, hidden=200, layers=2, batch=20, bptt=20,
                optimizer="sgd", lr=1.0, clip=5.0, init_range=0.1, sum_over_time=True,
                flags=[]),
    "char": dict(level="char", emb=64, hidden=256, layers=2, batch=32, bptt=100,
                 optimizer="adam", lr=0.002, clip=5.0, init_range=0.0, sum_over_time=False,
                 flags=["--num-layers", "2", "--hidden-size", "256", "--embedding-size", "64",
                        "--bptt", "100", "--batch-size", "32", "--optimizer", "adam",
                        "--lr", "0.002", "--schedule", "const", "--clip-norm", "5",
                        "--init-range", "0", "--loss-reduction", "mean"]),
}


def flops_per_batch(job, cell, vocab):
    j = JOBS[job]
    n, h, g = j["batch"] * j["bptt"], j["hidden"], GATES[cell]
    rec = sum(g * h * ((j["emb"] if layer == 0 else h) + h) for layer in range(j["layers"]))
    return 3 * 2 * n * (rec + h * vocab)


# ---------------------------------------------------------------------------------------
# Data: the parts each engine reads (the same files)
# ---------------------------------------------------------------------------------------


def prepare_data(a, tmp):
    """{job: (train, valid, test)} paths of the jobs asked for."""
    parts = {}
    if a.ptb:
        paths = [os.path.join(a.ptb, f"ptb.{p}.txt") for p in ("train", "valid", "test")]
        for p in paths:
            if not os.path.isfile(p):
                sys.exit(f"error: no {p} (scripts/fetch_ptb.py fetches the splits)")
        short = []
        for p in paths[1:]:
            out = os.path.join(tmp, "ptb-" + os.path.basename(p))
            with open(p, encoding="utf-8") as f, open(out, "w", encoding="utf-8") as o:
                for i, line in enumerate(f):
                    if i >= EVAL_LINES:
                        break
                    o.write(line)
            short.append(out)
        parts["ptb"] = (paths[0], *short)
    if a.text:
        with open(a.text, encoding="utf-8") as f:
            text = f.read()
        if len(text) < 4 * EVAL_CHARS:
            sys.exit(f"error: {a.text}: {len(text)} characters, too short for the char job")
        cut = len(text) - 2 * EVAL_CHARS
        out = []
        for name, piece in (("train", text[:cut]), ("valid", text[cut:cut + EVAL_CHARS]),
                            ("test", text[cut + EVAL_CHARS:])):
            p = os.path.join(tmp, f"char.{name}.txt")
            with open(p, "w", encoding="utf-8") as o:
                o.write(piece)
            out.append(p)
        parts["char"] = tuple(out)
    return parts


# ---------------------------------------------------------------------------------------
# recur
# ---------------------------------------------------------------------------------------


def run_recur(a, job, cell, files, tmp):
    j = JOBS[job]
    log = os.path.join(tmp, "recur-log.jsonl")
    if os.path.exists(log):
        os.remove(log)
    cmd = [a.recur, "train", "--train", files[0], "--valid", files[1], "--test", files[2],
           "--level", j["level"], "--cell", cell, *j["flags"], "--steps", str(a.batches),
           "--threads", str(a.threads), "--seed", "0", "--quiet", "--log", log]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        raise SystemExit(f"error: `{' '.join(cmd)}` failed: {why}")
    vocab = None
    for line in p.stdout.splitlines():
        if "tokens in the vocabulary" in line:
            vocab = int(line.split(" tokens in the vocabulary")[0].rsplit(" ", 1)[1])
    steps = {}
    with open(log, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "step":
                steps[r["step"]] = r["elapsed_s"]
    w, n = a.warmup, a.batches
    secs = steps[n] - steps[w]
    tokens = (n - w) * j["batch"] * j["bptt"]
    return {"engine": "recur", "tokens_per_s": tokens / secs, "seconds": secs, "vocab": vocab}


# ---------------------------------------------------------------------------------------
# The PyTorch twin: examples/word_language_model, same shapes
# ---------------------------------------------------------------------------------------


def tokenize(path, level, vocab):
    ids = []
    with open(path, encoding="utf-8") as f:
        if level == "word":
            for line in f:
                for w in line.split() + ["<eos>"]:
                    ids.append(vocab.setdefault(w, len(vocab)))
        else:
            for ch in f.read():
                ids.append(vocab.setdefault(ch, len(vocab)))
    return torch.tensor(ids, dtype=torch.long)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data[:nbatch * bsz].view(bsz, -1).t().contiguous()


class RNNModel(nn.Module):
    """word_language_model's RNNModel without dropout (the jobs have none)."""

    def __init__(self, cell, ntoken, ninp, nhid, nlayers, init_range):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        kind = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell)
        self.rnn = kind(ninp, nhid, nlayers) if kind else nn.RNN(ninp, nhid, nlayers,
                                                                 nonlinearity="tanh")
        self.decoder = nn.Linear(nhid, ntoken)
        self.cell, self.nhid, self.nlayers = cell, nhid, nlayers
        if init_range > 0:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)

    def forward(self, input, hidden):
        emb = self.encoder(input)
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(output)
        return decoded.view(-1, decoded.size(-1)), hidden

    def init_hidden(self, bsz):
        h = torch.zeros(self.nlayers, bsz, self.nhid)
        return (h, h.clone()) if self.cell == "lstm" else h


def repackage_hidden(h):
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)


def torch_worker(a):
    """One PyTorch run; prints its JSON line."""
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    j = JOBS[a.job]
    vocab = {}
    train = tokenize(a.files[0], j["level"], vocab)
    ntokens = max(len(vocab), a.vocab or 0)
    model = RNNModel(a.cell, ntokens, j["emb"], j["hidden"], j["layers"], j["init_range"])
    criterion = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=j["lr"]) if j["optimizer"] == "adam" else None
    data = batchify(train, j["batch"])
    bptt, lr = j["bptt"], j["lr"]
    hidden = model.init_hidden(j["batch"])
    model.train()
    start = None
    for step, i in enumerate(range(0, data.size(0) - 1, bptt), 1):
        if step == a.warmup + 1:
            start = time.perf_counter()
        seq_len = min(bptt, len(data) - 1 - i)
        x, y = data[i:i + seq_len], data[i + 1:i + 1 + seq_len].reshape(-1)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(x, hidden)
        loss = criterion(output, y)
        if j["sum_over_time"]:
            loss = loss * seq_len
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), j["clip"])
        if opt is None:
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
        else:
            opt.step()
        if step == a.batches:
            break
    secs = time.perf_counter() - start
    tokens = (a.batches - a.warmup) * j["batch"] * bptt
    mean_loss = float(loss.detach()) / (seq_len if j["sum_over_time"] else 1)
    print(json.dumps({"engine": "torch", "tokens_per_s": tokens / secs, "seconds": secs,
                      "vocab": ntokens, "loss": mean_loss}))


def run_torch(a, job, cell, files, vocab):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "torch", "--job", job,
           "--cell", cell, "--files", *files, "--batches", str(a.batches), "--warmup",
           str(a.warmup), "--threads", str(a.threads)]
    if vocab:
        cmd += ["--vocab", str(vocab)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        raise SystemExit(f"error: the PyTorch twin failed: {why}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------


def spread(values):
    m = statistics.median(values)
    s = f"{m:,.0f}"
    if len(values) > 1:
        s += f" ({min(values):,.0f}–{max(values):,.0f})"
    return s


def table(rows, peak):
    head = "| job | recur tokens/s | PyTorch tokens/s | recur / PyTorch | GFLOP per batch |"
    rule = "|---|---:|---:|---:|---:|"
    if peak:
        head += " recur % of peak | PyTorch % of peak |"
        rule += "---:|---:|"
    lines = [head, rule]
    for row in rows:
        r, t = row["recur"], row["torch"]
        rt = [x["tokens_per_s"] for x in r]
        tt = [x["tokens_per_s"] for x in t]
        ratio = "—"
        if tt:
            ratios = [x / y for x, y in zip(rt, tt)]
            ratio = f"{statistics.median(ratios):.2f}×"
            if len(ratios) > 1:
                ratio += f" ({min(ratios):.2f}–{max(ratios):.2f})"
        gf = row["flops_per_batch"] / 1e9
        line = (f"| {row['name']} | {spread(rt)} | {spread(tt) if tt else '—'} | {ratio} | "
                f"{gf:.2f} |")
        if peak:
            per_token = row["flops_per_batch"] / row["tokens_per_batch"]
            share = lambda v: f"{100 * statistics.median(v) * per_token / 1e9 / peak:.0f}%"  # noqa: E731
            line += f" {share(rt)} | {share(tt) if tt else '—'} |"
        lines.append(line)
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recur", default=os.path.join("target", "release", "recur"),
                   help="the recur binary (default: target/release/recur)")
    p.add_argument("--ptb", metavar="DIR", help="the folder of ptb.{train,valid,test}.txt")
    p.add_argument("--text", metavar="FILE", help="the char job's text (Shakespeare's works)")
    p.add_argument("--batches", type=int, default=600, help="batches per run (default 600)")
    p.add_argument("--warmup", type=int, default=20,
                   help="first batches not timed (default 20)")
    p.add_argument("--repeats", type=int, default=3,
                   help="alternating recur / PyTorch pairs per row (default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads of both (default 2)")
    p.add_argument("--only", metavar="SUBSTRING",
                   help="the rows whose name (ptb-lstm, char-gru, ...) contains SUBSTRING")
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="the machine's FMA peak on --threads threads, GFLOP/s, for the share")
    p.add_argument("--no-torch", action="store_true", help="run recur alone")
    p.add_argument("--json", metavar="FILE", help="write every measurement to FILE")
    # the PyTorch twin's own run
    p.add_argument("--worker", choices=["torch"], help=argparse.SUPPRESS)
    p.add_argument("--job", choices=sorted(JOBS), help=argparse.SUPPRESS)
    p.add_argument("--cell", choices=CELLS, help=argparse.SUPPRESS)
    p.add_argument("--files", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.batches < 2 or not 0 < a.warmup < a.batches:
        p.error("need 0 < --warmup < --batches")
    for flag in ("repeats", "threads"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag} must be at least 1")
    return a


def main():
    a = parse_args()
    if a.worker:
        if torch is None:
            sys.exit("error: PyTorch is not installed")
        torch_worker(a)
        return
    if not (a.ptb or a.text):
        sys.exit("error: give --ptb DIR and/or --text FILE")
    if not (os.path.isfile(a.recur) and os.access(a.recur, os.X_OK)):
        sys.exit(f"error: no recur binary at {a.recur}: `cargo build --release -p recur-cli`")
    use_torch = torch is not None and not a.no_torch
    if torch is None and not a.no_torch:
        print("PyTorch is not installed (pip install torch): recur alone", file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="bench_jobs-")
    try:
        data = prepare_data(a, tmp)
        names = [(job, cell) for job in ("ptb", "char") if job in data for cell in CELLS]
        if a.only:
            names = [(j, c) for j, c in names if a.only in f"{j}-{c}"]
            if not names:
                sys.exit(f"error: --only {a.only!r} matches no row")
        rows = []
        for job, cell in names:
            m = {"recur": [], "torch": []}
            for rep in range(a.repeats):
                r = run_recur(a, job, cell, data[job], tmp)
                m["recur"].append(r)
                msg = f"{job}-{cell} run {rep + 1}: recur {r['tokens_per_s']:,.0f} tok/s"
                if use_torch:
                    t = run_torch(a, job, cell, data[job], r["vocab"])
                    m["torch"].append(t)
                    msg += (f", PyTorch {t['tokens_per_s']:,.0f} tok/s "
                            f"({r['tokens_per_s'] / t['tokens_per_s']:.2f}×)")
                print(msg, file=sys.stderr)
            vocab = m["recur"][0]["vocab"]
            j = JOBS[job]
            rows.append({"name": f"{job}-{cell}", **m, "vocab": vocab,
                         "tokens_per_batch": j["batch"] * j["bptt"],
                         "flops_per_batch": flops_per_batch(job, cell, vocab)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"Whole training jobs, {a.batches} batches (the first {a.warmup} untimed), "
          f"{a.threads} threads, {cpu}; "
          f"PyTorch {torch.__version__ if use_torch else '(not run)'}; medians of "
          f"{a.repeats} alternating pairs (min–max); the ratio is per pair.\n")
    print(table(rows, a.peak_gflops))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(a).items() if v is not None},
                       "rows": rows}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
