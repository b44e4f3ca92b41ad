import math

import numpy as np
import torch

from histo2st.train._augment import random_views, stain_jitter


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_stain_jitter_without_strength_is_the_identity():
    x = torch.rand(3, 3, 16, 16, generator=_gen())
    out = stain_jitter(x, _gen(), stain_scale=0.0, stain_shift=0.0, blur_p=0.0)
    torch.testing.assert_close(out, x, atol=2e-5, rtol=0)


def test_stain_jitter_is_reproducible_per_image_and_in_range():
    x = torch.rand(1, 3, 16, 16, generator=_gen()).expand(4, -1, -1, -1).contiguous()
    a, b = stain_jitter(x, _gen(7)), stain_jitter(x, _gen(7))
    torch.testing.assert_close(a, b)
    assert float(a.min()) >= 0
    assert float(a.max()) <= 1
    assert not torch.allclose(a[0], a[1])  # each image draws its own stain factors
    assert not torch.allclose(a, stain_jitter(x, _gen(8)))


def test_random_views_rotate_about_the_center_of_a_region_of_their_size():
    size = 33
    yy, xx = np.mgrid[:size, :size] + 0.5 - size / 2
    rings = torch.from_numpy(np.cos(np.hypot(yy, xx) / 2.0)).float()
    region = rings.expand(8, 3, size, size).contiguous()
    views = random_views(region, size, _gen(1), zoom=(1.0, 1.0))
    # no room to shift: every view is its region rotated and mirrored about the center, which rings do not see
    inside = torch.from_numpy(np.hypot(yy, xx) < size / 2 - 2)
    torch.testing.assert_close(views[..., inside], region[..., inside], atol=0.1, rtol=0)


def test_random_views_shape_zoom_and_constant_regions():
    regions = torch.full((5, 3, 48, 48), 0.3)
    views = random_views(regions, 32, _gen(2))
    assert views.shape == (5, 3, 32, 32)
    torch.testing.assert_close(views, torch.full_like(views, 0.3))
    # a view of 32 px at zoom z shows 32 / z px of the region; rotated, its extent along x is 1 to sqrt(2) times that
    ramp = torch.linspace(0, 1, 65)[:64].expand(6, 3, 64, 64).contiguous()
    for zoom in (1.0, 2.0):
        views = random_views(ramp, 32, _gen(3), zoom=(zoom, zoom))
        extent = (views.amax(dim=(1, 2, 3)) - views.amin(dim=(1, 2, 3))) * 64
        assert ((extent > 32 / zoom - 2) & (extent < math.sqrt(2) * 32 / zoom + 2)).all()
