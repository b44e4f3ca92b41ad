"""``st.pl.report``: one self-contained HTML page a person reads to decide how far to trust a prediction."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._constants import ATTRS_KEY, PRED_KEY
from .._logging import logger

if TYPE_CHECKING:
    from spatialdata import SpatialData

#: Genes shown with their maps at each end of the PCC ranking.
N_SHOWN = 3
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .9em; } td, th { border: 1px solid #ddd; padding: .25em .6em; }
th { background: #f4f4f4; text-align: left; } img { max-width: 100%; } pre { background: #f7f7f7; padding: .8em;
overflow-x: auto; font-size: .8em; } .note { color: #555; font-size: .9em; }
"""


def report(
    sdata: SpatialData,
    out: str | Path,
    *,
    pred_key: str = PRED_KEY,
    evaluation_key: str = "evaluation",
    downstream_key: str = "downstream",
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an HTML report of a prediction: model card, metrics, trust figure, best and worst genes, protocol.

    The page is one file with every image embedded (PNG as data URIs) and no script or remote resource, so it opens
    offline and can be mailed. It shows what the sample holds: the model card recorded with the prediction; the
    metrics of :func:`histo2st.tl.evaluate` next to its trivial baseline (each gene's mean, ``"MSE mean
    predictor"`` and ``"R2"``) and, for an ensemble, the coverage of its intervals; :func:`histo2st.pl.trust`; the
    ``3`` best and worst genes by PCC with their maps (and uncertainty maps for an ensemble); the downstream
    comparison of :func:`histo2st.tl.compare_downstream` when it was run; and the recorded parameters of every step
    behind these numbers.

    Parameters
    ----------
    sdata
        A predicted and evaluated sample (:func:`histo2st.tl.predict`, :func:`histo2st.tl.evaluate`).
    out
        Path of the ``.html`` file.
    pred_key
        The ``key_added`` of the prediction.
    evaluation_key, downstream_key
        The ``key_added`` of the evaluation and the downstream comparison.
    title
        Heading of the page; default from the sample's name.
    overwrite
        Replace an existing file (written atomically either way).

    Returns
    -------
    The path written.
    """
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"The report is an HTML page: end `out` with '.html', got '{out}'.")
    if out.exists() and not overwrite:
        raise FileExistsError(f"'{out}' already exists; pass `overwrite=True` to replace it.")
    table_key = f"{pred_key}_spots"
    if table_key not in sdata.tables:
        raise KeyError(f"No table '{table_key}': predict first (`st.tl.predict(sdata)`) or pass `pred_key=`.")
    table = sdata.tables[table_key]
    recorded = table.uns.get(ATTRS_KEY, {})
    name = str(sdata.attrs.get(ATTRS_KEY, {}).get("sample", "sample"))
    sections = [
        f"<h1>{html.escape(title or f'histo2st prediction: {name}')}</h1>",
        _model_section(recorded.get("model", {})),
        _metrics_section(recorded.get(evaluation_key)),
        _figure_section(sdata, pred_key, evaluation_key, downstream_key, table),
        _downstream_section(recorded.get(downstream_key)),
        _protocol_section(recorded, evaluation_key, downstream_key),
    ]
    head = f"<head><meta charset='utf-8'><title>{html.escape(name)}</title><style>{_STYLE}</style></head>"
    body = "\n".join(s for s in sections if s)
    page = f"<!DOCTYPE html>\n<html lang='en'>{head}<body>\n{body}\n</body></html>\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    logger.info(f"Wrote the report to '{out}' ({out.stat().st_size / 1e6:.1f} MB).")
    return out


def _model_section(card: dict) -> str:
    if not card:
        return "<h2>Model</h2><p class='note'>The prediction table records no model card.</p>"
    keys = ["model", "model_key", "genes", "microns_per_pixel", "preset", "training", "validation_metrics", "ensemble"]
    rows = {k: card[k] for k in keys if k in card}
    if "genes" in rows:
        rows["genes"] = f"{len(rows['genes'])} genes"
    return "<h2>Model</h2>" + _key_value_table(rows)


def _metrics_section(evaluation: dict | None) -> str:
    if not evaluation:
        return "<h2>Accuracy</h2><p class='note'>Not evaluated: run <code>st.tl.evaluate(sdata)</code> first.</p>"
    summary = dict(evaluation["summary"])
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in summary.items())
    return (
        "<h2>Accuracy at the measured spots</h2><table>" + rows + "</table><p class='note'>PCC@M/S/F: mean, median "
        "and first quartile over genes of the Pearson correlation across spots. <i>MSE mean predictor</i>: the error "
        "of predicting each gene's measured mean everywhere; <i>R2</i> above 0 beats it. <i>coverage@k</i> (an "
        "ensemble): the share of measured values inside the central k % interval, k/100 when calibrated.</p>"
    )


def _figure_section(sdata, pred_key: str, evaluation_key: str, downstream_key: str, table) -> str:
    import matplotlib.pyplot as plt

    from ._spatial import spatial_gene
    from ._trust import trust

    column = f"{evaluation_key}_pcc"
    if column not in table.var.columns:
        return ""
    parts = ["<h2>Which genes to believe</h2>"]
    fig = trust(sdata, pred_key=pred_key, evaluation_key=evaluation_key, downstream_key=downstream_key,
                return_fig=True, show=False)  # fmt: skip
    parts.append(_image(fig))
    pcc = table.var[column].dropna().sort_values(ascending=False)
    shown = {"best": pcc.index[:N_SHOWN].tolist(), "worst": pcc.index[::-1][:N_SHOWN].tolist()}
    keys = [key for key in (pred_key, f"{pred_key}_std") if key in sdata.images]
    for label, genes in shown.items():
        parts.append(f"<h3>The {len(genes)} {label} genes by PCC: {html.escape(', '.join(genes))}</h3>")
        for key in keys:
            fig = spatial_gene(sdata, genes, source="pred", pred_key=key, max_px=600, return_fig=True, show=False)
            parts.append(f"<p class='note'>{'Uncertainty (std)' if key.endswith('_std') else 'Prediction'}</p>")
            parts.append(_image(fig))
    plt.close("all")
    return "\n".join(parts)


def _downstream_section(downstream: dict | None) -> str:
    if not downstream:
        return ""
    return ("<h2>Downstream analysis, predicted vs measured</h2>" + _key_value_table(downstream["summary"])
            + "<p class='note'>Moran's I by squidpy and domains by scanpy, run on both tables with the same "
            "settings (see the protocol).</p>")  # fmt: skip


def _protocol_section(recorded: dict, evaluation_key: str, downstream_key: str) -> str:
    steps = {key: recorded[key].get("params") for key in (evaluation_key, downstream_key) if key in recorded}
    steps["prediction"] = {k: recorded[k] for k in ("values", "tta", "ensemble") if k in recorded}
    text = json.dumps(steps, indent=2, default=_jsonable)
    return f"<h2>Protocol of every number</h2><pre>{html.escape(text)}</pre>"


def _key_value_table(rows: dict) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def _fmt(value) -> str:
    if isinstance(value, float | np.floating):
        return "NaN" if not np.isfinite(value) else f"{value:.4g}"
    if isinstance(value, dict | list):
        return f"<pre>{html.escape(json.dumps(value, indent=1, default=_jsonable))}</pre>"
    return html.escape(str(value))


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _image(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='figure' src='data:image/png;base64,{data}'>"
