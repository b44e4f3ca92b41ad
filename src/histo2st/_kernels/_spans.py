"""Row spans: the pixels of each spot, as one column interval per spot and image row.

A spot becomes a list of ``(row, first column, end column)`` spans sorted by row (CSR by row through ``row_ptr``),
so a kernel that walks the map row by row reads every pixel once and finds each span's sum from two entries of the
row's prefix sum: O(rows) per spot and channel instead of O(area). Square bins add area weights for the partly
covered first/last row (per span) and first/last column (per spot), which gives exact area-weighted coverage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

_EMPTY_F = np.zeros(0, dtype=np.float64)
_EMPTY_I = np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class Spans:
    """Row spans of ``n`` spots on an ``height x width`` map.

    Attributes
    ----------
    row_ptr
        ``(height + 1,)`` spans of image row ``i`` are ``row_ptr[i]:row_ptr[i + 1]``.
    spot, start, stop
        Per span: spot index and the full-weight column interval ``[start, stop)``.
    row_weight
        Per span (squares only): covered fraction of the row's height.
    left, left_weight, right, right_weight
        Per spot (squares only): partly covered first and last column (``-1`` when there is none) and their
        covered fraction of a pixel's width.
    area
        Per spot: covered pixels (circles) or covered pixel area (squares) inside the map.
    clipped
        Per spot: its footprint extends past the map, so it was cut at the map's edge.
    outside
        Per spot: its footprint does not overlap the map at all.
    """

    height: int
    width: int
    row_ptr: np.ndarray
    spot: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    area: np.ndarray
    clipped: np.ndarray
    outside: np.ndarray
    row_weight: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    left: np.ndarray = field(default_factory=lambda: _EMPTY_I)
    left_weight: np.ndarray = field(default_factory=lambda: _EMPTY_F)
    right: np.ndarray = field(default_factory=lambda: _EMPTY_I)
    right_weight: np.ndarray = field(default_factory=lambda: _EMPTY_F)

    @property
    def n(self) -> int:
        return len(self.area)

    @property
    def weighted(self) -> bool:
        return len(self.row_weight) > 0

    def window(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, Spans]:
        """The spans of rows ``[r0, r1)`` that reach columns ``[c0, c1)``, for one tile of the map.

        Returns the original indices of the spots involved and their spans, with the spots renumbered ``0..m-1``
        (per-spot arrays are subset accordingly), so a tile's work and output scale with what it holds.
        """
        a, b = self.row_ptr[r0], self.row_ptr[r1]
        spot, start, stop = self.spot[a:b], self.start[a:b], self.stop[a:b]
        lo, hi = start, stop
        if self.weighted:  # partly covered end columns count as reaching the tile
            lo = np.where(self.left[spot] >= 0, np.minimum(lo, self.left[spot]), lo)
            hi = np.where(self.right[spot] >= 0, np.maximum(hi, self.right[spot] + 1), hi)
        keep = (hi > c0) & (lo < c1)
        row_of = np.repeat(np.arange(r0, r1), np.diff(self.row_ptr[r0 : r1 + 1]))
        row_ptr = np.concatenate([[0], np.cumsum(np.bincount(row_of[keep], minlength=self.height))])
        ids, local = np.unique(spot[keep], return_inverse=True)
        per_spot = (self.left, self.left_weight, self.right, self.right_weight)
        if self.weighted:
            per_spot = tuple(v[ids] for v in per_spot)
        return ids, Spans(
            self.height,
            self.width,
            row_ptr,
            local.astype(np.int32),
            start[keep],
            stop[keep],
            self.area[ids],
            self.clipped[ids],
            self.outside[ids],
            self.row_weight[a:b][keep] if self.weighted else self.row_weight,
            *per_spot,
        )


@njit(cache=True)
def _inside(x, y, cx, cy, r2):
    dx = x - cx
    dy = y - cy
    return dx * dx + dy * dy <= r2


@njit(cache=True)
def _circle_bounds(centers, radii, height, width):
    # Per spot and image row: the first and last column whose pixel center lies in the circle. The sqrt gives a
    # first guess; single steps against the exact test make it agree bit for bit with a brute-force mask.
    n = len(radii)
    first_row = np.zeros(n, dtype=np.int64)
    n_rows = np.zeros(n, dtype=np.int64)
    clipped = np.zeros(n, dtype=np.bool_)
    for k in range(n):
        cx, cy, r = centers[k, 0], centers[k, 1], radii[k]
        lo_x = np.ceil(cx - r - 0.5)
        hi_x = np.floor(cx + r - 0.5)
        lo_y = np.ceil(cy - r - 0.5)
        hi_y = np.floor(cy + r - 0.5)
        clipped[k] = lo_x <= hi_x and lo_y <= hi_y and (lo_x < 0 or lo_y < 0 or hi_x > width - 1 or hi_y > height - 1)
        i0 = int(max(lo_y - 1.0, 0.0)) if lo_y - 1.0 < height else height
        i1 = int(min(hi_y + 1.0, height - 1.0)) if hi_y + 1.0 >= 0 else -1
        first_row[k] = i0
        n_rows[k] = max(i1 - i0 + 1, 0)
    return first_row, n_rows, clipped


@njit(cache=True)
def _circle_fill(centers, radii, height, width, first_row, n_rows):
    n = len(radii)
    total = 0
    for k in range(n):
        total += n_rows[k]
    cols = np.full((total, 2), -1, dtype=np.int64)
    pos = 0
    for k in range(n):
        cx, cy, r = centers[k, 0], centers[k, 1], radii[k]
        r2 = r * r
        for i in range(first_row[k], first_row[k] + n_rows[k]):
            y = i + 0.5
            dy = y - cy
            w2 = r2 - dy * dy
            if w2 >= 0:
                w = np.sqrt(w2)
                a = int(min(max(np.ceil(cx - w - 0.5), 0.0), width - 1.0))
                b = int(min(max(np.floor(cx + w - 0.5), 0.0), width - 1.0))
                while a - 1 >= 0 and _inside(a - 1 + 0.5, y, cx, cy, r2):
                    a -= 1
                while a <= b and not _inside(a + 0.5, y, cx, cy, r2):
                    a += 1
                while b + 1 <= width - 1 and _inside(b + 1 + 0.5, y, cx, cy, r2):
                    b += 1
                while b >= a and not _inside(b + 0.5, y, cx, cy, r2):
                    b -= 1
                if a <= b:
                    cols[pos, 0] = a
                    cols[pos, 1] = b + 1
            pos += 1
    return cols


@njit(cache=True)
def _by_row(height, spot_of, row_of, keep):
    # Counting sort of the kept spans by image row.
    counts = np.zeros(height + 1, dtype=np.int64)
    for e in range(len(keep)):
        if keep[e]:
            counts[row_of[e] + 1] += 1
    row_ptr = np.cumsum(counts)
    fill = row_ptr[:-1].copy()
    order = np.empty(row_ptr[-1], dtype=np.int64)
    for e in range(len(keep)):
        if keep[e]:
            order[fill[row_of[e]]] = e
            fill[row_of[e]] += 1
    return row_ptr, order


@njit(cache=True)
def _circle_by_row(height, first_row, n_rows, cols):
    # counting sort of the non-empty spans (listed spot by spot, row by row) by image row, and each spot's area
    n = len(n_rows)
    row_ptr = np.zeros(height + 1, dtype=np.int64)
    pos = 0
    for k in range(n):
        for i in range(first_row[k], first_row[k] + n_rows[k]):
            if cols[pos, 0] >= 0:
                row_ptr[i + 1] += 1
            pos += 1
    for i in range(height):
        row_ptr[i + 1] += row_ptr[i]
    fill = row_ptr[:-1].copy()
    spot = np.empty(row_ptr[-1], dtype=np.int32)
    start = np.empty(row_ptr[-1], dtype=np.int32)
    stop = np.empty(row_ptr[-1], dtype=np.int32)
    area = np.zeros(n)
    pos = 0
    for k in range(n):
        for i in range(first_row[k], first_row[k] + n_rows[k]):
            if cols[pos, 0] >= 0:
                e = fill[i]
                spot[e], start[e], stop[e] = k, cols[pos, 0], cols[pos, 1]
                area[k] += cols[pos, 1] - cols[pos, 0]
                fill[i] += 1
            pos += 1
    return row_ptr, spot, start, stop, area


def circle_spans(centers: np.ndarray, radii: np.ndarray, height: int, width: int) -> Spans:
    """Spans of circles ``centers`` ``(n, 2)`` ``(x, y)`` and ``radii`` ``(n,)`` on a ``height x width`` map.

    Pixel ``(i, j)`` belongs to circle ``k`` when its center ``(j + .5, i + .5)`` is within ``radii[k]`` of
    ``centers[k]`` (distance ``<=`` radius).
    """
    centers, radii = check_circles(centers, radii)
    first_row, n_rows, clipped = _circle_bounds(centers, radii, height, width)
    cols = _circle_fill(centers, radii, height, width, first_row, n_rows)
    row_ptr, spot, start, stop, area = _circle_by_row(height, first_row, n_rows, cols)
    dist_x = np.clip(centers[:, 0], 0, width) - centers[:, 0]
    dist_y = np.clip(centers[:, 1], 0, height) - centers[:, 1]
    outside = dist_x**2 + dist_y**2 > radii**2
    return Spans(height, width, row_ptr, spot, start, stop, area, clipped & ~outside | outside, outside)


@njit(cache=True)
def _scan_runs(labels, fill, row_ptr, spot, start, stop):
    # runs of equal labels > 0 along each row: counted into row_ptr (fill=False), then written out (fill=True)
    height, width = labels.shape
    pos = 0
    for i in range(height):
        j = 0
        while j < width:
            lab = labels[i, j]
            end = j + 1
            while end < width and labels[i, end] == lab:
                end += 1
            if lab > 0:
                if fill:
                    spot[pos], start[pos], stop[pos] = lab, j, end
                pos += 1
            j = end
        if not fill:
            row_ptr[i + 1] = pos


def label_runs(labels: np.ndarray, n_labels: int) -> Spans:
    """Spans of a ``(h, w)`` label image (0 = background): one per run of equal labels in a row; spot = label."""
    labels = np.ascontiguousarray(labels)
    row_ptr = np.zeros(labels.shape[0] + 1, dtype=np.int64)
    _scan_runs(labels, False, row_ptr, _EMPTY_I, _EMPTY_I, _EMPTY_I)
    spot, start, stop = (np.empty(row_ptr[-1], dtype=np.int32) for _ in range(3))
    _scan_runs(labels, True, row_ptr, spot, start, stop)
    area = np.bincount(spot, weights=stop - start, minlength=n_labels + 1).astype(np.float64)
    none = np.zeros(n_labels + 1, dtype=np.bool_)
    return Spans(labels.shape[0], labels.shape[1], row_ptr, spot, start, stop, area, none, none)


def _axis_cover(lo: np.ndarray, hi: np.ndarray, size: int):
    """Per interval ``[lo, hi)`` on ``size`` pixels: the full pixels ``[a, b)`` and partly covered end pixels."""
    lo_c = np.clip(lo, 0, size)
    hi_c = np.clip(hi, 0, size)
    empty = hi_c <= lo_c
    first = np.floor(lo_c).astype(np.int64)
    last = np.ceil(hi_c).astype(np.int64) - 1
    single = first == last
    # weight of the first and last pixel; one pixel holding the whole interval keeps its width on the first
    w_first = np.where(single, hi_c - lo_c, np.minimum(first + 1, hi_c) - lo_c)
    w_last = np.where(single, 0.0, hi_c - last)
    a = first + 1
    b = np.maximum(last, a)
    first = np.where(empty, -1, first)
    last = np.where(empty | single, -1, last)
    a = np.where(empty, 0, a)
    b = np.where(empty | single, a, b)
    return a, b, first, w_first, last, w_last, empty


def square_spans(origins: np.ndarray, size, height: int, width: int) -> Spans:
    """Spans of axis-aligned squares ``[x0, x0 + size) x [y0, y0 + size)`` with exact area-weighted coverage.

    A pixel contributes its value times the area of its overlap with the square (in pixel units), so a square
    smaller than a pixel takes that pixel's value times its own area and the mean over any square of a constant
    map is that constant.
    """
    origins, size = check_squares(origins, size)
    x0, y0 = origins[:, 0], origins[:, 1]
    a, b, left, lw, right, rw, empty_x = _axis_cover(x0, x0 + size, width)
    ra, rb, top, tw, bottom, bw, empty_y = _axis_cover(y0, y0 + size, height)
    n = len(origins)
    # rows of a square: the partial top row, the full rows [ra, rb), the partial bottom row
    n_full = rb - ra
    n_rows = (top >= 0) + n_full + (bottom >= 0)
    n_rows = np.where(empty_x | empty_y, 0, n_rows)
    spot_of = np.repeat(np.arange(n, dtype=np.int32), n_rows)
    offset = np.arange(n_rows.sum()) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    has_top = np.repeat(top >= 0, n_rows)
    row_of = np.where(has_top, np.repeat(top, n_rows) + offset, np.repeat(ra, n_rows) + offset)
    weight = np.ones(len(row_of))
    is_top = has_top & (offset == 0)
    weight[is_top] = np.repeat(tw, n_rows)[is_top]
    is_bottom = np.repeat(bottom >= 0, n_rows) & (offset == np.repeat(n_rows, n_rows) - 1)
    weight[is_bottom] = np.repeat(bw, n_rows)[is_bottom]
    keep = np.ones(len(row_of), dtype=np.bool_)
    row_ptr, order = _by_row(height, spot_of, row_of, keep)
    spot = spot_of[order]
    row_weight = weight[order]
    col_area = (b - a) + np.where(left >= 0, lw, 0.0) + np.where(right >= 0, rw, 0.0)
    area = np.bincount(spot, weights=row_weight, minlength=n) * np.where(empty_x, 0.0, col_area)
    clipped = (x0 < 0) | (y0 < 0) | (x0 + size > width) | (y0 + size > height)
    # fully covered end columns join the full interval; a grid aligned to pixels then needs no weights at all
    full_left, full_right = (left >= 0) & (lw == 1.0), (right >= 0) & (rw == 1.0)
    a, left = np.where(full_left, left, a), np.where(full_left, -1, left)
    b, right = np.where(full_right, right + 1, b), np.where(full_right, -1, right)
    if (row_weight == 1.0).all() and (left < 0).all() and (right < 0).all():
        start, stop = a[spot].astype(np.int32), b[spot].astype(np.int32)
        return Spans(height, width, row_ptr, spot, start, stop, area, clipped, empty_x | empty_y)
    return Spans(
        height,
        width,
        row_ptr,
        spot,
        a[spot].astype(np.int32),
        b[spot].astype(np.int32),
        area,
        clipped,
        empty_x | empty_y,
        row_weight,
        left.astype(np.int32),
        np.where(left >= 0, lw, 0.0),
        right.astype(np.int32),
        np.where(right >= 0, rw, 0.0),
    )


def check_circles(centers, radii) -> tuple[np.ndarray, np.ndarray]:
    """Validate circle centers ``(n, 2)`` and radii ``(n,)`` (or one radius) as float64 arrays."""
    centers = np.ascontiguousarray(centers, dtype=np.float64).reshape(-1, 2) if len(centers) else np.zeros((0, 2))
    radii = np.broadcast_to(np.asarray(radii, dtype=np.float64), (len(centers),)).copy()
    if not (np.isfinite(centers).all() and np.isfinite(radii).all()):
        raise ValueError("Circle centers and radii must be finite; drop or fix the spots with NaN/inf coordinates.")
    if (radii < 0).any():
        raise ValueError(f"Circle radii must be >= 0; {int((radii < 0).sum())} are negative.")
    return centers, radii


def check_squares(origins, size) -> tuple[np.ndarray, np.ndarray]:
    """Validate square origins ``(n, 2)`` (top-left ``x, y``) and edge ``size`` (scalar or ``(n,)``)."""
    origins = np.ascontiguousarray(origins, dtype=np.float64).reshape(-1, 2) if len(origins) else np.zeros((0, 2))
    size = np.broadcast_to(np.asarray(size, dtype=np.float64), (len(origins),)).copy()
    if not (np.isfinite(origins).all() and np.isfinite(size).all()):
        raise ValueError("Square origins and sizes must be finite.")
    if (size <= 0).any():
        raise ValueError(f"Square edges must be > 0 pixels; {int((size <= 0).sum())} are not.")
    return origins, size
