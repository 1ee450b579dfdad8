"""``recur.torch``: ``LSTM``, ``GRU`` and ``RNN`` as ``torch.nn.Module``s on recur's engine.

Drop-in replacements for ``torch.nn.LSTM``/``GRU``/``RNN``: the same constructor arguments,
the same ``forward(input, hx=None)`` (a tensor or a ``PackedSequence`` in, the same type
out), the same ``nn.Parameter`` names (so ``state_dict()``s load into each other both ways)
and, with the same ``torch.manual_seed``, the same initial weights. Forward and backward run
in recur (``torch.autograd.Function``), on the CPU, in float32 or float64. Keyword
arguments for what recur adds: ``peepholes`` (LSTM), ``reset="before"`` (GRU) and
``recurrent_dropout`` (all three). Dropout masks are drawn from a seed taken from torch's
default generator, so ``torch.manual_seed`` makes runs reproducible.
"""

from __future__ import annotations

import json
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import _recur
from ._config import config_json

__all__ = ["GRU", "LSTM", "RNN", "RecurRNNBase"]


def _np(t: Optional[Tensor]):
    """A tensor's values as numpy, in place where it is contiguous (no autograd)."""
    if t is None:
        return None
    return t.detach().contiguous().numpy()


class _RecurFunction(torch.autograd.Function):
    """recur's training forward and BPTT as one autograd node: inputs
    ``(x, h0, c0, *params)``, outputs ``(output, h_n[, c_n])``."""

    @staticmethod
    def forward(ctx, module_info, x, h0, c0, *params):  # type: ignore[override]
        layer, lengths, seed, has_c, layout = module_info
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        out, hn, cn, tape = layer.forward_train(
            flat.numpy(), _np(x), _np(h0), _np(c0), lengths, seed)
        ctx.layer, ctx.tape, ctx.layout, ctx.has_c = layer, tape, layout, has_c
        ctx.had_h0, ctx.had_c0 = h0 is not None, c0 is not None
        ctx.save_for_backward(flat)
        if has_c:
            return torch.from_numpy(out), torch.from_numpy(hn), torch.from_numpy(cn)
        return torch.from_numpy(out), torch.from_numpy(hn)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        (flat,) = ctx.saved_tensors
        g_out, g_h = grads[0], grads[1]
        g_c = grads[2] if ctx.has_c else None
        dx, dh0, dc0, dflat = ctx.layer.backward(
            ctx.tape, flat.numpy(), _np(g_out), _np(g_h), _np(g_c))
        dflat = torch.from_numpy(dflat)
        dparams = [dflat[off:off + n].view(shape) for _, shape, off, n in ctx.layout]
        return (None, torch.from_numpy(dx),
                torch.from_numpy(dh0) if ctx.had_h0 else None,
                torch.from_numpy(dc0) if ctx.had_c0 and dc0 is not None else None,
                *dparams)


