"""``histo2st predict-cohort``: every slide of a cohort into its own store, and one cohort table."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._constants import PRED_KEY
from .config import UsageError

HELP = "Predict a cohort of slides, each into its own store, and summarize them in one table (st.tl.predict_cohort)."
DESCRIPTION = (
    "Read every slide (whole-slide image files or zarr stores), write each to OUT/<name>.zarr and stream the "
    "prediction into it, on the active dask scheduler or the dask.distributed scheduler at --scheduler. A rerun "
    "skips the finished slides and resumes unfinished ones block by block. A slide that fails is recorded with its "
    "error in OUT/cohort.json and the others finish; the exit code is 1 when any failed. OUT/cohort.h5ad holds the "
    "slides x genes means."
)
DEFAULTS = {
    "slides": [],
    "model": None,
    "out": None,
    "scheduler": None,
    "spot_um": None,
    "microns_per_pixel": None,
    "key_added": PRED_KEY,
    "device": None,
}
POSITIONAL = "slides"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``predict-cohort``."""
    parser.add_argument("slides", nargs="*", type=Path, help="slide files or zarr stores")
    parser.add_argument("--model", type=Path, metavar="DIR", help="model directory (or a store holding one)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="directory of the stores and the cohort table")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="a dask.distributed scheduler, e.g. tcp://host:8786")
    parser.add_argument("--spot-um", type=float, metavar="UM", help="also aggregate over bins of this size in µm")
    parser.add_argument(
        "--microns-per-pixel", type=float, metavar="UM", help="µm per pixel of slides whose files do not say"
    )
    parser.add_argument("--key-added", metavar="KEY", help=f"prefix of the elements written (default: {PRED_KEY})")
    parser.add_argument("--device", help="cpu, cuda, mps (default: st.settings.device)")


def run(opts: argparse.Namespace) -> None:
    """Predict the cohort; print the summary; fail (exit 1) when any slide failed."""
    if not opts.slides or opts.model is None or opts.out is None:
        raise UsageError("give slides, --model DIR and --out DIR.")
    import contextlib

    import histo2st as st

    from .common import JobFailed

    client = contextlib.nullcontext()
    if opts.scheduler is not None:
        from distributed import Client

        client = Client(opts.scheduler)
    with client as connected:
        table = st.tl.predict_cohort(opts.slides, st.tl.load_model(opts.model), opts.out, spot_um=opts.spot_um,
                                     microns_per_pixel=opts.microns_per_pixel, key_added=opts.key_added,
                                     device=opts.device, client=connected, progress=not opts.quiet)  # fmt: skip
    failed = table.uns["histo2st"]["predict_cohort"]["failed"]
    print(f"{table.n_obs} of {table.n_obs + len(failed)} slides predicted into '{opts.out}'.")
    if failed:
        raise JobFailed(f"{len(failed)} slide(s) failed: " + "; ".join(f"{n}: {e}" for n, e in failed.items()))
