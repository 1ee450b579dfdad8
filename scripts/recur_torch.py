#!/usr/bin/env python3
"""recur's SequenceModel as a PyTorch module: load a model file recur wrote, or write one recur
loads.

A recur whole-model file (`recur::io::save_model`) is a safetensors file whose tensors carry
the state_dict names of this module (`embedding.weight`, `rnn.weight_ih_l0`, ...,
`head.weight`, `head.bias`) and whose metadata holds the configuration as JSON under
`recur.model` (format in crates/recur/src/io/model.rs), with `recur.format` =
`sequence-model-1`. `RecurModel(config)` builds the module that configuration describes, so

    from recur_torch import load, save
    model = load("model.safetensors")        # RecurModel (eval mode); strict load_state_dict
    out, state = model(ids, lengths=lengths) # the outputs recur computes
    save(model, "back.safetensors")          # a file recur::io::load_model reads

The module is the network recur computes:

    x = embedding(ids)  (or the features)                    [seq_len, batch, input_size]
    x = input_dropout(x)
    y, h_n = rnn(x, state)          packed by `lengths` when given (PyTorch's packed
                                    sequences: outputs past each end are zero, h_n is each
                                    sequence's own last state)
    u = y                                      output "every_step"
    u = cat(h_n[-D:], dim=1)                   output "last"   [batch, D * H_out]
    z = head(output_dropout(u))     and, for "every_step", z = 0 past each sequence's end

with `head.weight` the embedding table when `tie_weights` is true. Dropout acts only in
training mode. Options PyTorch's nn.LSTM/GRU/RNN lack (peepholes, a coupled forget gate,
the reset-before GRU, leaky RNN units, non-default activations, ONNX clip, a reverse-only
stack) raise ValueError naming the option. recur's recurrent dropout, which acts only in
training, is recorded (`recurrent_dropout`) but not applied: such a model loads for inference
and trains here without it.

Requires torch and safetensors (`pip install torch safetensors`).
"""

import json

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

FORMAT = "sequence-model-1"


def _unsupported(what):
    raise ValueError(f"recur model option not in PyTorch: {what}")


class RecurModel(nn.Module):
    """A recur SequenceModel built from its JSON configuration (a dict)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        inp, rnn, cell = config["input"], config["rnn"], config["rnn"]["cell"]
        if inp["kind"] == "embedding":
            self.embedding = nn.Embedding(
                inp["num_embeddings"], inp["embedding_dim"], padding_idx=inp["padding_idx"]
            )
        elif inp["kind"] != "dense":
            _unsupported(f"input kind {inp['kind']}")
        if rnn["direction"] == "reverse":
            _unsupported("direction reverse (only forward or bidirectional)")
        kwargs = dict(
            input_size=rnn["input_size"],
            hidden_size=rnn["hidden_size"],
            num_layers=rnn["num_layers"],
            bias=rnn["bias"],
            batch_first=rnn["batch_first"],
            dropout=rnn["dropout"],
            bidirectional=rnn["direction"] == "bidirectional",
        )
        kind = cell["kind"]
        if cell.get("clip") is not None:
            _unsupported("ONNX gate pre-activation clip")
        # Recurrent (variational) dropout acts only in recur's training; PyTorch's modules
        # have none, so a model trained with it loads for inference but trains without it.
        self.recurrent_dropout = rnn.get("recurrent_dropout", 0.0)
        if kind == "lstm":
            if any(cell["peepholes"].values()):
                _unsupported("LSTM peepholes")
            if cell["input_forget"] != "separate":
                _unsupported("coupled input-forget gate")
            if cell["activations"] != ["sigmoid", "tanh", "tanh"]:
                _unsupported(f"LSTM activations {cell['activations']}")
            self.rnn = nn.LSTM(proj_size=cell["proj_size"], **kwargs)
            h_out = cell["proj_size"] or rnn["hidden_size"]
        elif kind == "gru":
            if cell["reset"] != "after":
                _unsupported("GRU reset before the recurrent product")
            if cell["activations"] != ["sigmoid", "tanh"]:
                _unsupported(f"GRU activations {cell['activations']}")
            self.rnn = nn.GRU(**kwargs)
            h_out = rnn["hidden_size"]
        elif kind == "rnn":
            if cell["leak"] != "none":
                _unsupported("leaky RNN units")
            if cell["nonlinearity"] not in ("tanh", "relu"):
                _unsupported(f"RNN nonlinearity {cell['nonlinearity']}")
            self.rnn = nn.RNN(nonlinearity=cell["nonlinearity"], **kwargs)
            h_out = rnn["hidden_size"]
        else:
            _unsupported(f"cell {kind}")
        self.directions = 2 if kwargs["bidirectional"] else 1
        self.batch_first = rnn["batch_first"]
        self.every_step = config["output"] == "every_step"
        self.input_dropout = nn.Dropout(config["input_dropout"])
        self.output_dropout = nn.Dropout(config["output_dropout"])
        self.head = nn.Linear(
            self.directions * h_out, config["out_features"], bias=config["head_bias"]
        )
        if config["tie_weights"]:
            if self.head.weight.shape != self.embedding.weight.shape:
                raise ValueError(
                    f"tie_weights: head.weight {tuple(self.head.weight.shape)} cannot share "
                    f"embedding.weight {tuple(self.embedding.weight.shape)}"
                )
            self.head.weight = self.embedding.weight

    def forward(self, x, lengths=None, state=None):
        """x: ids [seq_len, batch] (LongTensor) or features [seq_len, batch, input_size]
        (batch first if so configured); lengths: per-sequence lengths or None; state: h0, or
        (h0, c0) for an LSTM. Returns (z, final state)."""
        if hasattr(self, "embedding"):
            x = self.embedding(x)
        x = self.input_dropout(x)
        seq_axis = 1 if self.batch_first else 0
        seq_len = x.shape[seq_axis]
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.int64)
            packed = pack_padded_sequence(
                x, lengths, batch_first=self.batch_first, enforce_sorted=False
            )
            y, final = self.rnn(packed, state)
            y, _ = pad_packed_sequence(y, batch_first=self.batch_first, total_length=seq_len)
        else:
            y, final = self.rnn(x, state)
        if self.every_step:
            z = self.head(self.output_dropout(y))
            if lengths is not None:
                steps = torch.arange(seq_len).unsqueeze(1)  # [seq_len, 1]
                valid = steps < lengths.unsqueeze(0)  # [seq_len, batch]
                if self.batch_first:
                    valid = valid.t()
                z = z * valid.unsqueeze(-1).to(z.dtype)
        else:
            h_n = final[0] if isinstance(final, tuple) else final
            u = torch.cat([h_n[-self.directions + d] for d in range(self.directions)], dim=1)
            z = self.head(self.output_dropout(u))
        return z, final


def load(path, dtype=None):
    """The RecurModel a recur model file describes, its weights loaded strictly, in eval mode
    (no dropout; call .train() to train it), in the file's dtype unless `dtype` is given."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("recur.format") != FORMAT:
        raise ValueError(f"{path}: recur.format is {meta.get('recur.format')!r}, not {FORMAT!r}")
    model = RecurModel(json.loads(meta["recur.model"]))
    if dtype is None:
        dtype = next(iter(tensors.values())).dtype
    model = model.to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True)
    return model.eval()


def save(model, path, dtype=None):
    """Writes `model` as a recur model file (every state_dict key, tied ones included)."""
    from safetensors.torch import save_file

    state = {
        k: (v.detach().to(dtype) if dtype else v.detach()).clone().contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {"recur.format": FORMAT, "recur.model": json.dumps(model.config)}
    save_file(state, path, metadata=meta)
