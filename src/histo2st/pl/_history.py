"""``st.pl.history``: training and validation curves per epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .._docs import PLOT_DOC, doc_params
from ._figure import finish, panel_grid

#: Axis labels of the metrics a histo2st trainer records.
METRIC_LABELS = {
    "loss": "training loss",
    "val_pcc": "validation PCC (mean over genes)",
    "val_mse": "validation MSE",
    "epoch_seconds": "seconds per epoch",
}


@doc_params(plot_output=PLOT_DOC)
def history(
    model_or_history,
    *,
    metrics: str | Sequence[str] = ("loss", "val_pcc"),
    panel_size: tuple[float, float] = (4.0, 3.0),
    ax=None,
    show: bool | None = None,
    save=None,
    return_fig: bool = False,
):
    """Plot training and validation metrics per epoch, one panel per metric.

    Parameters
    ----------
    model_or_history
        A trained model (its ``history``), a seed ensemble (one line per member, labeled by its seed) or the history
        itself: a list of per-epoch dicts with ``"epoch"`` and the metrics (``"loss"``, ``"val_pcc"``, ``"val_mse"``,
        ``"epoch_seconds"``).
    metrics
        Keys to plot. Epochs without a key (or with ``None``) are skipped; NaN shows as a gap.
    panel_size
        Size of one panel in inches.
    ax
        Axes to draw into, one per metric.
    {plot_output}

    Returns
    -------
    The figure with ``return_fig=True``; ``None`` when shown; otherwise the Axes (one metric) or an array of Axes,
    one per metric.
    """
    series = _series(model_or_history)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    records = [r for _, history in series for r in history]
    available = sorted({k for r in records for k, v in r.items() if v is not None and k != "epoch"})
    missing = [m for m in metrics if m not in available]
    if missing:
        hint = " (validation metrics exist only when training had validation spots)" if any(
            m.startswith("val_") for m in missing
        ) else ""  # fmt: skip
        raise KeyError(f"Metrics {missing} are not in the history{hint}; it has {available}.")

    fig, axes = panel_grid(1, len(metrics), ax, panel_size)
    for a, metric in zip(axes[0], metrics, strict=True):
        for label, history in series:
            rows = [(r.get("epoch", i + 1), r[metric]) for i, r in enumerate(history) if r.get(metric) is not None]
            if not rows:
                continue
            epochs, values = (np.asarray(v, dtype=np.float64) for v in zip(*rows, strict=True))
            a.plot(epochs, values, marker="o" if len(epochs) <= 30 else None, ms=3, label=label or metric)
        if len(series) > 1:
            a.legend(fontsize="small")
        a.set_xlabel("epoch")
        a.set_ylabel(METRIC_LABELS.get(metric, metric))
        a.set_title(metric)
    return finish(fig, axes[0], show=show, save=save, return_fig=return_fig)


def _series(model_or_history) -> list[tuple[str | None, Sequence[Mapping]]]:
    """``(label, history)`` pairs: one per member of an ensemble (labeled by seed), else one without a label."""
    # a seed ensemble has seeds (every model has `members`, a single one only itself)
    if hasattr(model_or_history, "seeds"):
        pairs = [(f"seed {seed}", member.history) for member, seed in
                 zip(model_or_history.members, model_or_history.seeds, strict=True)]  # fmt: skip
    else:
        pairs = [(None, getattr(model_or_history, "history", model_or_history))]
    for _, records in pairs:
        if not isinstance(records, Sequence) or not all(isinstance(r, Mapping) for r in records):
            raise TypeError("Pass a trained model, a seed ensemble or a `history` (a list of per-epoch dicts).")
        if not records:
            raise ValueError("The history is empty: the model has not been trained (`model.train(...)` / `st.tl.fit`).")
    return pairs
