import numpy as np
import pytest
import torch

from histo2st.module._ssl import BYOLModule
from histo2st.train._ssl_plan import MIN_STEPS_PER_EPOCH, BYOLPlan, TileSlide, tissue_tile_centers


def _module():
    torch.manual_seed(0)
    return BYOLModule(hidden_dim=32, projection_dim=16)


@pytest.fixture(scope="module")
def slide():
    """A 160 x 192 px textured 'tissue' image: 30 tiles of 32 px."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (3, 160, 192), dtype=np.uint8)
    centers = tissue_tile_centers(np.ones((5, 6), bool), 32, image.shape[1:], 32, min_tissue=0.5)
    return TileSlide("s", image, centers)


def test_tissue_tiles_follow_the_mask():
    mask = np.zeros((40, 40), bool)
    mask[:20, :10] = True  # tissue in the top-left 200 x 100 px of a 400 x 400 px image
    centers = tissue_tile_centers(mask, 10.0, (400, 400), 100, min_tissue=0.5)
    np.testing.assert_array_equal(centers, [[50, 50], [150, 50]])
    assert len(tissue_tile_centers(mask, 10.0, (400, 400), 100, min_tissue=0.0)) == 16
    # a tile half on tissue counts at 0.5, not above
    half = tissue_tile_centers(mask, 10.0, (400, 400), 200, min_tissue=0.5)
    np.testing.assert_array_equal(half, [[100, 100]])
    assert len(tissue_tile_centers(mask, 10.0, (400, 400), 200, min_tissue=0.51)) == 0


def test_byol_loss_gradients_and_target_update():
    module = _module()
    a, b = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    loss = module(a, b)
    assert 0 <= float(loss.detach()) <= 4
    loss.backward()
    for name, p in module.named_parameters():
        if name.startswith("target_"):
            assert p.grad is None, name
        else:
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
    with torch.no_grad():
        module.encoder.conv1.weight.add_(1.0)
    before = module.target_encoder.conv1.weight.clone()
    module.update_target(1.0)  # momentum 1: the target does not move
    torch.testing.assert_close(module.target_encoder.conv1.weight, before)
    module.update_target(0.5)
    torch.testing.assert_close(module.target_encoder.conv1.weight, (before + module.encoder.conv1.weight) / 2)


def test_batches_depend_only_on_the_epoch_and_rng(slide):
    plan = BYOLPlan(_module(), [slide], tile_px=32, batch_size=4, epochs=3)
    assert plan.region_px == 48
    assert len(plan.val_tiles) == 3
    assert len(plan.train_tiles) == 27
    assert plan.steps_per_epoch == MIN_STEPS_PER_EPOCH  # 27 tiles fill only 6 batches
    plan = BYOLPlan(_module(), [slide], tile_px=32, batch_size=4, epochs=3, steps_per_epoch=6)
    first = list(plan.batches(1, np.random.default_rng([0, 1])))
    again = list(plan.batches(1, np.random.default_rng([0, 1])))
    assert [b["step"] for b in first] == [6, 7, 8, 9, 10, 11]
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x["regions"], y["regions"])
        assert x["seed"] == y["seed"]
    assert first[0]["regions"].shape == (4, 3, 48, 48)
    assert first[0]["regions"].dtype == np.uint8


def test_few_tiles_make_an_epoch_of_several_passes(slide, monkeypatch):
    plan = BYOLPlan(_module(), [slide], tile_px=32, batch_size=4, epochs=3, steps_per_epoch=15)
    assert plan.steps_per_epoch == 15
    assert plan.total_steps == 45
    drawn = []
    monkeypatch.setattr(plan, "_regions", lambda tiles: drawn.append(tiles.copy()) or tiles)
    assert [b["step"] for b in plan.batches(1, np.random.default_rng(0))] == list(range(15, 30))
    # each tile is moved by less than half a tile: the nearest training tile is the one drawn
    drawn = np.concatenate(drawn)[:, 1:]
    nearest = np.linalg.norm(drawn[:, None] - plan.train_tiles[None, :, 1:], axis=2).argmin(1)
    assert len(nearest) == 60
    # 60 draws from 27 tiles: two whole passes (each tile twice), then 6 tiles of a third
    counts = np.bincount(nearest[:54], minlength=27)
    np.testing.assert_array_equal(counts, np.full(27, 2))


def test_a_step_trains_and_validation_reports_loss_and_spread(slide):
    module = _module()
    plan = BYOLPlan(module, [slide], tile_px=32, batch_size=4, epochs=1)
    optimizer = plan.configure_optimizer(module.parameters())
    batch = next(plan.batches(0, np.random.default_rng(0)))
    module.train()
    out = plan.training_step(module, batch, torch.device("cpu"))
    out["loss"].backward()
    optimizer.step()
    target_before = module.target_encoder.conv1.weight.clone()
    with torch.no_grad():
        plan.after_step(module, batch)
    assert not torch.equal(module.target_encoder.conv1.weight, target_before)
    module.eval()
    with torch.no_grad():
        metrics = plan.validate(module, torch.device("cpu"))
        assert metrics == plan.validate(module, torch.device("cpu"))  # fixed views
    assert 0 <= metrics["val_loss"] <= 4
    assert metrics["val_feature_std"] > 0


def test_momentum_follows_byol_cosine_schedule(slide):
    plan = BYOLPlan(_module(), [slide], tile_px=32, batch_size=4, epochs=2, base_momentum=0.9)
    seen = []

    class Recorder:
        def update_target(self, momentum):
            seen.append(momentum)

    for step in (0, plan.total_steps // 2 - 1, plan.total_steps - 1):
        plan.after_step(Recorder(), {"step": step})
    assert seen[0] == pytest.approx(0.9, abs=0.01)
    assert seen[1] == pytest.approx(0.95)
    assert seen[2] == pytest.approx(1.0)


def test_too_few_tiles_is_a_clear_error(slide):
    with pytest.raises(ValueError, match="lower `tile_px` or `batch_size`"):
        BYOLPlan(_module(), [slide], tile_px=32, batch_size=64)
