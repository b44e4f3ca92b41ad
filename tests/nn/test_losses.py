import numpy as np
import pytest
import torch

from histo2st.nn import pcc_loss, pearson_per_gene, pixnet_loss


def test_perfect_and_anticorrelated():
    target = torch.tensor([[1.0, 0.0], [2.0, 5.0], [4.0, 1.0]])
    assert pcc_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    # an affine map with positive slope is a perfect prediction for Pearson
    assert pcc_loss(3 * target + 1, target).item() == pytest.approx(0.0, abs=1e-6)
    assert pcc_loss(-target, target).item() == pytest.approx(2.0, abs=1e-6)


def test_hand_checked_value():
    # gene 0: x = (1, 2, 3), y = (1, 3, 2): cov 1, var 2 and 2 -> r = 0.5; gene 1 is perfect -> r = 1
    pred = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    target = torch.tensor([[1.0, 1.0], [3.0, 2.0], [2.0, 3.0]])
    np.testing.assert_allclose(pearson_per_gene(pred, target).numpy(), [0.5, 1.0], atol=1e-6)
    assert pcc_loss(pred, target).item() == pytest.approx(1 - 0.75, abs=1e-6)


def test_matches_numpy_corrcoef_and_dim():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(30, 6)), rng.normal(size=(30, 6))
    expected = [np.corrcoef(pred[:, g], target[:, g])[0, 1] for g in range(6)]
    r = pearson_per_gene(torch.from_numpy(pred), torch.from_numpy(target), eps=0.0)
    np.testing.assert_allclose(r.numpy(), expected, rtol=1e-10)
    loss_t = pcc_loss(torch.from_numpy(pred.T), torch.from_numpy(target.T), dim=1)
    assert loss_t.item() == pytest.approx(1 - np.mean(expected), abs=1e-7)


def test_constant_gene_is_finite():
    pred = torch.tensor([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]], requires_grad=True)
    target = torch.tensor([[1.0, 7.0], [2.0, 7.0], [3.0, 7.0]])  # gene 1 constant in both
    r = pearson_per_gene(pred, target)
    assert r[1].item() == 0.0
    assert r[0].item() == pytest.approx(1.0, abs=1e-6)
    loss = pcc_loss(pred, target)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    # a single spot: every gene is constant, no NaN
    one = pixnet_loss(torch.ones(1, 3, requires_grad=True), torch.zeros(1, 3))
    assert all(torch.isfinite(v) for v in one.values())
    assert one["pcc_loss"].item() == pytest.approx(1.0)


def test_pixnet_loss_components():
    pred = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    target = torch.tensor([[1.0, 1.0], [3.0, 2.0], [2.0, 3.0]])
    out = pixnet_loss(pred, target)
    assert set(out) == {"loss", "mse", "pcc_loss", "pcc"}
    assert out["mse"].item() == pytest.approx(2 / 6)  # two squared errors of 1 over 6 entries
    assert out["pcc"].item() == pytest.approx(0.75, abs=1e-6)
    assert out["pcc_loss"].item() == pytest.approx(0.25, abs=1e-6)
    assert out["loss"].item() == pytest.approx(2 / 6 + 0.5 * 0.25, abs=1e-6)
    assert pixnet_loss(pred, target, lam=2.0)["loss"].item() == pytest.approx(2 / 6 + 2 * 0.25, abs=1e-6)


def test_pixnet_loss_gradient_and_errors():
    pred = torch.randn(8, 4, requires_grad=True)
    pixnet_loss(pred, torch.randn(8, 4))["loss"].backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        pixnet_loss(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="n_spots, n_genes"):
        pixnet_loss(torch.zeros(3), torch.zeros(3))
