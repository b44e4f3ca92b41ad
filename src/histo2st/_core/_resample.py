"""Lazy resampling of (c, y, x) images to another pixel size."""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np

#: Output tile edge when resampling; one task reads roughly (tile * factor)^2 input pixels.
RESAMPLE_TILE = 1024
#: A level may be this much coarser than the target µm per pixel and still be chosen (the model resamples it).
LEVEL_TOLERANCE = 0.1


def resampled_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """Spatial shape ``(h, w)`` after scaling by ``factor`` (output pixels per input pixel)."""
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def resample_image(image: da.Array, factor: float, *, tile: int = RESAMPLE_TILE) -> da.Array:
    """Resample a ``(c, y, x)`` image by ``factor`` (0.5 halves each side), lazily and tile by tile.

    Output pixel ``(i, j)`` covers input region ``[j / factor, (j + 1) / factor)`` in x (likewise y), so pixel
    corners map to pixel corners and coordinates scale by ``factor`` exactly. Downsampling averages the covered input
    pixels with area weights (PIL's box filter on a fractional source box); upsampling is bilinear. Each output tile
    reads only its own input window, so results do not depend on the tiling.

    Parameters
    ----------
    image
        ``(c, y, x)`` dask or numpy array, uint8 or float.
    factor
        Output pixels per input pixel, i.e. ``source_mpp / target_mpp``.
    tile
        Output chunk edge.

    Returns
    -------
    Lazy ``(c, round(y * factor), round(x * factor))`` array of the input dtype.
    """
    if factor <= 0:
        raise ValueError(f"`factor` must be positive, got {factor}.")
    image = da.asarray(image)
    if np.isclose(factor, 1.0):
        return image
    out_h, out_w = resampled_shape(image.shape[1:], factor)
    chunks = (image.shape[0], tuple(_split(out_h, tile)), tuple(_split(out_w, tile)))
    return da.map_blocks(
        _resample_block,
        dtype=image.dtype,
        chunks=chunks,
        meta=np.empty((0, 0, 0), dtype=image.dtype),
        source=image,
        factor=factor,
    )


def _split(n: int, tile: int) -> list[int]:
    return [min(tile, n - start) for start in range(0, n, tile)]


def _resample_block(source: da.Array, factor: float, block_info=None) -> np.ndarray:
    from PIL import Image

    (y0, y1), (x0, x1) = block_info[None]["array-location"][1:]
    sy0, sy1, sx0, sx1 = y0 / factor, y1 / factor, x0 / factor, x1 / factor
    # read the integer window holding the fractional source box, plus one pixel for bilinear upsampling
    iy0, ix0 = max(0, int(np.floor(sy0)) - 1), max(0, int(np.floor(sx0)) - 1)
    iy1 = min(source.shape[1], int(np.ceil(sy1)) + 1)
    ix1 = min(source.shape[2], int(np.ceil(sx1)) + 1)
    window = np.asarray(source[:, iy0:iy1, ix0:ix1])
    box = (sx0 - ix0, sy0 - iy0, min(sx1, source.shape[2]) - ix0, min(sy1, source.shape[1]) - iy0)
    method = Image.Resampling.BOX if factor < 1 else Image.Resampling.BILINEAR
    out = np.empty((window.shape[0], y1 - y0, x1 - x0), dtype=source.dtype)
    for c in range(window.shape[0]):
        plane = Image.fromarray(window[c] if window.dtype == np.uint8 else window[c].astype(np.float32))
        out[c] = np.asarray(plane.resize((x1 - x0, y1 - y0), method, box=box)).astype(source.dtype, copy=False)
    return out


def closest_level(mpps: Sequence[float], target: float, *, tolerance: float = LEVEL_TOLERANCE) -> int:
    """Index of the coarsest level at most ``tolerance`` coarser than ``target`` µm/px (the finest if none is).

    Coarser than needed would lose detail the model uses; finer than needed only costs reading and resampling.
    """
    if not target > 0:
        raise ValueError(f"`target_microns_per_pixel` must be positive, got {target!r}.")
    fine_enough = [k for k, m in enumerate(mpps) if m <= target * (1 + tolerance)]
    if not fine_enough:
        return int(np.argmin(mpps))
    return max(fine_enough, key=lambda k: mpps[k])
