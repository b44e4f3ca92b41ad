"""``st.tl.evaluate`` and ``st.tl.gene_scores``: predicted against measured spot expression, per section and pooled."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._constants import ATTRS_KEY, PRED_KEY, TABLE_KEY
from .._core import as_gene_list
from .._logging import log_added, logger
from ..metrics import (
    COVERAGE_LEVELS,
    PCC_SUMMARY,
    interval_coverage,
    kmeans_ari,
    mae,
    mse,
    pcc_summary,
    pearson_per_gene,
    uncertainty_error_spearman,
)
from ._baselines import MEAN_COLUMNS, RIDGE, RIDGE_COLUMNS, baseline_metrics, fit_ridge, training_means
from ._ceiling import CEILING_COLUMNS, ceiling_inputs, ceiling_metrics, ceilings

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from spatialdata import SpatialData

#: Row label of the metrics over all sections' spots together.
POOLED = "pooled"
#: Columns of the summary that :func:`evaluate` returns, in order.
SUMMARY_COLUMNS = ("scope", "n_spots", "n_genes", "MSE", "MAE", "MSE mean predictor", "R2", *PCC_SUMMARY, "ARI")
#: Columns added when every prediction table has an uncertainty (``layers["std"]``, e.g. from a seed ensemble).
UNCERTAINTY_COLUMNS = (*(f"coverage@{round(100 * level)}" for level in COVERAGE_LEVELS), "Spearman(std, |error|)")


def evaluate(
    sdata: SpatialData | Sequence[SpatialData] | Mapping[str, SpatialData],
    *,
    pred_key: str = f"{PRED_KEY}_spots",
    truth_key: str = TABLE_KEY,
    genes=None,
    n_clusters: int | None = None,
    key_added: str = "evaluation",
    seed: int | None = None,
    baseline=None,
    ceiling: bool = False,
) -> pd.DataFrame:
    """Compare predicted with measured expression at the measured spots, per section and pooled over sections.

    For each section, the rows of the prediction table are matched to the measured spots by name (the table
    :func:`histo2st.tl.predict` writes carries the measured table's spot names; a subset or another order is fine).
    Per gene, the Pearson correlation across the section's spots and its two-sided p-value are computed; over genes
    they are summarized as PCC@M (mean), PCC@S (median) and PCC@F (first quartile), the PixNet paper's metrics. MSE
    and MAE are taken over all spots x genes. The ``"pooled"`` row computes the same metrics over the spots of all
    sections concatenated (one correlation per gene across every spot), which is not the mean of the section rows:
    the PixNet paper reports per-section numbers, a pooled correlation also rewards getting the differences between
    sections right.

    Parameters
    ----------
    sdata
        One sample (:class:`spatialdata.SpatialData`), or several sections as a dict ``{name: sdata}`` or a list.
        Sections are named by the dict keys, else by ``sdata.attrs["histo2st"]["sample"]``.
    pred_key
        Table of predictions at the measured spots, rows named like the measured table's.
    truth_key
        Table of measured expression, on the scale the model was trained on (log-normalized ``X`` after
        :func:`histo2st.pp.normalize`); ``X`` may be sparse.
    genes
        Genes to evaluate (a string is one gene); default every gene in both tables of every section (in the
        prediction's order).
    n_clusters
        Also cluster the spots of each section with k-means into this many domains, once on the predicted and once on
        the measured expression (THItoGene protocol), and report the adjusted Rand index between the two labelings.
        The pooled ARI is the mean of the sections' ARIs (domains are defined within a section). ``None`` skips it.
    key_added
        Prefix of the columns and key of the ``uns`` entry written.
    seed
        Random state of k-means; default :attr:`histo2st.settings.seed`.
    baseline
        Sections (normalized as the evaluated ones: a SpatialData, or a list or dict of them) to fit the color/texture
        ridge (:class:`~histo2st.model.ColorTextureRidge`) on, normally the model's training sections; it is then
        scored on the same spots as the model. ``None`` skips it. It costs a pass over each section's H&E at
        2 µm/px (seconds per her2st section).
    ceiling
        Also estimate how high a PCC the measurement allows: the split-half noise ceiling of each gene
        (:func:`histo2st.metrics.noise_ceiling`: the raw counts in the measured table's ``layers["counts"]`` thinned
        into two halves 8 times, each normalized as :func:`histo2st.pp.normalize` did), the correlation a prediction
        of the exact expression behind the counts would expect. Needs the raw counts and ``obs["total_counts"]``
        that :func:`histo2st.pp.normalize` keeps; costs 16 normalizations of the evaluated genes' counts per section
        and 16 more for the pooled row.

    Returns
    -------
    pandas.DataFrame
        One row per section (index: section name) and a last row ``"pooled"``; columns ``"scope"`` (``"section"`` or
        ``"pooled"``), ``"n_spots"``, ``"n_genes"``, ``"MSE"``, ``"MAE"``, ``"MSE mean predictor"`` (the MSE of the
        trivial predictor that gives every spot each gene's mean over the measured spots evaluated: an oracle
        constant, so a strict bar), ``"R2"`` (``1 - MSE / MSE mean predictor``: above 0 the model beats that
        constant; a constant has no PCC, so this is the margin over it), ``"PCC@M"``, ``"PCC@S"``, ``"PCC@F"`` and
        ``"ARI"`` (NaN without ``n_clusters``). When every prediction table has ``layers["std"]`` (a seed ensemble's
        spread, calibrated by :func:`histo2st.tl.calibrate` if it was), also ``"coverage@50"``, ``"coverage@80"``,
        ``"coverage@90"`` (the fraction of spots x genes whose measured value lies in ``mean ± z·std``, the central
        Gaussian interval of that level: a calibrated std covers the nominal fraction) and
        ``"Spearman(std, |error|)"`` (whether larger uncertainties go with larger errors; over all spots x genes).
        When every prediction table has ``var["training_mean"]`` (:func:`histo2st.tl.predict` writes it), the
        trivial predictor that gives every spot each gene's mean over the model's training spots (not an oracle: what
        a model that learnt nothing from the image predicts): ``"MSE training mean"`` and ``"R2 training mean"``
        (``1 - MSE / MSE training mean``; a constant has no PCC, so PCC's trivial bar is 0). With ``baseline``, the
        ridge's ``"MSE ridge"``, ``"PCC@M ridge"``, ``"PCC@S ridge"``, ``"PCC@F ridge"`` and ``"PCC@M / ridge"``
        (the model's PCC@M over the ridge's; NaN when the ridge's is not positive). With ``ceiling``,
        ``"PCC@M ceiling"`` (the mean over genes of the noise ceiling) and ``"PCC@M / ceiling"`` (the share of it the
        model reaches). In each section's prediction table (in memory):
    ``table.var[f"{key_added}_pcc"]``
        Pearson correlation of the gene across the section's spots (NaN for genes not evaluated or constant).
    ``table.var[f"{key_added}_pcc_ridge"]``
        The ridge's (only with ``baseline``).
    ``table.var[f"{key_added}_pcc_ceiling"]``
        The gene's noise ceiling in this section (only with ``ceiling``).
    ``table.var[f"{key_added}_pvalue"]``
        Its two-sided p-value (:func:`scipy.stats.pearsonr`).
    ``table.uns["histo2st"][key_added]``
        ``"params"`` (``pred_key``, ``truth_key``, ``genes``, ``n_clusters``, ``seed``, ``sections``,
        ``baseline``: the ridge's sections, empty without one, ``ceiling``), ``"summary"``
        (this section's row) and ``"pooled"`` (the pooled row).

    Raises
    ------
    KeyError
        If a table is missing, or requested genes are not in both tables of every section.
    ValueError
        If a section's tables share no spot, the tables share no gene, or a section is named ``"pooled"``.

    See Also
    --------
    histo2st.tl.gene_scores : The per-gene correlations as one long table.
    histo2st.tl.evaluate_dense : Dense predicted maps against a dense truth.
    """
    from .._core import as_samples
    from .._settings import settings

    start = time.perf_counter()
    samples = as_samples(sdata)
    if POOLED in samples:
        raise ValueError(f"A section is named '{POOLED}', which labels the pooled row; rename it.")
    seed = settings.seed if seed is None else seed
    pairs = {name: _aligned(sample, name, pred_key, truth_key) for name, sample in samples.items()}
    genes = _genes_to_evaluate(pairs, genes, pred_key, truth_key)
    if n_clusters is not None:
        _check_clusters(pairs, n_clusters)

    uncertain = all("std" in pred.layers for pred, _ in pairs.values())
    means = training_means(pairs, genes)
    ridge = fit_ridge(baseline, genes) if baseline is not None else None
    rows, scores, arrays, bars = {}, {}, {}, {}
    for name, (pred, truth) in pairs.items():
        p, t = _values(pred, genes), _values(truth, genes)
        arrays[name] = p, t, _values(pred, genes, layer="std") if uncertain else None
        bars[name] = _baselines_at(means, ridge, name, samples[name], truth, t.shape)
        scores[name] = pearson_per_gene(p, t)
        ari = kmeans_ari(p, t, n_clusters, seed=seed) if n_clusters is not None else np.nan
        rows[name] = _row("section", p, t, scores[name][0], ari, arrays[name][2], bars[name])
    rows[POOLED] = _pooled_row(arrays, bars, rows, n_clusters is not None)
    bounds = _ceilings(samples, pairs, genes, truth_key, seed) if ceiling else {}
    for scope, values in bounds.items():
        rows[scope].update(ceiling_metrics(rows[scope]["PCC@M"], values))
    columns = [*SUMMARY_COLUMNS, *(MEAN_COLUMNS if means is not None else ()),
               *(RIDGE_COLUMNS if ridge is not None else ()), *(UNCERTAINTY_COLUMNS if uncertain else ()),
               *(CEILING_COLUMNS if ceiling else ())]  # fmt: skip
    summary = pd.DataFrame.from_dict(rows, orient="index").loc[:, columns]
    summary.index.name = "section"

    params = {
        "pred_key": pred_key,
        "truth_key": truth_key,
        "genes": np.asarray(genes, dtype=str),
        "n_clusters": n_clusters,
        "seed": seed,
        "sections": np.asarray(list(samples), dtype=str),
        "baseline": np.asarray([] if baseline is None else list(as_samples(baseline)), dtype=str),
        "ceiling": bool(ceiling),
    }
    for name, sample in samples.items():
        per_gene = {"pcc": scores[name][0], "pvalue": scores[name][1]}
        if ridge is not None:
            per_gene["pcc_ridge"] = pearson_per_gene(bars[name][RIDGE], arrays[name][1])[0]
        if ceiling:
            per_gene["pcc_ceiling"] = bounds[name]
        entry = {"params": dict(params), "summary": rows[name], "pooled": rows[POOLED]}
        _write_section(sample.tables[pred_key], genes, per_gene, entry, key_added)
    written = [f'var["{key_added}_pcc"]', f'var["{key_added}_pvalue"]', f'uns["histo2st"]["{key_added}"]']
    if ridge is not None:
        written.insert(2, f'var["{key_added}_pcc_ridge"]')
    if ceiling:
        written.insert(2, f'var["{key_added}_pcc_ceiling"]')
    log_added(f"tables['{pred_key}'] of {len(samples)} section(s), {len(genes)} genes", written, start)
    return summary


def _ceilings(samples: dict, pairs: dict, genes: list[str], truth_key: str, seed: int) -> dict[str, np.ndarray]:
    """Per-gene noise ceilings of each section and pooled, at the evaluated spots."""
    inputs = {
        name: ceiling_inputs(samples[name].tables[truth_key], truth, genes, name, truth_key)
        for name, (_, truth) in pairs.items()
    }
    sections, pooled = ceilings(inputs, seed)
    return {**sections, POOLED: pooled}


def _pooled_row(arrays: dict, bars: dict, rows: dict, clustered: bool) -> dict:
    """The summary row over the concatenated spots of every section (its ARI: the sections' mean)."""
    p, t = (np.concatenate([a[k] for a in arrays.values()]) for k in (0, 1))
    uncertain = next(iter(arrays.values()))[2] is not None
    s = np.concatenate([a[2] for a in arrays.values()]) if uncertain else None
    pooled_bars = {k: np.concatenate([b[k] for b in bars.values()]) for k in next(iter(bars.values()))}
    ari = float(np.mean([row["ARI"] for row in rows.values()])) if clustered else np.nan
    return _row("pooled", p, t, pearson_per_gene(p, t)[0], ari, s, pooled_bars)


def _write_section(table, genes: list[str], per_gene: dict, entry: dict, key_added: str) -> None:
    """Each per-gene array to ``var[f"{key_added}_{name}"]`` (NaN for genes not evaluated), the entry to ``uns``."""
    for column, values in per_gene.items():
        table.var[f"{key_added}_{column}"] = pd.Series(values, index=genes).reindex(table.var_names).to_numpy()
    table.uns.setdefault(ATTRS_KEY, {})[key_added] = entry


def gene_scores(
    sdata: SpatialData | Sequence[SpatialData] | Mapping[str, SpatialData],
    *,
    pred_key: str = f"{PRED_KEY}_spots",
    key: str = "evaluation",
) -> pd.DataFrame:
    """The per-gene correlations written by :func:`evaluate`, as one long table ranked within each section.

    Parameters
    ----------
    sdata
        The sample or sections given to :func:`evaluate` (same forms and names).
    pred_key
        Prediction table that was evaluated.
    key
        ``key_added`` of that :func:`evaluate` call.

    Returns
    -------
    pandas.DataFrame
        Columns ``"section"``, ``"gene"``, ``"pcc"``, ``"pvalue"`` and ``"neg_log10_pvalue"`` (``-log10 p``, with
        p-values that underflow to 0 clipped to the smallest positive float), and ``"ceiling"`` (the gene's noise
        ceiling) when the evaluation estimated it (``ceiling=True``), one row per evaluated gene and section, sorted
        by section (in the given order) then by descending ``pcc`` (NaN last).
    """
    from .._core import as_samples

    frames = []
    for name, sample in as_samples(sdata).items():
        if pred_key not in sample.tables:
            raise KeyError(f"Section '{name}' has no table '{pred_key}'; tables: {list(sample.tables)}.")
        table = sample.tables[pred_key]
        entry = table.uns.get(ATTRS_KEY, {}).get(key)
        if entry is None or f"{key}_pcc" not in table.var:
            raise KeyError(
                f"Table '{pred_key}' of section '{name}' has no evaluation '{key}'. Run "
                f"`st.tl.evaluate(sdata, pred_key='{pred_key}', key_added='{key}')` first."
            )
        genes = [str(g) for g in entry["params"]["genes"]]
        var = table.var.loc[genes, [f"{key}_pcc", f"{key}_pvalue"]].to_numpy()
        frame = pd.DataFrame({"section": name, "gene": genes, "pcc": var[:, 0], "pvalue": var[:, 1]})
        if entry["params"].get("ceiling"):
            frame["ceiling"] = table.var.loc[genes, f"{key}_pcc_ceiling"].to_numpy()
        frames.append(frame)
    scores = pd.concat(frames, ignore_index=True)
    tiny = np.finfo(np.float64).tiny
    scores["neg_log10_pvalue"] = -np.log10(np.maximum(scores["pvalue"].to_numpy(dtype=np.float64), tiny))
    scores["section"] = pd.Categorical(scores["section"], categories=list(dict.fromkeys(scores["section"])))
    scores = scores.sort_values(["section", "pcc"], ascending=[True, False], na_position="last", kind="stable")
    return scores.reset_index(drop=True)


def _aligned(sdata, name: str, pred_key: str, truth_key: str):
    """The prediction and measured tables of one section, restricted to their shared spots in the measured order."""
    for key, what in ((pred_key, "prediction"), (truth_key, "measured")):
        if key not in sdata.tables:
            hint = " Run `st.tl.predict(sdata, model)` first." if what == "prediction" else ""
            raise KeyError(
                f"Section '{name}' has no {what} table '{key}' (tables: {list(sdata.tables)}).{hint} Or pass "
                f"`{'pred_key' if what == 'prediction' else 'truth_key'}=`."
            )
    pred, truth = sdata.tables[pred_key], sdata.tables[truth_key]
    if not pred.obs_names.is_unique:
        raise ValueError(f"The rows of table '{pred_key}' of section '{name}' do not have unique names.")
    shared = truth.obs_names[truth.obs_names.isin(pred.obs_names)]
    if len(shared) == 0:
        raise ValueError(
            f"Tables '{pred_key}' and '{truth_key}' of section '{name}' share no spot name (e.g. "
            f"{pred.obs_names[:3].tolist()} vs {truth.obs_names[:3].tolist()}). The prediction table must name its "
            "rows like the measured table, as `st.tl.predict` does; predict on this section again, or rename the rows."
        )
    if len(shared) < 2:
        raise ValueError(
            f"Tables '{pred_key}' and '{truth_key}' of section '{name}' share {len(shared)} spot; correlations across "
            "spots need at least 2."
        )
    if len(shared) < truth.n_obs or len(shared) < pred.n_obs:
        logger.info(
            f"Section '{name}': evaluating the {len(shared)} spots in both tables ({truth.n_obs} measured, "
            f"{pred.n_obs} predicted)."
        )
    return pred[shared], truth[shared]


def _genes_to_evaluate(pairs: dict, genes, pred_key: str, truth_key: str) -> list[str]:
    if genes is None:
        first_pred = next(iter(pairs.values()))[0]
        common = first_pred.var_names
        for pred, truth in pairs.values():
            common = common[common.isin(pred.var_names) & common.isin(truth.var_names)]
        if len(common) == 0:
            raise ValueError(
                f"Tables '{pred_key}' and '{truth_key}' share no gene in every section; check that the prediction is "
                "for these samples' genes, or pass `genes=`."
            )
        return common.tolist()
    genes = [str(g) for g in as_gene_list(genes)]
    if not genes or len(set(genes)) < len(genes):
        raise ValueError("`genes` must be a non-empty list of distinct gene names.")
    for name, (pred, truth) in pairs.items():
        for table, key in ((pred, pred_key), (truth, truth_key)):
            missing = pd.Index(genes).difference(table.var_names)
            if len(missing):
                raise KeyError(
                    f"{len(missing)} of the requested genes are not in table '{key}' of section '{name}', e.g. "
                    f"{missing[:10].tolist()}. Pass genes present in both tables."
                )
    return genes


def _check_clusters(pairs: dict, n_clusters: int) -> None:
    if not isinstance(n_clusters, int | np.integer) or n_clusters < 2:
        raise ValueError(f"`n_clusters` must be an int >= 2 or None, got {n_clusters!r}.")
    for name, (pred, _) in pairs.items():
        if pred.n_obs < n_clusters:
            raise ValueError(
                f"Section '{name}' has {pred.n_obs} spots, fewer than `n_clusters={n_clusters}`; pass fewer clusters."
            )


def _values(table, genes: list[str], layer: str | None = None) -> np.ndarray:
    x = table[:, genes].X if layer is None else table[:, genes].layers[layer]
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def _against_the_mean(pred: np.ndarray, truth: np.ndarray) -> dict:
    """The MSE of predicting each gene's measured mean at every spot, and the skill ``1 - MSE / that``."""
    baseline = mse(np.broadcast_to(truth.mean(axis=0), truth.shape), truth)
    skill = 1 - mse(pred, truth) / baseline if baseline > 0 else float("nan")
    return {"MSE mean predictor": baseline, "R2": skill}


def _baselines_at(means, ridge, name: str, sample, truth, shape: tuple) -> dict[str, np.ndarray]:
    """The baselines' ``(spots, genes)`` predictions at one section's evaluated spots, by name."""
    bars = {}
    if means is not None:
        bars["mean"] = np.broadcast_to(means[name], shape)
    if ridge is not None:
        bars[RIDGE] = ridge.predict_points(sample, truth.obsm["spatial"]).astype(np.float64)
    return bars


def _row(scope: str, pred: np.ndarray, truth: np.ndarray, pcc: np.ndarray, ari: float, std, bars: dict) -> dict:
    return {
        "scope": scope,
        "n_spots": int(pred.shape[0]),
        "n_genes": int(pred.shape[1]),
        "MSE": mse(pred, truth),
        "MAE": mae(pred, truth),
        **_against_the_mean(pred, truth),
        **pcc_summary(pcc),
        "ARI": float(ari),
        **baseline_metrics(pred, truth, pcc, mean=bars.get("mean"), ridge=bars.get(RIDGE)),
        **({} if std is None else _uncertainty(pred, truth, std)),
    }


def _uncertainty(pred: np.ndarray, truth: np.ndarray, std: np.ndarray) -> dict:
    """How well the predicted std describes the error: interval coverage and rank agreement."""
    coverage = interval_coverage(truth, pred, std, COVERAGE_LEVELS)
    names = UNCERTAINTY_COLUMNS[: len(COVERAGE_LEVELS)]
    return {**dict(zip(names, coverage.values(), strict=True)), UNCERTAINTY_COLUMNS[-1]:
            uncertainty_error_spearman(truth, pred, std)}  # fmt: skip
