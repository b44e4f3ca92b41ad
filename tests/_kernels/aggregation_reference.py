"""Brute-force numpy references the kernels are checked against."""

import numpy as np


def circles(image, centers, radii):
    """Sums and pixel counts: a full-map boolean mask per circle (pixel-centre rule)."""
    _, height, width = image.shape
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    data = image.astype(np.float64)
    sums = np.zeros((len(radii), image.shape[0]))
    counts = np.zeros(len(radii), dtype=np.int64)
    for k, ((cx, cy), r) in enumerate(zip(centers, radii, strict=True)):
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        sums[k] = data[:, mask].sum(axis=1)
        counts[k] = mask.sum()
    return sums, counts


def squares(image, origins, sizes):
    """Area-weighted sums and covered areas: each pixel weighted by its overlap with the square."""
    _, height, width = image.shape
    data = image.astype(np.float64)
    sums = np.zeros((len(origins), image.shape[0]))
    areas = np.zeros(len(origins))
    for k, ((x0, y0), s) in enumerate(zip(origins, sizes, strict=True)):
        wx = np.clip(np.minimum(np.arange(width) + 1, x0 + s) - np.maximum(np.arange(width), x0), 0, None)
        wy = np.clip(np.minimum(np.arange(height) + 1, y0 + s) - np.maximum(np.arange(height), y0), 0, None)
        sums[k] = np.einsum("chw,h,w->c", data, wy, wx)
        areas[k] = wy.sum() * wx.sum()
    return sums, areas
