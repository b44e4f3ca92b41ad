"""The main job on the embedded default data: synthetic tissue -> PixNet -> predictions, store and figures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ._logging import logger

DEMO_GENES = 3


def run_demo(
    out: str | Path,
    *,
    size_um: float | None = None,
    epochs: int = 30,
    max_time: float | None = 240.0,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Generate synthetic tissue, train PixNet, predict at the measured spots and in 8 µm bins, write everything.

    Writes ``out/synthetic.zarr`` (H&E, truth, spots, predictions), ``out/pixnet/`` (the model and its card),
    ``out/demo.png`` (H&E, truth and prediction for a few genes) and ``out/summary.json`` (what was measured).
    Returns the summary.
    """
    import histo2st as st
    from histo2st.metrics import pcc_per_gene

    out = Path(out)
    store = out / "synthetic.zarr"
    if store.exists() and not overwrite:
        raise FileExistsError(f"'{store}' already exists; pass --overwrite to replace it.")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sdata = st.datasets.synthetic_tissue(seed=seed, **({"size_um": size_um} if size_um else {}))
    st.pp.normalize(sdata)
    model = st.tl.fit(sdata, "pixnet", epochs=epochs, max_time=max_time, validation=0.2, hidden_dim=64, seed=seed)
    model.save(out / "pixnet", overwrite=overwrite)
    st.tl.predict(sdata, model, spot_um=8)
    st.tl.aggregate(sdata, "truth", spot_um=8, overwrite=True)

    measured = sdata.tables["table"]
    pred_spots = sdata.tables["pred_spots"][measured.obs_names]
    spot_pcc = pcc_per_gene(np.asarray(pred_spots.X), _dense(measured.X))
    pred_bins, truth_bins = sdata.tables["pred_square_8um"], sdata.tables["truth_square_8um"]
    bin_pcc = pcc_per_gene(np.asarray(pred_bins.X), _log_normalize(np.asarray(truth_bins[:, model.genes].X)))
    summary = {
        "genes": len(model.genes),
        "spots": int(measured.n_obs),
        "bins_8um": int(pred_bins.n_obs),
        "epochs": len(model.history),
        "best_val_pcc": model.card.get("validation_metrics", {}).get("val_pcc"),
        "pcc_at_spots_mean (train and validation spots)": float(np.nanmean(spot_pcc)),
        "pcc_8um_bins_vs_truth_mean": float(np.nanmean(bin_pcc)),
        "seconds": round(time.perf_counter() - start, 1),
    }
    st.io.write_zarr(sdata, store, overwrite=overwrite)
    _figure(sdata, model.genes[:DEMO_GENES], out / "demo.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    logger.info(json.dumps(summary, indent=2))
    return summary


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x)


def _log_normalize(x: np.ndarray, target_sum: float = 1e4) -> np.ndarray:
    # the truth on the scale of the training targets: library-size normalized, log1p
    totals = x.sum(1, keepdims=True)
    return np.log1p(np.divide(x, totals, out=np.zeros_like(x), where=totals > 0) * target_sum)


def _figure(sdata, genes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    he = np.moveaxis(np.asarray(sdata.images["he"].data[:, ::4, ::4]), 0, -1)
    fig, axes = plt.subplots(2, len(genes) + 1, figsize=(4 * (len(genes) + 1), 8), layout="constrained")
    axes[0, 0].imshow(he)
    axes[0, 0].set_title("H&E")
    xy = sdata.tables["table"].obsm["spatial"] / 4
    axes[1, 0].imshow(he)
    axes[1, 0].scatter(xy[:, 0], xy[:, 1], s=6, facecolors="none", edgecolors="k", linewidths=0.5)
    axes[1, 0].set_title("measured spots")
    for col, gene in enumerate(genes, start=1):
        truth = np.asarray(sdata.images["truth"].sel(c=gene).data[::4, ::4])
        pred = np.asarray(sdata.images["pred"].sel(c=gene).data[::2, ::2], dtype=np.float32)
        for row, (img, title, unit) in enumerate(
            [(truth, f"{gene}: truth", "UMI / px"), (pred, f"{gene}: PixNet", "log-norm.")]
        ):
            im = axes[row, col].imshow(img, cmap="magma")
            axes[row, col].set_title(title)
            fig.colorbar(im, ax=axes[row, col], shrink=0.7, label=unit)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.savefig(path, dpi=80)
    plt.close(fig)
