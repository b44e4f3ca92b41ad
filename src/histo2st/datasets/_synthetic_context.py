"""Context in the synthetic tissue: expression that depends on where a cell sits, not only on its type.

In real tissue the same-looking cell expresses differently by its surroundings: deep in a tumor nest (hypoxia),
near the tissue edge, in an immune-rich neighborhood. A color patch the size of a spot sees the cell but little of
that context; a model with a wide field of view can. Each cell gets four context features, computed from the layout
on a 4 µm grid, chosen so that a 55 µm patch shows little of them at a fixed cell type and a field of a few hundred
µm shows more (measured by ``benchmarks/context_visibility.py``, see the docs page "Synthetic tissue"):

``tumor_depth``
    ``tanh`` of the signed distance to the nearest tumor border over 150 µm: -1 deep inside a nest, +1 far outside.
``tissue_edge``
    ``exp(-d / 200 µm)`` of the distance ``d`` to the glass around the tissue.
``immune_neighborhood``
    Fraction of lymphocytes among the cells around it (Gaussian weights, σ = 100 µm: beyond a spot, so the spot's
    own share of small dark nuclei says little of it).
``hypoxic_core``
    1 for a tumor cell more than 80 µm inside its nest, else 0: a cell state that looks like any tumor cell, and
    whose patch, all tumor, looks like that of a tumor cell 30 µm from the border.

Each feature is standardized over the cells. Every marker and shared gene responds to one or two features with
weights of unit norm; housekeeping genes respond to none. A cell's expression is its type's profile times its
per-cell noise times ``exp(context * w · z)``, rescaled to a mean of 1 over the cells of each type. ``context`` is
thus the standard deviation of the log of the context factor, in natural-log units, at a fixed cell type.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from ._synthetic_cells import BACKGROUND, LYMPH_T, TUMOR, TUMOR_T, Layout

CONTEXT_FEATURES = ("tumor_depth", "tissue_edge", "immune_neighborhood", "hypoxic_core")
#: Grid (µm) the context maps are computed on: the features vary over tens to hundreds of µm.
GRID_UM = 4.0
TUMOR_DEPTH_UM = 150.0
TISSUE_EDGE_UM = 200.0
NEIGHBORHOOD_UM = 100.0
HYPOXIA_UM = 80.0


def context_features(layout: Layout, mpp: float) -> np.ndarray:
    """``(n_cells, 4)`` standardized context features of every cell (columns :data:`CONTEXT_FEATURES`)."""
    step = max(int(round(GRID_UM / mpp)), 1)
    grid_um = step * mpp
    coarse = layout.regions[::step, ::step]
    cells = layout.cells
    i = np.clip((cells.y / grid_um).astype(int), 0, coarse.shape[0] - 1)
    j = np.clip((cells.x / grid_um).astype(int), 0, coarse.shape[1] - 1)

    in_tumor = coarse == TUMOR
    if in_tumor.any() and not in_tumor.all():
        signed = ndimage.distance_transform_edt(~in_tumor, sampling=grid_um)
        signed -= ndimage.distance_transform_edt(in_tumor, sampling=grid_um)
    else:
        signed = np.full(coarse.shape, np.inf if not in_tumor.any() else -np.inf)
    depth = np.tanh(signed[i, j] / TUMOR_DEPTH_UM)
    glass = coarse == BACKGROUND
    edge_distance = (
        ndimage.distance_transform_edt(~glass, sampling=grid_um) if glass.any() else np.full(coarse.shape, np.inf)
    )
    edge = np.exp(-edge_distance[i, j] / TISSUE_EDGE_UM)
    immune = _neighbor_fraction(cells.kind == LYMPH_T, i, j, coarse.shape, NEIGHBORHOOD_UM / grid_um)
    hypoxic = ((cells.kind == TUMOR_T) & (-signed[i, j] > HYPOXIA_UM)).astype(float)
    return _standardize(np.column_stack([depth, edge, immune, hypoxic]))


def context_weights(rng: np.random.Generator, genes: pd.DataFrame) -> pd.DataFrame:
    """``(n_genes, 4)`` weights: one or two features per marker or shared gene (unit norm), none for housekeeping."""
    weights = np.zeros((len(genes), len(CONTEXT_FEATURES)))
    for g, role in enumerate(genes["role"]):
        if role == "housekeeping":
            continue
        chosen = rng.choice(len(CONTEXT_FEATURES), size=rng.integers(1, 3), replace=False)
        w = rng.standard_normal(len(chosen))
        weights[g, chosen] = w / np.linalg.norm(w)
    return pd.DataFrame(weights, index=genes.index, columns=list(CONTEXT_FEATURES))


def context_factors(features: np.ndarray, weights: pd.DataFrame, context: float, kind: np.ndarray) -> np.ndarray:
    """``(n_cells, n_genes)`` multiplicative factors ``exp(context * w · z)``, of mean 1 over the cells of each type.

    So a type's profile stays its mean expression, and the context moves expression between cells of one type.
    """
    factors = np.exp(context * features @ weights.to_numpy().T)
    for k in np.unique(kind):
        factors[kind == k] /= factors[kind == k].mean(axis=0, keepdims=True)
    return factors


def _neighbor_fraction(is_kind: np.ndarray, i: np.ndarray, j: np.ndarray, shape, sigma_px: float) -> np.ndarray:
    """Fraction of cells of a kind among the cells near each cell (Gaussian-weighted counts on the grid)."""
    counts = np.zeros(shape)
    kind_counts = np.zeros(shape)
    np.add.at(counts, (i, j), 1.0)
    np.add.at(kind_counts, (i, j), is_kind.astype(float))
    near = ndimage.gaussian_filter(counts, sigma_px)
    near_kind = ndimage.gaussian_filter(kind_counts, sigma_px)
    return near_kind[i, j] / np.maximum(near[i, j], 1e-12)


def _standardize(x: np.ndarray) -> np.ndarray:
    std = x.std(axis=0, keepdims=True)
    return np.where(std > 0, (x - x.mean(axis=0, keepdims=True)) / np.where(std > 0, std, 1.0), 0.0)
