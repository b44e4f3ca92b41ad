"""Streaming a lazy dense map into the zarr store of a backed sample: block by block, resumable, complete or absent.

The element is built under ``<store>/.histo2st_partial/<key>`` (spatialdata does not look there), each block is
written by one task straight into its zarr chunks and then marked done in a ``<key>.done`` array (one chunk per block,
so parallel tasks never touch the same file). A rerun with the same model and settings computes only the blocks not
yet done. Once every block is written the viewing pyramid is built and the element is renamed into ``images/<key>``:
until then the store holds no element of that name, so an interrupted run never looks complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._constants import ATTRS_KEY
from .._logging import logger
from ._pyramid import pyramid_shapes, write_levels

PARTIAL_DIR = ".histo2st_partial"
#: Channel chunk of stored maps: reading one gene touches 8 channels, not all of them (scverse-facts.md).
CHANNEL_CHUNK = 8


@dataclass(frozen=True)
class StreamStats:
    """What one streamed write did.

    Attributes
    ----------
    blocks
        Blocks of the map (chunks along y and x).
    blocks_on_tissue
        Blocks that hold tissue; the others are never computed nor written.
    blocks_resumed
        Blocks already written by an interrupted earlier run and not recomputed.
    blocks_computed
        Blocks computed and written by this run.
    seconds
        Wall time of the whole write, pyramid included.
    pyramid_seconds
        Wall time of building the downsampled levels.
    store_seconds
        Time spent inside the tasks that convert and write blocks (summed over parallel tasks).
    """

    blocks: int
    blocks_on_tissue: int
    blocks_resumed: int
    blocks_computed: int
    seconds: float
    pyramid_seconds: float
    store_seconds: float


def stream_map(
    sdata,
    key: str,
    dense_map,
    *,
    channels: list[str],
    transformations: dict,
    blocks_on: np.ndarray,
    dtype: str,
    fingerprint: dict,
    overwrite: bool,
    attrs: dict,
) -> StreamStats:
    """Write ``dense_map`` ``(c, y, x)`` (lazy) as the multiscale image ``images[key]`` of the backed ``sdata``.

    Parameters
    ----------
    sdata
        A SpatialData backed by a local zarr store.
    key
        Element name.
    dense_map
        The lazy map; each of its spatial chunks becomes one task, aligned with the stored chunks.
    channels
        Channel names.
    transformations
        Transformations of the full-resolution level.
    blocks_on
        ``(n_y_chunks, n_x_chunks)`` bool: blocks to compute; the others stay NaN and take no disk space.
    dtype
        Stored dtype (float).
    fingerprint
        Everything the values depend on (model weights digest, genes, shapes, ...); an unfinished write is resumed
        only when it was started with the same fingerprint.
    overwrite
        Replace an existing ``images[key]`` and discard an unfinished write started with other settings.
    attrs
        Recorded under ``"histo2st"`` in the element's zarr attributes, with these statistics.

    Returns
    -------
    The :class:`StreamStats` of the write; ``sdata.images[key]`` is the stored element.
    """
    import dask
    import zarr

    start = time.perf_counter()
    store = Path(sdata.path)
    partial = store / PARTIAL_DIR / key
    done_path = store / PARTIAL_DIR / f"{key}.done"
    dense_map = _aligned(dense_map.rechunk({0: -1}))
    chunk = (CHANNEL_CHUNK, dense_map.chunks[1][0], dense_map.chunks[2][0])
    digest = _digest(fingerprint)
    if partial.exists() and _started_as(done_path) != digest:
        if not overwrite:
            raise ValueError(
                f"'{partial}' holds an unfinished prediction of '{key}' started with another model or other settings. "
                "Rerun with those to resume it, or pass `overwrite=True` to discard it."
            )
        _remove(partial, done_path)
    if not partial.exists():
        _create(partial, done_path, key, dense_map, channels, transformations, chunk, dtype, digest)
    levels = _level_arrays(partial)
    done = zarr.open_array(str(done_path), mode="r")[:]
    pending = np.argwhere(blocks_on & ~done)
    blocks = dense_map.to_delayed()
    y_edges, x_edges = (np.concatenate([[0], np.cumsum(c)]) for c in dense_map.chunks[1:])
    tasks = [
        dask.delayed(_store_block, pure=False)(
            blocks[0, i, j], str(partial / levels[0]), str(done_path),
            (slice(int(y_edges[i]), int(y_edges[i + 1])), slice(int(x_edges[j]), int(x_edges[j + 1]))), (i, j), dtype,
        )
        for i, j in pending
    ]  # fmt: skip
    logger.info(f"Predicting {len(tasks)} of {blocks_on.size} blocks ({int((blocks_on & done).sum())} already done).")
    store_seconds = sum(dask.compute(*tasks))
    pyramid_start = time.perf_counter()
    write_levels([zarr.open_array(str(partial / name), mode="r+") for name in levels])
    stats = StreamStats(
        blocks=int(blocks_on.size),
        blocks_on_tissue=int(blocks_on.sum()),
        blocks_resumed=int((blocks_on & done).sum()),
        blocks_computed=len(tasks),
        seconds=round(time.perf_counter() - start, 3),
        pyramid_seconds=round(time.perf_counter() - pyramid_start, 3),
        store_seconds=round(float(store_seconds), 3),
    )
    group = zarr.open_group(str(partial), mode="r+")
    group.attrs[ATTRS_KEY] = json.loads(json.dumps({**attrs, "stream": asdict(stats)}, default=str))
    _publish(sdata, key, partial, done_path)
    return stats


def _aligned(dense_map):
    """The map with spatial chunks that all start on a multiple of the first chunk (one task per stored chunk)."""
    for chunks in dense_map.chunks[1:]:
        starts = np.cumsum((0, *chunks[:-1]))
        if np.any(starts % chunks[0]):
            return dense_map.rechunk((-1, dense_map.chunks[1][0], dense_map.chunks[2][0]))
    return dense_map


def _digest(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()


def _started_as(done_path: Path) -> str | None:
    import zarr

    if not done_path.exists():
        return None
    return zarr.open_array(str(done_path), mode="r").attrs.get("fingerprint")


def _remove(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            shutil.rmtree(path)


def _create(partial: Path, done_path: Path, key, dense_map, channels, transformations, chunk, dtype, digest) -> None:
    """The element's group, with spatialdata's metadata, and empty (NaN) arrays for every level; the done array."""
    import dask.array as da
    import spatialdata as sd
    import zarr
    from spatialdata.models import Image2DModel

    shapes = pyramid_shapes(dense_map.shape[1:])
    # spatialdata writes the metadata (channels, transformations, levels) of a tiny image with as many levels
    side = 2 ** (len(shapes) - 1)
    template = Image2DModel.parse(
        da.zeros((len(channels), side, side), dtype=dtype),
        dims=("c", "y", "x"),
        c_coords=channels,
        transformations=transformations,
        scale_factors=[2] * (len(shapes) - 1) or None,
    )
    scratch = partial.parent / f"{key}.template.zarr"
    _remove(scratch)
    sd.SpatialData(images={key: template}).write(scratch)
    partial.parent.mkdir(parents=True, exist_ok=True)
    (scratch / "images" / key).rename(partial)
    shutil.rmtree(scratch)
    for name, shape in zip(_level_arrays(partial), shapes, strict=True):
        zarr.create_array(store=str(partial), name=name, shape=(len(channels), *shape), chunks=chunk, dtype=dtype,
                          fill_value=np.nan, dimension_names=("c", "y", "x"), overwrite=True)  # fmt: skip
    n_blocks = tuple(len(c) for c in dense_map.chunks[1:])
    done = zarr.create_array(store=str(done_path), shape=n_blocks, chunks=(1, 1), dtype=bool, fill_value=False,
                             overwrite=True)  # fmt: skip
    done.attrs["fingerprint"] = digest


def _level_arrays(partial: Path) -> list[str]:
    import zarr

    multiscales = zarr.open_group(str(partial), mode="r").attrs["ome"]["multiscales"][0]
    return [d["path"] for d in multiscales["datasets"]]


def _store_block(block: np.ndarray, array_path: str, done_path: str, region, index, dtype) -> float:
    """Write one block to its chunks (all-NaN chunks are skipped by zarr), then mark it done; seconds spent."""
    import zarr

    start = time.perf_counter()
    array = zarr.open_array(array_path, mode="r+", config={"write_empty_chunks": False})
    array[(slice(None), *region)] = block.astype(dtype, copy=False)
    zarr.open_array(done_path, mode="r+")[index] = True
    return time.perf_counter() - start


def _publish(sdata, key: str, partial: Path, done_path: Path) -> None:
    """Rename the finished element into ``images/<key>`` (replacing an old one) and load it into ``sdata``."""
    import spatialdata as sd
    import zarr

    store = Path(sdata.path)
    zarr.open_group(str(store), path="images", mode="a")
    target = store / "images" / key
    old = partial.parent / f"{key}.old"
    _remove(old)
    if target.exists():
        target.rename(old)
    partial.rename(target)
    _remove(old, done_path)
    if not any(partial.parent.iterdir()):
        partial.parent.rmdir()
    if sdata.has_consolidated_metadata():
        sdata.write_consolidated_metadata()
    if key in sdata.images:
        del sdata.images[key]
    sdata.images[key] = sd.read_zarr(store, selection=("images",)).images[key]
