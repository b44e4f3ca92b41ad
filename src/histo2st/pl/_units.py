"""Units of plotted expression (read from what ``st.pp.normalize`` recorded) and the truth put on that scale."""

from __future__ import annotations

import numpy as np

from .._constants import ATTRS_KEY

#: Used for the truth when the measured table was normalized to the median library size (the truth has none).
DEFAULT_TARGET_SUM = 1e4
_NAMED_TARGETS = {1e4: "CP10k", 1e6: "CPM"}


def normalize_params(table) -> dict | None:
    """What :func:`histo2st.pp.normalize` recorded in a table, or ``None`` when it was not normalized."""
    return table.uns.get(ATTRS_KEY, {}).get("normalize") if table is not None else None


def prediction_params(sdata, pred_key: str, table_key: str) -> dict | None:
    """Normalization of the targets a prediction was trained on (model card), else of the measured table."""
    spots = sdata.tables.get(f"{pred_key}_spots")
    card = spots.uns.get(ATTRS_KEY, {}).get("model", {}) if spots is not None else {}
    return card.get("normalization") or normalize_params(sdata.tables.get(table_key))


def units_label(params: dict | None, *, default: str) -> str:
    """``"log1p(CP10k)"`` and the like, from normalization parameters; ``default`` when there are none."""
    if not params:
        return default
    target = params.get("target_sum")
    if target is None:
        scaled = "counts / median library size"
    else:
        scaled = _NAMED_TARGETS.get(float(target), f"counts per {float(target):g}")
    return f"log1p({scaled})" if params.get("log", True) else scaled


def truth_params(params: dict | None) -> dict:
    """Parameters to put a counts truth on the measured scale; the truth has no median library size to use."""
    params = dict(params or {"target_sum": DEFAULT_TARGET_SUM, "log": True})
    if params.get("target_sum") is None:
        params["target_sum"] = DEFAULT_TARGET_SUM
    return params


def normalize_counts(counts: np.ndarray, gene_index: int, params: dict) -> np.ndarray:
    """Library-size normalize ``(genes, ...)`` counts over all genes and return one gene's values (log1p if asked).

    Where the library is empty (glass, between cells) the value is NaN, so it is drawn transparent.
    """
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(totals > 0, counts[gene_index] / totals * params["target_sum"], np.nan)
    return np.log1p(values) if params.get("log", True) else values
