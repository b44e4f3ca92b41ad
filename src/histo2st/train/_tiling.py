"""Tiled dense inference: each output tile is the center of a larger input tile, so no seam sees an image edge.

It lives in ``train``, the lowest layer above the network modules, because the training plans (validation) and the
models (prediction) both run a module over tiles; ``_spot_windows`` is here for the same reason.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

#: Value used to pad the H&E outside the image: white, as empty glass.
PAD_VALUE = 255
#: Most context pixels on each side of a tile's core: enough for a seamless map (``test_tiled_prediction``), so larger
#: tiles spend their extra pixels on the core (a 1024 px tile has a 768 px core, 1.8x redundant, not 4x).
MAX_HALO_PX = 128
#: Input pixels per forward pass on a CPU: batching tiles gains little there, and activations grow with the batch.
CPU_BATCH_PIXELS = 4 * 512 * 512
#: Most tiles per forward pass on a GPU, and the share of its free memory a batch may use.
GPU_MAX_BATCH, GPU_MEMORY_SHARE = 64, 0.5
#: One forward pass at a time per process: torch already uses every core (or the whole GPU) for one, and two at once
#: would only compete for them and double the activation memory.
_FORWARD_LOCK = threading.Lock()


@dataclass(frozen=True)
class TileGrid:
    """Square tiles over an image: a ``core`` written to the output and ``halo`` pixels of context on each side.

    The network sees ``core + 2 * halo`` pixels (its ``input_px``), so every output pixel has at least ``halo``
    pixels of real context, except at the image border where the image is padded with white.
    """

    core: int
    halo: int

    @property
    def input_px(self) -> int:
        return self.core + 2 * self.halo

    def origins(self, height: int, width: int) -> list[tuple[int, int]]:
        """Top-left ``(y, x)`` of the cores that cover a ``height x width`` image."""
        return [(y, x) for y in range(0, height, self.core) for x in range(0, width, self.core)]


def core_chunks(n: int, grid: TileGrid, cores: int = 1) -> tuple[int, ...]:
    """Chunks of ``n`` pixels for tiled prediction: ``cores`` cores of ``grid.core`` each.

    The last chunk is merged into its neighbor when shorter than the halo, because ``dask.array.overlap`` would
    otherwise rechunk the image and the blocks would no longer match the declared output chunks.
    """
    size = grid.core * cores
    chunks = [size] * (n // size) + ([n % size] if n % size else [])
    if len(chunks) > 1 and chunks[-1] < grid.halo:
        last = chunks.pop()
        chunks[-1] += last
    return tuple(chunks)


def cores_per_chunk(batch_size: int) -> int:
    """Cores along each side of a chunk so that one chunk fills at least one batch of tiles."""
    return max(1, math.ceil(math.sqrt(batch_size)))


def default_batch_size(module, tile_px: int, device: str) -> int:
    """Tiles per forward pass: from a pixel budget on a CPU; on a GPU, what half its free memory holds.

    On CUDA one tile is run first and its peak memory measured, so the batch fits the network and the card in use.
    """
    if not str(device).startswith("cuda"):
        return max(1, min(4, CPU_BATCH_PIXELS // tile_px**2))
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    param = next(module.parameters())
    extra = {}
    if getattr(module, "context_margin", 0):
        shape = (1, 3, *module.context_shape(tile_px, tile_px))
        extra["context"] = torch.zeros(shape, device=device, dtype=param.dtype)
    with _FORWARD_LOCK, torch.no_grad():
        module(torch.zeros((1, 3, tile_px, tile_px), device=device, dtype=param.dtype), **extra)
    per_tile = max(1, torch.cuda.max_memory_allocated(device) - before)
    return int(np.clip(GPU_MEMORY_SHARE * free // per_tile, 1, GPU_MAX_BATCH))


def make_grid(input_px: int, halo: int) -> TileGrid:
    """A grid whose tiles have ``input_px`` pixels in total (a multiple of 32 for the encoder)."""
    if input_px % 32:
        raise ValueError(f"Tile size must be a multiple of 32 px, got {input_px}.")
    if input_px - 2 * halo < 32:
        raise ValueError(f"Tile of {input_px} px leaves no core with a {halo} px halo; use a larger tile.")
    return TileGrid(core=input_px - 2 * halo, halo=halo)


def read_tile(image: np.ndarray, y0: int, x0: int, size: int) -> np.ndarray:
    """``(c, size, size)`` window of ``image`` with top-left ``(y0, x0)`` (may be negative), padded white outside."""
    c, h, w = image.shape
    out = np.full((c, size, size), PAD_VALUE, dtype=image.dtype)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, h), min(x0 + size, w)
    if ye > ys and xe > xs:
        out[:, ys - y0 : ye - y0, xs - x0 : xe - x0] = np.asarray(image[:, ys:ye, xs:xe])
    return out


@dataclass(frozen=True)
class ContextImage:
    """A slide ``factor`` times coarser than a PixNet's input, for its context branch (two-scale input).

    ``image`` ``(3, h // factor, w // factor)`` uint8 holds block means of ``factor x factor`` input pixels (see
    :func:`coarsen_image`), so context pixel ``i`` covers input pixels ``[i * factor, (i + 1) * factor)``; a tile's
    context is that block of the coarse image plus ``margin`` coarse pixels on each side, white beyond the slide.
    """

    image: np.ndarray
    factor: int
    margin: int

    @classmethod
    def of(cls, image, module, *, lazy: bool = False):
        """The context of ``image`` (at the module's input resolution) for ``module``; ``None`` without a branch.

        ``lazy``: a ``dask.delayed`` one, computed once when a graph that uses it runs (lazy prediction).
        """
        if not getattr(module, "context_margin", 0):
            return None
        small = coarsen_image(image, module.context_factor)
        if lazy:
            import dask

            return dask.delayed(cls)(small, module.context_factor, module.context_margin)
        return cls(small.compute(scheduler="synchronous"), module.context_factor, module.context_margin)

    def tiles(self, origins, size: int) -> np.ndarray:
        """Contexts ``(n, 3, size / factor + 2 margin, ...)`` of the ``size`` px input tiles at ``origins`` (y, x).

        Origins and ``size`` are input pixels, multiples of ``factor`` (tile grids and training crops keep to them).
        """
        f, m = self.factor, self.margin
        if size % f or any(y % f or x % f for y, x in origins):
            raise ValueError(f"Tiles with a context must start and end on multiples of {f} px, got {origins}, {size}.")
        return np.stack([read_tile(self.image, y // f - m, x // f - m, size // f + 2 * m) for y, x in origins])


def coarsen_image(image, factor: int):
    """Lazy ``(3, h // factor, w // factor)`` uint8 block means (dask) of a ``(3, h, w)`` image (numpy, dask, zarr).

    The last rows and columns that do not fill a block are left out, so block ``i`` always starts at ``i * factor``.
    """
    import dask.array as da

    arr = image if isinstance(image, da.Array) else da.from_array(image, chunks=(3, 2048, 2048))
    return da.coarsen(np.mean, arr, {1: factor, 2: factor}, trim_excess=True).round().astype(np.uint8)


def snap_halo(halo: int, module) -> int:
    """``halo`` rounded down to a multiple of the module's context factor, so every tile starts on a coarse pixel."""
    factor = module.context_factor if getattr(module, "context_margin", 0) else 1
    return halo // factor * factor


def run_network(module, tiles: np.ndarray, device, *, normalize, tta: int = 1, context=None) -> np.ndarray:
    """Run ``module`` on a ``(b, 3, s, s)`` uint8 batch (``normalize`` maps uint8 to network input); float32 maps.

    ``tta``: the mean over that many rotations and mirror images of each tile (see :func:`histo2st.nn.dihedral_mean`).
    ``context``: the tiles' uint8 context images (:meth:`ContextImage.tiles`), turned with them.
    """
    import torch

    from ..nn import dihedral_mean

    with _FORWARD_LOCK, torch.no_grad():
        x = normalize(torch.from_numpy(np.ascontiguousarray(tiles)).to(device))
        if context is None:
            return dihedral_mean(module, x, n=tta).cpu().numpy()
        c = normalize(torch.from_numpy(np.ascontiguousarray(context)).to(device))
        return dihedral_mean(lambda a, b: module(a, context=b), (x, c), n=tta).cpu().numpy()


def predict_cores(
    module,
    window: np.ndarray,
    grid: TileGrid,
    on: np.ndarray,
    n_out: int,
    device,
    *,
    normalize,
    batch_size: int,
    tta: int = 1,
    context: ContextImage | None = None,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Dense map ``(n_out, h, w)`` float32 of one block from its ``window`` (the block plus ``grid.halo`` each side).

    The block is cut into cores of ``grid.core`` from its top-left; core ``(i, j)`` is predicted from the tile of
    ``grid.input_px`` around it when ``on[i, j]``, in batches of ``batch_size`` tiles, and is NaN otherwise.
    ``tta`` as in :func:`run_network`. ``context``: the slide's coarse image for a module with a context branch,
    with ``origin`` the block's top-left ``(y, x)`` in the slide.
    """
    h, w = window.shape[1] - 2 * grid.halo, window.shape[2] - 2 * grid.halo
    origins = [(y, x) for y in range(0, h, grid.core) for x in range(0, w, grid.core)]
    todo = [(y, x) for y, x in origins if on[y // grid.core, x // grid.core]]
    out = np.full((n_out, h, w), np.nan, dtype=np.float32)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        ctx = None
        if context is not None:
            ctx = context.tiles([(origin[0] + y - grid.halo, origin[1] + x - grid.halo) for y, x in chunk],
                                grid.input_px)  # fmt: skip
        maps = run_network(module, np.stack([read_tile(window, y, x, grid.input_px) for y, x in chunk]), device,
                           normalize=normalize, tta=tta, context=ctx)  # fmt: skip
        for (y, x), dense in zip(chunk, maps, strict=True):
            ye, xe = min(y + grid.core, h), min(x + grid.core, w)
            out[:, y:ye, x:xe] = dense[:, grid.halo : grid.halo + ye - y, grid.halo : grid.halo + xe - x]
    return out


def predict_spots_tiled(
    module,
    image: np.ndarray,
    centers: np.ndarray,
    radii: np.ndarray,
    grid: TileGrid,
    device,
    *,
    normalize,
    batch_size=4,
    context: ContextImage | None = None,
) -> np.ndarray:
    """Mean predicted expression over each circle, from tiles whose core holds the circle's center.

    Only tiles that contain spots are computed; the dense maps are never held for the whole image. ``context``: the
    image's coarse version for a module with a context branch.
    """
    from .._kernels import aggregate_circles

    if radii.size and radii.max() > grid.halo:
        raise ValueError(f"Spot radius {radii.max():.1f} px exceeds the tile halo {grid.halo} px; enlarge the halo.")
    tile_y = (centers[:, 1] // grid.core).astype(int)
    tile_x = (centers[:, 0] // grid.core).astype(int)
    keys = sorted(set(zip(tile_y.tolist(), tile_x.tolist(), strict=True)))
    out = None
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size]
        origins = [(ty * grid.core - grid.halo, tx * grid.core - grid.halo) for ty, tx in chunk]
        tiles = np.stack([read_tile(image, y, x, grid.input_px) for y, x in origins])
        ctx = None if context is None else context.tiles(origins, grid.input_px)
        maps = run_network(module, tiles, device, normalize=normalize, context=ctx)
        for (ty, tx), dense in zip(chunk, maps, strict=True):
            sel = np.flatnonzero((tile_y == ty) & (tile_x == tx))
            local = centers[sel] - np.array([tx * grid.core - grid.halo, ty * grid.core - grid.halo])
            values, _ = aggregate_circles(dense, local, radii[sel], agg="mean")
            if out is None:
                out = np.empty((len(centers), dense.shape[0]), dtype=np.float32)
            out[sel] = values
    return out
