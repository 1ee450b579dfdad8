#!/usr/bin/env python3
"""Generate recur's whole-model fixtures, and check recur-written models in PyTorch.

What it makes
-------------
For each case below, in crates/recur/tests/fixtures/model/:
    <case>.safetensors            a RecurModel (scripts/recur_torch.py) trained for a few SGD
                                  steps in PyTorch (float64, dropout active), written as
                                  recur_torch.save writes it: the state_dict (tied weights
                                  under both names) and the configuration JSON in the
                                  metadata (with sorted keys, for reproducible bytes). The
                                  lstm_proj_last case is written as float32.
    <case>.expected.safetensors   the module's outputs in eval mode (no dropout), float64, on
                                  a fixed ragged batch:
                                  tensors  input (ids as F64 [seq_len, batch] or features),
                                           output, h_n, c_n (LSTM only);
                                  metadata lengths ("3,1,4"), generator.
crates/recur/tests/model_files.rs loads every model with recur::io::load_model and must
reproduce `output`, `h_n`, `c_n` to 1e-10.

The other direction (--check-recur)
-----------------------------------
    crates/recur/tests/fixtures/model/recur/<case>.safetensors and <case>.outputs.safetensors
are written by recur itself (`cargo test -p recur --test model_files -- --ignored
write_recur_model_fixtures`): each PyTorch case loaded, trained three more SGD steps by
recur's own backward pass, saved with recur::io::save_model, and recur's eval outputs on the
same batch. `python3 scripts/gen_model_fixtures.py --check-recur` loads each into RecurModel
with load_state_dict(strict=True) and prints the largest difference between PyTorch's
outputs and recur's (it fails above 1e-10 for float64 files, 1e-5 for float32 ones).

How to run
----------
    pip install torch safetensors numpy
    python3 scripts/gen_model_fixtures.py                  # writes the PyTorch fixtures
    python3 scripts/gen_model_fixtures.py --check-recur    # checks recur's files

Last run with torch 2.15.0+cu132, safetensors 0.8.0, numpy 2.4.6 (Python 3.11.7).
"""

import json
import os
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recur_torch import FORMAT, RecurModel, load, save  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "recur", "tests", "fixtures", "model")
GENERATOR = f"torch {torch.__version__}"

LENGTHS = [3, 1, 5, 4]  # unsorted, one of length 1, max = SEQ_LEN
SEQ_LEN = 5


def lstm(proj_size=0):
    return {"kind": "lstm", "proj_size": proj_size,
            "peepholes": {"input": False, "forget": False, "output": False},
            "input_forget": "separate", "activations": ["sigmoid", "tanh", "tanh"]}


def gru():
    return {"kind": "gru", "reset": "after", "activations": ["sigmoid", "tanh"]}


def rnn(nonlinearity):
    return {"kind": "rnn", "nonlinearity": nonlinearity, "leak": "none"}


def model_config(inp, cell, input_size, hidden_size, num_layers, direction, output,
                 out_features, head_bias=True, batch_first=False, dropout=0.0,
                 input_dropout=0.0, output_dropout=0.0, tie_weights=False):
    return {
        "input": inp,
        "rnn": {"cell": cell, "input_size": input_size, "hidden_size": hidden_size,
                "num_layers": num_layers, "bias": True, "direction": direction,
                "dropout": dropout, "batch_first": batch_first},
        "output": output, "out_features": out_features, "head_bias": head_bias,
        "input_dropout": input_dropout, "output_dropout": output_dropout,
        "tie_weights": tie_weights,
    }


def embedding(n, d, padding_idx=None):
    return {"kind": "embedding", "num_embeddings": n, "embedding_dim": d,
            "padding_idx": padding_idx}


DENSE = {"kind": "dense"}

# (case, config, dtype of the saved file)
CASES = [
    # a word-level language model as in PyTorch's word_language_model --tied
    ("lm_lstm_tied", model_config(embedding(11, 6, padding_idx=0), lstm(), 6, 6, 2, "forward",
                                  "every_step", 11, dropout=0.2, input_dropout=0.3,
                                  output_dropout=0.4, tie_weights=True), torch.float64),
    ("classifier_gru_bidirectional", model_config(DENSE, gru(), 3, 5, 2, "bidirectional",
                                                  "last", 4, batch_first=True,
                                                  output_dropout=0.25), torch.float64),
    ("lstm_proj_last", model_config(embedding(9, 4), lstm(proj_size=3), 4, 6, 1,
                                    "bidirectional", "last", 2, head_bias=False),
     torch.float32),
    ("rnn_relu_every_step", model_config(DENSE, rnn("relu"), 2, 4, 2, "forward", "every_step",
                                         3, input_dropout=0.1), torch.float64),
]


