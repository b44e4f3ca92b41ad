"""Choosing the genes to predict: PixNet's highest mean, scanpy's highly variable genes, or a fixed list."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd

from .._constants import ATTRS_KEY
from .._core import spot_table_keys
from .._core._zarr import write_to_store
from .._logging import log_added, logger
from ._tables import histo2st_uns, samples_for_update

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from spatialdata import SpatialData

METHODS = ("mean", "hvg")
LIST_SUFFIXES = (".npy", ".txt")
MISSING = ("raise", "drop")


def select_genes(
    sdata: SpatialData | Sequence[SpatialData] | Mapping[str, SpatialData],
    *,
    n_top: int = 250,
    method: str | Path | Iterable[str] = "mean",
    missing: str = "raise",
    subset: bool = True,
    key_added: str = "selected",
    table_key: str | None = None,
    copy: bool = False,
):
    """Select the genes to model, the same ones in every sample.

    Only genes measured in every given sample are candidates; the others are logged and reported per sample.

    Parameters
    ----------
    sdata
        One sample (:class:`spatialdata.SpatialData`), or several as a dict ``{name: sdata}`` or a list. Several
        samples get one common selection.
    n_top
        Number of genes to keep for ``"mean"`` and ``"hvg"``; ignored for a fixed list (all its genes are kept).
    method
        - ``"mean"``: the PixNet protocol, the ``n_top`` genes with the highest mean normalized expression
          (``table.X`` after :func:`histo2st.pp.normalize`). With several samples the mean is taken over all
          their spots pooled, so larger sections weigh more.
        - ``"hvg"``: :func:`scanpy.pp.highly_variable_genes` with ``flavor="seurat"`` on the log-normalized ``X``
          (the flavour that needs neither raw counts nor extra packages). With several samples ``batch_key`` is the
          sample, so genes variable within many samples rank first, then the higher normalized dispersion. Exactly
          ``n_top`` genes are kept: where scanpy marks extra genes tied at the cut-off, the first in gene order win.
        - a list of gene names, or a path to a ``.npy`` (array of names, loaded without pickle) or ``.txt``
          (one name per line) file, such as THItoGene's ``her_hvg_cut_1000.npy``. The order of the list is kept.
          Any other string is one gene (scanpy's convention).
    missing
        For a fixed list, what to do with genes not measured in every sample: ``"raise"`` an error naming them,
        or ``"drop"`` them with a log message.
    subset
        Restrict the tables to the selected genes, in rank order, so every sample has the same genes in the same
        order. With ``False`` only mark them in ``var[key_added]``.
    key_added
        Column of ``table.var`` marking the selected genes when ``subset=False``.
    table_key
        Table to use; default is each sample's spot table (``attrs["histo2st"]["table_key"]``).
    copy
        Work on copies and return them instead of modifying ``sdata``.

    Returns
    -------
    ``None`` (in place, like scanpy); with ``copy=True`` the modified copies, in the form ``sdata`` was given. In
    each sample's table:
    ``table``
        Subset to the selected genes, in rank order (``subset=True``).
    ``table.var[key_added]``
        Whether the gene was selected (``subset=False``).
    ``table.uns["histo2st"]["select_genes"]``
        ``method``, ``n_top``, ``subset``, ``key_added``, ``samples`` (the samples selected over), ``genes``
        (the selection in rank order), ``not_in_all`` (this sample's genes missing from another sample) and
        ``absent`` (listed genes that were dropped).

    Raises
    ------
    ValueError
        For an unknown method, listed genes absent with ``missing="raise"``, ``n_top`` larger than the number of
        common genes, or ``"mean"``/``"hvg"`` on tables that :func:`histo2st.pp.normalize` has not processed.
    """
    if missing not in MISSING:
        raise ValueError(f"`missing` must be one of {MISSING}, got {missing!r}.")
    listed = _gene_list(method)
    one_gene = _is_one_gene(method)
    if listed is None and (not isinstance(n_top, int | np.integer) or n_top < 1):
        raise ValueError(f"`n_top` must be a positive int, got {n_top!r}.")
    start = time.perf_counter()
    samples, result = samples_for_update(sdata, copy)
    keys = {name: spot_table_keys(sdata, name, table_key)[0] for name, sdata in samples.items()}
    tables = {name: samples[name].tables[key] for name, key in keys.items()}

    common = _common_genes(tables)
    not_in_all = {name: table.var_names[~table.var_names.isin(common)].tolist() for name, table in tables.items()}
    if any(not_in_all.values()):
        per_sample = ", ".join(f"'{name}': {len(genes)}" for name, genes in not_in_all.items())
        logger.warning(
            f"Selecting among the {len(common)} genes measured in all {len(tables)} samples; genes not in all "
            f"samples, per sample: {per_sample}."
        )

    if one_gene and method not in common:  # more likely a misspelt method than a gene nobody measured
        raise ValueError(
            f"Unknown gene selection method {method!r}. Valid: {', '.join(repr(m) for m in METHODS)}, a list of gene "
            f"names, a path to a {' or '.join(LIST_SUFFIXES)} gene list, or one gene measured in every sample."
        )
    absent: list[str] = []
    if listed is not None:
        genes, absent = _check_listed(listed, common, tables, missing)
        method_name = "list"
    else:
        if n_top > len(common):
            raise ValueError(
                f"`n_top={n_top}` but only {len(common)} genes are measured in all samples; "
                f"pass `n_top<={len(common)}`."
            )
        _require_normalized(tables, method)
        genes = _top_by_mean(tables, common, n_top) if method == "mean" else _top_hvg(tables, common, n_top)
        method_name = method

    # the file a fixed list was read from, recorded beside the genes
    source = str(method) if isinstance(method, str | Path) and listed is not None and not one_gene else None
    for name, sdata in samples.items():
        table = tables[name]
        if subset:
            table = table[:, genes].copy()
            sdata.tables[keys[name]] = table
        else:
            table.var[key_added] = table.var_names.isin(genes)
        histo2st_uns(table)["select_genes"] = {
            "method": method_name,
            "source": source,
            "n_top": None if listed is not None else int(n_top),
            "subset": subset,
            "key_added": None if subset else key_added,
            "samples": list(samples),
            "genes": np.asarray(genes, dtype=str),
            "not_in_all": np.asarray(not_in_all[name], dtype=str),
            "absent": np.asarray(absent, dtype=str),
        }
        write_to_store(sdata, [keys[name]])
    written = (["var (subset)"] if subset else [f'var["{key_added}"]']) + ['uns["histo2st"]["select_genes"]']
    log_added(f"table of {len(samples)} sample(s), {len(genes)} genes by '{method_name}'", written, start)
    return result


def _gene_list(method) -> list[str] | None:
    """The fixed gene list that ``method`` names, or ``None`` for a ranking method; raises for anything else."""
    if isinstance(method, str) and method in METHODS:
        return None
    if _is_one_gene(method):
        names = [method]
    elif isinstance(method, str | Path):
        path = Path(method)
        if path.suffix.lower() not in LIST_SUFFIXES:
            raise ValueError(
                f"Unknown gene selection method {str(method)!r}. Valid: {', '.join(repr(m) for m in METHODS)}, a list "
                f"of gene names, or a path to a {' or '.join(LIST_SUFFIXES)} gene list."
            )
        if not path.is_file():
            raise FileNotFoundError(f"Gene list file not found: '{path}'. Check the path.")
        if path.suffix.lower() == ".npy":
            names = np.load(path, allow_pickle=False).ravel().tolist()
        else:
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    elif isinstance(method, Iterable):
        names = list(method)
    else:
        raise TypeError(f"`method` must be {' or '.join(map(repr, METHODS))}, a gene list or a path, got {method!r}.")
    names = [str(g) for g in names]
    if not names:
        raise ValueError("The gene list is empty.")
    dup = pd.Index(names)[pd.Index(names).duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"The gene list names {len(dup)} genes twice, e.g. {dup[:5]}; remove the duplicates.")
    return names


def _is_one_gene(method) -> bool:
    """Whether ``method`` names one gene: a string that is neither a ranking method nor a gene-list file."""
    return isinstance(method, str) and method not in METHODS and Path(method).suffix.lower() not in LIST_SUFFIXES


def _common_genes(tables: dict) -> pd.Index:
    """Genes measured in every table, in the order of the first one."""
    first, *others = tables.values()
    mask = np.ones(first.n_vars, dtype=bool)
    for table in others:
        mask &= first.var_names.isin(table.var_names)
    return first.var_names[mask]


def _check_listed(listed: list[str], common: pd.Index, tables: dict, missing: str) -> tuple[list[str], list[str]]:
    in_common = pd.Index(listed).isin(common)
    absent = [g for g, ok in zip(listed, in_common, strict=True) if not ok]
    if not absent:
        return listed, []
    per_sample = ", ".join(
        f"'{name}': {int((~pd.Index(absent).isin(table.var_names)).sum())}" for name, table in tables.items()
    )
    if missing == "raise" or len(absent) == len(listed):
        fix = " Pass `missing='drop'` to use the listed genes that are present." if len(absent) < len(listed) else ""
        raise ValueError(
            f"{len(absent)} of the {len(listed)} listed genes are not measured in every sample (absent per sample: "
            f"{per_sample}), e.g. {absent[:10]}.{fix}"
        )
    logger.warning(
        f"Dropping {len(absent)} of the {len(listed)} listed genes that are not measured in every sample "
        f"(absent per sample: {per_sample}), e.g. {absent[:10]}."
    )
    return [g for g, ok in zip(listed, in_common, strict=True) if ok], absent


def _require_normalized(tables: dict, method: str) -> None:
    for name, table in tables.items():
        params = table.uns.get(ATTRS_KEY, {}).get("normalize")
        if params is None:
            raise ValueError(
                f"Method '{method}' ranks normalized expression, but the table of sample '{name}' is not normalized. "
                "Call `st.pp.normalize(sdata)` first."
            )
        if method == "hvg" and not params["log"]:
            raise ValueError(
                f"Method 'hvg' needs log-normalized expression, but sample '{name}' was normalized with `log=False`. "
                "Call `st.pp.normalize(sdata, log=True)` first."
            )


def _top_by_mean(tables: dict, common: pd.Index, n_top: int) -> list[str]:
    total = np.zeros(len(common))
    n_spots = 0
    for table in tables.values():
        total += np.asarray(table[:, common].X.sum(axis=0), dtype=np.float64).ravel()
        n_spots += table.n_obs
    order = np.argsort(-(total / n_spots), kind="stable")  # stable: ties keep the table's gene order
    return common[order[:n_top]].tolist()


def _top_hvg(tables: dict, common: pd.Index, n_top: int) -> list[str]:
    import scanpy as sc

    var = pd.DataFrame(index=common)
    pooled = ad.concat(
        {name: ad.AnnData(X=table[:, common].X, obs=table.obs[[]], var=var) for name, table in tables.items()},
        label="sample",
        index_unique="-",
    )
    pooled.uns["log1p"] = {"base": None}  # X is log1p-normalized (checked above); tells scanpy not to warn
    batch_key = "sample" if len(tables) > 1 else None
    stats = sc.pp.highly_variable_genes(pooled, n_top_genes=n_top, flavor="seurat", batch_key=batch_key, inplace=False)
    chosen = stats[stats["highly_variable"]]
    by = ["highly_variable_nbatches", "dispersions_norm"] if batch_key else ["dispersions_norm"]
    return chosen.sort_values(by, ascending=False, kind="stable").index[:n_top].tolist()
