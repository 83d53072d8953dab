import torch

from lib.detector import heatmaps as hm


def test_encode_decode_round_trip_is_sub_pixel():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(4, 68, 2, generator=g) * 28 + 2  # away from the border
    dec = hm.decode(hm.encode(pts, 32, 1.5))
    assert (dec - pts).abs().max() < 0.02


def test_decode_at_border_stays_in_range():
    pts = torch.tensor([[[0.0, 0.0], [31.0, 31.0], [0.2, 15.3]]])
    dec = hm.decode(hm.encode(pts, 32, 1.5))
    assert (dec - pts).abs().max() < 0.5


def test_coordinate_mapping_round_trip():
    p = torch.tensor([[10.25, 100.0]])
    np = hm.from_heatmap(hm.to_heatmap(p, 128, 32), 128, 32)
    assert torch.allclose(np, p)
    # pixel-centre convention: the crop's outer edge maps to the heatmap's outer edge
    assert torch.allclose(hm.to_heatmap(torch.tensor([-0.5]), 128, 32), torch.tensor([-0.5]))
