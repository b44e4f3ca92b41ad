"""``st.datasets.synthetic_tissue``: an H&E-like tissue with dense ground-truth expression, spots and bins."""

from __future__ import annotations

import time
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import pandas as pd

from .._constants import CELLS_KEY, CELLS_TABLE_KEY, EXPECTED_LAYER, TRUTH_KEY, VISIUM_PITCH_UM, VISIUM_SPOT_UM
from .._core import SpatialScale, build_sample
from .._logging import log_added
from .._settings import settings
from ._synthetic_bins import sample_bins
from ._synthetic_cells import BACKGROUND, CELL_TYPES, REGIONS, make_layout
from ._synthetic_context import context_factors, context_features, context_weights
from ._synthetic_elements import bins_elements, cells_elements, labels_array, truth_element
from ._synthetic_expression import LabelMap, cell_expression, gene_roles, make_profiles, truth_map
from ._synthetic_render import rasterize, to_rgb
from ._synthetic_spots import hex_spot_grid, measure_spots

MPP_RANGE = (0.1, 4.0)
#: Refuse truth maps above this size in bytes (n_genes x pixels x 4); the maps are built in memory.
MAX_TRUTH_BYTES = 8 * 2**30
CELL_TYPE_FRACTION_KEY = "cell_type_fraction"
CONTEXT_WEIGHTS_KEY = "context_weights"
PROFILE_KEY = "cell_type_profile"


