"""numba reductions of a map tile over row spans (circles, squares) or over a label image.

Work is split into units of (channel block x row band). Channel blocks of ``CHANNEL_BLOCK`` channels let one pass
over the spans of a row serve several channels at once (the prefix sums of a block sit side by side, so a span reads
two cache lines); row bands give the threads work when there are few channels, each band with its own partial
output, so no two threads ever write the same memory. The parallel drivers run the units with ``prange``; the serial
drivers (``nogil``) are for dask tasks, where the scheduler already runs one task per core.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._half import value
from ._spans import Spans

#: Channels handled together by one unit.
CHANNEL_BLOCK = 8


@njit(cache=True, nogil=True)
def _unit_range(u, n_bands, block, n_channels, height):
    blk, band = u // n_bands, u % n_bands
    c0 = blk * block
    return blk, band, c0, min(n_channels, c0 + block), band * height // n_bands, (band + 1) * height // n_bands


@njit(cache=True, nogil=True)
def _span_unit(u, n_bands, block, tile, table, y0, x0, row_ptr, spot, start, stop, weighted, row_w, left, left_w,
               right, right_w, out):  # fmt: skip
    n_channels, height, width = tile.shape
    blk, band, c0, c1, r0, r1 = _unit_range(u, n_bands, block, n_channels, height)
    nc = c1 - c0
    prefix = np.zeros((width + 1, block))
    acc = out[band, blk]
    for i in range(r0, r1):
        e0, e1 = row_ptr[y0 + i], row_ptr[y0 + i + 1]
        if e0 == e1:
            continue  # rows without spots are not read at all
        for j in range(width):
            for c in range(nc):
                prefix[j + 1, c] = prefix[j, c] + value(tile[c0 + c, i, j], table)
        for e in range(e0, e1):
            k = spot[e]
            a = min(max(start[e] - x0, 0), width)
            b = min(max(stop[e] - x0, 0), width)
            if not weighted:
                for c in range(nc):
                    acc[k, c] += prefix[b, c] - prefix[a, c]
                continue
            la, ra = left[k] - x0, right[k] - x0
            has_l = left[k] >= 0 and 0 <= la < width
            has_r = right[k] >= 0 and 0 <= ra < width
            wy = row_w[e]
            for c in range(nc):
                s = prefix[b, c] - prefix[a, c] if a < b else 0.0
                if has_l:
                    s += left_w[k] * (prefix[la + 1, c] - prefix[la, c])
                if has_r:
                    s += right_w[k] * (prefix[ra + 1, c] - prefix[ra, c])
                acc[k, c] += wy * s


@njit(parallel=True, cache=True)
def _spans_parallel(n_bands, block, tile, table, y0, x0, row_ptr, spot, start, stop, weighted, row_w, left, left_w,
                    right, right_w, out):  # fmt: skip
    for u in prange(out.shape[0] * out.shape[1]):
        _span_unit(u, n_bands, block, tile, table, y0, x0, row_ptr, spot, start, stop, weighted, row_w, left, left_w,
                   right, right_w, out)  # fmt: skip


@njit(cache=True, nogil=True)
def _spans_serial(n_bands, block, tile, table, y0, x0, row_ptr, spot, start, stop, weighted, row_w, left, left_w,
                  right, right_w, out):  # fmt: skip
    for u in range(out.shape[0] * out.shape[1]):
        _span_unit(u, n_bands, block, tile, table, y0, x0, row_ptr, spot, start, stop, weighted, row_w, left, left_w,
                   right, right_w, out)  # fmt: skip


@njit(cache=True, nogil=True)
def _label_unit(u, n_bands, block, tile, table, labels, out):
    n_channels, height, width = tile.shape
    blk, band, c0, c1, r0, r1 = _unit_range(u, n_bands, block, n_channels, height)
    acc = out[band, blk]
    for i in range(r0, r1):
        for j in range(width):
            lab = labels[i, j]
            if lab > 0:
                for c in range(c1 - c0):
                    acc[lab, c] += value(tile[c0 + c, i, j], table)


@njit(parallel=True, cache=True)
def _labels_parallel(n_bands, block, tile, table, labels, out):
    for u in prange(out.shape[0] * out.shape[1]):
        _label_unit(u, n_bands, block, tile, table, labels, out)


@njit(cache=True, nogil=True)
def _labels_serial(n_bands, block, tile, table, labels, out):
    for u in range(out.shape[0] * out.shape[1]):
        _label_unit(u, n_bands, block, tile, table, labels, out)


def _layout(n_channels: int, height: int, threads: int) -> tuple[int, int, int]:
    block = min(CHANNEL_BLOCK, max(n_channels, 1))
    n_blocks = -(-n_channels // block)
    # enough units for every thread (twice, for balance); bands only when the channel blocks alone are too few
    n_bands = 1 if n_blocks >= 2 * threads else max(1, min(height, -(-2 * threads // max(n_blocks, 1))))
    return block, n_blocks, n_bands


def _collect(partial: np.ndarray, n_channels: int) -> np.ndarray:
    # (bands, blocks, items, block) -> (items, channels)
    summed = partial.sum(axis=0)
    n_blocks, n_items, block = summed.shape
    return summed.transpose(1, 0, 2).reshape(n_items, n_blocks * block)[:, :n_channels]


def sum_spans(tile: np.ndarray, table: np.ndarray, spans: Spans, y0: int = 0, x0: int = 0, *, threads: int = 1):
    """Sum a ``(C, h, w)`` tile whose top-left pixel is ``(y0, x0)`` of the map over ``spans``; ``(n, C)`` float64.

    ``tile`` and ``table`` come from :func:`~histo2st._kernels._half.as_kernel_input`. Spans outside the tile
    contribute nothing, so the sums of the tiles of a map add up to the sums over the whole map.
    """
    n_channels, height, _ = tile.shape
    block, n_blocks, n_bands = _layout(n_channels, height, threads)
    out = np.zeros((n_bands, n_blocks, spans.n, block))
    if spans.n == 0 or n_channels == 0 or height == 0:
        return _collect(out, n_channels)
    run = _spans_parallel if threads > 1 else _spans_serial
    run(n_bands, block, tile, table, y0, x0, spans.row_ptr, spans.spot, spans.start, spans.stop, spans.weighted,
        spans.row_weight, spans.left, spans.left_weight, spans.right, spans.right_weight, out)  # fmt: skip
    return _collect(out, n_channels)


def sum_labels(tile: np.ndarray, table: np.ndarray, labels: np.ndarray, n_labels: int, *, threads: int = 1):
    """Sum a ``(C, h, w)`` tile per label of the ``(h, w)`` integer ``labels`` (0 = background).

    Returns ``(n_labels + 1, C)`` float64 sums; row 0 (background) is left at 0.
    """
    n_channels, height, _ = tile.shape
    block, n_blocks, n_bands = _layout(n_channels, height, threads)
    out = np.zeros((n_bands, n_blocks, n_labels + 1, block))
    if n_channels and height:
        run = _labels_parallel if threads > 1 else _labels_serial
        run(n_bands, block, tile, table, np.ascontiguousarray(labels), out)
    return _collect(out, n_channels)
