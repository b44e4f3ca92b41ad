"""The upper bar :func:`histo2st.tl.evaluate` scores a model against: the split-half noise ceiling of the measurement.

Where the baselines (``_baselines.py``) say whether a model learnt anything, the ceiling says how much was there to
learn: the PCC a prediction of the exact expression behind the counts would expect, from
:func:`histo2st.metrics.noise_ceiling` on the measured table's raw counts, thinned and normalized as
:func:`histo2st.pp.normalize` normalized them.
"""

from __future__ import annotations

import numpy as np

from .._constants import ATTRS_KEY, COUNTS_LAYER
from ..metrics import noise_ceiling

#: Columns of the summary when the ceiling is estimated.
CEILING_COLUMNS = ("PCC@M ceiling", "PCC@M / ceiling")


def ceiling_inputs(full, truth, genes: list[str], name: str, truth_key: str) -> tuple[np.ndarray, ...]:
    """Raw counts of ``genes``, library sizes, per-spot targets and the log flag at the evaluated spots.

    ``truth`` is the view of the measured table ``full`` at those spots; a clear error if histo2st did not normalize it.
    """
    entry = full.uns.get(ATTRS_KEY, {}).get("normalize")
    if COUNTS_LAYER not in full.layers or "total_counts" not in full.obs or entry is None:
        raise ValueError(
            f"`ceiling=True` splits raw counts, but table '{truth_key}' of section '{name}' lacks "
            f"layers['{COUNTS_LAYER}'], obs['total_counts'] or the record of `st.pp.normalize`. Normalize the "
            "section with `st.pp.normalize` (histo2st readers keep the raw counts), or pass `ceiling=False`."
        )
    counts = truth[:, genes].layers[COUNTS_LAYER]
    counts = np.asarray(counts.toarray() if hasattr(counts, "toarray") else counts)
    library = truth.obs["total_counts"].to_numpy(dtype=np.float64)
    # scanpy's normalize_total scales to the median library size of the whole table when target_sum is None
    target = entry["target_sum"] if entry["target_sum"] is not None else np.median(full.obs["total_counts"])
    return counts, library, np.full(len(library), float(target)), bool(entry["log"])


def ceilings(inputs: dict, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-gene ceilings of every section, and of all sections' spots together."""
    sections = {name: _ceiling(*parts, seed) for name, parts in inputs.items()}
    pooled = [np.concatenate([parts[i] for parts in inputs.values()]) for i in range(3)]
    logged = {parts[3] for parts in inputs.values()}
    if len(logged) > 1:
        raise ValueError("`ceiling=True` over sections normalized with and without log1p; normalize them alike.")
    return sections, _ceiling(*pooled, logged.pop(), seed)


def ceiling_metrics(pcc_m: float, ceiling: np.ndarray) -> dict[str, float]:
    """The summary's ceiling columns: the mean ceiling over genes and the model's PCC@M as a fraction of it."""
    finite = ceiling[np.isfinite(ceiling)]
    mean = float(finite.mean()) if finite.size else float("nan")
    return dict(zip(CEILING_COLUMNS, (mean, pcc_m / mean if mean > 0 else float("nan")), strict=True))


def _ceiling(counts, library, target, log: bool, seed: int) -> np.ndarray:
    return noise_ceiling(counts, library, target_sum=target, log=log, seed=seed)