def synthetic_tissue(
    *,
    size_um: float | tuple[float, float] = 2000.0,
    microns_per_pixel: float = 1.0,
    spot_diameter_um: float = VISIUM_SPOT_UM,
    spot_pitch_um: float = VISIUM_PITCH_UM,
    n_genes: int = 32,
    n_cell_types: int = 5,
    noise: float = 0.3,
    context: float = 0.0,
    capture_efficiency: float = 0.3,
    bins_um: Sequence[int] | None = None,
    seed: int | None = None,
    sample: str = "synthetic",
):
    """Generate a synthetic H&E tissue with dense ground-truth expression, Visium-like spots and optional bins.

    The tissue has regions (tumor nests, collagen stroma with fibers, immune aggregates, glands, fat, glass) made
    of cells whose type sets the nucleus size, shape, hematoxylin and chromatin, the cytoplasm, the density and the
    arrangement (sheets, rings, aggregates, cells along fibers). It is rendered in optical density with hematoxylin
    and eosin stain vectors. Each cell type has an expression profile over ``n_genes`` genes (markers, genes shared
    by a few types, housekeeping genes) attached to the cell bodies, so expression follows the morphology. See the
    docs page "Synthetic tissue" for the model.

    Parameters
    ----------
    size_um
        Side of the square field of view in µm, or ``(height, width)`` in µm.
    microns_per_pixel
        Pixel size in µm, between 0.1 and 4. At the default 1.0 a lymphocyte nucleus is about 6 px wide.
    spot_diameter_um, spot_pitch_um
        Diameter and center-to-center distance of the measured spots (Visium: 55 and 100 µm).
    n_genes
        Number of genes, at least ``n_cell_types`` (every type gets a marker).
    n_cell_types
        Number of cell types, 2-8, taken in the order tumor, fibroblast, lymphocyte, epithelial (glands), adipocyte
        (fat), macrophage, endothelial (vessels), plasma cell. Regions whose cell type is left out become stroma.
    noise
        Cell-to-cell expression variation: standard deviation of the log of a mean-preserving log-normal factor.
    context
        How much expression depends on where a cell sits, beyond its type: the standard deviation of the log of a
        factor set by the cell's tumor depth, distance to the tissue edge, immune neighborhood over about 100 µm and
        hypoxic-core state (natural-log units; 0 = expression follows cell type only, 1 = a gene varies about
        2.7-fold with its context at a fixed type). A spot-sized color patch shows little of these features, so
        with ``context > 0`` a model must see the surroundings to predict them. See ``_synthetic_context``.
    capture_efficiency
        Fraction of the truth's molecules that are counted, in (0, 1]; counts are Poisson with mean
        ``capture_efficiency`` times the truth summed over the spot or bin.
    bins_um
        Visium HD-style square bin sizes in whole µm, e.g. ``(2, 8, 16)``; each a multiple of the smallest. Counts
        are drawn at the smallest size and summed into the larger ones. ``None`` makes no bins.
    seed
        Random seed; ``None`` uses ``st.settings.seed``. Layout, rendering, expression, spot counts and bin counts
        use independent streams, so asking for bins does not change the spots.
    sample
        Sample name stored in ``sdata.attrs["histo2st"]["sample"]``.

    Returns
    -------
    :class:`spatialdata.SpatialData` in the histo2st conventions, every element with an Identity to ``"global"``
    (pixels) and a Scale to ``"microns"``, holding:

    ``images["he"]``
        The H&E image, (c=3, y, x) uint8.
    ``images["truth"]``
        Expected UMI per pixel at full capture (capture efficiency 1), (c=genes, y, x) float32 with channel names =
        gene names.
    ``shapes["spots"]`` and ``tables["table"]``
        Spots whose area is at least half over tissue; ``X`` and ``layers["counts"]`` the sampled counts,
        ``layers["expected"]`` their Poisson means, ``obsm["spatial"]``, ``obs["array_row"/"array_col"]`` (Visium
        convention), ``obsm["cell_type_fraction"]`` (fraction of each spot covered by each type's cell bodies),
        ``var["role"/"marker_of"]``, ``varm["cell_type_profile"]`` (UMI per µm² of cell body at full capture) and
        ``varm["context_weights"]`` (each gene's weights on the context features; they apply when ``context > 0``).
    ``labels["cells"]`` and ``tables["table_cells"]``
        Cell bodies, with ``obs["cell_type"]``, centers, ``obsm["context"]`` (the cell's standardized context
        features) and, as ``X``, each cell's expression density.
    ``shapes["bins_{size:03d}um"]`` and ``tables["table_{size:03d}um"]``
        For each size in ``bins_um``: squares with ``layers["counts"]``, ``layers["expected"]``, ``obsm["spatial"]``
        (bin centers) and the grid position in ``obs["array_row"/"array_col"]``.
    ``attrs["histo2st"]``
        The scale (``mpp_source="given"``) and, under ``"synthetic"``, these parameters, the cell-type and region
        names and the truth units.
    """
    start = time.perf_counter()
    seed = settings.seed if seed is None else seed
    height_um, width_um = _check_params(
        size_um, microns_per_pixel, spot_diameter_um, spot_pitch_um, n_genes, n_cell_types, noise,
        capture_efficiency, bins_um, seed, context,
    )  # fmt: skip
    mpp = float(microns_per_pixel)
    shape = (int(round(height_um / mpp)), int(round(width_um / mpp)))
    # the context stream is the sixth child: the first five are those of a tissue without context
    rng_layout, rng_render, rng_expr, rng_spots, rng_bins, rng_context = map(
        np.random.default_rng, np.random.SeedSequence(seed).spawn(6)
    )

    layout = make_layout(rng_layout, shape, mpp, n_cell_types)
    raster = rasterize(layout, mpp, rng_render)
    rgb = to_rgb(raster, mpp, rng_render)
    genes = gene_roles(n_genes, n_cell_types)
    profiles = make_profiles(rng_expr, genes, n_cell_types)
    expression, features, weights = _expression(rng_expr, rng_context, profiles, genes, layout, mpp, noise, context)
    truth = truth_map(raster.labels, expression, mpp)

    onehot = np.arange(n_cell_types)[:, None] == np.concatenate([[-1], layout.cells.kind])[None, :]
    xy, array_coords = hex_spot_grid(shape, mpp, spot_pitch_um, spot_diameter_um)
    spots = measure_spots(
        rng_spots,
        truth,
        layout.regions != BACKGROUND,
        LabelMap(raster.labels, onehot.astype(np.float32)),
        xy,
        array_coords,
        spot_diameter_um / 2 / mpp,
        capture_efficiency,
    )
    if len(spots.xy) == 0:
        raise ValueError(
            f"No spot lies over tissue in this {height_um:g} x {width_um:g} µm field; increase `size_um` (at least a "
            f"few times `spot_pitch_um`={spot_pitch_um:g}) or change `seed`."
        )

    type_names = [ct.name for ct in CELL_TYPES[:n_cell_types]]
    params = {
        "size_um": [height_um, width_um],
        "microns_per_pixel": mpp,
        **_floats(spot_diameter_um=spot_diameter_um, spot_pitch_um=spot_pitch_um, noise=noise, context=context,
                  capture_efficiency=capture_efficiency),
        **{k: int(v) for k, v in (("n_genes", n_genes), ("n_cell_types", n_cell_types), ("seed", seed))},
        "bins_um": sorted(int(b) for b in bins_um) if bins_um else [],
        "cell_types": type_names,
        "regions": list(REGIONS),
        "truth_units": "expected UMI per pixel at capture efficiency 1",
    }  # fmt: skip
    scale = SpatialScale(microns_per_pixel=mpp, spot_diameter_um=float(spot_diameter_um),
                         spot_pitch_um=float(spot_pitch_um), mpp_source="given", sample=str(sample))  # fmt: skip
    sdata = build_sample(
        rgb,
        spots.xy,
        spots.counts,
        list(genes.index),
        scale=scale,
        spot_names=[f"spot_{r:03d}x{c:03d}" for r, c in spots.array_coords],
        array_coords=spots.array_coords,
        extra_attrs={"synthetic": params},
    )
    _describe_spots(sdata.tables[scale.table_key], genes, profiles, weights, spots, type_names)
    labels = labels_array(raster.labels)
    sdata.images[TRUTH_KEY] = truth_element(truth, labels, genes.index, mpp)
    cell_areas = np.bincount(raster.labels.ravel(), minlength=len(layout.cells) + 1)
    sdata.labels[CELLS_KEY], sdata.tables[CELLS_TABLE_KEY] = cells_elements(
        labels, cell_areas, layout.cells, type_names, expression, genes, mpp, context=features
    )
    added = [f"images/{scale.image_key}", f"images/{TRUTH_KEY}", f"shapes/{scale.shapes_key}"]
    added += [f"tables/{scale.table_key}", f"labels/{CELLS_KEY}", f"tables/{CELLS_TABLE_KEY}"]
    if bins_um:
        added += _add_bins(sdata, rng_bins, truth, mpp, bins_um, capture_efficiency, genes)
    log_added("SpatialData", added, start)
    return sdata


