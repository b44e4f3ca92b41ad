"""A whole-slide-sized synthetic H&E, generated tile by tile into a pyramidal OME-TIFF: never held whole in memory.

:func:`histo2st.datasets.synthetic_tissue` lays out cells over the whole field at once (a distance transform, truth
maps), which does not scale to 20,000 px and more. Here every pixel is a pure function of its position and the seed,
so any tile renders on its own and tiles meet without seams: tissue is where a smooth random field (drawn once on a
coarse grid and interpolated) exceeds a threshold; nuclei sit on a jittered lattice, one candidate per lattice cell,
kept and sized by a hash of the cell; stroma is eosin with a smooth texture; stain vectors and Beer-Lambert are those
of :mod:`histo2st.datasets._synthetic_render`. There is no expression truth: this is for scale, not accuracy.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np

from .._logging import logger
from ._synthetic_render import EOSIN, HEMATOXYLIN

#: Pixels of the slide per pixel of the coarse fields that shape the tissue and its texture.
TISSUE_FIELD_PX, TEXTURE_FIELD_PX = 512, 48
NUCLEUS_SPACING_UM, NUCLEUS_RADIUS_UM = 9.0, (2.2, 3.6)
TIFF_TILE = 512


def write_synthetic_slide(
    path: str | Path,
    *,
    size_px: int | tuple[int, int] = 20_000,
    microns_per_pixel: float = 0.5,
    tissue_fraction: float = 0.45,
    tile_px: int = 2048,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic H&E slide as a pyramidal OME-TIFF (levels halved down to about 1,000 px), tile by tile.

    Level 0 is rendered ``tile_px`` at a time into a scratch zarr store beside ``path``; each coarser level is the
    2 x 2 mean of the one above, computed chunk by chunk with dask; the OME-TIFF is then written from those arrays one
    512 px tile at a time (JPEG-compressed, with the pixel size in the OME metadata and the resolution tags). Memory
    stays at a few tiles whatever the size.

    Parameters
    ----------
    path
        Destination ``.ome.tif``.
    size_px
        Side in pixels, or ``(height, width)``.
    microns_per_pixel
        Pixel size of level 0.
    tissue_fraction
        Approximate fraction of the slide covered by tissue (the rest is glass).
    tile_px
        Rendering tile edge.
    seed
        Random seed.
    overwrite
        Replace an existing file.

    Returns
    -------
    The path written (atomically: under a temporary name, renamed when complete).
    """
    import dask.array as da
    import tifffile
    import zarr

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' exists; pass `overwrite=True` to replace it.")
    height, width = (size_px, size_px) if np.isscalar(size_px) else size_px
    start = time.perf_counter()
    renderer = _Renderer(height, width, microns_per_pixel, tissue_fraction, seed)
    scratch = path.with_name(f".{path.name}.levels.zarr")
    shutil.rmtree(scratch, ignore_errors=True)
    # uncompressed: the scratch store is read once and deleted, compressing noise would only cost time
    level0 = zarr.create_array(store=str(scratch), name="0", shape=(height, width, 3), chunks=(tile_px, tile_px, 3),
                               dtype=np.uint8, compressors=None)  # fmt: skip
    chunks = da.core.normalize_chunks((tile_px, tile_px, 3), (height, width, 3))
    rendered = da.map_blocks(_render_block, dtype=np.uint8, chunks=chunks, meta=np.empty((0, 0, 0), np.uint8),
                             renderer=renderer)  # fmt: skip
    da.store(rendered, level0, lock=False)  # tiles in parallel on the active dask scheduler
    levels = [level0]
    while max(levels[-1].shape[:2]) > 1024:
        above = da.from_zarr(levels[-1])
        h, w = (n // 2 for n in above.shape[:2])
        halved = da.coarsen(np.mean, above[: 2 * h, : 2 * w].astype(np.float32), {0: 2, 1: 2})
        below = zarr.create_array(store=str(scratch), name=str(len(levels)), shape=(h, w, 3),
                                  chunks=(tile_px, tile_px, 3), dtype=np.uint8, compressors=None)  # fmt: skip
        da.store(da.round(halved).astype(np.uint8).rechunk((tile_px, tile_px, 3)), below, lock=False)
        levels.append(below)

    tmp = path.with_name(f".{path.name}.tmp")
    resolution = (1e4 / microns_per_pixel, 1e4 / microns_per_pixel)
    meta = {"axes": "YXS", "PhysicalSizeX": microns_per_pixel, "PhysicalSizeY": microns_per_pixel}
    options = {"tile": (TIFF_TILE, TIFF_TILE), "photometric": "rgb", "compression": "jpeg",
               "resolutionunit": "CENTIMETER"}  # fmt: skip
    with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
        tif.write(_tiles(levels[0]), shape=levels[0].shape, dtype=np.uint8, subifds=len(levels) - 1, metadata=meta,
                  resolution=resolution, **options)  # fmt: skip
        for k, level in enumerate(levels[1:], start=1):
            res = (resolution[0] / 2**k, resolution[1] / 2**k)
            tif.write(_tiles(level), shape=level.shape, dtype=np.uint8, subfiletype=1, resolution=res, **options)
    tmp.replace(path)
    shutil.rmtree(scratch)
    logger.info(f"Wrote a {width} x {height} px synthetic slide to '{path}' ({time.perf_counter() - start:.0f}s).")
    return path


def _render_block(renderer, block_info=None) -> np.ndarray:
    (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
    return renderer.tile(y0, x0, y1 - y0, x1 - x0)


def _tiles(array):
    """The ``TIFF_TILE`` tiles of a ``(h, w, 3)`` zarr array in row-major order, edge tiles padded with white.

    Rows are read one band of zarr chunks at a time, so each chunk is decompressed once.
    """
    h, w = array.shape[:2]
    band_rows = array.chunks[0] // TIFF_TILE * TIFF_TILE or TIFF_TILE
    for b0 in range(0, h, band_rows):
        band = array[b0 : b0 + band_rows]
        for y0 in range(0, band.shape[0], TIFF_TILE):
            for x0 in range(0, w, TIFF_TILE):
                tile = np.full((TIFF_TILE, TIFF_TILE, 3), 255, dtype=np.uint8)
                part = band[y0 : y0 + TIFF_TILE, x0 : x0 + TIFF_TILE]
                tile[: part.shape[0], : part.shape[1]] = part
                yield tile


class _Renderer:
    """Pixels of the slide as a function of position: coarse random fields plus hashed nuclei."""

    def __init__(self, height: int, width: int, mpp: float, tissue_fraction: float, seed: int) -> None:
        from scipy import ndimage

        rng = np.random.default_rng(seed)
        self.mpp, self.seed = mpp, seed
        shape = (math.ceil(height / TISSUE_FIELD_PX) + 2, math.ceil(width / TISSUE_FIELD_PX) + 2)
        field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
        # pushed down near the edge, so tissue sits on the slide with glass around it
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        edge = np.minimum(np.minimum(yy, shape[0] - 1 - yy) / shape[0], np.minimum(xx, shape[1] - 1 - xx) / shape[1])
        self.tissue = field - 0.5 * field.std() * np.clip(1 - 8 * edge, 0, None)
        self.threshold = np.quantile(self.tissue, 1 - tissue_fraction)
        texture_shape = (math.ceil(height / TEXTURE_FIELD_PX) + 2, math.ceil(width / TEXTURE_FIELD_PX) + 2)
        texture = ndimage.gaussian_filter(rng.standard_normal(texture_shape), 1.5)
        self.texture = texture / texture.std()
        self.spacing = max(4.0, NUCLEUS_SPACING_UM / mpp)

    def tile(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """``(h, w, 3)`` uint8 pixels of the slide at rows ``y0:y0 + h`` and columns ``x0:x0 + w``."""
        tissue = np.clip((_sample(self.tissue, TISSUE_FIELD_PX, y0, x0, h, w) - self.threshold) * 20, 0, 1)
        texture = _sample(self.texture, TEXTURE_FIELD_PX, y0, x0, h, w)
        nuclei = self._nuclei(y0, x0, h, w) * tissue
        eosin = tissue * (0.35 + 0.12 * texture) * (1 - 0.6 * nuclei)
        hema = 0.05 * tissue + 0.85 * nuclei * (1 + 0.15 * texture)
        noise = np.float32(3) * np.random.default_rng([self.seed, y0, x0]).standard_normal((h, w), np.float32)
        rgb = np.empty((h, w, 3), dtype=np.uint8)
        ln10 = np.float32(np.log(10))
        for ch in range(3):
            od = hema * np.float32(HEMATOXYLIN[ch]) + eosin * np.float32(EOSIN[ch]) + np.float32(0.03)
            rgb[..., ch] = np.clip(np.exp(-ln10 * od) * np.float32(255) + noise, 0, 255)
        return rgb

    def _nuclei(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """Coverage in [0, 1] of each pixel by the nucleus of its lattice cell (anti-aliased over a pixel)."""
        ys = np.arange(y0, y0 + h, dtype=np.float32)[:, None] + np.float32(0.5)
        xs = np.arange(x0, x0 + w, dtype=np.float32)[None, :] + np.float32(0.5)
        iy, ix = (ys // self.spacing).astype(np.int64), (xs // self.spacing).astype(np.int64)
        # one draw per lattice cell of the tile, then looked up per pixel
        cy, cx = np.arange(iy.min(), iy.max() + 1)[:, None], np.arange(ix.min(), ix.max() + 1)[None, :]
        u = [_hash(cy, cx, self.seed * 4 + k) for k in range(4)]
        lo, hi = (r / self.mpp for r in NUCLEUS_RADIUS_UM)
        radius = lo + (hi - lo) * u[0]
        room = np.maximum(self.spacing - 2 * radius, 0)
        center_y = (cy * self.spacing + radius + room * u[1]).astype(np.float32)
        center_x = (cx * self.spacing + radius + room * u[2]).astype(np.float32)
        radius = np.where(u[3] < 0.55, radius, -1).astype(np.float32)  # no nucleus in 45% of the cells
        ry, rx = iy - cy[0, 0], ix - cx[0, 0]
        distance = np.hypot(ys - center_y[ry, rx], xs - center_x[ry, rx])
        return np.clip(radius[ry, rx] - distance + np.float32(0.5), 0, 1)


def _sample(field: np.ndarray, px: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Bilinear interpolation of a coarse ``field`` (one value every ``px`` slide pixels) over a tile, separably."""
    return (_weights(y0, h, px, field.shape[0]) @ field @ _weights(x0, w, px, field.shape[1]).T).astype(np.float32)


def _weights(start: int, n: int, px: int, size: int) -> np.ndarray:
    """``(n, size)`` linear-interpolation weights of pixels ``start:start + n`` on a grid of step ``px``."""
    t = (np.arange(start, start + n) + 0.5) / px
    i = np.clip(np.floor(t).astype(int), 0, size - 2)
    f = np.clip(t - i, 0, 1)
    out = np.zeros((n, size))
    out[np.arange(n), i] = 1 - f
    out[np.arange(n), i + 1] = f
    return out


def _hash(a: np.ndarray, b: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) from integer coordinates (SplitMix64 finaliser), the same wherever a tile starts."""
    with np.errstate(over="ignore"):
        z = a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = z ^ (b.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9))
        z = z + np.uint64(salt) * np.uint64(0x94D049BB133111EB)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)
