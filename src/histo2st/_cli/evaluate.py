"""``histo2st evaluate``: compare predictions at the measured spots with the measurements."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import UsageError

HELP = "Compare predictions at the measured spots with the measurements (st.tl.evaluate)."
DESCRIPTION = (
    "Read stores holding predictions (histo2st predict), normalize measured tables that are not normalized yet, run "
    "st.tl.evaluate over all of them (one row per section and a pooled row) and print the summary. --out writes it "
    "as CSV or JSON (by the file's suffix). --baseline names the model's training stores: the color/texture ridge is "
    "fitted there and scored beside the model. --ceiling adds the split-half noise ceiling of the measured counts: "
    "how high a PCC the measurement allows. The stores are not modified."
)
DEFAULTS = {
    "stores": [],
    "pred_key": None,
    "truth_key": None,
    "genes": None,
    "n_clusters": None,
    "key_added": None,
    "seed": None,
    "baseline": [],
    "ceiling": False,
    "out": None,
    "overwrite": False,
}
POSITIONAL = "stores"
OUT_SUFFIXES = (".csv", ".json")
#: Options passed on to ``st.tl.evaluate`` only when set, so its own defaults apply otherwise.
PASSED = ("pred_key", "truth_key", "genes", "n_clusters", "key_added", "seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``evaluate``."""
    parser.add_argument("stores", nargs="*", type=Path, help="zarr stores with predictions, one per section")
    parser.add_argument(
        "--pred-key", metavar="KEY", help="table of predictions at the measured spots (default: pred_spots)"
    )
    parser.add_argument("--truth-key", metavar="KEY", help="measured table (default: table)")
    parser.add_argument("--genes", nargs="+", metavar="GENE", help="genes to score (default: those in both tables)")
    parser.add_argument("--n-clusters", type=int, metavar="K", help="k-means clusters for the ARI (default: no ARI)")
    parser.add_argument(
        "--key-added", metavar="KEY", help="key of the results in the prediction tables (default: evaluation)"
    )
    parser.add_argument("--seed", type=int, metavar="N", help="random seed of the k-means")
    parser.add_argument(
        "--baseline",
        nargs="+",
        type=Path,
        metavar="STORE",
        help="stores of the model's training sections: fit the color/texture ridge there and score it beside the model",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="estimate the noise ceiling of the measured counts (the PCC a perfect prediction would expect)",
    )
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the summary to a .csv or .json file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(opts: argparse.Namespace) -> None:
    """Evaluate, print the summary, write it with ``--out``."""
    if not opts.stores:
        raise UsageError("give at least one zarr store.")
    out = None if opts.out is None else Path(opts.out)
    if out is not None:
        if out.suffix.lower() not in OUT_SUFFIXES:
            raise UsageError(f"--out must end in {' or '.join(OUT_SUFFIXES)}, got '{out}'.")
        if out.exists() and not opts.overwrite:
            raise FileExistsError(f"'{out}' already exists; pass --overwrite to replace it.")
    import histo2st as st

    from .common import check_stores, normalize_if_needed, progress, read_store, sample_names

    paths = [Path(p) for p in opts.stores]
    references = [Path(p) for p in opts.baseline or []]
    check_stores(paths + references)
    stores = [read_store(p) for p in progress(paths, quiet=opts.quiet, desc="reading", unit="store")]
    for sdata in stores:
        normalize_if_needed(sdata, opts.truth_key)
    kwargs = {key: getattr(opts, key) for key in PASSED if getattr(opts, key) is not None}
    kwargs["ceiling"] = bool(opts.ceiling)
    if references:
        baseline = [read_store(p) for p in references]
        for sdata in baseline:
            normalize_if_needed(sdata, None)
        kwargs["baseline"] = dict(zip(sample_names(references, baseline), baseline, strict=True))
    summary = st.tl.evaluate(dict(zip(sample_names(paths, stores), stores, strict=True)), **kwargs)
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    if out is not None:
        _write(summary, out)


def _write(summary, out: Path) -> None:
    from .._logging import logger

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix.lower() == ".csv":
        summary.to_csv(tmp, index_label="section")
    else:  # pandas writes NaN (e.g. no ARI) as null, which JSON readers accept
        summary.reset_index(names="section").to_json(tmp, orient="records", indent=2)
    tmp.replace(out)
    logger.info(f"Wrote the summary to '{out}'.")
