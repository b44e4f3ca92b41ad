"""Library-size normalization and log1p of the spot tables, always recomputed from the raw counts."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .._constants import ATTRS_KEY, COUNTS_LAYER
from .._core import spot_table_keys
from .._core._zarr import write_to_store
from .._logging import log_added, logger
from ._tables import histo2st_uns, samples_for_update, subset_spots

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from spatialdata import SpatialData


def normalize(
    sdata: SpatialData | Sequence[SpatialData] | Mapping[str, SpatialData],
    *,
    target_sum: float | None = 1e4,
    log: bool = True,
    table_key: str | None = None,
    copy: bool = False,
):
    """Normalize each spot to ``target_sum`` total counts over all genes, then ``log1p``.

    ``X`` is always recomputed from the raw counts in ``layers["counts"]``, which are never modified, so calling the
    function again (for example with another ``target_sum``) gives the same result as calling it once, never a
    doubly logged matrix. Spots without any count cannot be normalized: they are removed from the table and from the
    shapes it annotates, with a warning giving their number. Uses :func:`scanpy.pp.normalize_total` and
    :func:`scanpy.pp.log1p`.

    Parameters
    ----------
    sdata
        One sample (:class:`spatialdata.SpatialData`), or several as a dict ``{name: sdata}`` or a list.
    target_sum
        Total counts of every spot after normalization; ``None`` uses the median library size of each sample.
    log
        Apply ``log1p`` (natural logarithm) after scaling.
    table_key
        Table to normalize; default is the sample's spot table (``attrs["histo2st"]["table_key"]``).
    copy
        Return normalized copies instead of modifying ``sdata``.

    Returns
    -------
    None or the copies
        ``None``, or with ``copy=True`` the normalized copies, in the form ``sdata`` was given. In each sample's table:
    ``table.X``
        Normalized (and log1p-transformed) expression, float32, same sparsity as ``layers["counts"]``.
    ``table.obs["total_counts"]``
        Library size over all genes, from ``layers["counts"]``.
    ``table.uns["histo2st"]["normalize"]``
        The parameters (``target_sum``, ``log``, ``layer``) and ``n_spots_removed``.
    ``table.uns["log1p"]``
        Written by :func:`scanpy.pp.log1p` when ``log=True``.

    Raises
    ------
    ValueError
        If raw counts are missing, negative or not finite, if the table was already restricted to selected genes
        (library sizes must be taken over all genes), or if every spot of a sample is empty.
    """
    import scanpy as sc

    if target_sum is not None and not (np.isfinite(target_sum) and target_sum > 0):
        raise ValueError(f"`target_sum` must be a positive number or None (median library size), got {target_sum!r}.")
    start = time.perf_counter()
    samples, result = samples_for_update(sdata, copy)
    for name, sdata in samples.items():
        key, shapes_key = spot_table_keys(sdata, name, table_key)
        table = sdata.tables[key]
        counts = _raw_counts(table, name, key)
        selection = table.uns.get(ATTRS_KEY, {}).get("select_genes", {})
        if selection.get("subset"):
            raise ValueError(
                f"Table '{key}' of sample '{name}' was already restricted to {table.n_vars} selected genes, so library "
                "sizes over all genes can no longer be computed. Normalize before `st.pp.select_genes`, reloading "
                "the sample if needed."
            )
        library = np.asarray(counts.sum(axis=1)).ravel()
        empty = library == 0
        if empty.all():
            raise ValueError(f"All {table.n_obs} spots of sample '{name}' have zero counts; nothing to normalize.")
        if empty.any():
            warnings.warn(
                f"Sample '{name}': removing {int(empty.sum())} of {table.n_obs} spots with zero counts (they cannot "
                f"be normalized) from table '{key}' and shapes '{shapes_key}'.",
                UserWarning,
                stacklevel=2,
            )
            subset_spots(sdata, ~empty, table_key=key, shapes_key=shapes_key)
            table = sdata.tables[key]
            counts = table.layers[COUNTS_LAYER]
            library = library[~empty]

        table.X = counts.astype(np.float32, copy=True)
        table.uns.pop("log1p", None)  # X is fresh counts again; scanpy would otherwise refuse to log it twice
        sc.pp.normalize_total(table, target_sum=target_sum)
        if log:
            sc.pp.log1p(table)
        table.obs["total_counts"] = library.astype(np.float64)
        histo2st_uns(table)["normalize"] = {
            "target_sum": target_sum,
            "log": log,
            "layer": COUNTS_LAYER,
            "n_spots_removed": int(empty.sum()),
        }
        logger.debug(f"Sample '{name}': normalized {table.n_obs} spots x {table.n_vars} genes.")
        write_to_store(sdata, [key, shapes_key] if empty.any() else [key])
    keys = ["X", 'obs["total_counts"]', 'uns["histo2st"]["normalize"]'] + (['uns["log1p"]'] if log else [])
    log_added(f"table of {len(samples)} sample(s)", keys, start)
    return result


def _raw_counts(table, name: str, key: str):
    if COUNTS_LAYER not in table.layers:
        raise ValueError(
            f"Table '{key}' of sample '{name}' has no raw counts in layers['{COUNTS_LAYER}']. histo2st readers keep "
            f"them there; for a table you built, set `table.layers['{COUNTS_LAYER}'] = table.X.copy()` while X still "
            "holds raw counts."
        )
    counts = table.layers[COUNTS_LAYER]
    values = counts.data if sp.issparse(counts) else np.asarray(counts)
    n_bad = int((~np.isfinite(values)).sum())
    if n_bad:
        raise ValueError(
            f"layers['{COUNTS_LAYER}'] of table '{key}' (sample '{name}') contains {n_bad} NaN or infinite values; "
            "raw counts must be finite. Replace them (e.g. with 0) or drop the affected spots."
        )
    n_neg = int((values < 0).sum())
    if n_neg:
        raise ValueError(
            f"layers['{COUNTS_LAYER}'] of table '{key}' (sample '{name}') contains {n_neg} negative values; raw counts "
            "must be >= 0. Store raw UMI counts there, not normalized or scaled values."
        )
    return counts
