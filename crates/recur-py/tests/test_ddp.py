"""DistributedDataParallel with recur.torch.LSTM: two processes on the loopback address
(gloo) train to the weights one process reaches on both shards' batches together."""

import importlib.util
import os
import pathlib
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "ddp_char_lstm.py"
# Largest weight difference after STEPS steps: the two runs differ only in the order of
# float32 additions (the shards' gradients averaged by all-reduce versus one batch's sum).
DDP_F32_TOL = 1e-5
STEPS = 5
TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good "
        "fortune, must be in want of a wife. ") * 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def args(tmp_path, batch, save):
    return [sys.executable, str(EXAMPLE), "--text", str(tmp_path / "text.txt"), "--steps",
            str(STEPS), "--batch", str(batch), "--seq-len", "16", "--hidden", "24",
            "--embed", "8", "--layers", "2", "--save", str(save)]


def test_two_processes_equal_one_on_both_shards(tmp_path):
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    port = free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
        procs.append(subprocess.Popen(args(tmp_path, 4, tmp_path / "ddp.pt"), env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    single = subprocess.run(args(tmp_path, 8, tmp_path / "one.pt"), env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = torch.load(tmp_path / "ddp.pt")
    one = torch.load(tmp_path / "one.pt")
    assert ddp.keys() == one.keys()
    worst = max((ddp[k] - one[k]).abs().max().item() for k in ddp)
    assert worst <= DDP_F32_TOL, f"largest weight difference {worst:.3e}"
    # and the training moved the weights: the comparison is not of two untrained models
    spec = importlib.util.spec_from_file_location("ddp_char_lstm", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    torch.manual_seed(0)
    init = example.CharModel(len(set(TEXT)), 8, 24, 2).state_dict()
    moved = max((one[k] - v).abs().max().item() for k, v in init.items())
    print(f"DDP vs one process: largest weight difference {worst:.3e}; "
          f"training moved the weights by up to {moved:.3e}")
    assert moved > 100 * DDP_F32_TOL
