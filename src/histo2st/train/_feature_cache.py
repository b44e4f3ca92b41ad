"""A frozen ViT encoder's output over whole training slides, computed once and read by every epoch's crops."""

from __future__ import annotations

import math

import numpy as np

from ._tiling import read_tile

#: Stride of the cached token map (that of :class:`~histo2st.nn.ViTEncoder`'s pyramid input).
TOKEN_STRIDE = 16


def slide_tokens(module, image: np.ndarray, *, margin: int, tile_px: int, batch_size: int = 8) -> np.ndarray:
    """The trunk output of ``module.encoder`` over ``image`` padded by ``margin`` white pixels, float16.

    ``(embed_dim, ceil((h + 2 margin) / tile_px) * tile_px / 16, ...)``: the padded image is cut into tiles of
    ``tile_px`` (a multiple of 16; the training crop, so each token saw as much context as a crop gives), each run
    through :meth:`~histo2st.nn.ViTEncoder.tokens` on the module's device. Token ``(i, j)`` covers pixels
    ``16 i - margin ... 16 (i + 1) - margin`` of ``image``.
    """
    import torch

    if tile_px % TOKEN_STRIDE or margin % TOKEN_STRIDE:
        raise ValueError(f"`tile_px` ({tile_px}) and `margin` ({margin}) must be multiples of {TOKEN_STRIDE}.")
    device = next(module.parameters()).device
    rows, cols = (math.ceil((n + 2 * margin) / tile_px) for n in image.shape[1:])
    per_tile = tile_px // TOKEN_STRIDE
    corners = [(i * tile_px, j * tile_px) for i in range(rows) for j in range(cols)]
    out = None
    with torch.no_grad():
        for start in range(0, len(corners), batch_size):
            batch = corners[start : start + batch_size]
            tiles = np.stack([read_tile(image, y - margin, x - margin, tile_px) for y, x in batch])
            tokens = module.encoder.tokens(module.normalize(torch.from_numpy(tiles).to(device))).cpu().numpy()
            if out is None:
                out = np.zeros((tokens.shape[1], rows * per_tile, cols * per_tile), dtype=np.float16)
            for (y, x), t in zip(batch, tokens, strict=True):
                out[
                    :,
                    y // TOKEN_STRIDE : y // TOKEN_STRIDE + per_tile,
                    x // TOKEN_STRIDE : x // TOKEN_STRIDE + per_tile,
                ] = t
    return out


def aligned_start(rng: np.random.Generator, low: float, high: float) -> int:
    """A random multiple of the token stride in ``[low, high]``, or the one nearest to the interval if it holds none.

    The interval is that of the crop corners that keep an anchor spot inside the crop.
    """
    first, last = math.ceil(low / TOKEN_STRIDE), math.floor(high / TOKEN_STRIDE)
    if first > last:
        return int(round((low + high) / 2 / TOKEN_STRIDE)) * TOKEN_STRIDE
    return int(rng.integers(first, last + 1)) * TOKEN_STRIDE
