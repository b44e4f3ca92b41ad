"""``st.pl.gene_correlation``: per-gene Pearson correlation of predicted and measured expression, ranked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .._constants import ATTRS_KEY
from .._docs import PLOT_DOC, doc_params
from ._figure import finish, panel_grid

SCORE_COLUMNS = ("section", "gene", "pcc")


@doc_params(plot_output=PLOT_DOC)
def gene_correlation(
    data,
    *,
    key: str = "evaluation",
    pred_key: str = "pred_spots",
    n_top: int = 10,
    section: str | Sequence[str] | None = None,
    figsize: tuple[float, float] = (7.0, 4.0),
    ax=None,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """Plot per-gene Pearson correlations sorted from best to worst, naming the top genes.

    One line per section: the genes ranked by their correlation across that section's spots, the legend giving each
    section's mean (PCC@M). The top ``n_top`` genes are named beside the axes, with lines to their points for one
    section, by their mean over the sections for several. Genes without a correlation (constant expression) are left
    out.

    Parameters
    ----------
    data
        A sample evaluated by :func:`histo2st.tl.evaluate` (it reads ``tables[pred_key].var[f"{key}_pcc"]``), a list
        or dict of them (sections; dict keys name them, else the sample names), or the long DataFrame of
        :func:`histo2st.tl.gene_scores` (columns ``"section"``, ``"gene"``, ``"pcc"``).
    key
        The ``key_added`` of the evaluation.
    pred_key
        Table of the predictions at the measured spots that the evaluation annotated.
    n_top
        Number of top genes named.
    section
        Plot only this section (or these sections).
    figsize
        Size of a new figure in inches.
    ax
        Axes to draw into.
    {plot_output}

    Returns
    -------
    The figure with ``return_fig=True``; ``None`` when shown; otherwise the Axes.
    """
    if n_top < 0:
        raise ValueError(f"`n_top` must be >= 0, got {n_top!r}.")
    scores = _scores(data, key, pred_key)
    sections = list(dict.fromkeys(scores["section"]))
    if section is not None:
        wanted = [section] if isinstance(section, str) else list(section)
        missing = [s for s in wanted if s not in sections]
        if missing:
            raise KeyError(f"Sections {missing} are not in the scores; sections: {sections}.")
        sections = wanted
    scores = scores[scores["section"].isin(sections) & np.isfinite(scores["pcc"])]
    if scores.empty:
        raise ValueError(f"No finite per-gene correlation to plot for sections {sections}.")

    fig, axes = panel_grid(1, 1, ax, figsize)
    a = axes[0, 0]
    lines = {}
    for name in sections:
        part = scores[scores["section"] == name].sort_values("pcc", ascending=False)
        ranks = np.arange(1, len(part) + 1)
        (lines[name],) = a.plot(ranks, part["pcc"].to_numpy(), label=f"{name} (PCC@M {part['pcc'].mean():.3f})")
    a.axhline(0, color="0.6", lw=0.8, zorder=0)
    a.set_xlabel("gene rank")
    a.set_ylabel("Pearson r, predicted vs measured")
    a.set_title(f"Per-gene correlation ({key})")
    a.legend(loc="lower left", fontsize="small", frameon=False)
    _name_top(a, scores, sections, n_top, lines)
    return finish(fig, axes, show=show, save=save, return_fig=return_fig)


def _name_top(ax, scores: pd.DataFrame, sections: list[str], n_top: int, lines: dict) -> None:
    """Names of the top genes in a column right of the axes, where they never cover the curves.

    With one section each name has a line to its point.
    """
    if n_top == 0:
        return
    mean = scores.groupby("gene", observed=True)["pcc"].mean().sort_values(ascending=False)
    top = mean.head(n_top)
    gap = min(0.08, 0.9 / len(top))
    header = "top genes, r" if len(sections) == 1 else "top genes, mean r over sections"
    ax.text(1.03, 1.0, header, transform=ax.transAxes, fontsize="small", va="center", style="italic")
    for i, (gene, r) in enumerate(top.items()):
        y = 1.0 - (i + 1) * gap
        if len(sections) == 1:
            rank = int(np.flatnonzero(mean.index == gene)[0]) + 1
            ax.annotate(f"{gene}  {r:.2f}", xy=(rank, r), xytext=(1.03, y), textcoords="axes fraction",
                        fontsize="small", va="center", color=lines[sections[0]].get_color(),
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.6"})  # fmt: skip
        else:
            ax.text(1.03, y, f"{gene}  {r:.2f}", transform=ax.transAxes, fontsize="small", va="center")


def _scores(data, key: str, pred_key: str) -> pd.DataFrame:
    """The long ``section, gene, pcc`` table from any accepted input."""
    if isinstance(data, pd.DataFrame):
        missing = [c for c in SCORE_COLUMNS if c not in data.columns]
        if missing:
            raise ValueError(
                f"The scores DataFrame lacks columns {missing}; pass the output of `st.tl.gene_scores` (columns "
                f"{list(SCORE_COLUMNS)}) or the evaluated samples themselves."
            )
        out = data.loc[:, list(SCORE_COLUMNS)].copy()
        out["section"] = out["section"].astype(str)
        out["pcc"] = out["pcc"].astype(np.float64)
        return out
    if isinstance(data, Mapping):
        samples = {str(k): v for k, v in data.items()}
    elif isinstance(data, list | tuple):
        samples = {}
        for i, sdata in enumerate(data):
            name = str(sdata.attrs.get(ATTRS_KEY, {}).get("sample", f"section {i}"))
            samples[name if name not in samples else f"{name} ({i})"] = sdata
    else:
        samples = {str(data.attrs.get(ATTRS_KEY, {}).get("sample", "section")): data}
    frames = []
    for name, sdata in samples.items():
        if pred_key not in sdata.tables:
            raise KeyError(
                f"Section '{name}' has no table '{pred_key}'; predict first (`st.tl.predict`) or pass `pred_key=`."
            )
        var = sdata.tables[pred_key].var
        column = f"{key}_pcc"
        if column not in var.columns:
            raise KeyError(
                f"Section '{name}': tables['{pred_key}'].var has no '{column}'. Run "
                f"`st.tl.evaluate(sdata, key_added='{key}')` first, or pass the `key=` it was written under."
            )
        frames.append(pd.DataFrame({"section": name, "gene": var.index.astype(str), "pcc": var[column].to_numpy()}))
    return pd.concat(frames, ignore_index=True)
