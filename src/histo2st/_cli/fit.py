"""``histo2st fit``: train a model on zarr stores or her2st sections, record it in the stores, and save it."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_sample_arguments, add_training_arguments, check_sample_arguments
from .config import UsageError

HELP = "Train a model on samples (zarr stores or her2st sections); it is saved in each store."
DESCRIPTION = (
    "Read the samples, normalize tables that are not normalized yet (st.pp.normalize), select the genes "
    "(st.pp.select_genes) and train (st.tl.fit), which saves the model inside every zarr store it was fit on "
    "(`histo2st predict STORE` then finds it); --out also writes a model directory (weights and card.json). Model "
    "hyperparameters go in the config file's [model] table (its `name` key may choose the model)."
)
DEFAULTS = {
    "stores": [],
    "her2st": None,
    "sections": [],
    "out": None,
    "overwrite": False,
    "model": "pixnet",
    "preset": "auto",
    "key_added": None,
    "n_top": 250,
    "genes": None,
    "gene_method": "mean",
    "epochs": None,
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
    parser.add_argument("--out", type=Path, metavar="DIR", help="also write the model to this directory")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a model of the same name in the stores, and --out"
    )
    parser.add_argument("--model", metavar="NAME", help=f"model: pixnet or thitogene (default: {d['model']})")
    parser.add_argument(
        "--preset",
        choices=("auto", "cpu", "paper"),
        help="settings: cpu (measured best on a CPU, within minutes), paper (the paper's GPU settings) or auto "
        f"(paper on a CUDA GPU, else cpu) (default: {d['preset']})",
    )
    parser.add_argument(
        "--key-added", metavar="KEY", help="name of the model in the stores (default: the model's name)"
    )
    parser.add_argument(
        "--n-top",
        type=int,
        metavar="N",
        help=f"number of genes to select; 0 keeps all shared genes (default: {d['n_top']})",
    )
    parser.add_argument("--genes", type=Path, metavar="FILE", help="gene list (.txt, one per line, or .npy) to use")
    parser.add_argument("--gene-method", choices=("mean", "hvg"), help=f"gene ranking (default: {d['gene_method']})")
    parser.add_argument("--epochs", type=int, metavar="N", help="maximum training epochs (default: the preset's)")
    parser.add_argument(
        "--max-time",
        type=float,
        metavar="SECONDS",
        help="stop training after this many seconds, checked after every step (default: the preset's)",
    )
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
        "--ema-decay",
        type=float,
        metavar="D",
        help="keep a moving average of the weights, e.g. 0.999 (default: the preset's; PixNet cpu: 0.99)",
    )


def run(opts: argparse.Namespace) -> None:
    """Read, normalize, select genes, train, record in the stores and save."""
    check_sample_arguments(opts)
    if opts.out is None and not opts.stores:
        raise UsageError("her2st sections are not stores: give --out DIR to keep the model.")
    out = None if opts.out is None else Path(opts.out)
    if out is not None and out.exists() and not opts.overwrite:
        raise FileExistsError(f"'{out}' already exists; pass --overwrite to replace it, or choose another --out.")

    import histo2st as st

    from .common import normalize_if_needed, read_samples

    samples = read_samples(opts)
    for sdata in samples.values():
        normalize_if_needed(sdata)
    if opts.genes is not None:
        st.pp.select_genes(samples, method=opts.genes)
    elif opts.n_top:
        st.pp.select_genes(samples, n_top=opts.n_top, method=opts.gene_method)
    given = {k: getattr(opts, k) for k in ("epochs", "max_time", "ema_decay") if getattr(opts, k) is not None}
    try:
        model = st.tl.fit(
            samples,
            opts.model.split(",") if "," in str(opts.model) else opts.model,
            preset=opts.preset,
            key_added=opts.key_added,
            overwrite=opts.overwrite,
            **given,
            validation=_validation(opts.validation),
            microns_per_pixel=opts.microns_per_pixel,
            checkpoint_dir=opts.checkpoint_dir,
            seed=opts.seed,
            device=opts.device,
            progress=not opts.quiet,
            n_seeds=opts.n_seeds,
            **opts.hyperparameters,
        )
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        raise ValueError(f"{err}: check the keys of the config file's [model] table.") from err
    if out is not None:
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
