"""``histo2st report``: one HTML page that says how far to trust a stored prediction."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import UsageError

HELP = "Write a self-contained HTML report of a stored prediction (st.pl.report)."
DESCRIPTION = (
    "Read a store holding a prediction (histo2st predict); when it has measured spots and the prediction was not "
    "evaluated yet, evaluate it in memory (st.tl.evaluate, the store is not modified); write one HTML page with the "
    "model card, metrics against the trivial baseline, the trust figure, the best and worst genes' maps and the "
    "protocol, images embedded, readable offline."
)
DEFAULTS = {"store": None, "out": None, "pred_key": None, "overwrite": False}
POSITIONAL = "store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``report``."""
    parser.add_argument("store", nargs="?", type=Path, help="zarr store with a prediction")
    parser.add_argument("--out", type=Path, metavar="FILE", help="the .html file to write")
    parser.add_argument("--pred-key", metavar="KEY", help="key_added of the prediction (default: pred)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(opts: argparse.Namespace) -> None:
    """Read, evaluate where possible, write the page."""
    if opts.store is None or opts.out is None:
        raise UsageError("give a zarr store and --out FILE.html.")
    out = Path(opts.out)
    if out.exists() and not opts.overwrite:
        raise FileExistsError(f"'{out}' already exists; pass --overwrite to replace it.")
    import histo2st as st

    from .._constants import PRED_KEY, TABLE_KEY
    from .common import check_stores, normalize_if_needed, read_store

    check_stores([Path(opts.store)])
    sdata = read_store(Path(opts.store))
    pred_key = opts.pred_key or PRED_KEY
    spots = sdata.tables.get(f"{pred_key}_spots")
    if spots is not None and TABLE_KEY in sdata.tables and "evaluation_pcc" not in spots.var.columns:
        normalize_if_needed(sdata, None)
        st.tl.evaluate(sdata, pred_key=f"{pred_key}_spots")
    st.pl.report(sdata, out, pred_key=pred_key, overwrite=opts.overwrite)
    print(f"Wrote {out}")
