"""``histo2st pretrain``: self-supervised pretraining of PixNet's encoder on the H&E of samples (no expression)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_sample_arguments, add_training_arguments, check_sample_arguments
from .config import UsageError

HELP = "Pretrain PixNet's ResNet18 encoder on the H&E of samples (self-supervised, no expression) and save it."
DESCRIPTION = (
    "Read the samples (zarr stores or her2st sections), cut their tissue into tiles and pretrain the encoder with BYOL "
    "(st.tl.pretrain_encoder). Writes the encoder --out (a torchvision-format .pt) and its card beside it (.json). "
    "Train PixNet from it with `histo2st fit ... --config fit.toml`, whose [model] table sets "
    "encoder_weights = 'encoder.pt'. Pretraining on the slides you will evaluate on is transductive: the card says so."
)
DEFAULTS = {
    "stores": [],
    "her2st": None,
    "sections": [],
    "out": None,
    "overwrite": False,
    "epochs": 100,
    "max_time": None,
    "microns_per_pixel": 2.0,
    "tile_px": 224,
    "batch_size": 32,
    "steps_per_epoch": None,
    "checkpoint_dir": None,
    "seed": None,
    "device": None,
}
POSITIONAL = "stores"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pretrain``."""
    d = DEFAULTS
    add_sample_arguments(parser)
    parser.add_argument("--out", type=Path, metavar="FILE", help="encoder file to write, e.g. encoder.pt (required)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing encoder and card")
    parser.add_argument("--epochs", type=int, metavar="N", help=f"maximum epochs (default: {d['epochs']})")
    parser.add_argument("--max-time", type=float, metavar="SECONDS", help="stop after the epoch that passes this")
    parser.add_argument(
        "--microns-per-pixel",
        type=float,
        metavar="UM",
        help=f"tile resolution: the one the model will use (default: {d['microns_per_pixel']})",
    )
    parser.add_argument("--tile-px", type=int, metavar="PX", help=f"tile edge in pixels (default: {d['tile_px']})")
    parser.add_argument("--batch-size", type=int, metavar="N", help=f"tiles per step (default: {d['batch_size']})")
    parser.add_argument(
        "--steps-per-epoch", type=int, metavar="N", help="steps between validations (default: one pass, at least 25)"
    )
    add_training_arguments(parser)


def run(opts: argparse.Namespace) -> None:
    """Read the samples and pretrain."""
    if opts.out is None:
        raise UsageError("--out is required: the encoder file to write (e.g. encoder.pt).")
    check_sample_arguments(opts)
    out = Path(opts.out)
    if not opts.overwrite and (out.exists() or out.with_suffix(".json").exists()):
        raise FileExistsError(f"'{out}' or its card exists; pass --overwrite to replace them, or choose another --out.")

    import histo2st as st

    from .common import read_samples

    st.tl.pretrain_encoder(
        read_samples(opts),
        epochs=opts.epochs,
        max_time=opts.max_time,
        microns_per_pixel=opts.microns_per_pixel,
        tile_px=opts.tile_px,
        batch_size=opts.batch_size,
        steps_per_epoch=opts.steps_per_epoch,
        checkpoint_dir=opts.checkpoint_dir,
        seed=opts.seed,
        device=opts.device,
        progress=not opts.quiet,
        out=out,
        overwrite=opts.overwrite,
    )
