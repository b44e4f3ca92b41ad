"""The ``histo2st`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 failure, 2 usage error)."""
    parser = argparse.ArgumentParser(prog="histo2st", description="Predict spatial gene expression from H&E.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="Run the whole pipeline on generated synthetic tissue.",
        description="Generate synthetic tissue, normalise, train PixNet, predict at 8 µm and at the measured spots, "
        "and write a zarr store and figures.",
    )
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output directory")
    demo.add_argument("--size-um", type=float, default=None, help="tissue edge in µm (default: the generator's)")
    demo.add_argument("--epochs", type=int, default=30, help="maximum training epochs")
    demo.add_argument("--max-time", type=float, default=240.0, help="training time budget in seconds")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true", help="replace an existing output store")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import run_demo

            run_demo(
                args.out,
                size_um=args.size_um,
                epochs=args.epochs,
                max_time=args.max_time,
                seed=args.seed,
                overwrite=args.overwrite,
            )
    except (ValueError, FileExistsError, FileNotFoundError, KeyError) as err:
        print(f"histo2st {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
