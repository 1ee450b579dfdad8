#!/usr/bin/env python3
"""Generate the layer-normalised cells' reference fixtures (forward values and BPTT
gradients, float64): crates/recur/tests/fixtures/layer_norm/<case>.safetensors.

The reference is a small torch.nn.Module, `LayerNormRecurrent` below, written with
nn.LayerNorm: the equations of haste's LayerNormLSTM and LayerNormGRU (Ba et al. 2016) in
PyTorch's weight layout (docs/equations.md §2, "Layer-normalised LSTM and GRU"):

    LSTM  a = LN(W_ih x; γ_ih) + LN(W_hh h_prev; γ_hh) + b_ih + b_hh     (norms over all 4H)
          i, f, g, o = σ(a_i), σ(a_f), tanh(a_g), σ(a_o)
          c = f ⊙ c_prev + i ⊙ g
          h = o ⊙ tanh(LN(c; γ_c, β_c))
    GRU   a = LN(W_ih x; γ_ih) + b_ih;  q = LN(W_hh h_prev; γ_hh) + b_hh  (norms over all 3H)
          r, z = σ(a_r + q_r), σ(a_z + q_z);  n = tanh(a_n + r ⊙ q_n)
          h = (1 − z) ⊙ n + z ⊙ h_prev

LN's ε is nn.LayerNorm's default, 1e-5. Autograd gives the gradients. Before anything is
written, the same module with its norms replaced by the identity must reproduce nn.LSTM and
nn.GRU (output, states and every gradient to 1e-10): that checks its gate order, stacking,
directions and ragged lengths against PyTorch's own modules.

The file format is the one of crates/recur/tests/fixtures/README.md (gen_fixtures.py's
writer), with `layer_norm = true` in the metadata and the tensors `gamma_ih{s}`,
`gamma_hh{s}` [G*H] and, for the LSTM, `gamma_c{s}`, `beta_c{s}` [H]. The gains are drawn
from U(0.5, 1.5) and β_c from U(−0.5, 0.5) (not nn.LayerNorm's ones and zeros, so that a
gain read for the wrong gate or unit shows).

    pip install torch onnx==1.22.0 onnxruntime safetensors numpy
    python3 scripts/gen_layer_norm_fixtures.py     # from the repository root; CPU only, ~1 s
"""

import os
import sys
from collections import OrderedDict

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures as gf  # noqa: E402  (its writer, draws, checks and tolerances)

LN_GEN = f"{gf.TORCH_GEN} (torch.nn.Module with nn.LayerNorm; identity norms == nn.LSTM/GRU)"


class LayerNormRecurrent(nn.Module):
    """A stack of layer-normalised LSTMs or GRUs; `norm=False` replaces every norm by the
    identity (then it is nn.LSTM / nn.GRU). Parameters are named as recur names them."""

    def __init__(self, c, norm=True):
        super().__init__()
        self.c, self.norm = c, norm
        H, D, G = c["hidden_size"], gf.dirs(c), gf.GATES[c["cell"]]
        self.lstm = c["cell"] == "lstm"
        self.cells = nn.ModuleDict()
        for k in range(c["num_layers"]):
            in_k = c["input_size"] if k == 0 else D * H
            for d in range(D):
                s = f"_l{k}" + ("_reverse" if d == 1 else "")
                m = nn.Module()
                m.weight_ih = nn.Parameter(torch.empty(G * H, in_k, dtype=torch.float64))
                m.weight_hh = nn.Parameter(torch.empty(G * H, H, dtype=torch.float64))
                if c["bias"]:
                    m.bias_ih = nn.Parameter(torch.empty(G * H, dtype=torch.float64))
                    m.bias_hh = nn.Parameter(torch.empty(G * H, dtype=torch.float64))
                m.ln_ih = nn.LayerNorm(G * H, bias=False, dtype=torch.float64)
                m.ln_hh = nn.LayerNorm(G * H, bias=False, dtype=torch.float64)
                if self.lstm:
                    m.ln_c = nn.LayerNorm(H, dtype=torch.float64)
                self.cells[s] = m

    def named(self):
        """recur's name of every parameter -> the module's tensor, in recur's order."""
        out = OrderedDict()
        for s, m in self.cells.items():
            out["weight_ih" + s] = m.weight_ih
            out["weight_hh" + s] = m.weight_hh
            if self.c["bias"]:
                out["bias_ih" + s] = m.bias_ih
                out["bias_hh" + s] = m.bias_hh
            if self.norm:
                out["gamma_ih" + s] = m.ln_ih.weight
                out["gamma_hh" + s] = m.ln_hh.weight
                if self.lstm:
                    out["gamma_c" + s] = m.ln_c.weight
                    out["beta_c" + s] = m.ln_c.bias
        return out

    def step(self, m, x, h, cs):
        ident = lambda v: v  # noqa: E731
        ln_ih, ln_hh = (m.ln_ih, m.ln_hh) if self.norm else (ident, ident)
        a, q = ln_ih(x @ m.weight_ih.T), ln_hh(h @ m.weight_hh.T)
        if self.c["bias"]:
            a, q = a + m.bias_ih, q + m.bias_hh
        if not self.lstm:
            a_r, a_z, a_n = a.chunk(3, dim=1)
            q_r, q_z, q_n = q.chunk(3, dim=1)
            r, z = torch.sigmoid(a_r + q_r), torch.sigmoid(a_z + q_z)
            n = torch.tanh(a_n + r * q_n)
            return (1 - z) * n + z * h, None
        ln_c = m.ln_c if self.norm else ident
        a_i, a_f, a_g, a_o = (a + q).chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        c_new = f * cs + i * g
        return o * torch.tanh(ln_c(c_new)), c_new

    def forward(self, x, h0, c0):
        """As gen_fixtures.reference_forward: ragged sequences stop (forward) or start
        (reverse) at their own length; output zero past it."""
        c, T, D = self.c, x.shape[0], gf.dirs(self.c)
        mask = gf.valid_mask(c).unsqueeze(2)
        layer_in, h_n, c_n = x, [], []
        for k in range(c["num_layers"]):
            outs = []
            for d in range(D):
                s = f"_l{k}" + ("_reverse" if d == 1 else "")
                h = h0[k * D + d]
                cs = c0[k * D + d] if self.lstm else None
                ys = [None] * T
                for t in (range(T) if d == 0 else reversed(range(T))):
                    h_new, c_new = self.step(self.cells[s], layer_in[t], h, cs)
                    h = torch.where(mask[t], h_new, h)
                    if self.lstm:
                        cs = torch.where(mask[t], c_new, cs)
                    ys[t] = torch.where(mask[t], h_new, torch.zeros_like(h_new))
                outs.append(torch.stack(ys))
                h_n.append(h)
                c_n.append(cs)
            layer_in = torch.cat(outs, dim=2)
        return layer_in, torch.stack(h_n), (torch.stack(c_n) if self.lstm else None)


