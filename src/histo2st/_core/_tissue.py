"""Tissue masks from the H&E (Otsu on the saturation of a low-resolution copy) and the tiles of an image they touch."""

from __future__ import annotations

import numpy as np

#: Longest side, in pixels, of the copy of the H&E the mask is computed on.
MASK_SIDE = 1024


def tissue_mask(he, *, max_side: int = MASK_SIDE) -> tuple[np.ndarray, float]:
    """Foreground mask of an H&E and its downsampling factor.

    Tissue is more saturated than the white or gray glass around it, so Otsu's threshold on the HSV saturation of a
    copy of at most ``max_side`` pixels separates the two; a closing and hole filling smooth the result.

    Parameters
    ----------
    he
        ``(3, H, W)`` numpy or dask array, or an image element: a multiscale one is read at its coarsest level that
        still has ``max_side`` pixels, so a whole slide's full resolution is never decoded for the mask.
    max_side
        Longest side of the mask, in pixels (at most; the level read is subsampled to it).

    Returns
    -------
    mask
        ``(h, w)`` bool, ``True`` on tissue.
    factor
        Full-resolution H&E pixels per mask pixel (mask pixel ``(i, j)`` covers H&E pixels
        ``[i * factor, (i + 1) * factor)``).
    """
    from scipy import ndimage
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu

    level, downsample = _mask_level(he, max_side)
    step = max(1, int(np.ceil(max(level.shape[1:]) / max_side)))
    small = np.asarray(level[:3, ::step, ::step]).transpose(1, 2, 0)
    factor = float(step * downsample)
    saturation = rgb2hsv(small)[..., 1]
    if np.ptp(saturation) == 0:
        return np.ones(saturation.shape, dtype=bool), factor
    mask = saturation > threshold_otsu(saturation)
    mask = ndimage.binary_closing(mask, structure=np.ones((5, 5)), iterations=1)
    return ndimage.binary_fill_holes(mask), factor


def sample_tissue_mask(sdata, image_key: str, shapes_key: str | None = None) -> tuple[np.ndarray, float]:
    """The tissue of a sample: :func:`tissue_mask` of its H&E, with every measured spot of ``shapes_key`` added.

    A spot was measured, so it lies on tissue; Otsu on saturation misses pale tissue at times, and without the spots
    a measured spot there would be NaN in a prediction. ``st.tl.predict`` and ``st.tl.aggregate`` both call this, so
    a map and a grid of bins agree on where the tissue is (and two grids of the same size have the same bins).
    """
    mask, factor = tissue_mask(sdata.images[image_key])
    if shapes_key is not None and shapes_key in sdata.shapes:
        mask = _with_spots(mask, factor, sdata.shapes[shapes_key])
    return mask, factor


def _with_spots(mask: np.ndarray, factor: float, shapes) -> np.ndarray:
    from skimage.draw import disk

    mask = mask.copy()
    xy = np.column_stack([shapes.geometry.x.to_numpy(), shapes.geometry.y.to_numpy()]) / factor
    radii = (
        np.maximum(shapes["radius"].to_numpy(dtype=float) / factor, 0.5)
        if "radius" in shapes
        else np.full(len(xy), 0.5)
    )
    for (x, y), r in zip(xy, radii, strict=True):
        mask[disk((y - 0.5, x - 0.5), r + 0.5, shape=mask.shape)] = True
    return mask


def _mask_level(he, max_side: int):
    """The array to compute the mask on and its full-resolution pixels per pixel."""
    if hasattr(he, "children"):  # multiscale image element
        levels = [he[name].ds["image"].data for name in sorted(he.children, key=lambda n: int(n.removeprefix("scale")))]
        full_width = levels[0].shape[2]
        usable = [lvl for lvl in levels if max(lvl.shape[1:]) >= max_side] or levels[:1]
        return usable[-1], full_width / usable[-1].shape[2]
    return (he.data if hasattr(he, "dims") else he), 1.0


def regions_on_tissue(
    mask: np.ndarray,
    factor: float,
    y_edges,
    x_edges,
    *,
    scale: float = 1.0,
    margin: float = 0.0,
) -> np.ndarray:
    """Which regions of a grid over an image touch the tissue.

    Parameters
    ----------
    mask, factor
        A tissue mask and its full-resolution H&E pixels per mask pixel, as from :func:`tissue_mask`.
    y_edges, x_edges
        Region edges along y and x in the grid's image pixels (``n + 1`` increasing values for ``n`` regions).
    scale
        H&E pixels per image pixel (e.g. 4 for a map at 4x the H&E pixel size).
    margin
        Image pixels around each region that count as part of it: a region that is background but within
        ``margin`` of tissue is kept (spots and bins at the tissue edge reach into it).

    Returns
    -------
    ``(len(y_edges) - 1, len(x_edges) - 1)`` bool, ``True`` where the region (with its margin) holds tissue.
    """
    mask = np.asarray(mask, dtype=bool)
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = mask.cumsum(0).cumsum(1)
    r0, r1 = _mask_bounds(y_edges, scale / factor, margin, mask.shape[0])
    c0, c1 = _mask_bounds(x_edges, scale / factor, margin, mask.shape[1])
    counts = table[np.ix_(r1, c1)] - table[np.ix_(r0, c1)] - table[np.ix_(r1, c0)] + table[np.ix_(r0, c0)]
    return counts > 0


def _mask_bounds(edges, to_mask: float, margin: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.asarray(edges, dtype=np.float64)
    start = np.clip(np.floor((edges[:-1] - margin) * to_mask), 0, n).astype(np.int64)
    stop = np.clip(np.ceil((edges[1:] + margin) * to_mask), 0, n).astype(np.int64)
    return np.minimum(start, n - 1), np.maximum(stop, np.minimum(start, n - 1) + 1)
