"""Finding a sample's spot table, copying samples, and removing spots from a table and its shapes together."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._constants import ATTRS_KEY
from .._core import as_samples


def histo2st_uns(table) -> dict:
    """The table's ``uns["histo2st"]`` dict, created if absent."""
    if ATTRS_KEY not in table.uns:
        table.uns[ATTRS_KEY] = {}
    return table.uns[ATTRS_KEY]


def samples_for_update(data, copy: bool) -> tuple[dict, object]:
    """``({name: sdata}, result)``: the samples to modify and what the function returns (the copies, or ``None``).

    With ``copy=True`` the samples are deep copies, returned in the form they were given: one SpatialData, a dict or a
    list.
    """
    import spatialdata as sd

    samples = as_samples(data)
    if not copy:
        return samples, None
    samples = {name: sd.deepcopy(sdata) for name, sdata in samples.items()}
    if isinstance(data, sd.SpatialData):
        return samples, next(iter(samples.values()))
    if isinstance(data, Mapping):
        return samples, samples
    return samples, list(samples.values())


def subset_spots(sdata, keep: np.ndarray, *, table_key: str, shapes_key: str) -> int:
    """Keep only the rows ``keep`` of table ``table_key`` and the circles of ``shapes_key`` they annotate.

    The shapes are matched to the subset table with :func:`spatialdata.match_element_to_table`, so both end up in the
    table's row order and the table's ``instance_key`` still finds every circle. Modifies ``sdata`` in place.

    Parameters
    ----------
    sdata
        The sample.
    keep
        Boolean mask over the table rows.
    table_key, shapes_key
        The table and the shapes element it annotates.

    Returns
    -------
    The number of spots removed.
    """
    import spatialdata as sd

    keep = np.asarray(keep, dtype=bool)
    table = sdata.tables[table_key]
    if keep.shape != (table.n_obs,):
        raise ValueError(f"`keep` must be a boolean mask of length {table.n_obs}, got shape {keep.shape}.")
    n_removed = int((~keep).sum())
    if n_removed == 0:
        return 0
    sdata.tables[table_key] = table[keep].copy()
    elements, _ = sd.match_element_to_table(sdata, shapes_key, table_key)
    shapes = elements[shapes_key]
    # the join names the index after its left operand ("index_left"); restore the element's own index name
    shapes.index.name = sdata.shapes[shapes_key].index.name
    sdata.shapes[shapes_key] = shapes
    return n_removed