def _expression(rng_expr, rng_context, profiles, genes, layout, mpp: float, noise: float, context: float):
    """Every cell's expression (row 0: no cell), its standardized context features, and the genes' context weights."""
    expression = cell_expression(rng_expr, profiles, layout.cells.kind, noise)
    features = context_features(layout, mpp)
    weights = context_weights(rng_context, genes)
    if context > 0:
        expression[1:] *= context_factors(features, weights, context, layout.cells.kind).astype(np.float32)
    return expression, features, weights


def _floats(**values) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}


def _describe_spots(table, genes: pd.DataFrame, profiles: np.ndarray, weights: pd.DataFrame, spots,
                    type_names: list[str]) -> None:  # fmt: skip
    """The measured table's gene roles, type profiles, context weights, noise-free counts and cell-type mix."""
    table.varm[CONTEXT_WEIGHTS_KEY] = weights
    for column in genes.columns:
        table.var[column] = genes[column].to_numpy()
    table.varm[PROFILE_KEY] = pd.DataFrame(profiles.T, index=table.var_names, columns=type_names)
    table.layers[EXPECTED_LAYER] = spots.expected.astype(np.float32)
    table.obsm[CELL_TYPE_FRACTION_KEY] = pd.DataFrame(
        spots.cell_type_fraction, index=table.obs_names, columns=type_names
    )


def _add_bins(sdata, rng, truth, mpp: float, bins_um, capture_efficiency: float, genes) -> list[str]:
    """Visium HD-style square bins of each size, counted from the truth; returns the elements added."""
    added = []
    for grid in sample_bins(rng, truth, mpp, tuple(int(b) for b in bins_um), capture_efficiency).values():
        shapes_key, shapes, table_key, bin_table = bins_elements(grid, genes, mpp)
        sdata.shapes[shapes_key], sdata.tables[table_key] = shapes, bin_table
        added += [f"shapes/{shapes_key}", f"tables/{table_key}"]
    return added


