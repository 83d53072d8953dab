import torch

from lib.core import checkpoints


def test_round_trip_restores_weights_optimiser_and_header(tmp_path):
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = tmp_path / "c" / "last.safetensors"
    checkpoints.save(path, {"net": m}, opt, {"step": 7, "history": [{"loss": 1.5}], "signature": "abc"})
    m2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(m2.parameters(), lr=1e-2)
    meta = checkpoints.load(path, {"net": m2}, opt2)
    assert meta == {"step": 7, "history": [{"loss": 1.5}], "signature": "abc"}
    assert torch.equal(m.weight, m2.weight)
    s1, s2 = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    assert torch.equal(s1["exp_avg"], s2["exp_avg"]) and float(s1["step"]) == float(s2["step"])
    assert not path.with_suffix(".tmp").exists()
    assert checkpoints.read_meta(path)["signature"] == "abc"
