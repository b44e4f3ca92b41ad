"""Downsampled levels of a stored dense map, for viewing: each level the NaN-aware 2 x 2 mean of the one above."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np

#: Levels are added until the longest side is at most this many pixels (about a screen).
PYRAMID_MIN_SIDE = 1024


def pyramid_shapes(shape: tuple[int, int], *, min_side: int = PYRAMID_MIN_SIDE) -> list[tuple[int, int]]:
    """``(height, width)`` of every level: the full map, then halved (rounding up) until it fits ``min_side``."""
    shapes = [tuple(int(n) for n in shape)]
    while max(shapes[-1]) > min_side:
        shapes.append(tuple(math.ceil(n / 2) for n in shapes[-1]))
    return shapes


def write_levels(arrays: list) -> None:
    """Fill ``arrays[1:]`` (zarr arrays, ``(c, y, x)``) from ``arrays[0]``, each level from the one above.

    Every output chunk is computed from the input window it covers, so memory stays at a few chunks, and each is
    written by one task (safe in parallel, also on a ``dask.distributed`` cluster). Chunks equal to the arrays' fill
    value throughout (background) are not written.
    """
    for above, below in zip(arrays[:-1], arrays[1:], strict=True):
        c_chunk, y_chunk, x_chunk = below.chunks
        source = da.from_zarr(above).rechunk((c_chunk, 2 * y_chunk, 2 * x_chunk))
        halved = da.map_blocks(
            _halve,
            source,
            dtype=above.dtype,
            chunks=(source.chunks[0], *(tuple(math.ceil(n / 2) for n in c) for c in source.chunks[1:])),
            meta=np.empty((0, 0, 0), dtype=above.dtype),
        )
        da.store(halved, below, lock=False)


def _halve(block: np.ndarray) -> np.ndarray:
    """NaN-aware mean over 2 x 2 pixels (a last odd row or column is averaged with NaN padding, i.e. alone)."""
    c, h, w = block.shape
    padded = np.full((c, h + h % 2, w + w % 2), np.nan, dtype=np.float32)
    padded[:, :h, :w] = block
    total = np.zeros((c, padded.shape[1] // 2, padded.shape[2] // 2), dtype=np.float32)
    count = np.zeros(total.shape, dtype=np.uint8)
    for corner in (padded[:, i::2, j::2] for i in (0, 1) for j in (0, 1)):  # 4 strided adds: 8x faster than a sum
        valued = np.isfinite(corner)
        total += np.where(valued, corner, 0)
        count += valued
    out = np.full(total.shape, np.nan, dtype=np.float32)
    np.divide(total, count, out=out, where=count > 0)  # windows without a value (background) stay NaN
    return out.astype(block.dtype)