class RecurRNNBase(nn.Module):
    """What ``LSTM``, ``GRU`` and ``RNN`` share (``torch.nn.RNNBase``'s attributes)."""

    _cell = ""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, nonlinearity: str = "tanh",
                 *, peepholes=None, reset: str = "after", recurrent_dropout: float = 0.0,
                 layer_norm: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"recur.torch runs on the CPU, not {device}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1 \
                or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if proj_size >= hidden_size and proj_size != 0:
            raise ValueError("proj_size has to be smaller than hidden_size")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        self.nonlinearity = nonlinearity
        self.recurrent_dropout = float(recurrent_dropout)
        self.layer_norm = bool(layer_norm)
        self._config = config_json(
            self._cell, input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, nonlinearity, peepholes=peepholes, reset=reset,
            recurrent_dropout=recurrent_dropout, layer_norm=layer_norm)
        # evaluation runs a configuration without dropout (same parameters)
        cfg = json.loads(self._config)
        cfg["dropout"] = cfg["recurrent_dropout"] = 0.0
        self._eval_config = json.dumps(cfg)
        layer = _recur.Layer(self._config, "float32", 0)
        self._layout: List[Tuple[str, List[int], int, int]] = layer.layout()
        self._engines = {("float32", True): layer}
        for name, shape, _, _ in self._layout:
            self.register_parameter(
                name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        self.reset_parameters()

    @property
    def config(self) -> dict:
        """recur's configuration (its JSON schema, parsed)."""
        return json.loads(self._config)

    @property
    def _flat_weights_names(self) -> List[str]:
        return [name for name, _, _, _ in self._layout]

    @property
    def _flat_weights(self) -> List[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    def reset_parameters(self) -> None:
        """PyTorch's initialisation, U(-1/sqrt(H), 1/sqrt(H)) in registration order, so that
        the same ``torch.manual_seed`` gives ``torch.nn``'s weights."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)
        # layer norm's gains start at 1 and its bias at 0 (haste's and recur's initialisation)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("gamma_"):
                    p.fill_(1.0)
                elif name.startswith("beta_"):
                    p.zero_()

    def flatten_parameters(self) -> None:
        """Nothing to do: recur gathers the parameters on each call (kept for code written
        for ``torch.nn``, which calls it)."""

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_engines"] = {}
        return state

    def _engine(self, dtype: torch.dtype, training: bool) -> "_recur.Layer":
        name = {torch.float32: "float32", torch.float64: "float64"}.get(dtype)
        if name is None:
            raise TypeError(f"recur.torch computes in float32 or float64, not {dtype}")
        key = (name, training)
        if key not in self._engines:
            config = self._config if training else self._eval_config
            self._engines[key] = _recur.Layer(config, name, 0)
        return self._engines[key]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.recurrent_dropout:
            s += f", recurrent_dropout={self.recurrent_dropout}"
        if self.layer_norm:
            s += ", layer_norm=True"
        return s

    def _has_c(self) -> bool:
        return self._cell == "lstm"

    def forward(self, input, hx=None):  # noqa: A002 (torch's name)
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            data, lengths_t = torch.nn.utils.rnn.pad_packed_sequence(
                input, batch_first=self.batch_first)
            lengths = [int(n) for n in lengths_t]
            x, unbatched = data, False
        else:
            x = input
            if x.dim() not in (2, 3):
                raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got "
                                 f"{x.dim()}D instead")
            unbatched = x.dim() == 2
            if unbatched:
                x = x.unsqueeze(0 if self.batch_first else 1)
        if x.device.type != "cpu":
            raise ValueError(f"recur.torch runs on the CPU; the input is on {x.device}")
        h0, c0 = (hx if isinstance(hx, tuple) else (hx, None)) if hx is not None else (None, None)
        if self._has_c() and (h0 is None) != (c0 is None):
            raise ValueError("LSTM: hx must be a tuple (h_0, c_0)")
        if unbatched and h0 is not None:
            h0 = h0.unsqueeze(1)
            c0 = c0.unsqueeze(1) if c0 is not None else None
        params = self._flat_weights
        for name, p in zip(self._flat_weights_names, params):
            if p.dtype != x.dtype:
                raise TypeError(f"{name} is {p.dtype} but the input is {x.dtype}: call "
                                f".to({x.dtype}) on the module or the input")
        layer = self._engine(x.dtype, self.training)
        seed = None
        if self.training and ((self.dropout > 0 and self.num_layers > 1)
                              or self.recurrent_dropout > 0):
            seed = int(torch.randint(0, 2**62, (1,), dtype=torch.int64).item())
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in params)
            or (h0 is not None and h0.requires_grad)
            or (c0 is not None and c0.requires_grad))
        if needs_grad or seed is not None:
            info = (layer, lengths, seed, self._has_c(), self._layout)
            outs = _RecurFunction.apply(info, x, h0, c0, *params)
        else:
            flat = torch.cat([p.detach().reshape(-1) for p in params])
            layer.set_params(flat.numpy())
            out, hn, cn = layer.forward(_np(x), _np(h0), _np(c0), lengths)
            outs = tuple(torch.from_numpy(a) for a in (out, hn, cn) if a is not None)
        out, hn = outs[0], outs[1]
        cn = outs[2] if self._has_c() else None
        if packed:
            out = _pack_like(out, input, self.batch_first)
        elif unbatched:
            out = out.squeeze(0 if self.batch_first else 1)
            hn = hn.squeeze(1)
            cn = cn.squeeze(1) if cn is not None else None
        return out, ((hn, cn) if self._has_c() else hn)


def _pack_like(padded: Tensor, like: PackedSequence, batch_first: bool) -> PackedSequence:
    """The padded output packed with the input's batch sizes and permutation."""
    if batch_first:
        padded = padded.transpose(0, 1)
    if like.sorted_indices is not None:
        padded = padded.index_select(1, like.sorted_indices)
    rows = [padded[t, :int(b)] for t, b in enumerate(like.batch_sizes)]
    return PackedSequence(torch.cat(rows), like.batch_sizes, like.sorted_indices,
                          like.unsorted_indices)


class LSTM(RecurRNNBase):
    """``torch.nn.LSTM`` on recur's engine. Extra keyword arguments: ``peepholes`` (True,
    or a subset of ``("input", "forget", "output")``: parameters ``peephole_i_l{k}`` ...),
    ``recurrent_dropout`` and ``layer_norm`` (haste's LayerNormLSTM: parameters
    ``gamma_ih_l{k}``, ``gamma_hh_l{k}``, ``gamma_c_l{k}``, ``beta_c_l{k}``; no projection)."""

    _cell = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, *, peepholes=None,
                 recurrent_dropout: float = 0.0, layer_norm: bool = False, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, peepholes=peepholes,
                         recurrent_dropout=recurrent_dropout, layer_norm=layer_norm,
                         device=device, dtype=dtype)


class GRU(RecurRNNBase):
    """``torch.nn.GRU`` on recur's engine. Extra keyword arguments: ``reset="before"`` (the
    reset gate applied before the recurrent product, as in Cho et al. 2014; PyTorch's is
    ``"after"``), ``recurrent_dropout`` and ``layer_norm`` (haste's LayerNormGRU, reset
    after: parameters ``gamma_ih_l{k}``, ``gamma_hh_l{k}``)."""

    _cell = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, reset: str = "after",
                 recurrent_dropout: float = 0.0, layer_norm: bool = False, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, reset=reset, recurrent_dropout=recurrent_dropout,
                         layer_norm=layer_norm, device=device, dtype=dtype)


class RNN(RecurRNNBase):
    """``torch.nn.RNN`` (``nonlinearity`` "tanh" or "relu") on recur's engine; extra keyword
    argument ``recurrent_dropout``."""

    _cell = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, *,
                 recurrent_dropout: float = 0.0, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, nonlinearity, recurrent_dropout=recurrent_dropout,
                         device=device, dtype=dtype)
