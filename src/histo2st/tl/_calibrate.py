"""``st.tl.calibrate``: make a seed ensemble's spread mean what it says, on measured spots it was not trained on."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._constants import PRED_KEY, TABLE_KEY
from .._logging import log_added
from ..metrics import interval_coverage, pcc_per_gene, std_scale_per_gene

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from spatialdata import SpatialData


def calibrate(
    sdata: SpatialData | Sequence[SpatialData] | Mapping[str, SpatialData],
    model=None,
    *,
    model_key: str | None = None,
    pred_key: str = f"{PRED_KEY}_spots",
    truth_key: str = TABLE_KEY,
    level: float = 0.8,
) -> pd.DataFrame:
    """Fit a factor per gene that calibrates a seed ensemble's standard deviation, and set it on the ensemble.

    The members of a seed ensemble share their data and differ only by their seeds, so their spread misses most of
    the error on a new section (measured too narrow, see docs/evaluation.md). On sections with measured spots that
    the ensemble was not trained on (a validation section), predicted first with ``st.tl.predict(sdata, ensemble)``,
    the factor of each gene is the ``level`` quantile of ``|measured - mean| / std`` over the spots divided by the
    Gaussian ``z(level)`` (:func:`histo2st.metrics.std_scale_per_gene`): the ``level`` interval ``mean ± z·std`` then
    holds ``level`` of those spots. From then on the ensemble multiplies its spread by these factors in every
    prediction (maps, ``layers["std"]``, ``var["std"]``); every table records them in ``var["std_scale"]`` and the
    genes' PCC on these spots in ``var["trust"]``. Check the coverage on yet other sections with
    :func:`histo2st.tl.evaluate`, which reports it.

    Parameters
    ----------
    sdata
        Section(s) holding the measured table and the ensemble's prediction at its spots; not used in training.
    model
        The :class:`~histo2st.model.Ensemble` (as for :func:`histo2st.tl.predict`: ``None`` is the model recorded
        on the first section, or the one ``model_key`` names).
    model_key
        Key of a recorded model, with ``model=None``.
    pred_key
        Table of the ensemble's predictions at the measured spots, with ``layers["std"]``.
    truth_key
        Table of measured expression on the model's scale (log-normalized).
    level
        Central interval made exact on these spots (0.8: the 80 % interval).

    Returns
    -------
    pandas.DataFrame
        Per gene (index): ``"std_scale"`` (the factor), ``"pcc"`` (over the spots of every section together),
        ``f"coverage@{level} before"`` and ``"... after"`` (on these spots: after is ``level`` by construction; the
        honest check is on other sections). Also sets ``model.calibration`` (saved with the ensemble):
    ``model.calibration``
        ``{"std_scale": {gene: factor}, "pcc": {gene: pcc}, "level", "sections", "n_spots", "pred_key",
        "truth_key", "coverage_before", "method"}``.

    Raises
    ------
    ValueError
        If the model has no spread (not an ensemble) or the prediction table has no ``layers["std"]``.
    """
    from .._core import as_samples
    from ._evaluate import _aligned, _genes_to_evaluate
    from ._registry import resolve_model

    start = time.perf_counter()
    samples = as_samples(sdata)
    model, _ = resolve_model(next(iter(samples.values())), model, model_key=model_key)
    if model.n_maps < 2:
        raise ValueError(
            "Calibration scales an ensemble's spread, and this model has none; fit a seed ensemble with "
            "`st.tl.fit(sdata, n_seeds=5)` and predict with it."
        )
    pairs = {name: _aligned(sample, name, pred_key, truth_key) for name, sample in samples.items()}
    for name, (pred, _) in pairs.items():
        if "std" not in pred.layers:
            raise ValueError(f"Table '{pred_key}' of section '{name}' has no layers['std']; predict with the ensemble.")
    genes = _genes_to_evaluate(pairs, None, pred_key, truth_key)
    per_section = [_arrays(p, t, genes) for p, t in pairs.values()]
    mean, truth, std = (np.concatenate([arrays[k] for arrays in per_section]) for k in range(3))
    factors = std_scale_per_gene(truth, mean, std, level=level)
    pcc = pcc_per_gene(mean, truth)
    before = [interval_coverage(truth[:, g], mean[:, g], std[:, g], [level])[level] for g in range(len(genes))]
    after = [interval_coverage(truth[:, g], mean[:, g], std[:, g] * f, [level])[level] for g, f in enumerate(factors)]
    model.calibration = {
        "method": f"per-gene factor: the {level} quantile of |error| / std over the spots, divided by z({level})",
        "std_scale": _by_gene(genes, factors),
        "pcc": _by_gene(genes, pcc),
        "level": level,
        "sections": list(samples),
        "n_spots": int(len(mean)),
        "pred_key": pred_key,
        "truth_key": truth_key,
        "coverage_before": float(np.nanmean(before)),
    }
    log_added("model", ["calibration"], start)
    label = f"coverage@{level}"
    return pd.DataFrame({"std_scale": factors, "pcc": pcc, f"{label} before": before, f"{label} after": after},
                        index=pd.Index(genes, name="gene"))  # fmt: skip


def _arrays(pred, truth, genes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, truth and the uncalibrated std (a table of a calibrated ensemble records its factors)."""
    from ._evaluate import _values

    std = _values(pred, genes, layer="std")
    if "std_scale" in pred.var:
        std = std / pred.var["std_scale"].reindex(genes).to_numpy(dtype=np.float64)
    return _values(pred, genes), _values(truth, genes), std


def _by_gene(genes: list[str], values: np.ndarray) -> dict:
    return {g: (float(v) if np.isfinite(v) else None) for g, v in zip(genes, values, strict=True)}
