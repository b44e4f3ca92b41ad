"""``histo2st predict``: predict gene expression into zarr stores with their recorded model or a saved one."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._constants import PRED_KEY
from .config import UsageError

HELP = "Predict gene expression into zarr stores with the model fit on them, or a saved one."
DESCRIPTION = (
    "Run st.tl.predict on each store, with the model recorded in that store by `histo2st fit` (--model-key to choose "
    "one of several), or with --model DIR for all of them (st.tl.load_model: a model directory, or a store holding "
    "one). The dense map and the tables are written into the store, which is read backed; existing predictions are "
    "only replaced with --overwrite."
)
DEFAULTS = {
    "stores": [],
    "model": None,
    "model_key": None,
    "spot_um": None,
    "shape": "square",
    "shapes_key": None,
    "genes": None,
    "key_added": PRED_KEY,
    "overwrite": False,
    "device": None,
}
POSITIONAL = "stores"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``predict``."""
    d = DEFAULTS
    parser.add_argument("stores", nargs="*", type=Path, help="zarr stores of samples to predict into")
    parser.add_argument(
        "--model", type=Path, metavar="DIR", help="model directory or store (default: the model fit on each store)"
    )
    parser.add_argument("--model-key", metavar="KEY", help="which recorded model, when there are several")
    parser.add_argument(
        "--spot-um", type=float, metavar="UM", help="also aggregate over a grid of bins of this size in µm"
    )
    parser.add_argument("--shape", choices=("square", "circle"), help=f"shape of the grid bins (default: {d['shape']})")
    parser.add_argument("--shapes-key", metavar="KEY", help="also aggregate over these shapes of the sample")
    parser.add_argument("--genes", nargs="+", metavar="GENE", help="predict only these genes (default: all)")
    parser.add_argument(
        "--key-added", metavar="KEY", help=f"prefix of the elements written (default: {d['key_added']})"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing elements with the same names")
    parser.add_argument("--device", help="cpu, cuda, mps (default: st.settings.device)")


def run(opts: argparse.Namespace) -> None:
    """Load the model once (or use each store's own) and predict into every store."""
    if not opts.stores:
        raise UsageError("give at least one zarr store.")
    import histo2st as st

    from .common import check_stores, dask_progress, progress, read_store

    check_stores(opts.stores)
    model = None if opts.model is None else st.tl.load_model(opts.model, key=opts.model_key)
    for path in progress(opts.stores, quiet=opts.quiet, desc="stores", unit="store"):
        sdata = read_store(path)
        with dask_progress(quiet=opts.quiet, desc=f"predicting {Path(path).name}"):
            st.tl.predict(
                sdata,
                model,
                model_key=None if model is not None else opts.model_key,
                spot_um=opts.spot_um,
                shape=opts.shape,
                shapes_key=opts.shapes_key,
                genes=opts.genes,
                key_added=opts.key_added,
                overwrite=opts.overwrite,
                device=opts.device,
            )
