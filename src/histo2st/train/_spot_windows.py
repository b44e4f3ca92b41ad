"""Spot windows for THItoGene: patches around spot centers, grid coordinates, and prediction window by window.

THItoGene's attention and graph span every spot the network sees at once, so cost grows with the square of the
spots. Prediction therefore runs over spatially compact windows of at most ``window_spots`` points: the points to
predict are split into square cores (a quadtree, at most half a window each) and each core's window is the core
plus its nearest other points as context. Every point is predicted once, by the window built around its core
(nearest-window-center assignment, no blending), with at least half a window of neighbors as context.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.spatial import cKDTree

from ._tiling import read_tile

#: Neighbors per spot in THItoGene's graph (paper: 4 nearest by Euclidean distance).
GRAPH_K = 4


def grid_coordinates(centers_um: np.ndarray, pitch_um: float) -> np.ndarray:
    """Integer grid coordinates ``(x, y)`` of spot centers: ``round(center_um / pitch_um)``.

    On a square lattice (legacy ST, her2st) these are the array coordinates; on a hexagonal one (Visium) spots of
    neighboring rows can share a coordinate, and then share a position embedding.
    """
    return np.rint(np.asarray(centers_um, dtype=np.float64) / pitch_um).astype(np.int64)


def cut_patches(image, centers_px: np.ndarray, patch_px: int) -> np.ndarray:
    """``(n, 3, p, p)`` uint8 patches centered on ``centers_px`` (``(x, y)`` in pixels of ``image``), white outside.

    ``image`` may be a numpy or dask ``(3, h, w)`` array; the box around all centers is read once.
    """
    centers_px = np.asarray(centers_px, dtype=np.float64)
    if len(centers_px) == 0:
        return np.empty((0, 3, patch_px, patch_px), dtype=np.uint8)
    # a patch [x0, x0 + p) is centered on cx when x0 = cx - p / 2, rounded to the pixel grid
    origins = np.rint(centers_px - patch_px / 2).astype(np.int64)
    lo = origins.min(0)
    side = int((origins.max(0) - lo).max()) + patch_px
    region = read_tile(image, int(lo[1]), int(lo[0]), side)
    local = origins - lo
    return np.stack([region[:, y : y + patch_px, x : x + patch_px] for x, y in local])


def window_grid(grid_xy: np.ndarray) -> np.ndarray:
    """A window's grid coordinates shifted to start at 0 (the position tables clip what lies past their end)."""
    return grid_xy - grid_xy.min(0)


def prediction_windows(xy: np.ndarray, predict: np.ndarray, window_spots: int):
    """Yield ``(window, core)``: indices into ``xy`` of one window and of the points it predicts.

    Parameters
    ----------
    xy
        ``(n, 2)`` coordinates of every point (those to predict and context-only points).
    predict
        Indices of the points to predict; each appears in exactly one ``core``.
    window_spots
        Most points per window; cores hold at most half of it, the rest is the nearest context.
    """
    tree = cKDTree(xy)
    k = min(window_spots, len(xy))
    for core in _quadtree_cores(xy, np.asarray(predict), max(1, window_spots // 2)):
        center = (xy[core].min(0) + xy[core].max(0)) / 2
        _, near = tree.query(center, k=k)
        near = np.atleast_1d(near)
        window = np.concatenate([core, near[~np.isin(near, core)]])[:window_spots]
        yield window, core


def _quadtree_cores(xy: np.ndarray, idx: np.ndarray, cap: int) -> list[np.ndarray]:
    """Split the points ``idx`` into spatially compact groups of at most ``cap`` (quadrants of their bounding box)."""
    cores, stack = [], [idx]
    while stack:
        part = stack.pop()
        if len(part) <= cap:
            if len(part):
                cores.append(part)
            continue
        pts = xy[part]
        mid = (pts.min(0) + pts.max(0)) / 2
        quadrant = (pts[:, 0] > mid[0]).astype(int) + 2 * (pts[:, 1] > mid[1])
        children = [part[quadrant == q] for q in range(4) if (quadrant == q).any()]
        if len(children) == 1:  # coincident points cannot be split in space
            children = [part[i : i + cap] for i in range(0, len(part), cap)]
        stack.extend(children)
    return cores


def predict_windows(
    module,
    image,
    centers_px: np.ndarray,
    grid_xy: np.ndarray,
    predict: np.ndarray,
    *,
    window_spots: int,
    device,
    tta: int = 1,
) -> np.ndarray:
    """THItoGene predictions ``(len(predict), genes)`` at the points ``predict``, window by window, in eval mode.

    Parameters
    ----------
    module
        A :class:`~histo2st.module.THItoGeneModule` (put in eval mode by the caller).
    image
        ``(3, h, w)`` H&E (numpy or dask) at the module's resolution.
    centers_px
        ``(n, 2)`` centers ``(x, y)`` in pixels of ``image`` of every point, context included.
    grid_xy
        ``(n, 2)`` integer grid coordinates of every point.
    predict
        Indices of the points to predict.
    window_spots
        Most points per window (bounds memory: a window's patches and its ``(window_spots, window_spots)``
        attention).
    device
        Torch device.
    tta
        Each point's prediction is the mean over that many rotations and mirror images of every patch of its window
        (see :func:`histo2st.nn.dihedral_mean`); positions and graph stay.
    """
    import torch

    from ..nn import dihedral_mean

    predict = np.asarray(predict)
    out = np.empty((len(predict), module.n_genes), dtype=np.float32)
    position = np.full(len(centers_px), -1)
    position[predict] = np.arange(len(predict))
    with torch.no_grad():
        for window, core in prediction_windows(centers_px, predict, window_spots):
            patches = torch.from_numpy(cut_patches(image, centers_px[window], module.patch_px)).to(device)
            grid = torch.from_numpy(window_grid(grid_xy[window])).to(device)
            adjacency = _adjacency(centers_px[window], device)
            forward = functools.partial(_forward_window, module, grid, adjacency)
            pred = dihedral_mean(forward, patches.float().div_(255), n=tta, dense=False).cpu().numpy()
            out[position[core]] = pred[: len(core)]
    return out


def _forward_window(module, grid, adjacency, patches):
    return module(patches, grid, adjacency)


def _adjacency(centers: np.ndarray, device):
    import torch

    from ..nn import knn_adjacency

    return knn_adjacency(torch.from_numpy(np.asarray(centers, dtype=np.float32)).to(device), k=GRAPH_K)
