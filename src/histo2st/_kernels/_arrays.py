"""In-memory entry points: a ``(C, H, W)`` numpy map aggregated over circles, square bins or a label image.

Rules (shared by every entry point, see ``docs/aggregation.md``):

- Circles use the pixel-center rule: pixel ``(i, j)`` belongs to a circle when its center ``(j + .5, i + .5)``
  satisfies ``(x - cx)**2 + (y - cy)**2 <= r**2``.
- Squares ``[x0, x0 + s) x [y0, y0 + s)`` use exact area-weighted coverage: each pixel contributes its value
  times the area of its overlap with the square, so a square smaller than a pixel gets that pixel's value times
  its area, and ``mean = sum / area`` is the same at every bin size on a constant map.
- Only pixels of the map count: a spot that extends past the map is clipped, and its mean is over the covered
  pixels. These functions return the covered pixel count (or area) so callers can flag or reject such spots;
  :func:`histo2st.tl.aggregate_array` does that.
- NaN marks a pixel without a value (off tissue, background): sums skip it, means are over the covered pixels (area)
  with a value, NaN where a spot covers none, and the returned count (area) counts only pixels with a value. A pixel
  is assumed NaN in all channels or none: the count is taken on channel 0.
"""

from __future__ import annotations

import numpy as np

from ._reduce import sum_labels, sum_spans
from ._spans import Spans, circle_spans, square_spans
from ._threads import n_threads, use_threads

AGGS = ("sum", "mean")


def check_agg(agg: str) -> str:
    """Validate the ``agg`` argument."""
    if agg not in AGGS:
        raise ValueError(f"`agg` must be one of {AGGS}, got {agg!r}.")
    return agg


def check_map(image, name: str = "image") -> np.ndarray:
    """A ``(C, H, W)`` numpy map (a 2-D map gets one channel)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"`{name}` must have shape (channels, height, width), got {image.shape}.")
    return image


def finish(sums: np.ndarray, area: np.ndarray, agg: str) -> np.ndarray:
    """Turn sums into means over ``area`` when ``agg="mean"`` (NaN where no pixel with a value was covered)."""
    if agg == "sum":
        return sums
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / np.where(area > 0, area, np.nan)[:, None]


def aggregate_spans(image: np.ndarray, spans: Spans, agg: str = "sum") -> tuple[np.ndarray, np.ndarray]:
    """Sum or mean of a ``(C, H, W)`` numpy map over precomputed :class:`Spans`, skipping NaN pixels.

    Returns ``(n, C)`` float64 values and ``(n,)`` float64 covered pixels (area) with a value: ``spans.area`` itself
    when channel 0 has no NaN where the spans are.
    """
    check_agg(agg)
    threads = n_threads()
    use_threads(threads)
    sums, valued, has_nan = sum_spans(check_map(image), spans, threads=threads)
    area = valued if has_nan else spans.area
    return finish(sums, area, agg), area


def aggregate_circles(image, centers, radii, *, agg: str = "sum") -> tuple[np.ndarray, np.ndarray]:
    """Aggregate a map over circles of any (float) radius.

    Parameters
    ----------
    image
        ``(C, H, W)`` map, float16/float32/float64 (or integer) numpy array.
    centers
        ``(n, 2)`` centers ``(x, y)`` in pixel units (pixel ``(i, j)`` spans ``[j, j+1) x [i, i+1)``).
    radii
        ``(n,)`` radii in pixels (or one radius for all).
    agg
        ``"sum"`` or ``"mean"`` over the covered pixels with a value (NaN pixels are skipped).

    Returns
    -------
    values
        ``(n, C)`` float64; a mean is NaN where a circle covers no pixel center with a value.
    n_pixels
        ``(n,)`` int64, covered pixels inside the map whose channel 0 is not NaN.
    """
    image = check_map(image)
    spans = circle_spans(centers, radii, image.shape[1], image.shape[2])
    values, area = aggregate_spans(image, spans, agg)
    return values, area.astype(np.int64)


def aggregate_squares(image, origins, size, *, agg: str = "sum") -> tuple[np.ndarray, np.ndarray]:
    """Aggregate a map over axis-aligned squares of any edge, with exact area-weighted coverage.

    Parameters
    ----------
    image
        ``(C, H, W)`` map, float16/float32/float64 (or integer) numpy array.
    origins
        ``(n, 2)`` top-left corners ``(x0, y0)`` in pixel units.
    size
        Edge in pixels, one for all or ``(n,)``; may be fractional or smaller than a pixel.
    agg
        ``"sum"`` (area-weighted, NaN pixels skipped) or ``"mean"`` (sum divided by the covered area with a value).

    Returns
    -------
    values
        ``(n, C)`` float64; a mean is NaN where a square covers no pixel with a value.
    area
        ``(n,)`` float64, covered area inside the map in pixels, of pixels whose channel 0 is not NaN.
    """
    image = check_map(image)
    spans = square_spans(origins, size, image.shape[1], image.shape[2])
    return aggregate_spans(image, spans, agg)


def square_grid(x_range: tuple[float, float], y_range: tuple[float, float], size: float) -> np.ndarray:
    """Top-left corners ``(n, 2)`` of a grid of squares of edge ``size`` tiling ``[x0, x1) x [y0, y1)``, row-major.

    The last row and column may extend past ``x1``/``y1``.
    """
    xs = np.arange(x_range[0], x_range[1], size, dtype=np.float64)
    ys = np.arange(y_range[0], y_range[1], size, dtype=np.float64)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])


def aggregate_labels(image, labels, *, agg: str = "sum") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate a map over the regions of an integer label image (cells, regions; 0 is background).

    Parameters
    ----------
    image
        ``(C, H, W)`` map.
    labels
        ``(H, W)`` non-negative integer label image.
    agg
        ``"sum"`` or ``"mean"`` over the label's pixels with a value (NaN pixels are skipped).

    Returns
    -------
    ids
        ``(m,)`` the labels present (> 0), sorted.
    values
        ``(m, C)`` float64; a mean is NaN where a label has no pixel with a value.
    n_pixels
        ``(m,)`` int64 pixels per label whose channel 0 is not NaN.
    """
    check_agg(agg)
    image = check_map(image)
    labels = check_labels(labels, image.shape[1:])
    n_labels = int(labels.max(initial=0))
    counts = np.bincount(labels.ravel(), minlength=n_labels + 1)
    threads = n_threads()
    use_threads(threads)
    sums, valued = sum_labels(image, labels, n_labels, threads=threads)
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    return ids, finish(sums[ids], valued[ids], agg), valued[ids].astype(np.int64)


def check_labels(labels, shape: tuple[int, int]) -> np.ndarray:
    """A non-negative integer ``(H, W)`` label image matching the map."""
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise ValueError(f"`labels` must have the map's shape {tuple(shape)}, got {labels.shape}.")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"`labels` must be an integer image, got {labels.dtype}.")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise ValueError("`labels` must be >= 0 (0 = background).")
    return labels.astype(np.int64, copy=False)
