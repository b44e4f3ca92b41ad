"""Brute-force numpy references the kernels are checked against.

NaN marks a pixel without a value: sums skip it and counts/areas count only pixels whose channel 0 is not NaN.
"""

import numpy as np


def _valued(image):
    """The map as float64 with NaN as 0, and the ``(H, W)`` mask of pixels with a value (channel 0 not NaN)."""
    data = image.astype(np.float64)
    valued = ~np.isnan(data[0]) if len(data) else np.ones(data.shape[1:], dtype=bool)
    return np.where(np.isnan(data), 0.0, data), valued


def nan_blobs(image, seed: int, n_blobs: int):
    """A float copy of ``image`` with NaN in ``n_blobs`` random discs, the same pixels in every channel."""
    rng = np.random.default_rng(seed)
    _, height, width = image.shape
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    out = image.astype(np.result_type(image.dtype, np.float16))
    for _ in range(n_blobs):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, max(height, width) / 2)
        out[:, (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2] = np.nan
    return out


def circles(image, centers, radii):
    """Sums and pixel counts: a full-map boolean mask per circle (pixel-center rule) of the pixels with a value."""
    _, height, width = image.shape
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    data, valued = _valued(image)
    sums = np.zeros((len(radii), image.shape[0]))
    counts = np.zeros(len(radii), dtype=np.int64)
    for k, ((cx, cy), r) in enumerate(zip(centers, radii, strict=True)):
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r**2) & valued
        sums[k] = data[:, mask].sum(axis=1)
        counts[k] = mask.sum()
    return sums, counts


def squares(image, origins, sizes):
    """Area-weighted sums and covered areas with a value: each pixel weighted by its overlap with the square."""
    _, height, width = image.shape
    data, valued = _valued(image)
    sums = np.zeros((len(origins), image.shape[0]))
    areas = np.zeros(len(origins))
    for k, ((x0, y0), s) in enumerate(zip(origins, sizes, strict=True)):
        wx = np.clip(np.minimum(np.arange(width) + 1, x0 + s) - np.maximum(np.arange(width), x0), 0, None)
        wy = np.clip(np.minimum(np.arange(height) + 1, y0 + s) - np.maximum(np.arange(height), y0), 0, None)
        sums[k] = np.einsum("chw,h,w->c", data, wy, wx)
        areas[k] = np.einsum("hw,h,w->", valued.astype(np.float64), wy, wx)
    return sums, areas


def labels(image, label_image):
    """Labels present (> 0), and per label the sums and counts of its pixels with a value."""
    data, valued = _valued(image)
    ids = np.unique(label_image)
    ids = ids[ids > 0]
    sums = np.zeros((len(ids), image.shape[0]))
    counts = np.zeros(len(ids), dtype=np.int64)
    for k, label in enumerate(ids):
        mask = (label_image == label) & valued
        sums[k] = data[:, mask].sum(axis=1)
        counts[k] = mask.sum()
    return ids, sums, counts
