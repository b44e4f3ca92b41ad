"""Tiled dense inference: each output tile is the centre of a larger input tile, so no seam sees an image edge."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Value used to pad the H&E outside the image: white, as empty glass.
PAD_VALUE = 255


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


def core_chunks(n: int, grid: TileGrid) -> tuple[int, ...]:
    """Chunks of ``n`` pixels for tiled prediction: cores of ``grid.core``.

    The last chunk is merged into its neighbour when shorter than the halo, because ``dask.array.overlap`` would
    otherwise rechunk the image and the blocks would no longer match the declared output chunks.
    """
    chunks = [grid.core] * (n // grid.core) + ([n % grid.core] if n % grid.core else [])
    if len(chunks) > 1 and chunks[-1] < grid.halo:
        last = chunks.pop()
        chunks[-1] += last
    return tuple(chunks)


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


def run_network(module, tiles: np.ndarray, device, *, normalize) -> np.ndarray:
    """Run ``module`` on a ``(b, 3, s, s)`` uint8 batch (``normalize`` maps uint8 to network input); float32 maps."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(tiles)).to(device)
        return module(normalize(x)).float().cpu().numpy()


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
) -> np.ndarray:
    """Mean predicted expression over each circle, from tiles whose core holds the circle's centre.

    Only tiles that contain spots are computed; the dense maps are never held for the whole image.
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
        tiles = np.stack(
            [
                read_tile(image, ty * grid.core - grid.halo, tx * grid.core - grid.halo, grid.input_px)
                for ty, tx in chunk
            ]
        )
        maps = run_network(module, tiles, device, normalize=normalize)
        for (ty, tx), dense in zip(chunk, maps, strict=True):
            sel = np.flatnonzero((tile_y == ty) & (tile_x == tx))
            local = centers[sel] - np.array([tx * grid.core - grid.halo, ty * grid.core - grid.halo])
            values, _ = aggregate_circles(dense, local, radii[sel], agg="mean")
            if out is None:
                out = np.empty((len(centers), dense.shape[0]), dtype=np.float32)
            out[sel] = values
    return out
