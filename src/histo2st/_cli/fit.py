"""``histo2st fit``: train a model on zarr stores or her2st sections and save it."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_sample_arguments, add_training_arguments, check_sample_arguments
from .config import UsageError

HELP = "Train a model on samples (zarr stores or her2st sections) and save it."
DESCRIPTION = (
    "Read the samples, normalise tables that are not normalised yet (st.pp.normalize), select the genes "
    "(st.pp.select_genes), train (st.tl.fit) and save the model directory (weights and card.json). Model "
    "hyperparameters go in the config file's [model] table (its `name` key may choose the model)."
)
DEFAULTS = {
    "stores": [],
    "her2st": None,
    "sections": [],
    "out": None,
    "overwrite": False,
    "model": "pixnet",
    "n_top": 250,
    "genes": None,
    "gene_method": "mean",
    "epochs": 30,
    "max_time": None,
    "validation": 0.15,
    "microns_per_pixel": None,
    "checkpoint_dir": None,
    "seed": None,
    "device": None,
    "n_seeds": 1,
    "ema_decay": None,
}
POSITIONAL = "stores"
#: Config table whose keys are passed to the model class as hyperparameters.
TABLE = "model"
NO_VALIDATION = ("none", "off", "no")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fit``."""
    d = DEFAULTS
    add_sample_arguments(parser)
    parser.add_argument("--out", type=Path, metavar="DIR", help="model directory to write (required)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    parser.add_argument("--model", metavar="NAME", help=f"model: pixnet or thitogene (default: {d['model']})")
    parser.add_argument(
        "--n-top",
        type=int,
        metavar="N",
        help=f"number of genes to select; 0 keeps all shared genes (default: {d['n_top']})",
    )
    parser.add_argument("--genes", type=Path, metavar="FILE", help="gene list (.txt, one per line, or .npy) to use")
    parser.add_argument("--gene-method", choices=("mean", "hvg"), help=f"gene ranking (default: {d['gene_method']})")
    parser.add_argument("--epochs", type=int, metavar="N", help=f"maximum training epochs (default: {d['epochs']})")
    parser.add_argument("--max-time", type=float, metavar="SECONDS", help="stop after the epoch that passes this")
    parser.add_argument(
        "--validation",
        nargs="+",
        metavar="V",
        help=f"fraction of spots held out, section name(s) held out whole, or none (default: {d['validation']})",
    )
    parser.add_argument(
        "--microns-per-pixel", type=float, metavar="UM", help="resolution the model works at (default: the model's)"
    )
    add_training_arguments(parser)
    parser.add_argument(
        "--n-seeds",
        type=int,
        metavar="N",
        help="train N models with seeds seed, seed+1, ... and save them as an ensemble, whose predictions carry a "
        f"per-pixel and per-gene standard deviation (default: {d['n_seeds']})",
    )
    parser.add_argument(
        "--ema-decay", type=float, metavar="D", help="keep a moving average of the weights, e.g. 0.999 (default: off)"
    )


def run(opts: argparse.Namespace) -> None:
    """Read, normalise, select genes, train and save."""
    if opts.out is None:
        raise UsageError("--out is required: the model directory to write.")
    check_sample_arguments(opts)
    out = Path(opts.out)
    if out.exists() and not opts.overwrite:
        raise FileExistsError(f"'{out}' already exists; pass --overwrite to replace it, or choose another --out.")

    import histo2st as st

    from .common import normalise_if_needed, read_samples

    samples = read_samples(opts)
    for sdata in samples.values():
        normalise_if_needed(sdata)
    if opts.genes is not None:
        st.pp.select_genes(samples, method=opts.genes)
    elif opts.n_top:
        st.pp.select_genes(samples, n_top=opts.n_top, method=opts.gene_method)
    try:
        model = st.tl.fit(
            samples,
            opts.model,
            epochs=opts.epochs,
            max_time=opts.max_time,
            validation=_validation(opts.validation),
            microns_per_pixel=opts.microns_per_pixel,
            checkpoint_dir=opts.checkpoint_dir,
            seed=opts.seed,
            device=opts.device,
            progress=not opts.quiet,
            n_seeds=opts.n_seeds,
            ema_decay=opts.ema_decay,
            **opts.hyperparameters,
        )
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        raise ValueError(f"{err}: check the keys of the config file's [model] table.") from err
    model.save(out, overwrite=opts.overwrite)


def _validation(value):
    """``st.tl.fit``'s ``validation`` from the option: a fraction, section names, or ``None``."""
    if not isinstance(value, list):
        return value
    if len(value) == 1:
        if value[0].lower() in NO_VALIDATION:
            return None
        try:
            return float(value[0])
        except ValueError:
            return value[0]
    return value
