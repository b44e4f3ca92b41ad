"""Is a calibrated ensemble's uncertainty right at every scale? Synthetic tissue, where the truth is known everywhere.

Design (as ``benchmarks/multiscale.py``, with a third region): one synthetic tissue is cut by vertical lines into a
training region (left ``--train-fraction``), a calibration region and a test region (the right ``--test-fraction``),
each pair apart by a guard band. A PixNet seed ensemble trains on the 55 µm spots of the training region (its H&E
cropped to it); ``st.tl.calibrate`` fits the per-gene factor on the measured spots of the calibration region; the
ensemble then predicts the test region at its 55 µm spots and at 2, 8 and 16 µm bins. Reported per scale: the
coverage of the central 50/80/90 % intervals with the raw and with the calibrated spread, against the noise-free truth
(``layers["expected"]``, log-normalized) and, at the spots, against the measured counts (what was calibrated on);
the Spearman correlation of std and absolute error; PCC@M. Downstream parity at 8 µm bins against the truth
(``st.tl.compare_downstream``). One 'spawn' child process. JSON on stdout; ``--out DIR`` writes results.json and .md.

    python benchmarks/trust_multiscale.py --out runs/trust_multiscale
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import (
    add_ensemble_arguments,
    check_out_dir,
    jsonable,
    markdown_table,
    peak_rss_gb,
    provenance,
    run_isolated,
    start_clock,
)
from _common import write_results as write_out
from multiscale import SPOTS, log_normalized, make_tissue, on_bins, test_points, training_sample

LEVELS = (0.5, 0.8, 0.9)
COLUMNS = ["scale", "against", "n", "PCC@M", *(f"raw cov@{round(100 * lv)}" for lv in LEVELS),
           *(f"cal cov@{round(100 * lv)}" for lv in LEVELS), "Spearman(std, abs error)"]  # fmt: skip


def split(spec: dict) -> dict[str, tuple[float, float]]:
    """``[x0, x1)`` in H&E pixels of the training, calibration and test regions, guard bands between them."""
    mpp, guard, width = spec["microns_per_pixel"], spec["guard_um"], spec["width_um"]
    first, second = spec["train_fraction"] * width, (1 - spec["test_fraction"]) * width
    return {"train": (0.0, (first - guard / 2) / mpp), "calibration": ((first + guard / 2) / mpp,
            (second - guard / 2) / mpp), "test": ((second + guard / 2) / mpp, width / mpp)}  # fmt: skip


def run(spec: dict) -> dict:
    """In a child process: train, calibrate on the middle region, predict the right one, score every scale."""
    import histo2st as st

    tissue = make_tissue(spec)
    regions = split(spec)
    train = training_sample(tissue, regions["train"][1])
    start = time.perf_counter()
    ensemble = st.tl.fit(train, "pixnet", preset="cpu", n_seeds=spec["n_seeds"], max_time=spec["max_time"],
                         seed=spec["seed"], progress=False, **spec["pixnet_params"])  # fmt: skip
    train_seconds = time.perf_counter() - start
    calibration = _region_spots(tissue, spec, *regions["calibration"])
    st.tl.predict(calibration, ensemble, dense=False)
    st.tl.calibrate(calibration, ensemble)
    shape = tissue.images["he"].shape[1:]
    mask = np.broadcast_to(np.arange(shape[1]) >= regions["test"][0], shape)
    st.tl.predict(tissue, ensemble, spot_um=spec["bins_um"], tissue_mask=mask)
    # multiscale's helpers know two regions: the test region starts where its "split" line puts it
    test_spec = {**spec, "train_fraction": 1 - spec["test_fraction"]}
    rows = _score(tissue, ensemble, test_spec)
    downstream = _downstream(tissue, test_spec)
    return {"rows": rows, "downstream": downstream, "train_seconds": train_seconds, "peak_rss_gb": peak_rss_gb(),
            "std_scale": ensemble.calibration["std_scale"]}  # fmt: skip


def _region_spots(tissue, spec: dict, x0: float, x1: float):
    """The tissue with only the spots wholly inside ``[x0, x1)`` (and the whole H&E: context beyond is fine)."""
    import copy

    import spatialdata as sd

    import histo2st as st
    from histo2st.pp._tables import subset_spots

    scale = st.io.get_scale(tissue)
    out = sd.SpatialData(images={scale.image_key: tissue.images[scale.image_key]},
                         shapes={scale.shapes_key: tissue.shapes[scale.shapes_key]},
                         tables={scale.table_key: tissue.tables[scale.table_key].copy()},
                         attrs=copy.deepcopy(dict(tissue.attrs)))  # fmt: skip
    x = out.tables[scale.table_key].obsm["spatial"][:, 0]
    inside = (x - scale.spot_radius_px >= x0) & (x + scale.spot_radius_px < x1)
    subset_spots(out, inside, table_key=scale.table_key, shapes_key=scale.shapes_key)
    return out


def _score(tissue, ensemble, spec: dict) -> list[dict]:
    import histo2st as st

    points = test_points(tissue, spec)
    genes = list(ensemble.genes)
    scales = {SPOTS: ("table", tissue.tables["pred_spots"])}
    scales |= {b: (f"table_{b:03d}um", tissue.tables[f"pred_square_{b:g}um"]) for b in spec["bins_um"]}
    rows = []
    for scale, (truth_key, pred) in scales.items():
        index = points[scale][0]
        table = tissue.tables[truth_key]
        if scale == SPOTS:
            order = pred[table.obs_names[index], genes]
            mean, std = np.asarray(order.X, dtype=np.float64), np.asarray(order.layers["std"], dtype=np.float64)
        else:
            edge = scale / spec["microns_per_pixel"]
            mean = on_bins(pred[:, genes], table, edge)[index].astype(np.float64)
            std_table = pred[:, genes].copy()
            std_table.X = std_table.layers["std"]
            std = on_bins(std_table, table, edge)[index].astype(np.float64)
        raw = std / ensemble.std_scale.astype(np.float64)
        targets = {"truth": log_normalized(table.layers["expected"][index])}
        if scale == SPOTS:
            targets["measured"] = log_normalized(table.layers["counts"][index])
        for against, truth in targets.items():
            row = {"scale": "55 µm spots" if scale == SPOTS else f"{scale} µm bins", "against": against,
                   "n": int(np.isfinite(mean).all(1).sum()),
                   "PCC@M": st.metrics.pcc_summary(st.metrics.pcc_per_gene(mean, truth))["PCC@M"],
                   "Spearman(std, abs error)": st.metrics.uncertainty_error_spearman(truth, mean, std)}  # fmt: skip
            for label, spread in (("raw", raw), ("cal", std)):
                for level, covered in st.metrics.interval_coverage(truth, mean, spread, LEVELS).items():
                    row[f"{label} cov@{round(100 * level)}"] = covered
            rows.append(row)
    return rows


def _downstream(tissue, spec: dict) -> dict:
    """Moran's I and domains at 8 µm bins of the test region, prediction against the aggregated truth."""
    import anndata as ad

    import histo2st as st

    bin_um = 8 if 8 in spec["bins_um"] else spec["bins_um"][0]
    points = test_points(tissue, spec)[bin_um][0]
    table = tissue.tables[f"table_{bin_um:03d}um"]
    pred = tissue.tables[f"pred_square_{bin_um:g}um"]
    values = on_bins(pred, table, bin_um / spec["microns_per_pixel"])[points]
    keep = np.isfinite(values).all(1)
    names = table.obs_names[points][keep]
    predicted = ad.AnnData(values[keep], obs=table.obs.loc[names, []], var=pred.var[[]])
    predicted.obsm["spatial"] = table.obsm["spatial"][points][keep]
    truth = ad.AnnData(log_normalized(table.layers["expected"][points][keep]).astype(np.float32),
                       obs=predicted.obs.copy(), var=pred.var[[]])  # fmt: skip
    import spatialdata as sd

    holder = sd.SpatialData(tables={"pred_spots": predicted, "table": truth})
    top_k = [k for k in (10, 20) if k <= len(predicted.var_names)] or [len(predicted.var_names)]
    summary = st.tl.compare_downstream(holder, seed=spec["seed"], top_k=top_k)
    return {"bin_um": bin_um, **summary.iloc[0].to_dict()}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height-um", type=float, default=1600.0)
    parser.add_argument("--width-um", type=float, default=2400.0)
    parser.add_argument("--tissue-microns-per-pixel", type=float, default=1.0)
    parser.add_argument("--n-genes", type=int, default=32)
    parser.add_argument("--n-cell-types", type=int, default=5)
    parser.add_argument("--context", type=float, default=0.0)
    parser.add_argument("--bins", type=int, nargs="+", default=[2, 8, 16])
    parser.add_argument("--train-fraction", type=float, default=0.5)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--guard-um", type=float, default=100.0)
    add_ensemble_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    import json

    args = parse_args(argv)
    check_out_dir(args.out, args.overwrite)
    clock = start_clock()
    spec = {"height_um": args.height_um, "width_um": args.width_um, "microns_per_pixel": args.tissue_microns_per_pixel,
            "n_genes": args.n_genes, "n_cell_types": args.n_cell_types, "context": args.context,
            "bins_um": sorted(args.bins), "seed": args.seed, "train_fraction": args.train_fraction,
            "test_fraction": args.test_fraction, "guard_um": args.guard_um, "n_seeds": args.n_seeds,
            "max_time": args.max_time, "pixnet_params": args.pixnet_params}  # fmt: skip
    outcome = run_isolated(run, spec)
    result = jsonable({"benchmark": "trust_multiscale", "provenance": provenance(clock), "design": spec, **outcome})
    print(json.dumps(result, indent=2))
    if args.out is not None:
        prov = result["provenance"]
        head = (f"# Calibration at every scale (synthetic tissue)\n\nCommit `{prov['commit']}`, {prov['started']}, "
                f"load {prov['load_average_start'][0]:.1f}.\n\n`{prov['command']}`\n\n")  # fmt: skip
        downstream = markdown_table([result["downstream"]], list(result["downstream"]))
        write_out(args.out, result, head + markdown_table(result["rows"], COLUMNS) + "\n" + downstream)
    return result


if __name__ == "__main__":
    main()
