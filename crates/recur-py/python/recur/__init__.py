"""recur from Python: gated recurrent networks (LSTM, GRU, RNN) on recur's CPU engine.

- ``recur.load(path)``: a checkpoint or model file (a :class:`Model`: ``.predict`` gives
  class names, values or, with ``.forecast``, a forecast in the data's units), a PyTorch
  state_dict saved as safetensors or an ONNX file holding one recurrent stack (a
  :class:`Recurrent`).
- ``recur.LSTM``, ``recur.GRU``, ``recur.RNN``: recurrent stacks for inference from numpy,
  with ``torch.nn.LSTM``'s constructor arguments.
- ``recur.torch``: ``LSTM``, ``GRU``, ``RNN`` as ``torch.nn.Module``s (needs torch).

Arrays are numpy arrays of the model's dtype (float32 by default, or float64), C-contiguous;
recur's library reads them in place, without a copy, and the results take over recur's
buffers without a copy either. A wrong dtype raises ``TypeError``, a non-contiguous array
``ValueError`` (nothing is copied behind the caller's back); what recur's library rejects
(shapes, lengths, files, configurations) raises :class:`RecurError`, a ``ValueError`` that
carries the library's message. recur releases the GIL while it computes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _recur
from ._config import config_json
from ._recur import Layer, RecurError, Stepper

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


class Model:
    """A whole sequence model (embedding or dense input, recurrent stack, linear head) from a
    checkpoint (``recur train --checkpoint``) or model file, with what predicting needs
    besides its weights (the kind of run, class names, a forecaster's window, horizon and
    scaling), read and applied by recur's library as ``recur predict`` does.

    - a classifier: ``.predict(x)`` the class names, ``.predict_proba(x)`` the probabilities
      (columns in ``.classes`` order, as scikit-learn's);
    - a regressor: ``.predict(x)`` the values ``[N]``, in the units of the training labels;
    - a forecaster: ``.forecast(history)`` the next H steps of each series, in the data's
      units;
    - any model: ``.predict_raw(x)`` the head's outputs.

    ``x`` is ``[seq_len, batch, features]`` of the model's dtype (int64 token ids
    ``[seq_len, batch]`` for a model with an embedding; float64 for an echo state network,
    whose ``.predict_raw`` is its readout); ``lengths`` gives each sequence's length in a
    padded batch.
    """

    def __init__(self, model: "_recur.Model"):
        self._m = model

    @property
    def role(self) -> str:
        """``"classifier"``, ``"regressor"``, ``"forecaster"``, ``"language_model"``,
        ``"other"`` (a generated task's model) or ``"unknown"`` (the file records no kind)."""
        return self._m.role

    @property
    def kind(self) -> Optional[str]:
        """The kind of run the file records: ``"sequences"`` (classifier or regressor),
        ``"forecast"``, ``"text"``, ...; None for a file without it."""
        return self._m.kind

    @property
    def classes(self) -> Optional[List[str]]:
        """A classifier's class names, in the order of its outputs; None otherwise."""
        return self._m.classes

    @property
    def forecast_spec(self) -> Optional[dict]:
        """A forecaster's spec (targets, features, time and series columns, window, horizon,
        frequency, scaling), as recur saved it; None otherwise."""
        spec = self._m.extra("forecast")
        return None if spec is None else json.loads(spec)

    @property
    def config_json(self) -> str:
        """The model's configuration as recur's JSON."""
        return self._m.config_json

    @property
    def metadata(self) -> List[Tuple[str, str]]:
        """The file's string metadata, sorted by key."""
        return self._m.metadata

    def rnn(self) -> Layer:
        """The recurrent stack alone (a copy)."""
        return self._m.rnn()

    def predict_raw(self, x: np.ndarray, lengths: Optional[Sequence[int]] = None) -> np.ndarray:
        """The head's outputs: ``[batch, out]`` for a model that reads each sequence's final
        state, ``[seq_len, batch, out]`` for one that predicts at every step (a classifier's
        are its logits, a forecaster's its scaled outputs)."""
        return self._m.predict_raw(x, lengths)

    def predict(self, x: np.ndarray, lengths: Optional[Sequence[int]] = None) -> np.ndarray:
        """Predictions in the user's terms: a classifier's class names (a numpy array of
        str, ``[N]``), a regressor's values (``[N]``, float); a language model's or a model
        of unknown kind's head outputs (as :meth:`predict_raw`). A forecaster reads a
        history: use :meth:`forecast`."""
        role = self._m.role
        if role == "classifier":
            ids, _ = self._m.classify(x, lengths)
            return np.asarray(self.classes)[ids]
        if role == "forecaster":
            raise RecurError("a forecaster predicts from a history: use .forecast(history) "
                             "(.predict_raw gives its scaled outputs)")
        out = self._m.predict_raw(x, lengths)
        if role == "regressor" and out.ndim == 2 and out.shape[1] == 1:
            return out[:, 0].copy()
        return out

    def predict_proba(self, x: np.ndarray,
                      lengths: Optional[Sequence[int]] = None) -> np.ndarray:
        """A classifier's class probabilities, float64 ``[N, len(classes)]``, the columns in
        :attr:`classes` order (a softmax of the logits)."""
        return self._m.classify(x, lengths)[1]

    def forecast(self, history: Union[str, os.PathLike, Mapping[str, Any]]
                 ) -> Dict[str, Union[np.ndarray, List[str]]]:
        """A forecaster's next H steps after each series' last row of ``history``.

        ``history`` is a CSV file (the training file's columns) or a mapping of columns
        (a dict of lists or arrays, or anything indexable by column name such as a pandas
        DataFrame): the target and feature columns as numbers (None or NaN is a missing
        value), the time and series columns as the training file wrote them. It is read
        with the training file's rules (missing values, time steps; errors name the row
        and column).

        Returns a dict of columns, as ``recur predict`` writes its CSV: the series column
        (long format: one row per series and step), the time column continued (when it has
        a step), then each target as float64 in the data's units; H rows per series.
        ``pandas.DataFrame(result)`` makes it a table.
        """
        spec = self.forecast_spec
        if spec is None:
            raise RecurError(f"a {self._m.role.replace('_', ' ')}, not a forecaster: "
                             ".forecast() needs a model trained with recur train --csv")
        if isinstance(history, (str, os.PathLike)):
            header, ids, times, values = self._m.forecast_csv(path=os.fspath(history))
        else:
            data = _history_csv(history, spec)
            header, ids, times, values = self._m.forecast_csv(data=data)
        out: Dict[str, Union[np.ndarray, List[str]]] = {}
        targets = spec["targets"]
        for name in header:
            if name in targets:
                out[name] = np.ascontiguousarray(values[:, targets.index(name)])
            elif name == spec.get("series_column"):
                out[name] = ids
            else:
                out[name] = times
        return out

    def __repr__(self) -> str:
        return f"recur.Model(role={self.role!r}, {self.config_json})"


def _cell(v) -> str:
    """A value as a CSV cell: None and NaN empty (missing), floats by repr (exact)."""
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def _history_csv(history: Mapping[str, Any], spec: dict) -> bytes:
    """The columns of ``history`` the forecaster reads, as CSV bytes (the library reads
    them with the training file's rules)."""
    names = [c for c in (spec.get("series_column"), spec.get("time_column")) if c]
    names += list(spec["targets"]) + list(spec["features"])
    columns = []
    for name in names:
        try:
            col = history[name]
        except (KeyError, IndexError, TypeError):
            raise RecurError(f"history: no column {name!r} (the forecaster reads "
                             f"{', '.join(names)})") from None
        columns.append(col.tolist() if hasattr(col, "tolist") else list(col))
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise RecurError(f"history: the columns have different lengths "
                         f"({', '.join(f'{n}: {len(c)}' for n, c in zip(names, columns))})")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(names)
    for row in zip(*columns):
        w.writerow([_cell(v) for v in row])
    return buf.getvalue().encode()


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
         layer_norm: bool = False, dtype=np.float32, seed: int = 0) -> Recurrent:
    """An LSTM stack with ``torch.nn.LSTM``'s arguments (and PyTorch's initialisation,
    drawn from ``seed``); ``peepholes`` (True or a subset of "input", "forget", "output")
    ``recurrent_dropout`` and ``layer_norm`` are recur's. ``dtype``: float32 or float64."""
    return _make("lstm", (input_size, hidden_size, num_layers, bias, batch_first, dropout,
                          bidirectional, proj_size),
                 dict(peepholes=peepholes, recurrent_dropout=recurrent_dropout,
                      layer_norm=layer_norm, dtype=dtype, seed=seed))


