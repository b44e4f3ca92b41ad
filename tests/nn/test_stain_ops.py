import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.color import hed2rgb, rgb2hed

from histo2st.nn._stain import gaussian_blur, hed_to_rgb, perturb_hed, rgb_to_hed


def _channels_last(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).double().numpy()


def _he_colors(seed: int, shape=(2, 3, 8, 8)) -> torch.Tensor:
    """Colors of tissue stained by non-negative amounts of hematoxylin and eosin (and a little DAB)."""
    rng = np.random.default_rng(seed)
    stains = rng.uniform(0, 1, shape) * np.array([0.15, 0.1, 0.01])[None, :, None, None]
    return torch.from_numpy(hed2rgb(stains.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)).float()


def test_rgb_to_hed_matches_skimage():
    x = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    ours = rgb_to_hed(x).clamp_min(0)  # rgb2hed clips negative amounts
    np.testing.assert_allclose(_channels_last(ours), rgb2hed(_channels_last(x)), atol=1e-5)


def test_hed_to_rgb_matches_skimage():
    stains = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.2
    np.testing.assert_allclose(_channels_last(hed_to_rgb(stains)), hed2rgb(_channels_last(stains)), atol=1e-5)


def test_identity_perturbation_returns_the_input():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    out = perturb_hed(x, torch.ones(3, 3), torch.zeros(3, 3))
    torch.testing.assert_close(out, x, atol=2e-5, rtol=0)


def test_perturbation_matches_the_skimage_pipeline():
    x = _he_colors(3)
    scale = torch.tensor([[1.2, 0.8, 1.0], [0.9, 1.1, 1.3]])
    shift = torch.tensor([[0.01, -0.005, 0.0], [0.0, 0.02, 0.001]])
    expected = [
        hed2rgb(rgb2hed(_channels_last(x[i : i + 1])[0]) * scale[i].numpy() + shift[i].numpy()) for i in range(2)
    ]
    np.testing.assert_allclose(_channels_last(perturb_hed(x, scale, shift)), np.stack(expected), atol=1e-5)


def test_more_hematoxylin_darkens_towards_blue_purple():
    x = _he_colors(4)
    out = perturb_hed(x, torch.tensor([[1.5, 1.0, 1.0]] * 2), torch.zeros(2, 3))
    assert (out <= x + 1e-6).all()  # more stain absorbs more light in every channel
    drop = (x - out).mean(dim=(0, 2, 3))
    assert drop[0] > drop[2]  # hematoxylin absorbs red more than blue


@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.6])
def test_blur_matches_scipy(sigma):
    x = torch.rand(1, 3, 20, 17, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = gaussian_blur(x, torch.tensor([sigma]))
    radius = int(np.ceil(3 * sigma))
    # torch's "reflect" padding is scipy's "mirror"; scipy's kernel reaches int(truncate * sigma + 0.5) pixels
    expected = np.stack(
        [ndimage.gaussian_filter(c, sigma, mode="mirror", truncate=(radius - 0.49) / sigma) for c in x[0].numpy()]
    )
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-10)


def test_blur_per_image_and_zero_sigma_is_identity():
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(6))
    out = gaussian_blur(x, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(out[0], x[0])
    assert out[1].std() < x[1].std()
    torch.testing.assert_close(out[1].mean(), x[1].mean(), atol=0.02, rtol=0)
