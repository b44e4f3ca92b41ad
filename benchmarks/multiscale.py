"""Multi-scale generalisation on synthetic tissue with dense truth (the PixNet paper's study), every model in one run.

Design: one synthetic tissue (``st.datasets.synthetic_tissue``, default 1600 x 2400 µm at 1 µm per pixel, 32 genes,
Visium HD-style bins of 2, 8 and 16 µm) is split into two regions by a vertical line. Every model (PixNet, THItoGene,
the color/texture ridge baseline) is trained on the 55 µm Visium-like spots of the left region only, with the H&E
cropped to that region, so no pixel of the test region is seen in training; a guard band (default 100 µm) keeps
the two regions apart. (One tissue, not two: the cell types' expression profiles are drawn per seed, so tissues of
different seeds would have unrelated genes.) The models then predict the right region, at its 55 µm spots and at
every bin size:

- PixNet: its dense map averaged over each spot and square bin (``st.tl.predict(spot_um=...)``);
- THItoGene: ``st.tl.predict(spot_um=...)``, a prediction from a patch at each spot and bin center (from its dense
  map instead where a table has more than ``max_direct_spots`` bins, e.g. the 2 µm bins);
- ridge: from the statistics of a patch of the training spot size centered on each spot and bin.

Each prediction is compared, on the same spots and bins for every model (those in the test region with expression,
predicted by every model), with the truth: the tissue's noise-free expected counts of that spot or bin
(``layers["expected"]``, the dense truth summed over it), log1p(x / total * 1e4) normalized like the training spots.
Reported per model and scale: PCC@M/S/F (per gene across the spots or bins), MSE, MAE, SSIM of the binned maps
(bins only), the ARI of k-means domains at the spots, the prediction spread, and the PCC@M against the measured
(Poisson) counts, which at 2 µm hold only a few molecules per bin. For models with a dense map (PixNet, THItoGene)
``st.tl.evaluate_dense`` also compares the map with the dense truth image. References without training bound what
each kind of model can reach (``reference_runs``): the truth over a spot-sized square around each point (the best
one value per spot-sized patch can do) and, with ``--context > 0``, the expression of the same cells without
context (a perfect cell-type model that sees no context), pointwise and over the spot-sized square. Each model runs
in its own 'spawn' child process (peak memory per model, see ``benchmarks/her2st.py``). JSON on stdout; ``--out DIR``
writes results.json and results.md. The tissue's expression depends on context by default (``--context 1``), since
without it each cell type's color predicts its expression and a color patch is nearly enough (``--context 0``).

    python benchmarks/multiscale.py --out runs/multiscale          # 3 models x 15 min of training
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import (
    add_model_arguments,
    check_out_dir,
    fit_options,
    jsonable,
    markdown_table,
    peak_rss_gb,
    provenance,
    rss_gb,
    run_isolated,
    start_clock,
    write_results,
)

SPOTS = "55um_spots"
PRED_KEY = "pred"
#: Columns of the main table, in order.
COLUMNS = ["n", "PCC@M", "PCC@S", "PCC@F", "SSIM", "MSE", "MAE", "ARI", "spread", "PCC@M_measured"]


def make_tissue(spec: dict, *, normalize: bool = True):
    """The synthetic tissue of this run (deterministic from its parameters), normalized unless told not to."""
    import histo2st as st

    tissue = st.datasets.synthetic_tissue(
        size_um=(spec["height_um"], spec["width_um"]),
        microns_per_pixel=spec["microns_per_pixel"],
        n_genes=spec["n_genes"],
        n_cell_types=spec["n_cell_types"],
        context=spec.get("context", 0.0),
        bins_um=spec["bins_um"],
        seed=spec["seed"],
    )
    if normalize:
        st.pp.normalize(tissue)
    return tissue


def regions(spec: dict) -> tuple[float, float]:
    """``(last training x, first test x)`` in H&E pixels: the split line, minus and plus half the guard band."""
    split_um = spec["train_fraction"] * spec["width_um"]
    return ((split_um - spec["guard_um"] / 2) / spec["microns_per_pixel"],
            (split_um + spec["guard_um"] / 2) / spec["microns_per_pixel"])  # fmt: skip


def training_sample(tissue, x_max_px: float):
    """The tissue's H&E left of ``x_max_px`` with the spots wholly inside it: nothing of the test region."""
    import copy

    import spatialdata as sd

    import histo2st as st
    from histo2st.pp._tables import subset_spots

    scale = st.io.get_scale(tissue)
    train = sd.SpatialData(
        images={scale.image_key: tissue.images[scale.image_key].isel(x=slice(0, int(x_max_px)))},
        shapes={scale.shapes_key: tissue.shapes[scale.shapes_key]},
        tables={scale.table_key: tissue.tables[scale.table_key].copy()},
        attrs=copy.deepcopy(dict(tissue.attrs)),
    )
    table = train.tables[scale.table_key]
    inside = table.obsm["spatial"][:, 0] + scale.spot_radius_px <= int(x_max_px)
    subset_spots(train, inside, table_key=scale.table_key, shapes_key=scale.shapes_key)
    return train


