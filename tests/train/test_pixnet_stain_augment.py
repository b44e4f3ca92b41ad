import numpy as np
import pytest
import torch

import histo2st as st
from histo2st.model import PixNet
from histo2st.train import PixNetPlan, prepare_sections

COLORS = np.array([(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)], dtype=np.uint8)


@pytest.fixture(scope="module")
def painted():
    """Four 40 µm spots, each painted in its own color on white, with distinct expression; 1 µm per pixel."""
    xy = np.array([[60, 60], [180, 60], [60, 180], [180, 180.0]])
    yy, xx = np.mgrid[:240, :240] + 0.5
    image = np.full((240, 240, 3), 255, np.uint8)
    for (x, y), color in zip(xy, COLORS, strict=True):
        image[(xx - x) ** 2 + (yy - y) ** 2 <= 20**2] = color
    counts = np.diag([10, 20, 30, 40]) + 1
    sdata = st.io.from_arrays(image, xy, counts, list("abcd"), microns_per_pixel=1.0, spot_diameter_um=40)
    st.pp.normalize(sdata)
    return sdata


def test_rescaled_crops_keep_spots_on_their_pixels(painted):
    (section,), _ = prepare_sections(painted, list("abcd"), 1.0)
    plan = PixNetPlan(None, [section], [], crop_px=64, batch_size=4, stain_augment=True)
    radii = []
    for epoch in range(5):
        for batch in plan.batches(epoch, np.random.default_rng(epoch)):
            assert batch["images"].shape == (4, 3, 64, 64)
            for b, (x, y), r, target in zip(
                batch["batch_index"], batch["centers"], batch["radii"], batch["targets"], strict=True
            ):
                assert min(x - r, y - r, 64 - r - x, 64 - r - y) >= -1e-3  # fully inside the crop
                spot = int(np.argmax(target))  # each spot's largest gene names it
                np.testing.assert_array_equal(batch["images"][b, :, int(y), int(x)], COLORS[spot])
                radii.append(r)
    assert 20 * 0.9 - 0.1 <= min(radii) < 19.5
    assert 20.5 < max(radii) <= 20 * 1.1 + 0.1


def test_pixnet_trains_with_stain_augmentation(painted, tiny_pixnet):
    model = PixNet(list("abcd"), microns_per_pixel=1.0, **{**tiny_pixnet, "crop_px": 64}, stain_augment=True)
    assert model.init_params["stain_augment"] is True
    (section,), _ = prepare_sections(painted, list("abcd"), 1.0)
    plan = model._make_plan([section], [])
    assert plan.stain_augment
    batch = next(plan.batches(0, np.random.default_rng(0)))
    out = plan.training_step(model.module, batch, torch.device("cpu"))
    assert torch.isfinite(out["loss"])
    history = model.train(painted, epochs=1, validation=None, progress=False)
    assert np.isfinite(history[0]["loss"])
