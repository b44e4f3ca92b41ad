import numpy as np
import pytest

from histo2st._kernels import aggregate_circles

torch = pytest.importorskip("torch")


def test_spot_pool_equals_the_numba_kernel_and_has_gradients():
    from histo2st.nn import spot_pixel_index, spot_pool

    rng = np.random.default_rng(0)
    maps = torch.rand(3, 5, 24, 32, dtype=torch.float64, requires_grad=True)
    batch = rng.integers(0, 3, 25)
    centers = rng.uniform(-4, 36, (25, 2))
    radii = rng.uniform(0, 10, 25)
    sums = spot_pool(maps, batch, centers, radii, agg="sum")
    means = spot_pool(maps, index=spot_pixel_index((3, 24, 32), batch, centers, radii), n_spots=25)
    arrays = maps.detach().numpy()
    for k in range(25):
        ref_sum, n = aggregate_circles(arrays[batch[k]], centers[k : k + 1], radii[k : k + 1])
        np.testing.assert_allclose(sums[k].detach().numpy(), ref_sum[0], rtol=1e-12, atol=1e-12)
        expected = ref_sum[0] / n[0] if n[0] else np.zeros(5)
        np.testing.assert_allclose(means[k].detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn(25, 5, dtype=torch.float64)
    (means * weights).sum().backward()
    # d(mean_k)/d(pixel) = weight_k / n_k for each covered pixel: check one spot's gradient mass
    pixels, spots = spot_pixel_index((3, 24, 32), batch, centers, radii)
    covered = np.bincount(spots, minlength=25)
    k = int(np.argmax(covered))
    grad = maps.grad.permute(0, 2, 3, 1).reshape(-1, 5)
    only_k = np.setdiff1d(pixels[spots == k], pixels[spots != k])
    np.testing.assert_allclose(grad[only_k].numpy(), np.broadcast_to(weights[k].numpy() / covered[k], (len(only_k), 5)))
    assert torch.isfinite(maps.grad).all()
