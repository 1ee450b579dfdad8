#!/usr/bin/env python3
"""A character-level language model (embedding, recur.torch.LSTM, linear head) trained on a
text file with DistributedDataParallel (gloo, CPU): the way recur scales past one process.

One machine, N processes:

    torchrun --nproc_per_node 2 crates/recur-py/examples/ddp_char_lstm.py --text input.txt

Several machines (run on each, with its --node-rank; HOST:PORT reachable from all):

    torchrun --nnodes 2 --nproc_per_node 2 --rdzv-backend c10d \
        --rdzv-endpoint HOST:29500 --rdzv-id run1 \
        crates/recur-py/examples/ddp_char_lstm.py --text input.txt

Without torchrun it trains in one process. Every step draws one global batch of
``--batch`` sequences per process (from ``--seed`` and the step number), and process r
takes the r-th shard, so N processes with ``--batch B`` compute what one process computes
with ``--batch N*B``: DDP averages the shards' gradients, which equals the gradient of the
mean loss over the whole batch. ``--save`` writes the final state_dict (rank 0).
"""

import argparse
import os
import time

import torch
import torch.distributed as dist
from torch import nn

import recur.torch as rt


class CharModel(nn.Module):
    def __init__(self, vocab, embed, hidden, layers):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = rt.LSTM(embed, hidden, num_layers=layers)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids):  # ids: [seq_len, batch]
        out, _ = self.rnn(self.embed(ids))
        return self.head(out)


def batch_of(data, step, seed, seq_len, global_batch, rank, batch):
    """Process `rank`'s shard of the global batch of step `step`: inputs and targets."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, len(data) - seq_len - 1, (global_batch,), generator=g)
    starts = starts[rank * batch:(rank + 1) * batch]
    rows = torch.stack([data[s:s + seq_len + 1] for s in starts.tolist()], dim=1)
    return rows[:-1], rows[1:]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", required=True, help="a UTF-8 text file")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=16, help="sequences per process and step")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", help="write the final state_dict here (torch.save)")
    a = p.parse_args()

    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1

    text = open(a.text, encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)

    torch.manual_seed(a.seed)  # the same initial weights in every process
    model = CharModel(len(chars), a.embed, a.hidden, a.layers)
    ddp = nn.parallel.DistributedDataParallel(model) if distributed else model
    opt = torch.optim.SGD(ddp.parameters(), lr=a.lr)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for step in range(a.steps):
        x, y = batch_of(data, step, a.seed, a.seq_len, a.batch * world, rank, a.batch)
        logits = ddp(x)
        loss = loss_fn(logits.reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rank == 0 and (step % 50 == 0 or step == a.steps - 1):
            print(f"step {step:5d}  loss {loss.item():.4f}  "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    if rank == 0 and a.save:
        torch.save(model.state_dict(), a.save)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
