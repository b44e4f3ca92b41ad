import logging

import dask.array as da
import numpy as np
import pytest
from dask.callbacks import Callback

import histo2st as st
from histo2st._core._resample import resample_image
from histo2st._core._stain import MIN_STAINED_PIXELS, MacenkoNormalizer, tissue_pixels
from histo2st.model import PixNet, THItoGene
from histo2st.model._patch_grid import model_image

# PixNet at 4 µm/px on the 2 µm/px synthetic tissue: the slide is resampled, as most slides are
PIXNET = dict(microns_per_pixel=4.0, hidden_dim=8, pyramid_levels=3, crop_px=64, batch_size=2, tile_px=64)
THITOGENE = dict(
    microns_per_pixel=2.0, patch_px=48, caps=4, route_dim=8, depth=1, heads=2, mlp_dim=32, gat_heads=2, gat_hidden=16,
    gat_out=8, head_hidden=16, n_pos=16, lr=3e-3,
)  # fmt: skip
# hematoxylin and eosin OD vectors of another lab's dyes
LAB_B = np.array([[0.55, 0.80, 0.25], [0.20, 0.95, 0.30]])


def restain(image: np.ndarray, strength=(1.3, 0.75)) -> np.ndarray:
    """The same tissue stained by another lab: its dyes' OD vectors, hematoxylin 30 % stronger, eosin 25 % weaker."""
    norm = MacenkoNormalizer()
    matrix, _ = norm.stains(image)
    od = norm._od(image).T
    amounts = np.linalg.lstsq(matrix, od, rcond=None)[0]
    vectors = (LAB_B / np.linalg.norm(LAB_B, axis=1, keepdims=True)).T
    od = vectors @ (amounts * np.array(strength)[:, None]) + od - matrix @ amounts  # the residual OD stays
    return np.clip(np.round(255 * np.exp(-od) - 1), 0, 255).astype(np.uint8).reshape(image.shape)


@pytest.fixture(scope="module")
def tissue():
    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=3)
    st.pp.normalize(sdata)
    he = np.asarray(sdata["he"].data)
    return sdata, he, restain(he)


@pytest.fixture(scope="module")
def pixnet(tissue):
    sdata, _, _ = tissue
    model = PixNet(list(sdata["table"].var_names), stain_normalization="macenko", stain_augment=True, **PIXNET)
    model.train(sdata, epochs=1, validation=0.2, progress=False)
    return model


def _plain_copy(model):
    """The same network without stain normalization."""
    params = {**model.init_params, "stain_normalization": None}
    plain = type(model)(model.genes, microns_per_pixel=model.microns_per_pixel, **params)
    plain.module.load_state_dict(model.module.state_dict())
    return plain


def test_restained_slide_gives_nearly_the_same_network_input(tissue, pixnet):
    _, he, other_lab = tissue
    # the resampling and normalization predict_image applies before it cuts tiles
    inputs = [pixnet._stain_normalized(resample_image(image, 0.5)).compute() for image in (he, other_lab)]
    raw = [resample_image(image, 0.5).compute().astype(int) for image in (he, other_lab)]
    before = np.abs(raw[0] - raw[1]).mean()
    after = np.abs(inputs[0].astype(int) - inputs[1]).mean()
    assert before > 10  # gray levels: the two labs look different (15 measured)
    assert after < 3  # 1.7 measured
    assert after < 0.2 * before


def test_card_records_the_reference_and_each_slide(tissue, pixnet, tmp_path):
    sdata, he, _ = tissue
    card = pixnet.card["stain_normalization"]
    assert card["method"] == "macenko"
    assert card["reference_sections"] == ["synthetic"]
    reference = MacenkoNormalizer.from_dict(card["reference"])
    section = card["sections"]["synthetic"]
    assert np.asarray(section["stain_matrix"]).shape == (3, 2)
    assert len(section["max_concentrations"]) == 2
    assert section["n_pixels"] >= MIN_STAINED_PIXELS
    # the one training slide is its own reference
    np.testing.assert_allclose(reference.stain_matrix, section["stain_matrix"])
    assert pixnet.card["hyperparameters"]["stain_normalization"] == "macenko"

    loaded = st.tl.load_model(pixnet.save(tmp_path / "m"))
    assert loaded.init_params["stain_normalization"] == "macenko"
    assert loaded.card["stain_normalization"] == card
    np.testing.assert_array_equal(
        loaded.predict_image(he, 2.0, device="cpu").compute(), pixnet.predict_image(he, 2.0, device="cpu").compute()
    )


def test_predicting_a_restained_slide_moves_less_with_normalization(tissue, pixnet):
    _, he, other_lab = tissue
    plain = _plain_copy(pixnet)
    change = {}
    for name, model in (("normalized", pixnet), ("plain", plain)):
        a, b = (model.predict_image(image, 2.0, device="cpu").compute() for image in (he, other_lab))
        change[name] = np.nanmean(np.abs(a - b))
    assert change["normalized"] < 0.5 * change["plain"]


def test_st_tl_predict_goes_through_the_normalization(tissue, pixnet):
    import spatialdata

    sdata, he, _ = tissue
    sample = spatialdata.deepcopy(sdata)
    st.tl.predict(sample, pixnet, tissue_mask=False, dtype="float32")
    np.testing.assert_allclose(
        np.asarray(sample.images["pred"].data), pixnet.predict_image(he, 2.0, device="cpu").compute(), atol=1e-6
    )
    assert np.isfinite(sample.tables["pred_spots"].X).all()


