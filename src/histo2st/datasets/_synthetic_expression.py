"""Expression of the synthetic tissue: cell-type profiles, per-cell variation and the dense truth map.

Units: a profile is an expression *density*, expected UMI per µm² of cell body at full capture (capture efficiency
1). The truth map holds expected UMI per pixel, density times pixel area, so summing it over any region gives the
expected UMI captured there at full capture, whatever the pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
import pandas as pd

from ._synthetic_cells import CELL_TYPES

#: Mean over cell types of the summed density of all genes (UMI per µm² of cell body at full capture).
TOTAL_DENSITY = 2.0
#: Density of a marker outside its own type, relative to its level in that type.
MARKER_LEAK = 0.01


def gene_roles(n_genes: int, n_cell_types: int) -> pd.DataFrame:
    """Role of each gene: ``marker`` of one type, ``shared`` by a few types, or ``housekeeping``.

    Genes are named ``GENE00``, ``GENE01``, ... in the order markers (grouped by type, in type order), shared,
    housekeeping. Returns a frame indexed by gene name with columns ``role`` and ``marker_of`` (type name or "").
    """
    n_housekeeping = max(1, round(n_genes / 8)) if n_genes > n_cell_types else 0
    per_type = max(1, round((n_genes - n_housekeeping) / (2 * n_cell_types)))
    per_type = min(per_type, (n_genes - n_housekeeping) // n_cell_types)
    n_shared = n_genes - n_housekeeping - per_type * n_cell_types
    width = max(2, len(str(n_genes - 1)))
    names = [f"GENE{i:0{width}d}" for i in range(n_genes)]
    roles = ["marker"] * (per_type * n_cell_types) + ["shared"] * n_shared + ["housekeeping"] * n_housekeeping
    marker_of = [CELL_TYPES[i // per_type].name for i in range(per_type * n_cell_types)]
    marker_of += [""] * (n_shared + n_housekeeping)
    return pd.DataFrame({"role": roles, "marker_of": marker_of}, index=pd.Index(names))


def make_profiles(rng: np.random.Generator, genes: pd.DataFrame, n_cell_types: int) -> np.ndarray:
    """``(n_cell_types, n_genes)`` expression densities (UMI / µm² at full capture) following ``genes["role"]``.

    Markers are high in their type and leak at ``MARKER_LEAK`` of that level elsewhere; each shared gene is
    expressed at graded levels by 2-3 types and low elsewhere; housekeeping genes are similar in every type. Each
    type is then scaled by its relative RNA content, and the whole matrix so that the mean over types of the summed
    density is ``TOTAL_DENSITY``.
    """
    n_genes = len(genes)
    profiles = np.zeros((n_cell_types, n_genes))
    type_index = {ct.name: i for i, ct in enumerate(CELL_TYPES[:n_cell_types])}
    for g, (role, owner) in enumerate(zip(genes["role"], genes["marker_of"], strict=True)):
        if role == "marker":
            level = rng.lognormal(np.log(0.15), 0.4)
            profiles[:, g] = MARKER_LEAK * level
            profiles[type_index[owner], g] = level
        elif role == "shared":
            k = rng.integers(2, min(3, n_cell_types) + 1)
            members = rng.choice(n_cell_types, size=k, replace=False)
            profiles[:, g] = 0.05 * rng.lognormal(np.log(0.06), 0.5)
            profiles[members, g] = rng.lognormal(np.log(0.06), 0.5) * rng.uniform(0.3, 1.0, k)
        else:
            profiles[:, g] = rng.lognormal(np.log(0.08), 0.3) * rng.lognormal(0, 0.15, n_cell_types)
    profiles *= np.array([ct.rna for ct in CELL_TYPES[:n_cell_types]])[:, None]
    return profiles * (TOTAL_DENSITY / profiles.sum(axis=1).mean())


def cell_expression(rng: np.random.Generator, profiles: np.ndarray, kind: np.ndarray, noise: float) -> np.ndarray:
    """``(n_cells + 1, n_genes)`` float32 density of every cell; row 0 (label 0, no cell) is zero.

    Cell-to-cell variation is log-normal with standard deviation ``noise`` of the log, mean-preserving.
    """
    base = profiles[kind]
    factor = np.exp(noise * rng.standard_normal(base.shape) - noise**2 / 2)
    return np.concatenate([np.zeros((1, profiles.shape[1])), base * factor]).astype(np.float32)


@dataclass
class LabelMap:
    """A per-label table painted onto the label image, one channel per column, made chunk by chunk on demand.

    The truth map is ``LabelMap(labels, expression * pixel area)``: never held whole in memory, it is aggregated a
    few genes at a time and stored in the SpatialData as a lazy dask image with the same values.
    """

    labels: np.ndarray  #: (H, W) int32 labels, 0 = no cell
    table: np.ndarray  #: (channels, n_labels + 1) float32, column 0 for label 0

    @property
    def n_channels(self) -> int:
        return self.table.shape[0]

    def channels(self, start: int, stop: int) -> np.ndarray:
        """``(stop - start, H, W)`` float32 array of channels ``start:stop``."""
        return _paint(self.labels, self.table[start:stop])

    def aggregate(self, reduce, chunk: int = 8) -> np.ndarray:
        """Apply ``reduce`` (``(C, H, W)`` -> ``(n, C)``) to chunks of channels and join the results column-wise."""
        parts = [self.channels(g, min(g + chunk, self.n_channels)) for g in range(0, self.n_channels, chunk)]
        return np.hstack([reduce(part) for part in parts])

    def to_dask(self, labels: da.Array, chunk: int = 8) -> da.Array:
        """Lazy ``(channels, H, W)`` dask array painted from the dask ``labels`` (same values as :meth:`channels`)."""
        blocks = [
            labels.map_blocks(
                _paint,
                self.table[g : g + chunk],
                new_axis=0,
                chunks=((min(chunk, self.n_channels - g),), *labels.chunks),
                dtype=np.float32,
                meta=np.empty((0, 0, 0), dtype=np.float32),
            )
            for g in range(0, self.n_channels, chunk)
        ]
        return da.concatenate(blocks, axis=0)


def _paint(labels: np.ndarray, table: np.ndarray) -> np.ndarray:
    # mode="clip" avoids the buffered output of the default mode; labels are valid by construction
    return np.take(table, labels, axis=1, mode="clip")


def truth_map(labels: np.ndarray, expression: np.ndarray, microns_per_pixel: float) -> LabelMap:
    """Dense ``(n_genes, H, W)`` truth, expected UMI per pixel at full capture, as a :class:`LabelMap`."""
    per_pixel = (expression * np.float32(microns_per_pixel**2)).T
    return LabelMap(labels, np.ascontiguousarray(per_pixel, dtype=np.float32))
