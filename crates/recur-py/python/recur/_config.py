"""recur's configuration JSON from torch.nn.LSTM/GRU/RNN's constructor arguments."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence

_RNN_NONLINEARITIES = ("tanh", "relu")


def config_json(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = False,
    dropout: float = 0.0,
    bidirectional: bool = False,
    proj_size: int = 0,
    nonlinearity: str = "tanh",
    *,
    peepholes: Optional[Sequence[str] | bool] = None,
    reset: str = "after",
    recurrent_dropout: float = 0.0,
    layer_norm: bool = False,
) -> str:
    """The JSON of recur's ``RecurrentConfig`` for a ``cell`` ("lstm", "gru" or "rnn").

    ``peepholes``: True for all three (input, forget, output) or a subset of
    ``("input", "forget", "output")`` (LSTM only). ``reset``: "after" (PyTorch's,
    the default) or "before" (the original GRU's; GRU only). ``recurrent_dropout``:
    variational dropout on the recurrent state in training, in [0, 1). ``layer_norm``:
    layer normalisation of the gate pre-activations (and of an LSTM's cell state), as
    haste's LayerNormLSTM / LayerNormGRU; LSTM without projection and GRU with reset after.
    """
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers), ("proj_size", proj_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
    cell_json: Dict[str, Any]
    if cell == "lstm":
        if peepholes is True:
            holes = {"input", "forget", "output"}
        elif peepholes in (None, False):
            holes = set()
        else:
            holes = set(peepholes)  # type: ignore[arg-type]
            unknown = holes - {"input", "forget", "output"}
            if unknown:
                raise ValueError(f"peepholes: unknown gate(s) {sorted(unknown)}; "
                                 "expected 'input', 'forget', 'output'")
        cell_json = {
            "kind": "lstm",
            "proj_size": proj_size,
            "peepholes": {g: g in holes for g in ("input", "forget", "output")},
            "input_forget": "separate",
            "activations": ["sigmoid", "tanh", "tanh"],
            "clip": None,
            "layer_norm": bool(layer_norm),
        }
    else:
        if proj_size:
            raise ValueError("proj_size: only an LSTM has a projection")
        if peepholes:
            raise ValueError("peepholes: only an LSTM has peepholes")
        if cell == "gru":
            if reset not in ("after", "before"):
                raise ValueError(f"reset: expected 'after' or 'before', got {reset!r}")
            cell_json = {"kind": "gru", "reset": reset, "activations": ["sigmoid", "tanh"],
                         "clip": None, "layer_norm": bool(layer_norm)}
        elif cell == "rnn":
            if nonlinearity not in _RNN_NONLINEARITIES:
                raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
            if layer_norm:
                raise ValueError("layer_norm: an RNN has no layer norm (LSTM and GRU do)")
            cell_json = {"kind": "rnn", "nonlinearity": nonlinearity, "leak": "none",
                         "clip": None}
        else:
            raise ValueError(f"cell: expected 'lstm', 'gru' or 'rnn', got {cell!r}")
    if cell != "gru" and reset != "after":
        raise ValueError("reset: only a GRU has a reset placement")
    return json.dumps({
        "cell": cell_json,
        "input_size": input_size,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "bias": bool(bias),
        "direction": "bidirectional" if bidirectional else "forward",
        "dropout": float(dropout),
        "recurrent_dropout": float(recurrent_dropout),
        "batch_first": bool(batch_first),
    })
