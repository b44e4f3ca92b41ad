import numpy as np
import pytest

from histo2st.train import prepare_sections, split_validation
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