def test_points(tissue, spec: dict) -> dict:
    """Per scale, the indices of the spots or bins of the test region that hold expression, and their centers."""
    x_min = regions(spec)[1]
    points = {}
    for scale in [SPOTS, *spec["bins_um"]]:
        table = tissue.tables["table" if scale == SPOTS else f"table_{scale:03d}um"]
        xy = table.obsm["spatial"]
        index = np.flatnonzero((xy[:, 0] >= x_min) & (np.asarray(table.layers["expected"].sum(1)).ravel() > 0))
        points[scale] = (index, xy[index])
    return points


def on_bins(pred, bins, edge_px: float) -> np.ndarray:
    """A predicted bin table (``st.tl.predict(spot_um=...)``) in the row order of the tissue's bin table (NaN: none)."""
    rows, cols = bins.obs["array_row"].to_numpy(), bins.obs["array_col"].to_numpy()
    lookup = np.full((rows.max() + 1, cols.max() + 1), -1)
    lookup[rows, cols] = np.arange(bins.n_obs)
    center = pred.obsm["spatial"] / edge_px - 0.5
    grid = np.round(center).astype(np.int64)
    if not np.allclose(center, grid, atol=1e-3):
        raise RuntimeError(
            "The predicted bins are not on the tissue's bin grid; both should start at the image corner."
        )
    col, row = grid[:, 0], grid[:, 1]
    inside = (row >= 0) & (row < lookup.shape[0]) & (col >= 0) & (col < lookup.shape[1])
    target = lookup[row[inside], col[inside]]
    out = np.full((bins.n_obs, pred.n_vars), np.nan, dtype=np.float32)
    x = np.asarray(pred.X.toarray() if hasattr(pred.X, "toarray") else pred.X, dtype=np.float32)[inside]
    out[target[target >= 0]] = x[target >= 0]
    return out