def GRU(input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
        batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
        reset: str = "after", recurrent_dropout: float = 0.0, layer_norm: bool = False,
        dtype=np.float32, seed: int = 0) -> Recurrent:
    """A GRU stack with ``torch.nn.GRU``'s arguments; ``reset="before"`` is the original
    GRU's reset placement and ``layer_norm`` haste's LayerNormGRU (recur's additions)."""
    return _make("gru", (input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional),
                 dict(reset=reset, recurrent_dropout=recurrent_dropout,
                      layer_norm=layer_norm, dtype=dtype, seed=seed))


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

    - a checkpoint (``recur train --checkpoint``) or model file: a :class:`Model`
      (``.predict``, ``.predict_proba``, ``.forecast`` in the user's terms; ``.predict_raw``
      the head's outputs);
    - an echo state network's file (``recur train --cell esn --checkpoint``): a
      :class:`Model` too, always float64 (an ESN forecaster's ``.forecast`` as above);
    - a PyTorch state_dict of an ``nn.LSTM``/``GRU``/``RNN`` in safetensors (PyTorch's
      names; recur's own exports carry the configuration), or an ONNX file holding one
      LSTM/GRU/RNN stack: a :class:`Recurrent`.
    """
    obj = _recur.load(os.fspath(path), np.dtype(dtype).name)
    return Recurrent(obj) if isinstance(obj, Layer) else Model(obj)
