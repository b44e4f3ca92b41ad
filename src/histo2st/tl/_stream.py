"""Streaming a lazy dense map into the zarr store of a backed sample: block by block, resumable, complete or absent.

The element is built under ``<store>/.histo2st_partial/<key>`` (spatialdata does not look there), each block is
written by one task straight into its zarr chunks and then marked done in a ``<key>.done`` array (one chunk per block,
so parallel tasks never touch the same file). A rerun with the same model and settings computes only the blocks not
yet done. Once every block is written the viewing pyramid is built and the element is renamed into ``images/<key>``:
until then the store holds no element of that name, so an interrupted run never looks complete.

One map can fill several elements (e.g. an ensemble's mean and its standard deviation): each is a run of its
channels, every block is computed once and written to all of them, and one ``.done`` array, named after the first,
tracks the blocks.
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
    outputs: dict[str, list[str]],
    dense_map,
    *,
    transformations: dict,
    blocks_on: np.ndarray,
    dtype: str,
    fingerprint: dict,
    overwrite: bool,
    attrs: dict,
) -> StreamStats:
    """Write ``dense_map`` ``(c, y, x)`` (lazy) as multiscale images of the backed ``sdata``, one per output.

    Parameters
    ----------
    sdata
        A SpatialData backed by a local zarr store.
    outputs
        Element name to its channel names: the channels of ``dense_map`` are those of the outputs one after the other
        (usually a single element).
    dense_map
        The lazy map; each of its spatial chunks becomes one task, aligned with the stored chunks, that writes its
        values to every output.
    transformations
        Transformations of the full-resolution level (of every output).
    blocks_on
        ``(n_y_chunks, n_x_chunks)`` bool: blocks to compute; the others stay 0 (the fill value) and take no disk space.
    dtype
        Stored dtype (float).
    fingerprint
        Everything the values depend on (model weights digest, genes, shapes, ...); an unfinished write is resumed
        only when it was started with the same fingerprint.
    overwrite
        Replace existing images of the outputs' names and discard an unfinished write started with other settings.
    attrs
        Recorded under ``"histo2st"`` in each element's zarr attributes, with these statistics.

    Returns
    -------
    The :class:`StreamStats` of the write; ``sdata.images[key]`` is the stored element of each output ``key``.
    """
    import dask
    import zarr

    start = time.perf_counter()
    n_channels = sum(len(c) for c in outputs.values())
    if n_channels != dense_map.shape[0]:
        raise ValueError(f"The outputs name {n_channels} channels; the map has {dense_map.shape[0]}.")
    store = Path(sdata.path)
    partials = {key: store / PARTIAL_DIR / key for key in outputs}
    done_path = store / PARTIAL_DIR / f"{next(iter(outputs))}.done"
    dense_map = _aligned(dense_map.rechunk({0: -1}))
    chunk = (CHANNEL_CHUNK, dense_map.chunks[1][0], dense_map.chunks[2][0])
    digest = _digest({**fingerprint, "outputs": list(outputs)})
    started = _started_as(done_path)
    if started is not None and started != digest and not overwrite:
        raise ValueError(
            f"'{done_path.parent}' holds an unfinished prediction of {list(outputs)} started with another model or "
            "other settings. Rerun with those to resume it, or pass `overwrite=True` to discard it."
        )
    if started != digest or not all(p.exists() for p in partials.values()):
        # a write is resumed only whole: one whose elements are not all there (cut short while publishing) restarts
        _remove(*partials.values(), *(store / PARTIAL_DIR / k for k in _outputs_of(done_path)), done_path)
        for key, partial in partials.items():
            _create(partial, key, dense_map.chunks[1:], outputs[key], transformations, chunk, dtype)
        _create_done(done_path, dense_map.chunks[1:], digest, list(outputs))
    bounds = np.cumsum([0, *(len(c) for c in outputs.values())]).tolist()
    targets = [(str(p / _level_arrays(p)[0]), first, stop)
               for p, first, stop in zip(partials.values(), bounds[:-1], bounds[1:], strict=True)]  # fmt: skip
    done = zarr.open_array(str(done_path), mode="r")[:]
    pending = np.argwhere(blocks_on & ~done)
    blocks = dense_map.to_delayed()
    y_edges, x_edges = (np.concatenate([[0], np.cumsum(c)]) for c in dense_map.chunks[1:])
    tasks = [
        dask.delayed(_store_block, pure=False)(
            blocks[0, i, j], targets, str(done_path),
            (slice(int(y_edges[i]), int(y_edges[i + 1])), slice(int(x_edges[j]), int(x_edges[j + 1]))), (i, j), dtype,
        )
        for i, j in pending
    ]  # fmt: skip
    logger.info(f"Predicting {len(tasks)} of {blocks_on.size} blocks ({int((blocks_on & done).sum())} already done).")
    store_seconds = sum(dask.compute(*tasks))
    pyramid_start = time.perf_counter()
    for partial in partials.values():
        write_levels([zarr.open_array(str(partial / name), mode="r+") for name in _level_arrays(partial)])
    stats = StreamStats(
        blocks=int(blocks_on.size),
        blocks_on_tissue=int(blocks_on.sum()),
        blocks_resumed=int((blocks_on & done).sum()),
        blocks_computed=len(tasks),
        seconds=round(time.perf_counter() - start, 3),
        pyramid_seconds=round(time.perf_counter() - pyramid_start, 3),
        store_seconds=round(float(store_seconds), 3),
    )
    for key, partial in partials.items():
        group = zarr.open_group(str(partial), mode="r+")
        group.attrs[ATTRS_KEY] = json.loads(json.dumps({**attrs, "stream": asdict(stats)}, default=str))
        _publish(sdata, key, partial)
    _remove(done_path)
    if not any(done_path.parent.iterdir()):
        done_path.parent.rmdir()
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


def _outputs_of(done_path: Path) -> list[str]:
    """The elements an unfinished write was filling (recorded in its done array)."""
    import zarr

    if not done_path.exists():
        return []
    return list(zarr.open_array(str(done_path), mode="r").attrs.get("outputs", []))


def _remove(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            shutil.rmtree(path)


def _create(partial: Path, key, spatial_chunks, channels, transformations, chunk, dtype) -> None:
    """The element's group, with spatialdata's metadata, and empty (0) arrays for every level."""
    import dask.array as da
    import spatialdata as sd
    import zarr
    from spatialdata.models import Image2DModel

    shapes = pyramid_shapes(tuple(int(sum(c)) for c in spatial_chunks))
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
                          fill_value=0, dimension_names=("c", "y", "x"), overwrite=True)  # fmt: skip


def _create_done(done_path: Path, spatial_chunks, digest: str, outputs: list[str]) -> None:
    """One flag per block; its attributes say which write it belongs to."""
    import zarr

    n_blocks = tuple(len(c) for c in spatial_chunks)
    done = zarr.create_array(store=str(done_path), shape=n_blocks, chunks=(1, 1), dtype=bool, fill_value=False,
                             overwrite=True)  # fmt: skip
    done.attrs.update({"fingerprint": digest, "outputs": outputs})


def _level_arrays(partial: Path) -> list[str]:
    import zarr

    multiscales = zarr.open_group(str(partial), mode="r").attrs["ome"]["multiscales"][0]
    return [d["path"] for d in multiscales["datasets"]]


def _store_block(block: np.ndarray, targets, done_path: str, region, index, dtype) -> float:
    """Write one block to the chunks of each ``(array, first, stop)`` target, then mark it done; seconds spent.

    Each target gets the block's channels ``first:stop``; all-0 chunks (off tissue) are skipped by zarr.
    """
    import zarr

    start = time.perf_counter()
    block = block.astype(dtype, copy=False)
    for array_path, first, stop in targets:
        array = zarr.open_array(array_path, mode="r+", config={"write_empty_chunks": False})
        array[(slice(None), *region)] = block[first:stop]
    zarr.open_array(done_path, mode="r+")[index] = True
    return time.perf_counter() - start


def _publish(sdata, key: str, partial: Path) -> None:
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
    _remove(old)
    if sdata.has_consolidated_metadata():
        sdata.write_consolidated_metadata()
    if key in sdata.images:
        del sdata.images[key]
    sdata.images[key] = sd.read_zarr(store, selection=("images",)).images[key]