def run_model(spec: dict) -> dict:
    """In a child process: build the tissue, train one model on the training region, predict the test region."""
    import histo2st as st

    tissue = make_tissue(spec)
    x_max, x_min = regions(spec)
    train = training_sample(tissue, x_max)
    points = test_points(tissue, spec)
    loaded_gb = rss_gb()
    genes = list(tissue["table"].var_names)
    start = time.perf_counter()
    if spec["model"] == "ridge":
        model = st.model.ColorTextureRidge(
            genes, patch_um=spec["spot_um"], microns_per_pixel=spec["ridge_microns_per_pixel"]
        )
        model.fit({"train": train})
        record = {"alpha": model.alpha, "patch_um": model.patch_um}
    else:
        model = st.tl.fit(train, spec["model"], genes=genes, **spec["fit"])
        record = {"epochs": len(model.history), "best_val_pcc": model.card.get("validation_metrics", {}).get("val_pcc")}
    record.update(n_train_spots=int(train["table"].n_obs), train_seconds=time.perf_counter() - start)

    start = time.perf_counter()
    values, dense = {}, None
    if spec["model"] == "ridge":
        for scale, (_, xy) in points.items():
            values[scale] = model.predict_points(tissue, xy)
    else:
        width = tissue.images["he"].shape[2]
        mask = np.broadcast_to(np.arange(width) >= int(x_min), tissue.images["he"].shape[1:])
        st.tl.predict(tissue, model, spot_um=spec["bins_um"], tissue_mask=mask, key_added=PRED_KEY)
        spots = tissue.tables[f"{PRED_KEY}_spots"]
        names = tissue["table"].obs_names[points[SPOTS][0]]
        values[SPOTS] = np.asarray(spots[names, genes].X, dtype=np.float32)
        for bin_um in spec["bins_um"]:
            edge_px = bin_um / spec["microns_per_pixel"]
            aligned = on_bins(
                tissue.tables[f"{PRED_KEY}_square_{bin_um:g}um"], tissue[f"table_{bin_um:03d}um"], edge_px
            )
            values[bin_um] = aligned[points[bin_um][0]]
        dense = st.tl.evaluate_dense(tissue, pred_key=PRED_KEY, bins_um=spec["bins_um"]).to_dict("records")
    record.update(predict_seconds=time.perf_counter() - start, rss_after_load_gb=loaded_gb, peak_rss_gb=peak_rss_gb())
    return {"values": values, "index": {k: v[0] for k, v in points.items()}, "dense": dense, **record}


def reference_runs(tissue, spec: dict) -> dict:
    """Predictions without training that bound what each kind of model can reach, at every scale's test points.

    ``truth over a spot``: the dense truth summed over a spot-sized square around each point, the best any model
    that predicts one value per spot-sized patch can do (the ridge baseline's design). When ``context > 0``,
    ``cell type only``: the same tissue's expected counts without context (same cells, same per-cell noise), what a
    model that recognizes every cell's type perfectly but sees no context reaches; and ``cell type only, over a
    spot``: that, summed over the spot-sized square.
    """
    points = test_points(tissue, spec)
    side = int(round(spec["spot_um"] / spec["microns_per_pixel"]))
    refs = {"reference: truth over a spot": _square_sums(tissue, points, side)}
    if spec.get("context", 0.0) > 0:
        # not normalized: normalizing drops the spots without counts, which differ with the context, so the rows are
        # matched to the test points by name
        plain = make_tissue({**spec, "context": 0.0}, normalize=False)
        expected = {}
        for scale, (index, _) in points.items():
            key = "table" if scale == SPOTS else f"table_{scale:03d}um"
            names = tissue.tables[key].obs_names[index]
            expected[scale] = log_normalized(plain.tables[key][names].layers["expected"])
        refs["reference: cell type only"] = {"values": expected}
        refs["reference: cell type only, over a spot"] = _square_sums(plain, points, side)
    for ref in refs.values():
        ref["index"] = {scale: index for scale, (index, _) in points.items()}
    return refs


def _square_sums(tissue, points: dict, side: int) -> dict:
    """The dense truth summed over a ``side`` px square centered on each test point, log-normalized, per scale."""
    from scipy import ndimage

    truth = tissue.images["truth"]
    sums = {scale: np.empty((len(index), truth.shape[0])) for scale, (index, _) in points.items()}
    last = [truth.shape[2] - 1, truth.shape[1] - 1]
    pixels = {scale: np.clip(np.round(xy - 0.5).astype(np.int64), 0, last) for scale, (_, xy) in points.items()}
    chunk = truth.data.chunksize[0]  # painting the lazy truth costs a chunk of genes at once
    for lo in range(0, truth.shape[0], chunk):
        for g, channel in enumerate(np.asarray(truth.data[lo : lo + chunk], dtype=np.float64), start=lo):
            smooth = ndimage.uniform_filter(channel, side, mode="constant")  # the mean: the row's scale cancels
            for scale, ij in pixels.items():
                sums[scale][:, g] = smooth[ij[:, 1], ij[:, 0]]
    return {"values": {scale: log_normalized(v) for scale, v in sums.items()}}


