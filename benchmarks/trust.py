"""Trust on her2st, leave one section out: is a seed ensemble's uncertainty calibrated, and does analysis agree?

For each fold (test section T), a seed ensemble of PixNet (``--n-seeds``, ``st.tl.fit``'s CPU preset with
``--max-time`` seconds per member) trains on the other sections with one of them, V (the section after T in the list,
cyclically), held out whole as validation: V serves early stopping and then ``st.tl.calibrate``; T is never seen.
Genes: the fold's ``pixnet_top250`` (ranked on the training sections). On T, reported:

- the coverage of the central 50/80/90 % intervals ``mean ± z·std`` with the raw spread and with the calibrated one
  (target: |coverage@80 - 0.8| <= 0.05), and the Spearman correlation of the std with the absolute error;
- PCC@M of the ensemble mean;
- downstream parity (``st.tl.compare_downstream``): Moran's I PCC and MAE, top-20/50 SVG Jaccard, leiden ARI/NMI.

Each fold runs in its own 'spawn' child (peak memory of that fold). JSON on stdout; ``--out DIR`` writes
results.json and results.md.

    python benchmarks/trust.py --out runs/trust                       # 4 folds x 3 members x 120 s
    python benchmarks/trust.py --synthetic 400 --sections S1 S2 S3 --n-seeds 2 --max-time 5   # dry run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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
from her2st import load_sections

LEVELS = (0.5, 0.8, 0.9)
COLUMNS = [
    "test", "calibrated on", "PCC@M", *(f"raw cov@{round(100 * lv)}" for lv in LEVELS),
    *(f"cal cov@{round(100 * lv)}" for lv in LEVELS), "Spearman(std, abs error)", "Moran's I PCC", "Moran's I MAE",
    "SVG Jaccard@20", "SVG Jaccard@50", "domains ARI", "domains NMI", "train s", "peak GB",
]  # fmt: skip


def run_fold(spec: dict) -> dict:
    """In a child process: train the ensemble, calibrate on V, predict and score T."""
    import histo2st as st

    names = [*spec["train"], spec["test"]]
    samples = load_sections(spec["source"], names)
    st.pp.normalize(samples)
    st.pp.select_genes(samples, method=spec["genes"])
    start = time.perf_counter()
    ensemble = st.tl.fit({n: samples[n] for n in spec["train"]}, "pixnet", genes=spec["genes"], preset="cpu",
                         validation=[spec["calibration"]], n_seeds=spec["n_seeds"], max_time=spec["max_time"],
                         seed=spec["seed"], progress=False, **spec["pixnet_params"])  # fmt: skip
    train_seconds = time.perf_counter() - start
    held_out, test = samples[spec["calibration"]], samples[spec["test"]]
    st.tl.predict(held_out, ensemble, dense=False)
    st.tl.calibrate(held_out, ensemble)
    st.tl.predict(test, ensemble, dense=False)
    summary = st.tl.evaluate(test).iloc[0]
    table = test.tables["pred_spots"]
    row = {"test": spec["test"], "calibrated on": spec["calibration"], "PCC@M": summary["PCC@M"],
           "Spearman(std, abs error)": summary["Spearman(std, |error|)"], **_coverages(test, table)}  # fmt: skip
    downstream = st.tl.compare_downstream(test, top_k=(20, 50), seed=spec["seed"]).iloc[0]
    row.update({k: downstream[k] for k in COLUMNS if k in downstream.index})
    row.update({"train s": train_seconds, "peak GB": peak_rss_gb(), "std_scale": ensemble.calibration["std_scale"]})
    return row


def _coverages(test, table) -> dict:
    """Coverage on the test spots with the raw spread (the calibrated std divided by its factor) and calibrated."""
    import histo2st as st

    truth = test["table"][table.obs_names, table.var_names].X
    truth = np.asarray(truth.toarray() if hasattr(truth, "toarray") else truth, dtype=np.float64)
    mean, std = np.asarray(table.X, dtype=np.float64), np.asarray(table.layers["std"], dtype=np.float64)
    raw = std / table.var["std_scale"].to_numpy(dtype=np.float64)
    out = {}
    for label, spread in (("raw", raw), ("cal", std)):
        for level, covered in st.metrics.interval_coverage(truth, mean, spread, LEVELS).items():
            out[f"{label} cov@{round(100 * level)}"] = covered
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="data root; default $HISTO2ST_DATA or ../shared/data")
    parser.add_argument("--sections", nargs="+", default=["C2", "C3", "C4", "C5"])
    parser.add_argument("--synthetic", type=float, default=None, metavar="SIZE_UM", help="dry run on synthetic tissue")
    add_ensemble_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    import histo2st as st

    args = parse_args(argv)
    check_out_dir(args.out, args.overwrite)
    clock = start_clock()
    source = {"root": None if args.root is None else str(args.root), "synthetic_um": args.synthetic,
              "sections": args.sections}  # fmt: skip
    protocol = st.tl.protocol("pixnet_top250", load_sections(source, args.sections), test=None, root=args.root)
    rows = []
    for (train, test), genes in zip(protocol.folds, protocol.fold_genes, strict=True):
        (test,) = test
        calibration = args.sections[(args.sections.index(test) + 1) % len(args.sections)]
        spec = {"train": train, "test": test, "calibration": calibration, "genes": genes, "source": source,
                "n_seeds": args.n_seeds, "max_time": args.max_time, "seed": args.seed,
                "pixnet_params": args.pixnet_params}  # fmt: skip
        rows.append(run_isolated(run_fold, spec))
    result = jsonable({"benchmark": "trust", "provenance": provenance(clock), "settings": vars(args) | {
        "root": str(args.root), "out": str(args.out)}, "folds": rows})  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out is not None:
        prov = result["provenance"]
        head = (f"# Trust on her2st, leave one section out\n\nCommit `{prov['commit']}`, {prov['started']}, load "
                f"{prov['load_average_start'][0]:.1f} at the start.\n\n`{prov['command']}`\n\n")  # fmt: skip
        write_out(args.out, result, head + markdown_table(result["folds"], COLUMNS))
    return result


if __name__ == "__main__":
    main()
