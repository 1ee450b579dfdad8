"""recur from Python: gated recurrent networks (LSTM, GRU, RNN) on recur's CPU engine.

- ``recur.load(path)``: a checkpoint or model file (a :class:`Model`), a PyTorch state_dict
  saved as safetensors or an ONNX file holding one recurrent stack (a :class:`Recurrent`).
- ``recur.LSTM``, ``recur.GRU``, ``recur.RNN``: recurrent stacks for inference from numpy,
  with ``torch.nn.LSTM``'s constructor arguments.
- ``recur.torch``: ``LSTM``, ``GRU``, ``RNN`` as ``torch.nn.Module``s (needs torch).

Arrays are numpy arrays of the model's dtype (float32 by default, or float64), C-contiguous;
they are read in place and the results take over recur's buffers without a copy. A wrong
dtype raises ``TypeError``, a wrong layout ``ValueError``; what recur's library rejects
(shapes, lengths, files, configurations) raises :class:`RecurError`, a ``ValueError`` that
carries the library's message. recur releases the GIL while it computes.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from . import _recur
from ._config import config_json
from ._recur import Layer, Model, RecurError, Stepper

__all__ = [
    "GRU", "LSTM", "Model", "RNN", "RecurError", "Recurrent", "Stepper", "load",
]

__version__ = "0.1.0"


class Recurrent:
    """A recurrent stack for inference from numpy (``recur::Recurrent``).

    Made by :func:`LSTM`, :func:`GRU`, :func:`RNN` or :func:`load`. Shapes are PyTorch's:
    ``x`` is ``[seq_len, batch, input_size]`` (``[batch, seq_len, input_size]`` with
    ``batch_first``), states ``[num_layers * num_directions, batch, H]``.
    """

    def __init__(self, layer: Layer):
        self._layer = layer

    @property
    def config(self) -> dict:
        """The configuration (recur's JSON schema, parsed)."""
        return json.loads(self._layer.config_json)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._layer.dtype)

    def forward(
        self,
        x: np.ndarray,
        hx: Union[None, np.ndarray, Tuple[np.ndarray, np.ndarray]] = None,
        lengths: Optional[Sequence[int]] = None,
    ) -> Tuple[np.ndarray, Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]]:
        """``(output, h_n)``, or ``(output, (h_n, c_n))`` for an LSTM, as torch returns them.

        ``lengths`` gives each sequence's length (outputs past it are zero and the final
        state is the one at its last step)."""
        h0, c0 = _split_hx(hx)
        out, h, c = self._layer.forward(x, h0, c0, lengths)
        return out, (h if c is None else (h, c))

    def predict(self, x: np.ndarray, lengths: Optional[Sequence[int]] = None) -> np.ndarray:
        """The top layer's output at every step (zero past each sequence's length)."""
        return self._layer.forward(x, None, None, lengths)[0]

    __call__ = forward

    def stepper(self, batch: int) -> Stepper:
        """A streaming session for ``batch`` sequences from the zero state: ``.step(x_t)``
        with ``x_t`` ``[batch, input_size]`` returns ``[batch, H_out]`` and carries the
        state; ``.state()``, ``.set_state(h, c)``, ``.reset()``. Forward stacks only."""
        return self._layer.stepper(batch)

    def state_dict(self) -> dict:
        """The parameters by PyTorch's names (copies)."""
        flat = self._layer.get_params()
        return {name: flat[off:off + n].reshape(shape).copy()
                for name, shape, off, n in self._layer.layout()}

    def load_state_dict(self, state: dict) -> None:
        """Sets every parameter from a dict of arrays (or tensors) by PyTorch's names."""
        flat = self._layer.get_params()
        names = set()
        for name, shape, off, n in self._layer.layout():
            if name not in state:
                raise RecurError(f"state_dict: missing {name}")
            value = np.asarray(_to_numpy(state[name]), dtype=flat.dtype)
            if tuple(value.shape) != tuple(shape):
                raise RecurError(f"state_dict: {name} has shape {list(value.shape)}, "
                                 f"expected {list(shape)}")
            flat[off:off + n] = value.reshape(-1)
            names.add(name)
        extra = set(state) - names
        if extra:
            raise RecurError(f"state_dict: unexpected {sorted(extra)}")
        self._layer.set_params(flat)

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Writes the parameters as a PyTorch state_dict in safetensors (with recur's
        configuration in its metadata; ``recur.load`` reads it back)."""
        _recur.save_state_dict(self._layer, os.fspath(path))

    def __repr__(self) -> str:
        return f"recur.Recurrent({self._layer.config_json}, dtype={self._layer.dtype})"


def _to_numpy(v):
    if hasattr(v, "detach"):
        return v.detach().cpu().numpy()
    return v


def _split_hx(hx):
    if hx is None:
        return None, None
    if isinstance(hx, tuple):
        return hx
    return hx, None


def _make(cell: str, args, kwargs) -> Recurrent:
    dtype = np.dtype(kwargs.pop("dtype", np.float32)).name
    seed = kwargs.pop("seed", 0)
    return Recurrent(Layer(config_json(cell, *args, **kwargs), dtype, seed))


def LSTM(input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
         batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
         proj_size: int = 0, *, peepholes=None, recurrent_dropout: float = 0.0,
         dtype=np.float32, seed: int = 0) -> Recurrent:
    """An LSTM stack with ``torch.nn.LSTM``'s arguments (and PyTorch's initialisation,
    drawn from ``seed``); ``peepholes`` (True or a subset of "input", "forget", "output")
    and ``recurrent_dropout`` are recur's. ``dtype``: float32 or float64."""
    return _make("lstm", (input_size, hidden_size, num_layers, bias, batch_first, dropout,
                          bidirectional, proj_size),
                 dict(peepholes=peepholes, recurrent_dropout=recurrent_dropout,
                      dtype=dtype, seed=seed))


def GRU(input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
        batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
        reset: str = "after", recurrent_dropout: float = 0.0, dtype=np.float32,
        seed: int = 0) -> Recurrent:
    """A GRU stack with ``torch.nn.GRU``'s arguments; ``reset="before"`` is the original
    GRU's reset placement (recur's addition)."""
    return _make("gru", (input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional),
                 dict(reset=reset, recurrent_dropout=recurrent_dropout, dtype=dtype,
                      seed=seed))


def RNN(input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
        bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
        bidirectional: bool = False, *, recurrent_dropout: float = 0.0, dtype=np.float32,
        seed: int = 0) -> Recurrent:
    """An Elman RNN stack with ``torch.nn.RNN``'s arguments."""
    return _make("rnn", (input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, nonlinearity),
                 dict(recurrent_dropout=recurrent_dropout, dtype=dtype, seed=seed))


def load(path: Union[str, os.PathLike], dtype=np.float32) -> Union[Recurrent, Model]:
    """Opens a file recur or PyTorch wrote.

    - a checkpoint (``recur train --checkpoint``) or model file: a :class:`Model` whose
      ``.predict(x, lengths=None)`` returns the head's outputs;
    - a PyTorch state_dict of an ``nn.LSTM``/``GRU``/``RNN`` in safetensors (PyTorch's
      names; recur's own exports carry the configuration), or an ONNX file holding one
      LSTM/GRU/RNN stack: a :class:`Recurrent`.
    """
    obj = _recur.load(os.fspath(path), np.dtype(dtype).name)
    return Recurrent(obj) if isinstance(obj, Layer) else obj
