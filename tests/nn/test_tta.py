"""Test-time augmentation: maps turned back before averaging, vectors averaged as they are."""

import pytest
import torch

from histo2st.nn import TTA_COUNTS, dihedral_mean


def _images(seed=0):
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n", TTA_COUNTS)
def test_an_equivariant_map_is_unchanged(n):
    x = _images()
    conv = torch.nn.Conv2d(3, 4, kernel_size=1)  # pointwise: commutes with every rotation and mirroring
    with torch.no_grad():
        torch.testing.assert_close(dihedral_mean(conv, x, n=n), conv(x))


def test_the_mean_is_over_the_orientations_turned_back():
    x = _images()
    ramp = torch.arange(8.0).view(1, 1, 1, 8)  # weights that depend on the column: not equivariant

    def forward(t):
        return t * ramp

    expected_2 = (x * ramp + (x.flip(-1) * ramp).flip(-1)) / 2
    torch.testing.assert_close(dihedral_mean(forward, x, n=2), expected_2)
    # over the whole group every column weight meets every pixel equally often along rows and columns
    mean_8 = dihedral_mean(forward, x, n=8)
    torch.testing.assert_close(mean_8, x * 3.5)
    assert not torch.allclose(dihedral_mean(forward, x, n=1), mean_8)


def test_vectors_are_averaged_as_they_are():
    x = _images()

    def corner(t):  # the top-left pixel of every channel: moves under rotations
        return t[..., 0, 0]

    corners = torch.stack([x[..., 0, 0], x[..., 0, -1], x[..., -1, -1], x[..., -1, 0]]).mean(0)
    torch.testing.assert_close(dihedral_mean(corner, x, n=4, dense=False), corners)
    torch.testing.assert_close(dihedral_mean(corner, x, n=8, dense=False), corners)


def test_other_counts_are_refused():
    with pytest.raises(ValueError, match=r"averages \[1, 2, 4, 8\] transforms, got 3"):
        dihedral_mean(lambda t: t, _images(), n=3)
