"""numba reductions of a map tile over row spans (circles, squares, label runs).

Work is split into units of (channel block x row band). A unit walks its rows; for each row that holds spans it
decodes ``BLOCK`` channel rows (each contiguous in the ``(C, H, W)`` map) a cache-sized column chunk at a time and
builds the row's prefix sums with the channels side by side, ``prefix[j, c]``: the ``BLOCK`` running sums are
independent, so their additions overlap instead of waiting on each other, and a span then reads its sums for all
channels from two cache lines. Every pixel of a row is read once, however many spans overlap it.

Spots are renumbered in the order their first span appears (that is, by their top row), so the spots active on a
row have neighboring accumulator rows: the accumulators touched by a row stay in cache instead of being scattered
over the whole ``(spots x channels)`` output. Row bands give the threads work when there are few channels, each band
with its own partial output, so no two threads ever write the same memory. The parallel drivers run the units with
``prange``; the serial drivers (``nogil``) are for dask tasks, where the scheduler already runs one task per core.

NaN marks a pixel without a value (off tissue, unwritten background): it adds nothing to any sum and cannot spread
along the row's prefix sums. A NaN makes a running sum NaN, so a column chunk is first summed as it is and, only when
its sums end in NaN, decoded again with NaN as 0 (as is the rest of that row): a map without NaN pays one test per
chunk, not a select per pixel. Units of channel block 0 also add up each spot's covered pixels (area) with a value,
counted on channel 0 (maps are NaN in all channels or none) from the prefix count of its valued pixels on rows with a
NaN and from the span's own extent on other rows, so a map without NaN reads no extra pixel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._half import as_kernel_input, is_nan, value
from ._spans import Spans, label_runs

#: Channels handled together by one unit (two AVX2 vectors of float64); ``_row_prefix`` spells out eight sums.
BLOCK = 8
#: Columns decoded at a time: a (BLOCK, CHUNK) float64 buffer stays in the L1 cache.
CHUNK = 256


@njit(cache=True, nogil=True, inline="always")
def _decode(tile, c0, nc, i, j0, n, vals, skip_nan):
    for c in range(nc):
        row, dst = tile[c0 + c, i, j0 : j0 + n], vals[c]
        if skip_nan:
            for j in range(n):
                v = value(row[j])
                dst[j] = 0.0 if np.isnan(v) else v  # a select, not a branch: the loop stays vectorised
        else:
            for j in range(n):
                dst[j] = value(row[j])


@njit(cache=True, nogil=True, inline="always")
def _running_sums(vals, prefix, j0, n):
    # prefix[j0 + 1 : j0 + n + 1] from prefix[j0]; returns the sum of the running sums at the chunk's end.
    # One running sum per channel, kept in registers: eight independent chains of additions that overlap
    # (a loop over c reading prefix[j] back from memory is about 1.5x slower)
    p = prefix[j0]
    s0, s1, s2, s3, s4, s5, s6, s7 = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    for j in range(n):
        s0 += vals[0, j]
        s1 += vals[1, j]
        s2 += vals[2, j]
        s3 += vals[3, j]
        s4 += vals[4, j]
        s5 += vals[5, j]
        s6 += vals[6, j]
        s7 += vals[7, j]
        p = prefix[j0 + j + 1]
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7] = s0, s1, s2, s3, s4, s5, s6, s7
    return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7


@njit(cache=True, nogil=True)
def _row_prefix(tile, c0, nc, i, width, vals, prefix):
    # prefix[j, c] = sum of tile[c0 + c, i, :j] without its NaN; vals rows >= nc stay 0, so padded channels sum to 0.
    # Returns whether the row holds a NaN in these channels.
    had_nan = False
    for j0 in range(0, width, CHUNK):
        n = min(width - j0, CHUNK)
        # a NaN sits in a region (off tissue), so after one the rest of the row is decoded with the select at once
        # (about 5% slower than plain decoding) instead of twice; a row without NaN never pays the select
        _decode(tile, c0, nc, i, j0, n, vals, had_nan)
        if np.isnan(_running_sums(vals, prefix, j0, n)) and not had_nan:
            had_nan = True
            _decode(tile, c0, nc, i, j0, n, vals, True)
            _running_sums(vals, prefix, j0, n)
    return had_nan


@njit(cache=True, nogil=True)
def _valued_prefix(tile, i, width, counts):
    # counts[j] = pixels of tile[0, i, :j] that are not NaN
    row = tile[0, i]
    n = 0
    for j in range(width):
        n += not is_nan(row[j])
        counts[j + 1] = n


@njit(cache=True, nogil=True)
def _span_unit(u, n_bands, tile, x0, row_ptr, spot, start, stop, weighted, row_w, left, left_w, right,
               right_w, out, valued, nan_rows):  # fmt: skip
    n_channels, height, width = tile.shape
    blk, band = u // n_bands, u % n_bands
    c0 = blk * BLOCK
    nc = min(n_channels, c0 + BLOCK) - c0
    r0, r1 = band * height // n_bands, (band + 1) * height // n_bands
    vals = np.zeros((BLOCK, CHUNK))
    prefix = np.zeros((width + 1, BLOCK))
    acc = out[band, blk]
    # block 0 also counts the pixels with a value: the prefix count of a row without NaN is the column index
    count = blk == 0
    counts = np.arange(width + 1).astype(np.float64) if count else np.zeros(0)
    every = counts.copy()
    for i in range(r0, r1):
        e0, e1 = row_ptr[i], row_ptr[i + 1]
        if e0 == e1:
            continue  # rows without spans are not read at all
        had_nan = _row_prefix(tile, c0, nc, i, width, vals, prefix)
        vp = every
        if count and had_nan:
            nan_rows[i] = True  # units of block 0 own disjoint rows: no two threads write the same flag
            _valued_prefix(tile, i, width, counts)
            vp = counts
        for e in range(e0, e1):
            k = spot[e]
            dst = acc[k]
            a = min(max(start[e] - x0, 0), width)
            b = min(max(stop[e] - x0, 0), width)
            if not weighted:
                for c in range(BLOCK):
                    dst[c] += prefix[b, c] - prefix[a, c]
                if count:
                    valued[band, k] += vp[b] - vp[a]
                continue
            la, ra = left[k] - x0, right[k] - x0
            wl = left_w[k] if left[k] >= 0 and 0 <= la < width else 0.0
            wr = right_w[k] if right[k] >= 0 and 0 <= ra < width else 0.0
            la, ra = min(max(la, 0), width - 1), min(max(ra, 0), width - 1)
            wy = row_w[e]
            for c in range(BLOCK):
                s = prefix[b, c] - prefix[a, c] if a < b else 0.0
                s += wl * (prefix[la + 1, c] - prefix[la, c]) + wr * (prefix[ra + 1, c] - prefix[ra, c])
                dst[c] += wy * s
            if count:
                s = vp[b] - vp[a] if a < b else 0.0
                s += wl * (vp[la + 1] - vp[la]) + wr * (vp[ra + 1] - vp[ra])
                valued[band, k] += wy * s


@njit(parallel=True, cache=True)
def _spans_parallel(n_bands, tile, x0, row_ptr, spot, start, stop, weighted, row_w, left, left_w, right,
                    right_w, out, valued, nan_rows):  # fmt: skip
    for u in prange(out.shape[0] * out.shape[1]):
        _span_unit(u, n_bands, tile, x0, row_ptr, spot, start, stop, weighted, row_w, left, left_w, right,
                   right_w, out, valued, nan_rows)  # fmt: skip


@njit(cache=True, nogil=True)
def _spans_serial(n_bands, tile, x0, row_ptr, spot, start, stop, weighted, row_w, left, left_w, right,
                  right_w, out, valued, nan_rows):  # fmt: skip
    for u in range(out.shape[0] * out.shape[1]):
        _span_unit(u, n_bands, tile, x0, row_ptr, spot, start, stop, weighted, row_w, left, left_w, right,
                   right_w, out, valued, nan_rows)  # fmt: skip


@njit(cache=True, nogil=True)
def _first_seen_rank(spot, e0, e1, n):
    # new index of every spot: the order of its first span in [e0, e1) (spots without spans there come last)
    rank = np.full(n, -1, dtype=np.int64)
    nxt = 0
    for e in range(e0, e1):
        k = spot[e]
        if rank[k] < 0:
            rank[k] = nxt
            nxt += 1
    for k in range(n):
        if rank[k] < 0:
            rank[k] = nxt
            nxt += 1
    return rank


def _layout(n_channels: int, height: int, threads: int) -> tuple[int, int]:
    n_blocks = -(-n_channels // BLOCK)
    # enough units for every thread (twice, for balance); bands only when the channel blocks alone are too few
    n_bands = 1 if n_blocks >= 2 * threads or threads == 1 else max(1, min(height, -(-2 * threads // n_blocks)))
    return n_blocks, n_bands


def _permuted(values: np.ndarray, rank: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[rank] = values
    return out


def sum_spans(tile, spans: Spans, y0: int = 0, x0: int = 0, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray, bool]:
    """Sum a ``(C, h, w)`` tile whose top-left pixel is ``(y0, x0)`` of the map over ``spans``, skipping NaN.

    Spans outside the tile contribute nothing, so the sums (and areas) of the tiles of a map add up to those over the
    whole map. float16 tiles are read as they are (see :mod:`histo2st._kernels._half`).

    Returns
    -------
    sums
        ``(n, C)`` float64 sums of the pixels with a value (NaN pixels count as 0).
    valued
        ``(n,)`` float64 covered pixels (area) in this tile whose first channel is not NaN.
    has_nan
        Whether the tile's first channels (up to ``BLOCK``) hold a NaN on a row the spans touch. Without one,
        ``valued`` is each spot's whole covered area in the tile, equal up to rounding to what ``spans.area`` gives
        from the spots' geometry, which callers then return instead.
    """
    tile = as_kernel_input(tile)
    n_channels, height, _ = tile.shape
    n_blocks, n_bands = _layout(n_channels, height, threads)
    out = np.zeros((n_bands, n_blocks, spans.n, BLOCK))
    valued = np.zeros((n_bands, spans.n))
    nan_rows = np.zeros(height, dtype=np.bool_)
    rank = np.arange(spans.n)
    if spans.n and n_channels and height:
        # the tile's spans, with spots renumbered (rank) and the per-spot arrays permuted to match
        e0, e1 = spans.row_ptr[y0], spans.row_ptr[y0 + height]
        rank = _first_seen_rank(spans.spot, e0, e1, spans.n)
        spot = rank[spans.spot[e0:e1]]
        per_spot = [spans.left, spans.left_weight, spans.right, spans.right_weight]
        if spans.weighted:
            per_spot = [_permuted(v, rank) for v in per_spot]
        run = _spans_parallel if threads > 1 else _spans_serial
        run(n_bands, tile, x0, spans.row_ptr[y0 : y0 + height + 1] - e0, spot, spans.start[e0:e1],
            spans.stop[e0:e1], spans.weighted, spans.row_weight[e0:e1] if spans.weighted else spans.row_weight,
            *per_spot, out, valued, nan_rows)  # fmt: skip
    summed = out[0] if n_bands == 1 else out.sum(axis=0)
    # (blocks, renumbered spots, BLOCK) -> (spots, channels), in one copy
    sums = summed.transpose(1, 0, 2)[rank].reshape(spans.n, n_blocks * BLOCK)[:, :n_channels]
    return sums, valued.sum(axis=0)[rank], bool(nan_rows.any())


def sum_labels(tile, labels: np.ndarray, n_labels: int, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sum a ``(C, h, w)`` tile per label of the ``(h, w)`` integer ``labels`` (0 = background), skipping NaN.

    The label image becomes row spans (one per run of equal labels), so labels share the span kernels. Returns
    ``(n_labels + 1, C)`` float64 sums and ``(n_labels + 1,)`` float64 pixels per label whose first channel is not
    NaN (integers, exact whatever the tiling); row 0 (background) is left at 0.
    """
    sums, valued, _ = sum_spans(tile, label_runs(labels, n_labels), threads=threads)
    return sums, valued