def _check_params(
    size_um, mpp, spot_diameter_um, spot_pitch_um, n_genes, n_cell_types, noise, capture_efficiency, bins_um, seed,
    context,
) -> tuple[float, float]:  # fmt: skip
    """Validate the parameters of :func:`synthetic_tissue`; return ``(height_um, width_um)``."""

    def positive(name: str, value) -> float:
        if not isinstance(value, Real) or isinstance(value, bool) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"`{name}` must be a positive number, got {value!r}.")
        return float(value)

    sizes = (size_um, size_um) if isinstance(size_um, Real) else tuple(size_um)
    if len(sizes) != 2:
        raise ValueError(f"`size_um` must be a number or (height, width) in µm, got {size_um!r}.")
    height_um, width_um = (positive("size_um", s) for s in sizes)
    mpp = positive("microns_per_pixel", mpp)
    if not MPP_RANGE[0] <= mpp <= MPP_RANGE[1]:
        raise ValueError(
            f"`microns_per_pixel` must be within {MPP_RANGE} µm, got {mpp}; below that the image is needlessly large, "
            "above it nuclei are smaller than a pixel."
        )
    diameter = positive("spot_diameter_um", spot_diameter_um)
    pitch = positive("spot_pitch_um", spot_pitch_um)
    if pitch < diameter:
        raise ValueError(
            f"`spot_pitch_um`={pitch:g} is smaller than `spot_diameter_um`={diameter:g}: spots would overlap. "
            "The pitch is the center-to-center distance (Visium: 55 µm spots on a 100 µm pitch)."
        )
    if min(height_um, width_um) < diameter:
        raise ValueError(f"`size_um`={size_um!r} is smaller than one spot ({diameter:g} µm); make the field larger.")
    if not isinstance(n_cell_types, Integral) or not 2 <= n_cell_types <= len(CELL_TYPES):
        raise ValueError(f"`n_cell_types` must be an integer from 2 to {len(CELL_TYPES)}, got {n_cell_types!r}.")
    if not isinstance(n_genes, Integral) or n_genes < n_cell_types:
        raise ValueError(
            f"`n_genes` must be an integer >= `n_cell_types` ({n_cell_types}) so every type has a marker gene, "
            f"got {n_genes!r}."
        )
    if not isinstance(noise, Real) or not np.isfinite(noise) or noise < 0:
        raise ValueError(f"`noise` must be a finite number >= 0 (0 = identical cells of a type), got {noise!r}.")
    if not isinstance(context, Real) or isinstance(context, bool) or not np.isfinite(context) or context < 0:
        raise ValueError(
            f"`context` must be a finite number >= 0 (0 = expression follows cell type only), got {context!r}."
        )
    capture = positive("capture_efficiency", capture_efficiency)
    if capture > 1:
        raise ValueError(f"`capture_efficiency` is a fraction of molecules, in (0, 1]; got {capture}.")
    if not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer or None (use `st.settings.seed`), got {seed!r}.")
    n_bytes = 4 * n_genes * (height_um / mpp) * (width_um / mpp)
    if n_bytes > MAX_TRUTH_BYTES:
        raise ValueError(
            f"The truth map would take {n_bytes / 2**30:.1f} GiB (n_genes x pixels x 4 bytes), above "
            f"{MAX_TRUTH_BYTES / 2**30:.0f} GiB; reduce `size_um` or `n_genes`, or raise `microns_per_pixel`."
        )
    if bins_um is not None:
        _check_bins(bins_um, min(height_um, width_um))
    return height_um, width_um


def _check_bins(bins_um, min_side_um: float) -> None:
    bins = list(bins_um) if not isinstance(bins_um, str | bytes) and np.iterable(bins_um) else [bins_um]
    if not bins or any(not isinstance(b, Integral) or isinstance(b, bool) or b < 1 for b in bins):
        raise ValueError(f"`bins_um` must be positive whole µm, e.g. (2, 8, 16), or None; got {bins_um!r}.")
    if len(set(bins)) != len(bins):
        raise ValueError(f"`bins_um` has repeated sizes: {bins_um!r}.")
    finest = min(bins)
    if any(b % finest for b in bins):
        raise ValueError(
            f"Every bin size must be a multiple of the smallest ({finest} µm) so the larger bins are sums of whole "
            f"small bins; got {bins_um!r}."
        )
    if max(bins) > min_side_um:
        raise ValueError(f"The largest bin ({max(bins)} µm) does not fit in the {min_side_um:g} µm field.")
