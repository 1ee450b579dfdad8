"""torch.autograd.gradcheck (float64) of recur.torch's backward for every cell and option,
those PyTorch lacks included (peepholes, the reset-before GRU, recurrent dropout, layer
norm)."""

import pytest

torch = pytest.importorskip("torch")
import recur.torch as rt  # noqa: E402
from recur.torch import _RecurFunction  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

I, H, T, B = 2, 3, 4, 3
LENGTHS = [4, 1, 3]

CASES = {
    "lstm": (rt.LSTM, {}),
    "lstm_peepholes": (rt.LSTM, {"peepholes": True}),
    "lstm_peephole_io_proj": (rt.LSTM, {"peepholes": ("input", "output"), "proj_size": 2}),
    "lstm_2layer_bidir_nobias": (rt.LSTM, {"num_layers": 2, "bidirectional": True,
                                           "bias": False}),
    "lstm_batch_first_proj": (rt.LSTM, {"batch_first": True, "proj_size": 2}),
    "lstm_dropout": (rt.LSTM, {"num_layers": 2, "dropout": 0.4}),
    "lstm_recurrent_dropout": (rt.LSTM, {"recurrent_dropout": 0.3, "peepholes": True}),
    "lstm_layer_norm": (rt.LSTM, {"layer_norm": True}),
    "lstm_layer_norm_2layer_bidir_peepholes": (rt.LSTM, {"layer_norm": True, "num_layers": 2,
                                                         "bidirectional": True,
                                                         "peepholes": True}),
    "gru": (rt.GRU, {}),
    "gru_layer_norm": (rt.GRU, {"layer_norm": True, "batch_first": True}),
    "gru_reset_before": (rt.GRU, {"reset": "before"}),
    "gru_reset_before_2layer_bidir": (rt.GRU, {"reset": "before", "num_layers": 2,
                                               "bidirectional": True}),
    "gru_recurrent_dropout": (rt.GRU, {"recurrent_dropout": 0.3, "reset": "before"}),
    "rnn_tanh_bidir": (rt.RNN, {"bidirectional": True, "num_layers": 2, "dropout": 0.3}),
    "rnn_relu": (rt.RNN, {"nonlinearity": "relu"}),
    "rnn_relu_nobias_batch_first": (rt.RNN, {"nonlinearity": "relu", "bias": False,
                                             "batch_first": True}),
}


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "ragged"])
@pytest.mark.parametrize("case", list(CASES))
def test_gradcheck(case, lengths):
    cls, kw = CASES[case]
    torch.manual_seed(0)
    m = cls(I, H, **kw).double()
    nd = 2 if m.bidirectional else 1
    hout = m.proj_size or H
    g = torch.Generator().manual_seed(2)
    shape = (B, T, I) if m.batch_first else (T, B, I)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(m.num_layers * nd, B, hout, generator=g, dtype=torch.float64,
                     requires_grad=True)
    c0 = torch.randn(m.num_layers * nd, B, H, generator=g, dtype=torch.float64,
                     requires_grad=True) if cls is rt.LSTM else None
    params = [p.detach().clone().requires_grad_() for p in m._flat_weights]
    # a fixed seed: the same dropout masks at every evaluation gradcheck makes
    info = (m._engine(torch.float64, True), lengths, 12345, c0 is not None, m._layout)

    def f(x, h0, c0, *params):
        return _RecurFunction.apply(info, x, h0, c0, *params)

    inputs = (x, h0, c0, *params)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("cls,kw", [(rt.LSTM, {"peepholes": True, "bidirectional": True}),
                                    (rt.GRU, {"reset": "before", "batch_first": True}),
                                    (rt.LSTM, {"layer_norm": True}),
                                    (rt.GRU, {"layer_norm": True, "bidirectional": True})],
                         ids=["lstm_peepholes_bidir", "gru_reset_before_batch_first",
                              "lstm_layer_norm", "gru_layer_norm_bidir"])
def test_gradcheck_through_packed_sequences(cls, kw):
    """The module's own forward with a PackedSequence in and out."""
    torch.manual_seed(0)
    m = cls(I, H, **kw).double()
    bf = m.batch_first
    x = torch.randn((B, T, I) if bf else (T, B, I), dtype=torch.float64, requires_grad=True)

    def f(x, *params):
        with torch.no_grad():
            for p, v in zip(m._flat_weights, params):
                p.copy_(v)
        packed = pack_padded_sequence(x, LENGTHS, batch_first=bf, enforce_sorted=False)
        out, _ = m(packed)
        return pad_packed_sequence(out, batch_first=bf, total_length=T)[0]

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_layer_norm_parameters_have_their_names_and_start_at_one_and_zero():
    m = rt.LSTM(I, H, layer_norm=True)
    sd = m.state_dict()
    for name in ("gamma_ih_l0", "gamma_hh_l0", "gamma_c_l0", "beta_c_l0"):
        assert name in sd, sorted(sd)
    assert torch.equal(sd["gamma_ih_l0"], torch.ones(4 * H))
    assert torch.equal(sd["beta_c_l0"], torch.zeros(H))
    g = rt.GRU(I, H, layer_norm=True)
    assert "gamma_hh_l0" in g.state_dict() and "gamma_c_l0" not in g.state_dict()
    assert "layer_norm=True" in repr(m)
    with pytest.raises(TypeError, match="layer_norm"):
        rt.RNN(I, H, layer_norm=True)
    with pytest.raises(Exception, match="layer_norm"):
        rt.LSTM(I, H, proj_size=2, layer_norm=True)