def test_without_the_hyperparameter_the_image_is_untouched(tissue):
    sdata, he, _ = tissue
    model = PixNet(list(sdata["table"].var_names), **PIXNET)
    image = da.asarray(he)
    assert model._stain_normalized(image) is image
    assert "stain_normalization" not in model.card


def test_prediction_estimates_on_a_strided_read_and_normalizes_block_by_block(tissue, pixnet):
    _, he, _ = tissue
    slide = np.tile(he, (1, 4, 4))  # 1200 x 1200 px at 2 µm/px
    chunked = da.from_array(slide, chunks=(3, 300, 300))
    results = []

    class Sizes(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            results.append(getattr(result, "nbytes", 0))

    model = PixNet(pixnet.genes, **{**PIXNET, "microns_per_pixel": 2.0, "stain_normalization": "macenko"})
    model.card["stain_normalization"] = pixnet.card["stain_normalization"]
    with Sizes():
        pred = model.predict_image(chunked, 2.0, device="cpu")
    assert results  # the estimate read the slide ...
    assert max(results) <= 3 * 300 * 300  # ... one input block at a time, never the whole image
    layers = dict(pred.dask.dependencies)
    (transform,) = [name for name in layers if name.startswith("transform")]
    (overlap,) = [name for name in layers if name.startswith("overlap")]
    assert len(pred.dask.layers[transform]) == 16  # one task per input block

    def ancestors(name):
        return set().union(*({d} | ancestors(d) for d in layers[name])) if layers[name] else set()

    assert transform in ancestors(overlap)  # normalized before tiles are cut with their halo


def test_thitogene_normalizes_its_patches(tissue, tmp_path, caplog):
    sdata, he, other_lab = tissue
    model = st.tl.fit(
        sdata, "thitogene", epochs=1, progress=False, patience=None, stain_normalization="macenko", **THITOGENE
    )
    assert isinstance(model, THItoGene)
    assert model.card["stain_normalization"]["sections"]["synthetic"]["n_pixels"] >= MIN_STAINED_PIXELS
    inputs = [model_image(model, image, 2.0).astype(int) for image in (he, other_lab)]
    assert np.abs(inputs[0] - inputs[1]).mean() < 4  # gray levels, from 17 before (2.4 measured)

    xy = np.asarray(sdata["table"].obsm["spatial"])
    plain = _plain_copy(model)
    change = {}
    for name, m in (("normalized", model), ("plain", plain)):
        a, b = (m.predict_points(image, 2.0, xy, device="cpu") for image in (he, other_lab))
        change[name] = np.abs(a - b).mean()
    assert change["normalized"] < 0.5 * change["plain"]

    loaded = st.tl.load_model(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict_points(he, 2.0, xy), model.predict_points(he, 2.0, xy))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="histo2st"):
        loaded.predict_image(da.asarray(other_lab), 2.0, device="cpu")
        loaded.predict_points(da.asarray(other_lab), 2.0, xy, device="cpu")
    assert caplog.text.count("the slide's stains") == 1  # estimated once per slide


def test_a_slide_without_tissue_is_a_clear_error(tissue, pixnet):
    rng = np.random.default_rng(0)
    glass = rng.normal(235, 4, (3, 300, 300)).clip(0, 255).astype(np.uint8)
    with pytest.raises(ValueError, match="The slide to predict: too little tissue.*stain_normalization=None"):
        pixnet.predict_image(glass, 2.0, device="cpu")
    with pytest.raises(ValueError, match="Unknown `stain_normalization='reinhard'`"):
        PixNet(["a"], stain_normalization="reinhard")
    with pytest.raises(RuntimeError, match="no stain reference yet"):
        PixNet(["a"], stain_normalization="macenko", **PIXNET).predict_image(glass, 2.0, device="cpu")


def test_tissue_pixels_skip_the_glass(tissue):
    _, he, _ = tissue
    framed = np.full((3, 600, 600), 240, np.uint8)
    framed[:, 150:450, 150:450] = he
    pixels, spacing = tissue_pixels(framed, 2.0)
    assert spacing == 4.0  # every 8 µm would leave fewer than 65,536 pixels
    assert pixels.dtype == np.uint8
    assert pixels.shape[1] < 150**2  # the tissue quarter, at most
    assert (pixels == 240).all(axis=0).mean() < 0.01


def test_held_out_sections_stay_out_of_the_reference_and_training_again_keeps_it(tissue):
    import spatialdata
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import get_transformation

    sdata, _, other_lab = tissue
    restained = spatialdata.deepcopy(sdata)
    restained.images["he"] = Image2DModel.parse(
        other_lab, dims=("c", "y", "x"), transformations=get_transformation(sdata["he"], get_all=True)
    )
    model = PixNet(list(sdata["table"].var_names), stain_normalization="macenko", **PIXNET)
    model.train({"A": sdata, "B": restained}, epochs=1, validation="B", progress=False)
    card = model.card["stain_normalization"]
    assert card["reference_sections"] == ["A"]
    np.testing.assert_allclose(card["reference"]["stain_matrix"], card["sections"]["A"]["stain_matrix"])
    h_a, h_b = (np.asarray(card["sections"][s]["stain_matrix"])[:, 0] for s in "AB")
    assert np.degrees(np.arccos(h_a @ h_b)) > 5  # B's own hematoxylin was estimated, not A's reused

    model.train({"C": restained}, epochs=1, validation=None, progress=False)
    again = model.card["stain_normalization"]
    assert again["reference"] == card["reference"]
    assert again["reference_sections"] == ["A"]
    assert list(again["sections"]) == ["A", "B", "C"]
