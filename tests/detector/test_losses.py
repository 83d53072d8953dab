import torch

from lib.detector import heatmaps as hm
from lib.detector import losses


def test_star_is_zero_translation_for_centred_isotropic_heatmap():
    target = torch.tensor([[[15.5, 15.5]]])  # the grid centre, so the uniform floor adds no pull
    heat = hm.encode(target, 32, 2.0).requires_grad_(True)
    mean, cov = losses.distribution_moments(heat, floor=0.0)
    assert torch.allclose(mean, target, atol=1e-4)
    assert torch.allclose(cov[0, 0, 0, 1], torch.tensor(0.0), atol=1e-4)
    vals, vecs = losses.eig2x2(losses.distribution_moments(heat)[1])
    # with the error term zero, the loss is the spread regulariser alone
    expected = 0.5 * vals.clamp_min(0.25).sum()
    assert torch.allclose(losses.star(heat, target, w=1.0), expected, atol=1e-4)
    assert torch.allclose(losses.star(heat, target, w=0.0), torch.tensor(0.0), atol=1e-6)


def test_star_penalises_error_less_along_the_blurry_axis():
    target = torch.tensor([[[16.0, 16.0]]])
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    def elongated(cx, cy):  # wide in x, narrow in y
        return torch.exp(-((xs - cx) ** 2) / (2 * 4.0 ** 2) - ((ys - cy) ** 2) / (2 * 1.0 ** 2))[None, None]
    along = losses.star(elongated(18.0, 16.0), target, w=0.0)
    across = losses.star(elongated(16.0, 18.0), target, w=0.0)
    assert along < across


def test_star_is_finite_on_degenerate_heatmaps():
    target = torch.tensor([[[5.0, 5.0], [1.0, 2.0]]])
    zeros = torch.zeros(1, 2, 16, 16, requires_grad=True)
    delta = torch.zeros(1, 2, 16, 16)
    delta[0, :, 5, 5] = 1.0
    delta.requires_grad_(True)
    for h in (zeros, delta, torch.full((1, 2, 16, 16), -1.0, requires_grad=True)):
        loss = losses.star(h, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(h.grad).all()


def test_eig2x2_matches_torch():
    a = torch.randn(50, 2, 2, dtype=torch.float64)
    cov = a @ a.transpose(-1, -2)
    vals, vecs = losses.eig2x2(cov, eps=1e-12)
    ref = torch.linalg.eigvalsh(cov)
    assert torch.allclose(vals, ref, atol=1e-8)
    recon = vecs @ torch.diag_embed(vals) @ vecs.transpose(-1, -2)
    assert torch.allclose(recon, cov, atol=1e-8)


def test_awing_zero_at_target_and_positive_elsewhere():
    t = hm.encode(torch.tensor([[[8.0, 8.0]]]), 16, 1.5)
    assert losses.awing(t, t) == 0
    assert losses.awing(t * 0.5, t) > 0


def test_detector_loss_weights_later_stacks_more():
    t_pts = torch.tensor([[[8.0, 8.0]]])
    t = hm.encode(t_pts, 16, 1.5)
    good, bad = t.clone(), torch.zeros_like(t)
    for kind in ("star", "awing", "mse"):
        bad_last = losses.detector_loss([good, bad], t, t_pts, kind)
        bad_first = losses.detector_loss([bad, good], t, t_pts, kind)
        assert bad_last > bad_first, kind
