"""``histo2st demo``: the whole pipeline on generated synthetic tissue."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Run the whole pipeline on generated synthetic tissue."
DESCRIPTION = (
    "Generate synthetic tissue, normalize, train PixNet, predict at 8 µm and at the measured spots, and write a zarr "
    "store and figures."
)
DEFAULTS = {
    "out": Path("outputs/demo"),
    "size_um": None,
    "epochs": 30,
    "max_time": 240.0,
    "seed": 0,
    "overwrite": False,
}
POSITIONAL = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``demo``."""
    d = DEFAULTS
    parser.add_argument("--out", type=Path, metavar="DIR", help=f"output directory (default: {d['out']})")
    parser.add_argument("--size-um", type=float, metavar="UM", help="tissue edge in µm (default: the generator's)")
    parser.add_argument("--epochs", type=int, metavar="N", help=f"maximum training epochs (default: {d['epochs']})")
    parser.add_argument(
        "--max-time", type=float, metavar="SECONDS", help=f"training time budget in seconds (default: {d['max_time']})"
    )
    parser.add_argument("--seed", type=int, metavar="N", help=f"random seed (default: {d['seed']})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output store")


def run(opts: argparse.Namespace) -> None:
    """Run the demo (see :func:`histo2st._demo.run_demo`)."""
    from .._demo import run_demo

    run_demo(
        opts.out,
        size_um=opts.size_um,
        epochs=opts.epochs,
        max_time=opts.max_time,
        seed=opts.seed,
        overwrite=opts.overwrite,
    )
