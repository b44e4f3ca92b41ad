import numpy as np
import pytest

from histo2st._core._stain import CANONICAL_HE, MacenkoNormalizer

# Hematoxylin and eosin OD vectors of a "lab B": both turned away from the reference's (the canonical ones).
LAB_B = np.array([[0.55, 0.80, 0.25], [0.20, 0.95, 0.30]])


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _stained(he_vectors, amounts, background=255.0):
    """A (3, h, w) uint8 image of tissue with these stain amounts (2, h, w) of the given OD vectors (2, 3)."""
    od = np.einsum("shw,sc->chw", amounts, _unit(he_vectors))
    return np.clip(np.round(background * np.exp(-od) - 1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def amounts():
    """Stain amounts of a synthetic tissue: nuclei (mostly H), stroma (mostly E), some glass."""
    rng = np.random.default_rng(0)
    kind = rng.choice(3, size=(64, 64), p=[0.3, 0.6, 0.1])  # nucleus, stroma, glass
    strong, weak = rng.gamma(3.0, 0.25, (2, 64, 64)), rng.uniform(0, 0.05, (2, 64, 64))
    h = np.where(kind == 0, strong[0], weak[0])
    e = np.where(kind == 1, strong[1], weak[1])
    return np.stack([h, e]) * (kind != 2)


def _angle(u, v):
    return np.degrees(np.arccos(np.clip(_unit(u) @ _unit(v), -1, 1)))


def test_fit_recovers_the_stain_vectors(amounts):
    norm = MacenkoNormalizer().fit(_stained(CANONICAL_HE, amounts))
    assert _angle(norm.stain_matrix[:, 0], CANONICAL_HE[0]) < 5  # hematoxylin first
    assert _angle(norm.stain_matrix[:, 1], CANONICAL_HE[1]) < 5


def test_fit_agrees_with_squidpy(amounts):
    spatialdata = pytest.importorskip("spatialdata")
    stain = pytest.importorskip("squidpy.experimental.im")
    if not hasattr(stain, "fit_stain_reference"):
        pytest.skip("this squidpy has no stain normalization")
    from spatialdata.models import Image2DModel, Labels2DModel

    image = _stained(LAB_B, amounts)
    sdata = spatialdata.SpatialData(
        images={"he": Image2DModel.parse(image, dims=("c", "y", "x"))},
        labels={"he_tissue": Labels2DModel.parse((amounts.sum(0) > 0).astype(np.int32), dims=("y", "x"))},
    )
    theirs = stain.fit_stain_reference(sdata, "he", method="macenko").stain_matrix
    ours = MacenkoNormalizer().fit(image).stain_matrix
    assert _angle(ours[:, 0], theirs[:, 0]) < 3
    assert _angle(ours[:, 1], theirs[:, 1]) < 3


def test_transform_of_the_reference_is_near_identity(amounts):
    reference = _stained(CANONICAL_HE, amounts)
    norm = MacenkoNormalizer().fit(reference)
    out = norm.transform(reference)
    assert out.dtype == np.uint8
    assert out.shape == reference.shape
    assert np.abs(out.astype(int) - reference).mean() < 1.0


def test_a_restained_copy_moves_towards_the_reference(amounts):
    reference = _stained(CANONICAL_HE, amounts)
    other_lab = _stained(LAB_B, 1.4 * amounts)  # other dyes, stained more strongly
    norm = MacenkoNormalizer().fit(reference)
    before = np.abs(other_lab.astype(int) - reference).mean()
    after = np.abs(norm.transform(other_lab).astype(int) - reference).mean()
    assert after < 0.25 * before


def test_source_stains_of_a_whole_slide_apply_to_its_tiles(amounts):
    slide = _stained(LAB_B, amounts)
    norm = MacenkoNormalizer().fit(_stained(CANONICAL_HE, amounts))
    whole = norm.transform(slide)
    tile = norm.transform(slide[:, :16, :16], source=norm.stains(slide))
    np.testing.assert_array_equal(tile, whole[:, :16, :16])


def test_round_trip_through_a_dict(amounts):
    import json

    norm = MacenkoNormalizer(alpha=2.0).fit(_stained(CANONICAL_HE, amounts))
    again = MacenkoNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    image = _stained(LAB_B, amounts)
    np.testing.assert_array_equal(again.transform(image), norm.transform(image))


def test_clear_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        MacenkoNormalizer().transform(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="looks empty"):
        MacenkoNormalizer().fit(np.full((3, 8, 8), 255, np.uint8))
    with pytest.raises(ValueError, match=r"\(3, h, w\) uint8"):
        MacenkoNormalizer().fit(np.zeros((8, 8, 3), np.float32))


def test_blockwise_transform_of_a_slide_equals_the_whole_transform(amounts):
    import dask.array as da

    from histo2st._core._stain import transform_blocks

    slide = _stained(LAB_B, amounts)
    norm = MacenkoNormalizer().fit(_stained(CANONICAL_HE, amounts))
    source = norm.stains(slide)
    blocks = transform_blocks(da.from_array(slide, chunks=(1, 16, 24)), norm, source)
    assert blocks.numblocks == (1, 4, 3)  # every block holds all three channels
    np.testing.assert_array_equal(blocks.compute(), norm.transform(slide, source=source))


def test_slide_stains_need_enough_stained_tissue(amounts):
    from histo2st._core._stain import MIN_STAINED_PIXELS

    norm = MacenkoNormalizer()
    pixels = _stained(CANONICAL_HE, amounts).reshape(3, -1)
    np.testing.assert_array_equal(norm.slide_stains(pixels)[0], norm.stains(pixels[:, None])[0])
    with pytest.raises(ValueError, match=f"Section 'S1': too little tissue.*the {MIN_STAINED_PIXELS} needed"):
        norm.slide_stains(pixels[:, : MIN_STAINED_PIXELS // 2], name="Section 'S1'")
