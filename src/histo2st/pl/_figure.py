"""Figure plumbing shared by every plot: a grid of axes (or the user's), and scanpy's show / save / return rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._logging import logger


def panel_grid(n_rows: int, n_cols: int, ax, panel_size: tuple[float, float]):
    """A figure and an ``(n_rows, n_cols)`` object array of axes: new ones, or those given as ``ax``.

    ``ax`` may be one Axes (for a single panel) or any nested sequence holding one Axes per panel.
    """
    import matplotlib.pyplot as plt

    if ax is not None:
        axes = np.asarray(ax, dtype=object).reshape(-1)
        if axes.size != n_rows * n_cols:
            raise ValueError(
                f"This plot draws {n_rows * n_cols} panels ({n_rows} x {n_cols}) but `ax` holds {axes.size} axes; "
                f"pass that many axes, or leave `ax=None` for a new figure."
            )
        return axes[0].figure, axes.reshape(n_rows, n_cols)
    width, height = panel_size
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(width * n_cols, height * n_rows), squeeze=False, layout="constrained"
    )
    return fig, axes


def finish(fig, axes, *, show: bool | None, save, return_fig: bool):
    """Save, show and return like scanpy plots.

    ``save`` writes the figure to that path (the format from its suffix), creating parent folders. ``show=None``
    shows the figure unless it was saved or ``return_fig`` is set. Returns the figure with ``return_fig``, ``None``
    when shown, and otherwise ``axes`` (one Axes when there is a single panel).
    """
    import matplotlib.pyplot as plt

    if save is not None:
        path = Path(save)
        formats = fig.canvas.get_supported_filetypes()
        if path.suffix.lstrip(".").lower() not in formats:
            raise ValueError(
                f"Cannot tell the figure format from '{path}': end the path with one of "
                f"{', '.join('.' + f for f in sorted(formats))} (e.g. '.png' or '.pdf')."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
        logger.info(f"Saved figure to '{path}'.")
    if return_fig:
        return fig
    if show is None:
        show = save is None
    if show:
        plt.show()
        return None
    axes = np.asarray(axes, dtype=object)
    return axes.reshape(-1)[0] if axes.size == 1 else axes


def value_range(arrays, vmin: float | None, vmax: float | None) -> tuple[float | None, float | None]:
    """Color range over the finite values of ``arrays``, where ``vmin``/``vmax`` are not given."""
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return vmin, vmax
    return (float(values.min()) if vmin is None else vmin), (float(values.max()) if vmax is None else vmax)
