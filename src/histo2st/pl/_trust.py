"""``st.pl.trust``: which genes to believe, and where on the slide the prediction is unsure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._constants import PRED_KEY
from .._docs import PLOT_DOC, doc_params
from ._figure import finish, panel_grid

if TYPE_CHECKING:
    from spatialdata import SpatialData


@doc_params(plot_output=PLOT_DOC)
def trust(
    sdata: SpatialData,
    gene: str | None = None,
    *,
    pred_key: str = PRED_KEY,
    evaluation_key: str = "evaluation",
    downstream_key: str = "downstream",
    n_label: int = 6,
    max_px: int = 800,
    panel_size: float = 4.0,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """Per gene, accuracy against uncertainty and spatial structure; for one gene, its map beside its uncertainty.

    Reads what :func:`histo2st.tl.evaluate` (per-gene PCC), :func:`histo2st.tl.compare_downstream` (Moran's I of
    prediction and measurement) and an ensemble's prediction (``var["std"]``, calibrated by
    :func:`histo2st.tl.calibrate` if it was) wrote into ``tables[f"{pred_key}_spots"]``:

    - PCC against the gene's mean predicted standard deviation relative to its spread across spots (genes whose
      uncertainty is large next to the signal sit high), colored by the measured Moran's I; the ``n_label`` best and
      worst genes by PCC are named. Without an uncertainty, the y axis is the predicted Moran's I.
    - With the downstream comparison: each gene's Moran's I on the prediction against on the measurement (on the
      diagonal, the analysis finds the same spatial structure).
    - With the dense maps (``images[pred_key]`` and, for an ensemble, ``images[f"{pred_key}_std"]``): ``gene``
      (default the best by PCC) over the H&E, and its standard deviation beside it.

    Parameters
    ----------
    sdata
        A sample predicted (:func:`histo2st.tl.predict`) and evaluated (:func:`histo2st.tl.evaluate`).
    gene
        Gene whose maps are drawn; default the one with the highest PCC.
    pred_key
        The ``key_added`` of the prediction.
    evaluation_key, downstream_key
        The ``key_added`` of the evaluation and of the downstream comparison.
    n_label
        Genes named at each end of the PCC ranking.
    max_px
        Largest side in pixels at which the maps are read.
    panel_size
        Size of each panel in inches.
    {plot_output}

    Returns
    -------
    The figure with ``return_fig=True``; ``None`` when shown; otherwise the array of Axes.
    """
    genes = _gene_table(sdata, f"{pred_key}_spots", evaluation_key, downstream_key)
    gene = genes["pcc"].idxmax() if gene is None else gene
    if gene not in genes.index:
        raise KeyError(f"Gene {gene!r} was not evaluated; evaluated genes include {genes.index[:5].tolist()}.")
    maps = [key for key in (pred_key, f"{pred_key}_std") if key in sdata.images]
    has_moran = "moran_pred" in genes.columns
    fig, axes = panel_grid(1, 1 + has_moran + len(maps), None, (panel_size, panel_size))
    _accuracy_panel(axes[0, 0], genes, n_label)
    if has_moran:
        _moran_panel(axes[0, 1], genes)
    for ax, key in zip(axes[0, 1 + has_moran :], maps, strict=True):
        _map_panel(sdata, ax, gene, key, max_px)
    return finish(fig, axes, show=show, save=save, return_fig=return_fig)


def _gene_table(sdata, table_key: str, evaluation_key: str, downstream_key: str) -> pd.DataFrame:
    """Per gene: ``pcc``, and where present ``std`` (relative), ``moran_pred``, ``moran_truth``."""
    if table_key not in sdata.tables:
        raise KeyError(f"No table '{table_key}'; predict first (`st.tl.predict`) or pass `pred_key=`.")
    table = sdata.tables[table_key]
    var = table.var
    column = f"{evaluation_key}_pcc"
    if column not in var.columns:
        raise KeyError(f"tables['{table_key}'].var has no '{column}'; run `st.tl.evaluate(sdata)` first.")
    out = pd.DataFrame({"pcc": var[column].to_numpy(dtype=np.float64)}, index=var.index.astype(str))
    if "std" in var.columns:
        x = table.X.toarray() if hasattr(table.X, "toarray") else np.asarray(table.X)
        spread = np.nanstd(np.asarray(x, dtype=np.float64), axis=0)
        out["std"] = var["std"].to_numpy(dtype=np.float64) / np.where(spread > 0, spread, np.nan)
    for side in ("pred", "truth"):
        if f"{downstream_key}_moran_{side}" in var.columns:
            out[f"moran_{side}"] = var[f"{downstream_key}_moran_{side}"].to_numpy(dtype=np.float64)
    out = out[np.isfinite(out["pcc"])]
    if out.empty:
        raise ValueError(f"No gene of tables['{table_key}'] has a finite PCC to plot.")
    return out


def _accuracy_panel(ax, genes: pd.DataFrame, n_label: int) -> None:
    y_column = "std" if "std" in genes.columns else "moran_pred" if "moran_pred" in genes.columns else None
    y = genes[y_column] if y_column else pd.Series(0.0, index=genes.index)
    color = genes["moran_truth"] if "moran_truth" in genes.columns else None
    points = ax.scatter(genes["pcc"], y, c=color, s=14, **({} if color is None else {"cmap": "viridis"}))
    if color is not None:
        ax.figure.colorbar(points, ax=ax, label="Moran's I, measured", shrink=0.8)
    ranked = genes["pcc"].sort_values()
    for name in [*ranked.index[:n_label], *ranked.index[-n_label:]] if n_label else []:
        ax.annotate(name, (genes.at[name, "pcc"], y[name]), fontsize="x-small", xytext=(3, 2),
                    textcoords="offset points")  # fmt: skip
    ax.axvline(0, color="0.6", lw=0.8, zorder=0)
    ax.set_xlabel("PCC, predicted vs measured")
    ax.set_ylabel({"std": "predicted std / spread across spots", "moran_pred": "Moran's I, predicted", None: ""}[
        y_column])  # fmt: skip
    ax.set_title("Which genes to believe")


def _moran_panel(ax, genes: pd.DataFrame) -> None:
    both = genes[["moran_truth", "moran_pred"]].dropna()
    ax.scatter(both["moran_truth"], both["moran_pred"], c=genes.loc[both.index, "pcc"], cmap="coolwarm", vmin=-1,
               vmax=1, s=14)  # fmt: skip
    low, high = float(np.nanmin(both.to_numpy())), float(np.nanmax(both.to_numpy()))
    ax.plot([low, high], [low, high], color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("Moran's I, measured")
    ax.set_ylabel("Moran's I, predicted")
    ax.set_title("Same spatial structure? (color: PCC)")


def _map_panel(sdata, ax, gene: str, key: str, max_px: int) -> None:
    from ._spatial import spatial_gene

    spatial_gene(sdata, gene, source="pred", pred_key=key, max_px=max_px, ax=ax, show=False)
    ax.set_title(f"{gene}: {'uncertainty (std)' if key.endswith('_std') else 'prediction'}")
