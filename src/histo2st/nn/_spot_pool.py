"""Differentiable spot pooling: predicted maps ``(B, C, H, W)`` to spot values ``(K, C)`` (PixNet Eq. 5)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from .._kernels._spans import circle_spans


def spot_pixel_index(shape: tuple[int, int, int], batch_index, centers, radii) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices of circles in a batch of ``(B, H, W)`` maps, with the same rule as the numba kernels.

    Pixel ``(i, j)`` of map ``b`` belongs to a spot of that map when its center ``(j + .5, i + .5)`` is within the
    spot's radius. Pixels outside the map are dropped (a spot cut by the crop edge keeps its pixels inside). Cheap
    enough to run in a data loader worker, so the training step only gathers.

    Parameters
    ----------
    shape
        ``(B, H, W)`` of the maps.
    batch_index
        ``(K,)`` map of each spot.
    centers, radii
        ``(K, 2)`` centers ``(x, y)`` and ``(K,)`` radii in the map's pixels.

    Returns
    -------
    pixels
        ``(P,)`` int64 flat indices into ``B * H * W``.
    spots
        ``(P,)`` int64 spot of each pixel.
    """
    n_maps, height, width = shape
    batch_index = np.asarray(batch_index, dtype=np.int64).reshape(-1)
    if batch_index.size and (batch_index.min() < 0 or batch_index.max() >= n_maps):
        raise ValueError(f"`batch_index` must be in [0, {n_maps}); got values in [{batch_index.min()}, "
                         f"{batch_index.max()}].")  # fmt: skip
    spans = circle_spans(centers, radii, height, width)
    if len(batch_index) != spans.n:
        raise ValueError(f"`batch_index` has {len(batch_index)} entries for {spans.n} spots.")
    rows = np.repeat(np.arange(height), np.diff(spans.row_ptr))
    lengths = (spans.stop - spans.start).astype(np.int64)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    spots = np.repeat(spans.spot.astype(np.int64), lengths)
    cols = np.repeat(spans.start.astype(np.int64), lengths) + within
    pixels = (batch_index[spots] * height + np.repeat(rows, lengths)) * width + cols
    return pixels, spots


def spot_pool(
    maps: torch.Tensor,
    batch_index=None,
    centers=None,
    radii=None,
    *,
    index: tuple[np.ndarray, np.ndarray] | None = None,
    n_spots: int | None = None,
    agg: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """Spot values from a batch of predicted maps, with gradients to the maps.

    Parameters
    ----------
    maps
        ``(B, C, H, W)`` predicted maps (any float dtype and device).
    batch_index, centers, radii
        Spots: map index ``(K,)``, centers ``(K, 2)`` ``(x, y)`` and radii ``(K,)`` in that map's pixels.
    index
        ``(pixels, spots)`` from :func:`spot_pixel_index`, instead of the spots (then pass ``n_spots``).
    n_spots
        Number of spots ``K`` when ``index`` is given.
    agg
        ``"mean"`` over the covered pixels (a spot covering none gets 0) or ``"sum"``.

    Returns
    -------
    ``(K, C)`` tensor in the maps' dtype; equals :func:`histo2st._kernels.aggregate_circles` on each map.
    """
    if maps.ndim != 4:
        raise ValueError(f"`maps` must be (B, C, H, W), got shape {tuple(maps.shape)}.")
    if agg not in ("mean", "sum"):
        raise ValueError(f"`agg` must be 'mean' or 'sum', got {agg!r}.")
    n_maps, n_channels, height, width = maps.shape
    if index is None:
        if centers is None or radii is None or batch_index is None:
            raise ValueError("Pass `batch_index`, `centers` and `radii`, or a precomputed `index` with `n_spots`.")
        index = spot_pixel_index((n_maps, height, width), batch_index, centers, radii)
        n_spots = len(np.asarray(radii).reshape(-1)) if np.ndim(radii) else len(np.asarray(centers).reshape(-1, 2))
    elif n_spots is None:
        raise ValueError("Pass `n_spots` together with `index`.")
    pixels = torch.as_tensor(index[0], dtype=torch.long, device=maps.device)
    spots = torch.as_tensor(index[1], dtype=torch.long, device=maps.device)
    flat = maps.permute(0, 2, 3, 1).reshape(-1, n_channels)
    out = flat.new_zeros((n_spots, n_channels)).index_add(0, spots, flat.index_select(0, pixels))
    if agg == "sum":
        return out
    counts = torch.bincount(spots, minlength=n_spots).clamp_min(1).to(out.dtype)
    return out / counts[:, None]
