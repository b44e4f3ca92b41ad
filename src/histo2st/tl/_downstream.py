"""``st.tl.compare_downstream``: the analysis a user runs, on predicted and on measured expression, compared.

squidpy computes Moran's I and scanpy the domains, on the predicted and on the measured table of the same spots with
the same settings; only the comparison of the two results is histo2st's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._constants import ATTRS_KEY, PRED_KEY, SPATIAL_KEY, TABLE_KEY
from .._logging import log_added

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from spatialdata import SpatialData

#: Columns of the summary :func:`compare_downstream` returns, before the Jaccard columns of each ``top_k``.
DOWNSTREAM_COLUMNS = ("n_spots", "n_genes", "Moran's I PCC", "Moran's I MAE", "domains ARI", "domains NMI")


def compare_downstream(
    sdata: SpatialData | Sequence[SpatialData] | Mapping[str, SpatialData],
    *,
    pred_key: str = f"{PRED_KEY}_spots",
    truth_key: str = TABLE_KEY,
    genes=None,
    top_k: Sequence[int] = (20, 50),
    n_neighbors: int = 6,
    domains: str = "leiden",
    n_clusters: int | None = None,
    resolution: float = 1.0,
    key_added: str = "downstream",
    seed: int | None = None,
) -> pd.DataFrame:
    """Run the same spatial analysis on the predicted and on the measured table, per section, and compare.

    For each section, on the spots of both tables (matched by name, as in :func:`histo2st.tl.evaluate`):

    - **Spatially variable genes**: :func:`squidpy.gr.spatial_autocorr` (Moran's I, no permutations) over the same
      :func:`squidpy.gr.spatial_neighbors` graph of the spot centers (``n_neighbors`` nearest), once on each table.
      Reported: the PCC and the mean absolute difference of the genes' Moran's I, and the Jaccard overlap of the
      top-``k`` genes by Moran's I for each ``k`` of ``top_k``.
    - **Domains**: spots clustered on each table with the same settings, :func:`scanpy.tl.leiden` (on
      :func:`scanpy.pp.pca` and :func:`scanpy.pp.neighbors`, at ``resolution``) or k-means with ``n_clusters``
      (``domains="kmeans"``); reported: the adjusted Rand index and normalized mutual information of the two
      labelings (scikit-learn).

    Parameters
    ----------
    sdata
        One section, or several as a list or dict (as :func:`histo2st.tl.evaluate`).
    pred_key, truth_key
        Prediction and measured tables (``obsm["spatial"]`` of the prediction gives the spot centers). The measured
        table may be a truth aggregated into the same bins (synthetic tissue).
    genes
        Genes compared; default every gene in both tables of every section.
    top_k
        Sizes of the top lists of spatially variable genes compared (each at most the number of genes).
    n_neighbors
        Spatial neighbors of each spot for Moran's I (6: a Visium or ST spot's ring).
    domains
        ``"leiden"`` (needs igraph and leidenalg: ``pip install histo2st[interop]``) or ``"kmeans"``.
    n_clusters
        Number of k-means domains (with ``domains="kmeans"``).
    resolution
        Leiden resolution (with ``domains="leiden"``).
    key_added
        Key of the ``uns`` entry and prefix of the ``var`` columns written.
    seed
        Random state of PCA, leiden and k-means; default :attr:`histo2st.settings.seed`.

    Returns
    -------
    pandas.DataFrame
        One row per section: ``"n_spots"``, ``"n_genes"``, ``"Moran's I PCC"``, ``"Moran's I MAE"``,
        ``"domains ARI"``, ``"domains NMI"`` and ``f"SVG Jaccard@{k}"`` for each ``k``. In each section's prediction
        table:
    ``table.var[f"{key_added}_moran_pred"]``, ``table.var[f"{key_added}_moran_truth"]``
        Moran's I of each gene on the predicted and on the measured values (NaN for genes not compared).
    ``table.obs[f"{key_added}_domain_pred"]``, ``table.obs[f"{key_added}_domain_truth"]``
        The domain of each spot from either table (NaN for spots not compared).
    ``table.uns["histo2st"][key_added]``
        ``"params"`` (every option, the squidpy, scanpy and histo2st versions) and ``"summary"`` (the section's row).
    """
    from .._core import as_samples
    from .._settings import settings
    from ._evaluate import _aligned, _genes_to_evaluate

    start = time.perf_counter()
    tools = _analysis_tools(domains)
    if domains == "kmeans" and n_clusters is None:
        raise ValueError("`domains='kmeans'` needs `n_clusters=`; or use `domains='leiden'`.")
    samples = as_samples(sdata)
    pairs = {name: _aligned(sample, name, pred_key, truth_key) for name, sample in samples.items()}
    genes = _genes_to_evaluate(pairs, genes, pred_key, truth_key)
    top_k = [int(k) for k in top_k]
    if any(not 0 < k <= len(genes) for k in top_k):
        raise ValueError(f"Each `top_k` must be between 1 and the {len(genes)} genes compared; got {top_k}.")
    params = {"pred_key": pred_key, "truth_key": truth_key, "genes": list(genes), "top_k": top_k,
              "n_neighbors": n_neighbors, "domains": domains, "n_clusters": n_clusters, "resolution": resolution,
              "seed": settings.seed if seed is None else seed, "versions": tools["versions"]}  # fmt: skip
    rows = {}
    for name, (pred, truth) in pairs.items():
        result = _compare_section(pred, truth, genes, params)
        rows[name] = result["summary"]
        _record(samples[name].tables[pred_key], pred.obs_names, genes, result, key_added, params)
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.name = "section"
    written = [f'{where}["{key_added}_{what}_{side}"]' for where, what in (("var", "moran"), ("obs", "domain"))
               for side in ("pred", "truth")] + [f'uns["histo2st"]["{key_added}"]']  # fmt: skip
    log_added(f"tables['{pred_key}'] of {len(samples)} section(s), {len(genes)} genes", written, start)
    return summary


def _analysis_tools(domains: str) -> dict:
    """Check the packages the analysis needs are there, with the fix when they are not; their versions."""
    import importlib.metadata
    import importlib.util

    if domains not in ("leiden", "kmeans"):
        raise ValueError(f"`domains` must be 'leiden' or 'kmeans', got {domains!r}.")
    versions = {}
    for package in ["squidpy", "scanpy", *(["igraph", "leidenalg"] if domains == "leiden" else [])]:
        if importlib.util.find_spec(package) is None:
            raise ImportError(
                f"The downstream comparison runs {package}, which is not installed; install the interop extra: "
                "`pip install 'histo2st[interop]'`."
            )
        versions[package] = importlib.metadata.version(package)
    return {"versions": versions}


def _compare_section(pred, truth, genes: list[str], params: dict) -> dict:
    """Moran's I and domains on both tables of one section's shared spots, and how they agree."""
    from scipy.stats import pearsonr
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from ._evaluate import _values

    xy = np.asarray(pred.obsm[SPATIAL_KEY], dtype=np.float64)
    sides = {"pred": pred, "truth": truth}
    tables = {side: _analysis_table(_values(table, genes), xy, genes) for side, table in sides.items()}
    _spatial_graph(tables, params["n_neighbors"])
    moran = {side: _moran(table, params["seed"]) for side, table in tables.items()}
    labels = {side: _domains(table, params) for side, table in tables.items()}
    finite = np.isfinite(moran["pred"]) & np.isfinite(moran["truth"])
    summary = {
        "n_spots": int(len(xy)),
        "n_genes": len(genes),
        "Moran's I PCC": float(pearsonr(moran["pred"][finite], moran["truth"][finite])[0])
        if finite.sum() > 2 else float("nan"),
        "Moran's I MAE": float(np.mean(np.abs(moran["pred"][finite] - moran["truth"][finite]))),
        "domains ARI": float(adjusted_rand_score(labels["truth"], labels["pred"])),
        "domains NMI": float(normalized_mutual_info_score(labels["truth"], labels["pred"])),
    }  # fmt: skip
    for k in params["top_k"]:
        top = [set(np.asarray(genes)[np.argsort(-np.nan_to_num(moran[side], nan=-np.inf))[:k]]) for side in moran]
        summary[f"SVG Jaccard@{k}"] = len(top[0] & top[1]) / len(top[0] | top[1])
    return {"summary": summary, "moran": moran, "labels": labels}


def _analysis_table(values: np.ndarray, xy: np.ndarray, genes: list[str]):
    import anndata as ad

    table = ad.AnnData(values.astype(np.float32), var=pd.DataFrame(index=genes))
    table.obsm[SPATIAL_KEY] = xy
    return table


def _spatial_graph(tables: dict, n_neighbors: int) -> None:
    """One squidpy graph of the spot centers, shared by both tables (the same spots)."""
    import squidpy as sq

    first, *others = tables.values()
    if hasattr(sq.gr, "spatial_neighbors_knn"):  # squidpy >= 1.8 deprecates the generic entry point for these
        sq.gr.spatial_neighbors_knn(first, n_neighs=n_neighbors, spatial_key=SPATIAL_KEY)
    else:
        sq.gr.spatial_neighbors(first, coord_type="generic", n_neighs=n_neighbors, spatial_key=SPATIAL_KEY)
    for table in others:
        table.obsp.update(first.obsp)
        table.uns["spatial_neighbors"] = first.uns["spatial_neighbors"]


def _moran(table, seed: int) -> np.ndarray:
    import squidpy as sq

    result = sq.gr.spatial_autocorr(table, mode="moran", n_perms=None, seed=seed, copy=True, n_jobs=1,
                                    show_progress_bar=False)  # fmt: skip
    return result["I"].reindex(table.var_names).to_numpy(dtype=np.float64)


def _domains(table, params: dict) -> np.ndarray:
    """Domain labels of the spots: leiden on a PCA neighbor graph, or k-means, with the same settings either side."""
    import scanpy as sc

    if params["domains"] == "kmeans":
        from ..metrics import kmeans_labels

        return kmeans_labels(table.X, params["n_clusters"], seed=params["seed"])
    n_comps = min(30, table.n_vars - 1, table.n_obs - 1)
    sc.pp.pca(table, n_comps=n_comps, random_state=params["seed"])
    sc.pp.neighbors(table, n_neighbors=15, use_rep="X_pca", random_state=params["seed"])
    sc.tl.leiden(table, resolution=params["resolution"], flavor="igraph", n_iterations=2, random_state=params["seed"])
    return table.obs["leiden"].to_numpy()


def _record(table, names, genes: list[str], result: dict, key_added: str, params: dict) -> None:
    for side in ("pred", "truth"):
        table.var[f"{key_added}_moran_{side}"] = (
            pd.Series(result["moran"][side], index=genes).reindex(table.var_names).to_numpy()
        )
        table.obs[f"{key_added}_domain_{side}"] = (
            pd.Series(result["labels"][side], index=names, dtype=str).reindex(table.obs_names).to_numpy()
        )
    table.uns.setdefault(ATTRS_KEY, {})[key_added] = {"params": dict(params), "summary": result["summary"]}
