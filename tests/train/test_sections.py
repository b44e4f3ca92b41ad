import numpy as np
import pytest

from histo2st.train import Section, denoise_targets, prepare_sections, split_validation
from histo2st.train._augment import dihedral, random_dihedral


def test_prepare_sections_rescales_coordinates(small_tissue):
    genes = list(small_tissue["table"].var_names[:3])
    (section,), norm = prepare_sections(small_tissue, genes, microns_per_pixel=4.0)
    assert norm["target_sum"] == 1e4
    assert section.image.shape == (3, 150, 150)
    np.testing.assert_allclose(section.centers, small_tissue["table"].obsm["spatial"] / 2, rtol=1e-6)
    np.testing.assert_allclose(section.radii, 55 / 2 / 4.0, rtol=1e-6)
    np.testing.assert_allclose(section.targets, small_tissue["table"][:, genes].X.toarray(), rtol=1e-6)


def test_prepare_sections_requires_normalized_tables(tiny_sample):
    with pytest.raises(ValueError, match="st.pp.normalize"):
        prepare_sections(tiny_sample, ["a"], microns_per_pixel=1.0)


def test_prepare_sections_takes_one_gene_as_a_string(small_tissue):
    (section,), _ = prepare_sections(small_tissue, "GENE00", microns_per_pixel=4.0)
    np.testing.assert_allclose(section.targets, small_tissue["table"][:, ["GENE00"]].X.toarray(), rtol=1e-6)


def test_split_validation_by_spots_is_disjoint(small_tissue):
    sections, _ = prepare_sections(small_tissue, ["GENE00"] if "GENE00" in small_tissue["table"].var_names
                                   else list(small_tissue["table"].var_names[:1]), microns_per_pixel=2.0)  # fmt: skip
    train, val, desc = split_validation(sections, 0.25, seed=0)
    assert desc["kind"] == "spots"
    assert not set(train[0].spot_names) & set(val[0].spot_names)
    assert len(train[0].spot_names) + len(val[0].spot_names) == sections[0].n_spots
    with pytest.raises(ValueError, match="not among"):
        split_validation(sections, "nope", seed=0)


@pytest.mark.parametrize("seed", range(6))
def test_dihedral_moves_spots_with_pixels(seed):
    rng = np.random.default_rng(seed)
    image = np.zeros((1, 32, 32), dtype=np.uint8)
    image[0, 5, 20] = 255  # pixel center (x=20.5, y=5.5)
    out, xy = dihedral(image, np.array([[20.5, 5.5]]), *random_dihedral(rng))
    y, x = np.argwhere(out[0] == 255)[0]
    np.testing.assert_allclose(xy[0], [x + 0.5, y + 0.5])


def _sections_with_targets(targets: np.ndarray, sizes: list[int]) -> list[Section]:
    image = np.zeros((3, 8, 8), dtype=np.uint8)
    bounds = np.cumsum([0, *sizes])
    return [
        Section(
            name=f"s{i}",
            image=image,
            centers=np.zeros((b - a, 2), np.float32),
            radii=np.ones(b - a, np.float32),
            targets=targets[a:b],
            spot_names=np.arange(a, b).astype(str),
            microns_per_pixel=1.0,
        )  # fmt: skip
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]


def test_denoise_targets_keeps_shared_variation_and_drops_noise():
    rng = np.random.default_rng(0)
    signal = 3 + rng.normal(size=(120, 2)) @ rng.normal(size=(2, 30))  # two programs shared by 30 genes
    noisy = (signal + rng.normal(scale=0.5, size=signal.shape)).astype(np.float32)
    sections = _sections_with_targets(noisy, [50, 70])
    denoised, record = denoise_targets(sections, 2)
    stacked = np.concatenate([s.targets for s in denoised])
    assert stacked.dtype == np.float32
    assert stacked.shape == noisy.shape
    assert [s.name for s in denoised] == ["s0", "s1"]
    assert denoised[0].image is sections[0].image
    np.testing.assert_allclose(stacked.mean(0), noisy.mean(0), atol=1e-4)
    assert np.linalg.matrix_rank(stacked - stacked.mean(0), tol=1e-3) == 2
    assert np.abs(stacked - signal).mean() < 0.6 * np.abs(noisy - signal).mean()
    assert record["components"] == 2
    assert 0.5 < record["explained_variance"] <= 1


def test_denoise_targets_rejects_more_components_than_the_data_has():
    sections = _sections_with_targets(np.ones((10, 4), np.float32), [10])
    with pytest.raises(ValueError, match="between 1 and 3"):
        denoise_targets(sections, 4)