def log_normalized(values) -> np.ndarray:
    """log1p(x / total * 1e4) per row over all genes, as ``st.pp.normalize`` does to the training spots."""
    values = np.asarray(values.toarray() if hasattr(values, "toarray") else values, dtype=np.float64)
    total = values.sum(1, keepdims=True)
    return np.log1p(np.divide(values * 1e4, total, out=np.zeros_like(values), where=total > 0))


def score(tissue, spec: dict, runs: dict) -> list[dict]:
    """One row per model and scale: the predictions against the truth, on the points every model predicted."""
    import histo2st as st

    points = test_points(tissue, spec)
    rows = []
    for scale, (index, _) in points.items():
        table = tissue.tables["table" if scale == SPOTS else f"table_{scale:03d}um"]
        truth = log_normalized(table.layers["expected"][index])
        counts = table.layers["counts"][index]
        measured = log_normalized(counts)
        has_counts = np.asarray(counts.sum(1)).ravel() > 0
        for name, run in runs.items():
            if not np.array_equal(run["index"][scale], index):
                raise RuntimeError(f"Model '{name}' predicted other {scale} points than the parent selected.")
        valid = np.logical_and.reduce([np.isfinite(run["values"][scale]).all(1) for run in runs.values()])
        for name, run in runs.items():
            pred = run["values"][scale].astype(np.float64)
            p, t = pred[valid], truth[valid]
            row = {"model": name, "scale": f"{scale} µm bins" if scale != SPOTS else "55 µm spots", "n": int(len(p))}
            row.update(st.metrics.pcc_summary(st.metrics.pcc_per_gene(p, t)))
            row.update(
                MSE=st.metrics.mse(p, t), MAE=st.metrics.mae(p, t), spread=float(p.std(0).mean() / t.std(0).mean())
            )
            both = valid & has_counts
            row["PCC@M_measured"] = st.metrics.pcc_summary(st.metrics.pcc_per_gene(pred[both], measured[both]))["PCC@M"]
            if scale == SPOTS:
                row["SSIM"] = None
                row["ARI"] = st.metrics.kmeans_ari(p, t, spec["n_clusters"], seed=spec["seed"])
            else:
                row["SSIM"] = float(np.nanmean(st.metrics.ssim_per_gene(*grid_maps(table, index, valid, p, t))))
                row["ARI"] = None
            rows.append(row)
    return rows


def grid_maps(table, index: np.ndarray, valid: np.ndarray, pred: np.ndarray, truth: np.ndarray):
    """``(genes, rows, cols)`` maps of the evaluated bins of a bin table, NaN elsewhere, for SSIM."""
    row = table.obs["array_row"].to_numpy()[index][valid]
    col = table.obs["array_col"].to_numpy()[index][valid]
    row, col = row - row.min(), col - col.min()
    maps = []
    for values in (pred, truth):
        grid = np.full((values.shape[1], row.max() + 1, col.max() + 1), np.nan)
        grid[:, row, col] = values.T
        maps.append(grid)
    return maps


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tissue = parser.add_argument_group("synthetic tissue")
    tissue.add_argument("--height-um", type=float, default=1600.0)
    tissue.add_argument("--width-um", type=float, default=2400.0)
    tissue.add_argument("--tissue-microns-per-pixel", type=float, default=1.0)
    tissue.add_argument("--n-genes", type=int, default=32)
    tissue.add_argument("--n-cell-types", type=int, default=5)
    tissue.add_argument("--tissue-seed", type=int, default=0)
    tissue.add_argument(
        "--context",
        type=float,
        default=1.0,
        help="context-driven expression (synthetic_tissue's `context`); default 1, where a spot-sized color patch is "
        "no longer nearly sufficient (at 0 expression follows cell type and so color)",
    )
    tissue.add_argument("--bins", type=int, nargs="+", default=[2, 8, 16], help="bin sizes in whole µm")
    tissue.add_argument("--train-fraction", type=float, default=0.6, help="share of the width left of the split")
    tissue.add_argument("--guard-um", type=float, default=100.0, help="band around the split used by neither side")
    parser.add_argument("--n-clusters", type=int, default=None, help="k-means domains; default the cell types")
    parser.add_argument("--out", type=Path, default=None, help="directory for results.json and results.md")
    parser.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 < args.train_fraction < 1:
        parser.error("--train-fraction must be between 0 and 1.")
    return args


