"""PixNet's two-scale input: the coarse context image, its tiles, training crops with context, end to end."""

import numpy as np
import pytest
import torch

import histo2st as st
from histo2st.model import PixNet
from histo2st.module import PixNetModule
from histo2st.train import ContextImage, PixNetPlan, prepare_sections, read_tile
from histo2st.train._tiling import coarsen_image

# 4 µm/px on the 2 µm/px synthetic tissue; pyramid level 4: context 2x coarser (8 µm/px), 32 µm margin = 4 px -> 8
TINY = dict(microns_per_pixel=4.0, hidden_dim=8, pyramid_levels=4, crop_px=64, batch_size=2, tile_px=64)


def test_coarsen_image_takes_block_means_and_drops_partial_blocks():
    image = np.arange(3 * 6 * 9, dtype=np.uint8).reshape(3, 6, 9)
    small = coarsen_image(image, 2).compute()
    assert small.shape == (3, 3, 4)
    assert small.dtype == np.uint8
    np.testing.assert_array_equal(small[:, 1, 2], np.round(image[:, 2:4, 4:6].mean(axis=(1, 2))))


def test_context_tiles_are_the_coarse_window_around_each_tile():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 96, 128), dtype=np.uint8)
    context = ContextImage(coarsen_image(image, 4).compute(), factor=4, margin=8)
    (tile,) = context.tiles([(16, 32)], 32)
    assert tile.shape == (3, 32 // 4 + 16, 32 // 4 + 16)
    # the window of input pixels the context spans, coarsened (white where it leaves the slide)
    np.testing.assert_array_equal(tile, coarsen_image(read_tile(image, 16 - 32, 32 - 32, 32 + 64), 4).compute())
    assert (tile[:, :4] == 255).all()
    with pytest.raises(ValueError, match="multiples of 4"):
        context.tiles([(2, 0)], 32)


def test_context_branch_starts_as_plain_pixnet_and_learns_from_the_context():
    torch.manual_seed(0)
    module = PixNetModule(3, hidden_dim=8, pyramid_levels=5, context_margin=16)
    assert module.context_factor == 4
    assert module.context_shape(64, 96) == (48, 56)
    x = torch.randn(2, 3, 64, 96)
    a, b = (module(x, context=torch.randn(2, 3, 48, 56)) for _ in range(2))
    torch.testing.assert_close(a, b)  # the zero-initialized projection: the context changes nothing yet
    a.square().mean().backward()
    assert module.context_proj.weight.grad.abs().sum() > 0  # ...but it gets a gradient, so it will
    with torch.no_grad():
        module.context_proj.weight.normal_()
    a, b = (module(x, context=torch.randn(2, 3, 48, 56)) for _ in range(2))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="exactly when"):
        module(x)
    with pytest.raises(ValueError, match=r"expected \(48, 56\)"):
        module(x, context=torch.randn(2, 3, 40, 56))
    with pytest.raises(ValueError, match="multiple of 8"):
        PixNetModule(3, context_margin=12)
    with pytest.raises(ValueError, match="pyramid_levels"):
        PixNetModule(3, pyramid_levels=3, context_margin=8)


@pytest.fixture(scope="module")
def tissue():
    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=3)
    st.pp.normalize(sdata)
    return sdata


def test_crops_come_with_their_context_turned_alike(tissue):
    genes = list(tissue["table"].var_names)
    module = PixNetModule(len(genes), hidden_dim=8, pyramid_levels=4, context_margin=8)
    (section,), _ = prepare_sections(tissue, genes, 4.0)
    plan = PixNetPlan(module, [section], [], crop_px=64, batch_size=4, augment=True)
    for epoch in range(3):
        for batch in plan.batches(epoch, np.random.default_rng(epoch)):
            assert batch["context"].shape == (4, 3, 64 // 2 + 16, 64 // 2 + 16)
            for crop, context in zip(batch["images"], batch["context"], strict=True):
                # the center of the context is the crop, coarsened: same place, same flip and rotation
                np.testing.assert_array_equal(context[:, 8:-8, 8:-8], coarsen_image(crop, 2).compute())
    with pytest.raises(ValueError, match="context branch cannot go"):
        PixNetPlan(module, [section], [], crop_px=64, stain_augment=True)


def test_pixnet_with_context_trains_predicts_and_reloads(tissue, tmp_path):
    genes = list(tissue["table"].var_names)
    model = PixNet(genes, **TINY, context_um=32.0)
    assert model.module.context_margin == 8  # 32 µm at 8 µm/px is 4 coarse px, rounded up to 8
    history = model.train(tissue, epochs=1, validation=0.3, progress=False)
    assert np.isfinite(history[0]["loss"])
    assert "val_pcc" in history[0]
    he = tissue["he"].data
    dense = model.predict_image(he, 2.0, device="cpu").compute()
    assert dense.shape == (len(genes), 150, 150)
    assert np.isfinite(dense).all()
    mirrored = model.predict_image(he, 2.0, device="cpu", tta=2).compute()  # tiles and contexts mirrored alike
    assert np.isfinite(mirrored).all()
    assert not np.allclose(mirrored, dense)
    loaded = st.tl.load_model(model.save(tmp_path / "m"))
    assert loaded.module.context_margin == 8
    np.testing.assert_allclose(loaded.predict_image(he, 2.0, device="cpu").compute(), dense, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="context_um"):
        PixNet(genes, context_um=0)
