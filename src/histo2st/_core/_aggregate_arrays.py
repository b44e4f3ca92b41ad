"""Aggregating a map of any size (numpy, zarr or dask) over circles, square bins or a label image, tile by tile."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._kernels._arrays import check_agg, check_labels, finish
from .._kernels._reduce import sum_labels, sum_spans
from .._kernels._spans import Spans, circle_spans, square_spans
from .._kernels._threads import n_threads, use_threads

#: Default bytes of map read per tile when a map is not a dask array.
TILE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Aggregated:
    """Result of :func:`aggregate_array`.

    Attributes
    ----------
    values
        ``(n, C)`` float64 sums or means per spot (or label) and channel, over the pixels with a value.
    area
        ``(n,)`` covered pixels (circles, labels) or covered pixel area (squares) inside the map, counting only pixels
        whose channel 0 is not NaN.
    clipped
        ``(n,)`` bool, the spot extends past the map and was cut at its edge (its mean is over the covered part).
    ids
        Labels the rows belong to (label images only; otherwise ``None``).
    """

    values: np.ndarray
    area: np.ndarray
    clipped: np.ndarray
    ids: np.ndarray | None = None


def aggregate_array(
    image,
    *,
    centers=None,
    radii=None,
    origins=None,
    size=None,
    labels=None,
    agg: str = "mean",
    tile_bytes: int = TILE_BYTES,
) -> Aggregated:
    """Sum or average a ``(C, H, W)`` map over circles, square bins or labeled regions, with bounded memory.

    Give exactly one of ``centers`` + ``radii`` (circles), ``origins`` + ``size`` (squares) or ``labels``.

    Parameters
    ----------
    image
        ``(C, H, W)`` map: a numpy array, any array that slices to numpy (``zarr.Array``, memmap), or a dask array.
        Float16 maps are read as float16 and accumulated in float64. NaN marks a pixel without a value (see Notes).
    centers, radii
        Circles: ``(n, 2)`` centers ``(x, y)`` and ``(n,)`` radii in map pixels. Pixel ``(i, j)`` belongs to a
        circle when its center ``(j + .5, i + .5)`` lies within the radius (distance ``<=`` radius).
    origins, size
        Squares ``[x0, x0 + size) x [y0, y0 + size)`` in map pixels, ``size`` scalar or ``(n,)``. Pixels count with
        the area of their overlap with the square, exactly, so bins smaller than a pixel work.
    labels
        ``(H, W)`` integer label image (0 = background), numpy or dask.
    agg
        ``"mean"`` (over the covered pixels or area with a value) or ``"sum"`` (NaN pixels skipped).
    tile_bytes
        Bytes of map read at a time for non-dask maps; a dask map is processed chunk by chunk.

    Returns
    -------
    :class:`Aggregated` with ``values``, ``area``, ``clipped`` (and ``ids`` for labels).

    Raises
    ------
    ValueError
        When spots lie entirely outside the map (the message lists them).

    Notes
    -----
    Edge rule: a spot partly outside the map is clipped, its mean is over the pixels inside, and it is flagged in
    ``clipped``. A spot that covers no pixel center although it overlaps the map (a circle of radius < 0.5 between
    pixel centers) has area 0 and a NaN mean.

    Missing values: a NaN pixel has no value (a prediction off tissue, an unwritten background chunk of a zarr map
    whose fill value is NaN). Sums skip it, a mean is over the covered pixels (area) with a value and is NaN where a
    spot covers none, and ``area`` counts only pixels with a value. A pixel is assumed NaN in all channels or none:
    validity is read from channel 0 (a channel NaN where channel 0 is not adds 0 to the sum but still counts in the
    area). A map without NaN reads no extra pixel and its results are those of plain sums, bit for bit.

    Sums are additive over tiles, so every tile contributes the part of each spot it holds: tiles need no halo and
    every pixel is read exactly once. A dask map is aggregated by one task per chunk (then one sum per channel chunk),
    so it runs on whatever scheduler is active, including a ``dask.distributed`` client.
    """
    check_agg(agg)
    shape = _map_shape(image)
    given = [centers is not None, origins is not None, labels is not None]
    if sum(given) != 1:
        raise ValueError("Give exactly one of `centers`/`radii` (circles), `origins`/`size` (squares) or `labels`.")
    if labels is not None:
        return _aggregate_labels(image, labels, shape, agg, tile_bytes)
    if centers is not None:
        if radii is None:
            raise ValueError("Circles need `radii` as well as `centers`.")
        spans = circle_spans(centers, radii, shape[1], shape[2])
    else:
        if size is None:
            raise ValueError("Squares need `size` as well as `origins`.")
        spans = square_spans(origins, size, shape[1], shape[2])
    _raise_outside(spans)
    if _is_dask(image):
        sums, valued, any_nan = _dask_spans(image, spans)
    else:
        sums, valued, any_nan = np.zeros((spans.n, shape[0])), np.zeros(spans.n), False
        for c0, c1, r0, _, tile in _tiles(image, shape, tile_bytes, rows_needed=np.diff(spans.row_ptr) > 0):
            threads = n_threads()
            use_threads(threads)
            tile_sums, tile_valued, has_nan = sum_spans(tile, spans, r0, 0, threads=threads)
            sums[:, c0:c1] += tile_sums
            if c0 == 0:  # validity is read from the map's channel 0
                valued += tile_valued
                any_nan |= has_nan
    # without NaN the area is the spans' own, not a sum over tiles that could differ from it in the last bit
    area = valued if any_nan else spans.area
    return Aggregated(finish(sums, area, agg), area, spans.clipped)


def _map_shape(image) -> tuple[int, int, int]:
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    if len(image.shape) != 3:
        raise ValueError(f"The map must have shape (channels, height, width), got {tuple(image.shape)}.")
    return tuple(int(s) for s in image.shape)


def _is_dask(array) -> bool:
    return type(array).__module__.startswith("dask.")


def _raise_outside(spans: Spans) -> None:
    if spans.outside.any():
        idx = np.flatnonzero(spans.outside)
        raise ValueError(
            f"{len(idx)} spots lie entirely outside the {spans.width} x {spans.height} px map: indices "
            f"{idx[:20].tolist()}{' ...' if len(idx) > 20 else ''}. Check that their coordinates are in this map's "
            "pixels (a map at a coarser resolution than the H&E needs its own pixel coordinates), or drop them."
        )


def _tiles(image, shape, tile_bytes, rows_needed=None):
    """Yield ``(c0, c1, r0, r1, tile)`` numpy tiles of full width; rows no spot touches are skipped."""
    n_channels, height, width = shape
    if isinstance(image, np.ndarray):
        yield 0, n_channels, 0, height, image
        return
    chunks = getattr(image, "chunks", None) or (n_channels, height, width)
    itemsize = np.dtype(image.dtype).itemsize
    c_step = max(1, min(n_channels, int(chunks[0])))
    r_step = max(1, tile_bytes // max(1, c_step * width * itemsize))
    r_step = max(int(chunks[1]), r_step // int(chunks[1]) * int(chunks[1]))
    for r0 in range(0, height, r_step):
        r1 = min(height, r0 + r_step)
        if rows_needed is not None and not rows_needed[r0:r1].any():
            continue
        for c0 in range(0, n_channels, c_step):
            c1 = min(n_channels, c0 + c_step)
            yield c0, c1, r0, r1, np.asarray(image[c0:c1, r0:r1, :])


def _block_sums(block: np.ndarray, ids: np.ndarray, spans: Spans, y0: int, x0: int):
    """Sums of the spots touching one dask chunk; ``spans`` is the chunk's window.

    Returns the spots' indices, their ``(m, c)`` sums, their ``(m,)`` area with a value in this chunk (read from its
    first channel) and whether that channel had a NaN where the spans are.
    """
    if y0 + block.shape[1] > spans.height or x0 + block.shape[2] > spans.width:
        # the kernels do not bounds-check; a chunk larger than its dask metadata says would read past the spans
        raise ValueError(
            f"A dask chunk of shape {block.shape} at (y={y0}, x={x0}) overruns the {spans.height} x {spans.width} map: "
            "the function that produced the map returned blocks that do not match its declared chunks."
        )
    return ids, *sum_spans(block, spans, y0, x0, threads=1)


def _combine(n: int, n_channels: int, *parts) -> tuple[np.ndarray, np.ndarray, bool]:
    out, valued, any_nan = np.zeros((n, n_channels)), np.zeros(n), False
    for ids, sums, part_valued, has_nan in parts:
        out[ids] += sums
        valued[ids] += part_valued
        any_nan |= has_nan
    return out, valued, any_nan


def _dask_spans(image, spans: Spans) -> tuple[np.ndarray, np.ndarray, bool]:
    """Sums, area with a value and whether channel 0 had a NaN, one task per chunk (validity from channel chunk 0)."""
    import dask

    c_edges, y_edges, x_edges = (np.concatenate([[0], np.cumsum(c)]) for c in image.chunks)
    # one window of spans per spatial chunk, shared by its channel chunks
    windows = {}
    for yi in range(len(y_edges) - 1):
        for xi in range(len(x_edges) - 1):
            ids, sub = spans.window(int(y_edges[yi]), int(y_edges[yi + 1]), int(x_edges[xi]), int(x_edges[xi + 1]))
            if len(sub.spot):
                windows[yi, xi] = (dask.delayed(ids), dask.delayed(sub))
    blocks = image.to_delayed()
    combined = []
    for ci in range(len(c_edges) - 1):
        parts = [
            dask.delayed(_block_sums)(blocks[ci, yi, xi], ids, sub, int(y_edges[yi]), int(x_edges[xi]))
            for (yi, xi), (ids, sub) in windows.items()
        ]
        combined.append(dask.delayed(_combine)(spans.n, int(c_edges[ci + 1] - c_edges[ci]), *parts))
    results = dask.compute(*combined)
    return np.concatenate([sums for sums, _, _ in results], axis=1), results[0][1], results[0][2]


def _aggregate_labels(image, labels, shape, agg, tile_bytes) -> Aggregated:
    if _is_dask(labels) or _is_dask(image):
        import dask.array as da

        image = image if _is_dask(image) else da.from_array(image, chunks=(shape[0], 2048, 2048))
        labels = da.asarray(labels).rechunk(image.chunks[1:])
        if labels.shape != shape[1:]:
            raise ValueError(f"`labels` must have the map's shape {shape[1:]}, got {labels.shape}.")
        n_labels = int(labels.max().compute())
        counts = np.bincount(np.asarray(labels.ravel().compute()), minlength=n_labels + 1)
        sums, valued = _dask_labels(image, labels, n_labels)
    else:
        labels = check_labels(labels, shape[1:])
        n_labels = int(labels.max(initial=0))
        counts = np.bincount(labels.ravel(), minlength=n_labels + 1)
        sums, valued = np.zeros((n_labels + 1, shape[0])), np.zeros(n_labels + 1)
        for c0, c1, r0, r1, tile in _tiles(image, shape, tile_bytes):
            threads = n_threads()
            use_threads(threads)
            tile_sums, tile_valued = sum_labels(tile, labels[r0:r1], n_labels, threads=threads)
            sums[:, c0:c1] += tile_sums
            if c0 == 0:  # validity is read from the map's channel 0
                valued += tile_valued
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    # pixel counts are integers, exact in float64 whatever the tiling
    area = valued[ids]
    return Aggregated(finish(sums[ids], area, agg), area, np.zeros(len(ids), dtype=bool), ids)


def _label_block(block: np.ndarray, labels: np.ndarray, n_labels: int):
    return sum_labels(block, check_labels(labels, block.shape[1:]), n_labels, threads=1)


def _dask_labels(image, labels, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums and pixels with a value per label, one task per chunk (validity from channel chunk 0)."""
    import dask

    blocks, label_blocks = image.to_delayed(), labels.to_delayed()
    combined = []
    for ci in range(blocks.shape[0]):
        parts = [
            dask.delayed(_label_block)(blocks[ci, yi, xi], label_blocks[yi, xi], n_labels)
            for yi in range(blocks.shape[1])
            for xi in range(blocks.shape[2])
        ]
        combined.append(dask.delayed(_add_pairs)(parts))
    results = dask.compute(*combined)
    return np.concatenate([sums for sums, _ in results], axis=1), results[0][1]


def _add_pairs(parts):
    return sum(p[0] for p in parts), sum(p[1] for p in parts)
