"""state_dicts load both ways between torch.nn's modules and recur.torch's, and between
recur.torch and the numpy models."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import recur  # noqa: E402
import recur.torch as rt  # noqa: E402

F64_REL_TOL = 1e-10

PAIRS = [
    (torch.nn.LSTM, rt.LSTM, dict(num_layers=2, bidirectional=True, proj_size=2)),
    (torch.nn.LSTM, rt.LSTM, dict(bias=False, batch_first=True)),
    (torch.nn.GRU, rt.GRU, dict(num_layers=2, bidirectional=True)),
    (torch.nn.RNN, rt.RNN, dict(nonlinearity="relu", num_layers=2)),
]


@pytest.mark.parametrize("nn_cls,rt_cls,kw", PAIRS, ids=["lstm", "lstm_bf", "gru", "rnn"])
def test_state_dicts_load_both_ways(nn_cls, rt_cls, kw):
    torch.manual_seed(1)
    ref = nn_cls(3, 4, **kw).double()
    torch.manual_seed(2)
    ours = rt_cls(3, 4, **kw).double()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    assert torch.allclose(ours(x)[0], ref(x)[0], rtol=0, atol=F64_REL_TOL)
    torch.manual_seed(3)
    ours2 = rt_cls(3, 4, **kw).double()
    ref.load_state_dict(ours2.state_dict(), strict=True)
    assert torch.allclose(ours2(x)[0], ref(x)[0], rtol=0, atol=F64_REL_TOL)


def test_recur_parameters_have_their_own_names():
    m = rt.LSTM(3, 4, peepholes=("input", "output"))
    assert [n for n, _ in m.named_parameters()] == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "peephole_i_l0",
        "peephole_o_l0"]
    with pytest.raises(RuntimeError, match="peephole_i_l0"):
        torch.nn.LSTM(3, 4).load_state_dict(m.state_dict())


def test_torch_module_to_numpy_model_and_back(tmp_path):
    torch.manual_seed(0)
    m = rt.GRU(3, 4, num_layers=2, reset="before").double()
    net = recur.GRU(3, 4, num_layers=2, reset="before", dtype=np.float64)
    net.load_state_dict(m.state_dict())
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    want = m(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(net.predict(x), want, rtol=0, atol=F64_REL_TOL)
    # saved as a state_dict in safetensors, loaded back by recur.load
    net.save(tmp_path / "gru.safetensors")
    again = recur.load(tmp_path / "gru.safetensors", dtype=np.float64)
    assert again.config == net.config
    np.testing.assert_array_equal(again.predict(x), net.predict(x))
    back = rt.GRU(3, 4, num_layers=2, reset="before").double()
    back.load_state_dict({k: torch.from_numpy(v) for k, v in again.state_dict().items()})
    np.testing.assert_array_equal(back(torch.from_numpy(x))[0].detach().numpy(), want)
