"""The README's calls with their default arguments on one her2st section: time to a first model, and is it any good?

Runs, in one process and in this order, exactly what a new user types::

    sdata = st.io.read_her2st(root, "C3")
    st.pp.normalize(sdata); st.pp.select_genes(sdata, n_top=250)
    st.tl.fit(sdata, model="pixnet")          # preset="auto": "cpu" without a CUDA GPU
    st.tl.predict(sdata, spot_um=8)
    st.pl.spatial_gene(sdata, "FASN")

and then writes the sample (``st.io.write_zarr``), reads it back and opens it in the tools a user has next
(spatialdata-plot ``render_images`` of the map with its tissue labels, scanpy neighbors and leiden on the 8 µm
bins, with their seconds and the peak RSS after rendering). It prints JSON with the seconds of every step and in
total, whether ``spatial_gene`` and the write ran the network again (forward passes counted), and the validation
PCC@M of the model (mean over genes of the Pearson correlation across the 15 % validation spots ``fit`` held out)
beside the color/texture ridge baseline's (``st.model.ColorTextureRidge``) trained on the other 85 % of the same
section and scored on the same spots.

    python benchmarks/quickstart.py --section C3 --out runs/quickstart.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import peak_rss_gb, provenance, start_clock

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "her2st"


def validation_spots(sdata, genes: list[str], seed: int) -> np.ndarray:
    """The spot names ``st.tl.fit`` held out for validation (its default: 15 % of the spots, drawn with ``seed``)."""
    from histo2st.train import prepare_sections, split_validation

    # the draw depends only on the spot order and the seed, not on the resolution: a coarse one is quick
    sections, _ = prepare_sections({"s": sdata}, genes, 16.0)
    _, val, _ = split_validation(sections, 0.15, seed=seed)
    return np.asarray(val[0].spot_names)


def ridge_scores(sdata, genes: list[str], held: np.ndarray) -> tuple[float, float]:
    """Validation PCC@M of the ridge baseline trained on the other spots, and its seconds."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import histo2st as st
    from histo2st.model._color_ridge import ALPHAS

    start = time.perf_counter()
    table = sdata.tables["table"]
    diameter = st.io.get_scale(sdata).spot_diameter_um
    features = st.model.ColorTextureRidge(genes, patch_um=diameter).features(sdata, table.obsm["spatial"])
    targets = _dense(table[:, genes].X)
    val = np.isin(table.obs_names, held)
    pipeline = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS)).fit(features[~val], targets[~val])
    return pcc_at_m(pipeline.predict(features[val]), targets[val]), time.perf_counter() - start


def open_in_tools(store: Path, gene: str, png: Path) -> dict:
    """What a user does next with the written store: render the map in spatialdata-plot, cluster the 8 µm bins."""
    import matplotlib.pyplot as plt
    import scanpy as sc
    import spatialdata as sd
    import spatialdata_plot  # noqa: F401  (registers sdata.pl)

    out = {}
    sdata = sd.read_zarr(store)
    start = time.perf_counter()
    rendered = sdata.pl.render_images("pred", channel=gene)
    rendered.pl.render_labels("pred_tissue", fill_alpha=0.0, outline_alpha=1.0).pl.show(save=png)
    plt.close("all")
    out["render_images_seconds"] = round(time.perf_counter() - start, 1)
    out["render_peak_rss_gb"] = peak_rss_gb()
    start = time.perf_counter()
    bins = sdata.tables["pred_square_8um"].copy()
    sc.pp.neighbors(bins, use_rep="X")
    sc.tl.leiden(bins, flavor="igraph", n_iterations=2)
    out["leiden_clusters_8um"] = int(bins.obs["leiden"].nunique())
    out["bins_8um"] = int(bins.n_obs)
    out["neighbors_leiden_seconds"] = round(time.perf_counter() - start, 1)
    return out


def pcc_at_m(pred: np.ndarray, truth: np.ndarray) -> float:
    from histo2st.metrics import pcc_per_gene

    return float(np.nanmean(pcc_per_gene(pred, truth)))


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def run(section: str, root: Path, gene: str) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import histo2st as st

    steps, start = {}, time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        steps[name] = round(now - since, 1)
        return now

    t = time.perf_counter()
    sdata = st.io.read_her2st(root, section)
    t = lap("read_her2st", t)
    st.pp.normalize(sdata)
    st.pp.select_genes(sdata, n_top=250)
    t = lap("normalize_select_genes", t)
    model = st.tl.fit(sdata, model="pixnet")
    t = lap("fit", t)
    st.tl.predict(sdata, spot_um=8)
    t = lap("predict", t)
    forwards = []
    forward = model.module.forward
    model.module.forward = lambda x: (forwards.append(len(x)), forward(x))[1]
    with tempfile.TemporaryDirectory() as tmp:
        st.pl.spatial_gene(sdata, gene, save=Path(tmp) / "gene.png", show=False)
        t = lap("spatial_gene", t)
        readme_total = round(time.perf_counter() - start, 1)
        st.io.write_zarr(sdata, Path(tmp) / "sample.zarr")
        t = lap("write_zarr", t)
        rss_before_tools = peak_rss_gb()
        tools = open_in_tools(Path(tmp) / "sample.zarr", gene, Path(tmp) / "render.png")
        t = lap("spatialdata_plot_and_scanpy", t)
    genes = list(model.genes)
    held = validation_spots(sdata, genes, model.card["training"]["seed"])
    pred = sdata.tables["pred_spots"]
    truth = sdata.tables["table"]
    pixnet = pcc_at_m(_dense(pred[held, genes].X), _dense(truth[held, genes].X))
    ridge, ridge_seconds = ridge_scores(sdata, genes, held)
    return {
        "section": section,
        "seconds": steps,
        "readme_calls_seconds": readme_total,
        "forward_passes_after_predict": len(forwards),
        "preset": model.card["preset"],
        "epochs_run": len(model.history),
        "validation_spots": len(held),
        "pixnet_val_pcc_at_m": round(pixnet, 4),
        "pixnet_val_pcc_trainer": model.card["validation_metrics"].get("val_pcc"),
        "ridge_val_pcc_at_m": round(ridge, 4),
        "ridge_seconds": round(ridge_seconds, 1),
        "map_shape": list(sdata.images["pred"]["scale0"].ds["image"].shape)
        if hasattr(sdata.images["pred"], "children")
        else list(sdata.images["pred"].shape),
        "tools": tools,
        "peak_rss_gb_before_tools": rss_before_tools,
        "peak_rss_gb": peak_rss_gb(),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", default="C3")
    parser.add_argument("--root", type=Path, default=DATA, help="her2st repository root")
    parser.add_argument("--gene", default="FASN")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    clock = start_clock()
    result = {**run(args.section, args.root, args.gene), "provenance": provenance(clock)}
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return result


if __name__ == "__main__":
    main()