def main(argv=None) -> dict:
    """Run the benchmark; print and return the results."""
    import json

    args = parse_args(argv)
    check_out_dir(args.out, args.overwrite)
    clock = start_clock()
    spec = {
        "height_um": args.height_um,
        "width_um": args.width_um,
        "microns_per_pixel": args.tissue_microns_per_pixel,
        "n_genes": args.n_genes,
        "n_cell_types": args.n_cell_types,
        "context": args.context,
        "bins_um": sorted(args.bins),
        "seed": args.tissue_seed,
        "train_fraction": args.train_fraction,
        "guard_um": args.guard_um,
        "spot_um": 55.0,
        "n_clusters": args.n_clusters or args.n_cell_types,
        "ridge_microns_per_pixel": args.ridge_microns_per_pixel,
    }
    runs = {
        name: run_isolated(
            run_model, {**spec, "model": name, "fit": None if name == "ridge" else fit_options(args, name, [])}
        )
        for name in args.models
    }
    tissue = make_tissue(spec)
    references = reference_runs(tissue, spec)
    rows = score(tissue, spec, {**runs, **references})
    result = jsonable(
        {
            "benchmark": "multiscale",
            "provenance": provenance(clock),
            "design": spec,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "results": rows,
            "models": {
                name: {k: v for k, v in run.items() if k not in ("values", "index", "dense")}
                for name, run in runs.items()
            },
            "dense_map": {name: run["dense"] for name, run in runs.items() if run["dense"] is not None},
        }
    )
    print(json.dumps(result, indent=2))
    if args.out is not None:
        write_results(args.out, result, markdown(result))
    return result


def markdown(result: dict) -> str:
    """The results as markdown: the main table, training costs, and the dense-map comparison."""
    prov, design = result["provenance"], result["design"]
    head = (
        "# Multi-scale benchmark on synthetic tissue\n\n"
        f"Commit `{prov['commit']}`{' (with uncommitted changes)' if prov['uncommitted_changes'] else ''}, "
        f"{prov['started']}, {prov['cpu']} ({prov['cores']} cores), {prov['wall_seconds'] / 60:.0f} min, load average "
        f"{prov['load_average_start'][0]:.1f} at the start.\n\n`{prov['command']}`\n\n"
        f"Tissue {design['height_um']:g} x {design['width_um']:g} µm (seed {design['seed']}, {design['n_genes']} "
        f"genes); trained on the 55 µm spots left of {design['train_fraction']:.0%} of the width, tested right of it "
        f"(guard band {design['guard_um']:g} µm). Truth: expected counts, log-normalized.\n\n"
    )
    cost_rows = [{"model": name, **run} for name, run in result["models"].items()]
    costs = ["model", "n_train_spots", "train_seconds", "predict_seconds", "peak_rss_gb", "epochs", "best_val_pcc"]
    dense_rows = [{"model": name, **row} for name, rows in result["dense_map"].items() for row in rows]
    dense = ["model", "bin_um", "n_bins", "n_genes", "PCC@M", "PCC@S", "PCC@F", "SSIM", "MSE", "MAE"]
    models = [row for row in result["results"] if not row["model"].startswith("reference")]
    references = [row for row in result["results"] if row["model"].startswith("reference")]
    return (
        head
        + markdown_table(models, ["model", "scale", *COLUMNS])
        + "\n## References without training (bounds of each kind of model)\n\n"
        + markdown_table(references, ["model", "scale", "n", "PCC@M", "PCC@S", "PCC@F", "SSIM"])
        + "\n## Training and prediction\n\n"
        + markdown_table(cost_rows, costs)
        + "\n## Dense maps against the dense truth image (`st.tl.evaluate_dense`)\n\n"
        + markdown_table(dense_rows, dense)
    )


if __name__ == "__main__":
    main()