def make_case(c, seed, norm=True):
    """Draws as gen_fixtures.draw_case (weights, biases, input and states), then the norm
    parameters; forward and backward through `LayerNormRecurrent`."""
    gen = torch.Generator().manual_seed(seed)
    params, x, h0, c0 = gf.draw_case(c, gen)
    m = LayerNormRecurrent(c, norm)
    named = m.named()
    with torch.no_grad():
        for name, v in params.items():
            named[name].copy_(v)
        for name, t in named.items():
            if name.startswith("gamma_"):
                t.copy_(torch.rand(t.shape, generator=gen, dtype=torch.float64) + 0.5)
            elif name.startswith("beta_"):
                t.copy_(torch.rand(t.shape, generator=gen, dtype=torch.float64) - 0.5)
    return gf.run_with_grads(lambda: m(x, h0, c0), c, named, x, h0, c0, gen)


CASES = OrderedDict([
    ("ln_lstm_basic", gf.cfg("lstm", 3, 4, 5, 2)),
    ("ln_lstm_nobias", gf.cfg("lstm", 3, 4, 5, 2, bias=False)),
    ("ln_lstm_2layer_bidir_packed",
     gf.cfg("lstm", 3, 5, 6, 3, num_layers=2, bidirectional=True, lengths=[6, 2, 4])),
    ("ln_gru_basic", gf.cfg("gru", 3, 4, 5, 2)),
    ("ln_gru_nobias", gf.cfg("gru", 3, 4, 5, 2, bias=False)),
    ("ln_gru_2layer_bidir_packed",
     gf.cfg("gru", 3, 5, 6, 3, num_layers=2, bidirectional=True, lengths=[6, 2, 4])),
])


def main():
    print(f"torch {torch.__version__}")
    for name, c in CASES.items():
        # the module without its norms is nn.LSTM / nn.GRU (same draws, every tensor)
        plain = make_case(c, gf.seed_of(name), norm=False)
        torch_lstm = gf.make_pytorch_case(c, gf.seed_of(name))
        d = gf.compare_all(f"{name}: identity norms vs nn.{c['cell'].upper()}", plain, torch_lstm)
        print(f"  check  identity norms == nn module {name:30s} max|diff| {d:.1e}")
    written = []
    for name, c in CASES.items():
        ts = make_case(c, gf.seed_of(name))
        path = gf.write("layer_norm", name, c, ts, LN_GEN)
        # the one key gen_fixtures' metadata does not know
        tensors = {k: v.detach().clone() for k, v in gf.load_file(path).items()}
        md = gf.metadata(c, LN_GEN)
        md["layer_norm"] = "true"
        with open(path, "wb") as f:
            f.write(gf.serialize_safetensors(tensors, md))
        with gf.safe_open(path, framework="pt") as f:
            assert f.metadata() == md, name
        written.append(path)
    gf.self_check(written)
    print("all checks passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