def write_safetensors(path, tensors, metadata):
    """F64 (or, for float32 arrays, F32) tensors with sorted keys and sorted metadata, so the
    bytes are reproducible (safetensors' own writer orders the metadata at random)."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        f32 = a.dtype == np.float32
        b = np.ascontiguousarray(a, dtype="<f4" if f32 else "<f8").tobytes()
        header[name] = {"dtype": "F32" if f32 else "F64", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
    back = load_file(path)
    for name, a in tensors.items():
        assert np.array_equal(back[name], np.asarray(a)), name


def batch_input(config, gen):
    """The case's input for a [SEQ_LEN, batch] (or batch-first) batch."""
    batch = len(LENGTHS)
    shape = [batch, SEQ_LEN] if config["rnn"]["batch_first"] else [SEQ_LEN, batch]
    if config["input"]["kind"] == "embedding":
        return torch.randint(0, config["input"]["num_embeddings"], shape, generator=gen)
    return torch.randn(shape + [config["rnn"]["input_size"]], generator=gen,
                       dtype=torch.float64)


def loss_of(config, z, gen):
    """Cross-entropy on random classes (embedding input) or MSE on random targets."""
    if config["input"]["kind"] == "embedding":
        target = torch.randint(0, config["out_features"], z.shape[:-1], generator=gen)
        return F.cross_entropy(z.reshape(-1, z.shape[-1]), target.reshape(-1))
    return F.mse_loss(z, torch.randn(z.shape, generator=gen, dtype=z.dtype))


def outputs(model, x):
    model.eval()
    with torch.no_grad():
        z, final = model(x, lengths=LENGTHS)
    out = {"output": z.double().numpy()}
    if isinstance(final, tuple):
        out["h_n"], out["c_n"] = final[0].double().numpy(), final[1].double().numpy()
    else:
        out["h_n"] = final.double().numpy()
    return out


def make_case(name, config, dtype, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = RecurModel(config).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()  # dropout active while training
    for _ in range(5):
        opt.zero_grad()
        z, _ = model(batch_input(config, gen), lengths=LENGTHS)
        loss_of(config, z, gen).backward()
        opt.step()
    path = os.path.join(OUT, f"{name}.safetensors")
    # what recur_torch.save writes, through the reproducible writer
    state = {k: v.detach().to(dtype).numpy() for k, v in model.state_dict().items()}
    write_safetensors(path, state, {"recur.format": FORMAT, "recur.model": json.dumps(config)})
    # The outputs of exactly the saved weights (rounded to float32 where saved so), in f64.
    model = load(path).double()
    x = batch_input(config, torch.Generator().manual_seed(seed + 1))
    tensors = {"input": x.double().numpy(), **outputs(model, x)}
    meta = {"lengths": ",".join(map(str, LENGTHS)), "generator": GENERATOR}
    write_safetensors(os.path.join(OUT, f"{name}.expected.safetensors"), tensors, meta)
    return model


def check_recur():
    """Loads every recur-written model into RecurModel and compares with recur's outputs."""
    folder = os.path.join(OUT, "recur")
    worst_all = 0.0
    for name, config, _ in CASES:
        path = os.path.join(folder, f"{name}.safetensors")
        model = load(path)  # strict load_state_dict
        saved_dtype = next(iter(model.state_dict().values())).dtype
        model = model.double()
        recur = load_file(os.path.join(folder, f"{name}.outputs.safetensors"))
        expected = load_file(os.path.join(OUT, f"{name}.expected.safetensors"))
        x = torch.tensor(expected["input"])
        if config["input"]["kind"] == "embedding":
            x = x.long()
        ours = outputs(model, x)
        worst = max(float(np.max(np.abs(ours[k] - recur[k]))) for k in ours)
        limit = 1e-10 if saved_dtype == torch.float64 else 1e-5
        changed = float(np.max(np.abs(ours["output"] - expected["output"])))
        print(f"{name}: recur-written {str(saved_dtype)[6:]} file loads strictly; "
              f"max |PyTorch - recur| = {worst:.2e} (outputs moved {changed:.2e} by "
              f"recur's training)")
        assert worst <= limit, f"{name}: {worst} > {limit}"
        # recur_torch.save writes what load reads back (tied weights under both names)
        tmp = os.path.join(tempfile.mkdtemp(), "back.safetensors")
        save(model, tmp)
        back = load(tmp)
        assert all(torch.equal(a, b) for a, b in
                   zip(model.state_dict().values(), back.state_dict().values())), name
        assert changed > 1e-6, f"{name}: recur's training changed nothing"
        worst_all = max(worst_all, worst)
    print(f"all {len(CASES)} recur-written models agree with PyTorch to {worst_all:.2e}")


def main():
    if sys.argv[1:] == ["--check-recur"]:
        check_recur()
        return
    os.makedirs(OUT, exist_ok=True)
    for i, (name, config, dtype) in enumerate(CASES):
        make_case(name, config, dtype, seed=1000 + i)
        print(f"{name}: written ({str(dtype)[6:]})")


if __name__ == "__main__":
    main()
