"""A simple tissue mask from the H&E: Otsu threshold of the saturation on a low-resolution copy."""

from __future__ import annotations

import numpy as np

#: Longest side, in pixels, of the copy of the H&E the mask is computed on.
MASK_SIDE = 1024


def tissue_mask(he, *, max_side: int = MASK_SIDE) -> tuple[np.ndarray, float]:
    """Foreground mask of an H&E ``(3, H, W)`` array (numpy or dask) and its downsampling factor.

    Tissue is more saturated than the white or grey glass around it, so Otsu's threshold on the HSV saturation of a
    copy of at most ``max_side`` pixels separates the two; a closing and hole filling smooth the result.

    Returns
    -------
    mask
        ``(h, w)`` bool, ``True`` on tissue.
    factor
        H&E pixels per mask pixel (mask pixel ``(i, j)`` covers H&E pixels ``[i * factor, (i + 1) * factor)``).
    """
    from scipy import ndimage
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu

    step = max(1, int(np.ceil(max(he.shape[1:]) / max_side)))
    small = np.asarray(he[:3, ::step, ::step]).transpose(1, 2, 0)
    saturation = rgb2hsv(small)[..., 1]
    if np.ptp(saturation) == 0:
        return np.ones(saturation.shape, dtype=bool), float(step)
    mask = saturation > threshold_otsu(saturation)
    mask = ndimage.binary_closing(mask, structure=np.ones((5, 5)), iterations=1)
    return ndimage.binary_fill_holes(mask), float(step)
