import numpy as np
import pytest

from histo2st.module import THItoGeneModule
from histo2st.train import THItoGenePlan, prepare_sections, split_validation
from histo2st.train._sections import subset_section

NET = dict(
    patch_px=48, caps=4, route_dim=8, depth=1, heads=2, mlp_dim=32, gat_heads=2, gat_hidden=16, gat_out=8,
    head_hidden=16, n_pos=16,
)  # fmt: skip


@pytest.fixture(scope="module")
def sections(small_tissue):
    genes = list(small_tissue["table"].var_names)
    sections, _ = prepare_sections(small_tissue, genes, 2.0)
    return sections


def _plan(train, val, **kwargs):
    return THItoGenePlan(THItoGeneModule(train[0].targets.shape[1], **NET), train, val, **kwargs)


def _batches(plan, epoch=0):
    return list(plan.batches(epoch, np.random.default_rng([0, epoch])))


def _target_centers(batches) -> set:
    return {tuple(xy) for b in batches for xy in b["centers_um"][b["is_target"]].round(3).tolist()}


def test_whole_section_window_has_the_right_shapes(sections):
    train, val, _ = split_validation(sections, 0.2, seed=0)
    plan = _plan(train, val)
    (batch,) = _batches(plan)
    n = sections[0].n_spots
    assert batch["patches"].shape == (1, n, 3, 48, 48)
    assert batch["patches"].dtype == np.uint8
    assert batch["grid"].shape == (1, n, 2)
    assert (batch["grid"].min(axis=1) == 0).all()
    assert batch["targets"].shape == (1, n, sections[0].targets.shape[1])
    assert batch["valid"].all()
    # the held-out spots are context, not targets
    assert batch["is_target"].sum() == train[0].n_spots
    # synthetic spots sit on a 100 µm lattice: the estimated pitch recovers it
    assert plan.pitch_um == pytest.approx(100, rel=0.01)


def test_validation_spots_are_never_loss_targets(sections):
    train, val, _ = split_validation(sections, 0.3, seed=1)
    plan = _plan(train, val, window_spots=8, batch_size=2)
    held = {tuple(xy) for xy in (val[0].centers * val[0].microns_per_pixel).round(3).tolist()}
    targets = set()
    for epoch in range(3):
        batches = _batches(plan, epoch)
        # the number of batches is fixed by the data, whatever windows are drawn
        assert (
            len(batches)
            == int(np.ceil(plan.windows_per_epoch / 2))
            == int(np.ceil(np.ceil(sections[0].n_spots / 8) / 2))
        )
        assert all(b["valid"].sum(1).tolist() == [8] * len(b["valid"]) for b in batches)
        targets |= _target_centers(batches)
    assert targets
    assert not targets & held
    assert targets <= {tuple(xy) for xy in (train[0].centers * 2.0).round(3).tolist()}


def test_windows_are_compact(sections):
    plan = _plan(sections, [], window_spots=7)
    centers = sections[0].centers
    for _, idx in plan.windows(np.random.default_rng(0)):
        assert len(idx) == 7
        # the 7 nearest spots of a random spot on a 100 µm lattice (50 px at 2 µm/px) lie within two pitches of it
        dist = np.linalg.norm(centers[idx, None] - centers[None, idx], axis=-1)
        assert dist.max(1).min() <= 2 * 50


def test_windows_per_epoch_repeats_whole_passes(sections):
    small = subset_section(sections[0], np.arange(sections[0].n_spots) < 12)
    small.name = "b"
    plan = _plan([sections[0], small], [], windows_per_epoch=5)
    windows = plan.windows(np.random.default_rng(0))
    assert len(windows) == plan.windows_per_epoch == 5
    names = [plan.contexts[ci].section.name for ci, _ in windows]
    # two passes over both sections, then one window of a third: no section is seen twice before the other once
    assert sorted(names[:2]) == sorted(names[2:4]) == sorted({sections[0].name, "b"})
    assert len(_batches(plan)) == 5
    assert _plan([sections[0], small], []).windows_per_epoch == 2


def test_encoder_lr_gives_the_patch_encoder_its_own_rate(sections):
    plan = _plan(sections, [], lr=1e-4, encoder_lr=1e-3)
    groups = plan.configure_optimizer(plan.module.parameters()).param_groups
    encoder = {id(p) for part in (plan.module.odconv, plan.module.capsules) for p in part.parameters()}
    assert [g["lr"] for g in groups] == [1e-3, 1e-4]
    assert {id(p) for p in groups[0]["params"]} == encoder
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(plan.module.parameters()))
    (single,) = _plan(sections, []).configure_optimizer(plan.module.parameters()).param_groups
    assert single["lr"] == 1e-5


def test_padded_batch_of_two_sections_trains(sections):
    import torch

    small = subset_section(sections[0], np.arange(sections[0].n_spots) < 12)
    small.name = "b"
    plan = _plan([sections[0], small], [], batch_size=2, loss="pixnet")
    (batch,) = _batches(plan)
    assert batch["valid"].sum(1).tolist() in ([sections[0].n_spots, 12], [12, sections[0].n_spots])
    plan.module.train()
    out = plan.training_step(plan.module, batch, torch.device("cpu"))
    assert set(out) >= {"loss", "pcc"}
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in plan.module.parameters())


def test_validate_reports_pcc_on_held_out_spots(sections):
    train, val, _ = split_validation(sections, 0.3, seed=0)
    plan = _plan(train, val)
    plan.module.eval()
    metrics = plan.validate(plan.module, "cpu")
    assert set(metrics) == {"val_pcc", "val_mse"}
    assert np.isfinite(metrics["val_mse"])


def test_rejects_windows_batch_norm_cannot_take(sections):
    with pytest.raises(ValueError, match="at least 2"):
        _plan(sections, [], window_spots=1)
    one = subset_section(sections[0], np.arange(sections[0].n_spots) == 0)
    with pytest.raises(ValueError, match="two or more spots"):
        _plan([one], [])
    with pytest.raises(ValueError, match="`loss`"):
        _plan(sections, [], loss="l1")
    with pytest.raises(ValueError, match="`windows_per_epoch`"):
        _plan(sections, [], windows_per_epoch=0)


def test_augment_positions_moves_each_window_rigidly_inside_the_table(sections):
    train, val, _ = split_validation(sections, 0.2, seed=0)
    fixed = _batches(_plan(train, val))[0]["grid"][0]
    plan = _plan(train, val, augment_positions=True)
    n_pos = plan.module.vit.position.n_pos
    seen = set()
    for epoch in range(6):
        grid = _batches(plan, epoch)[0]["grid"][0]
        assert grid.min() >= 0
        assert grid.max() < n_pos
        # a flip, transpose and shift of the lattice: every pair of spots keeps its grid distance
        np.testing.assert_array_equal(_grid_distances(grid), _grid_distances(fixed))
        seen.add(grid.tobytes())
    assert len(seen) > 1


def _grid_distances(grid: np.ndarray) -> np.ndarray:
    return np.abs(grid[:, None] - grid[None]).sum(-1)
