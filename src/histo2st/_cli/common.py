"""What every subcommand shares: common options, reading stores, naming samples, verbosity and progress bars."""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from .._core._zarr import ZARR_NOTICES


class JobFailed(Exception):
    """Part of a job failed after the rest finished (e.g. some slides of a cohort): exit 1 with what failed."""


#: Errors that mean the job failed on its input (one line on stderr, exit code 1); anything else is a bug and keeps
#: its traceback.
JOB_ERRORS = (ValueError, KeyError, OSError, ImportError, JobFailed)
#: Options of every subcommand, with their defaults.
COMMON_DEFAULTS = {"config": None, "quiet": False, "verbose": False}
ZARR_MARKERS = ("zarr.json", ".zgroup")
#: Library notices that tell a command-line user nothing, silenced unless --verbose: zarr announcing a future default
#: on every array written, and ome-zarr's "no parent found" for the label images of every store read.
QUIET_WARNINGS = ZARR_NOTICES
QUIET_LOGGERS = ("ome_zarr.reader",)


def common_parser() -> argparse.ArgumentParser:
    """Parent parser with ``--config``, ``--quiet`` and ``--verbose``."""
    parser = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML (or YAML, with PyYAML) file of option values, keyed by long option name; flags override it",
    )
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bars and only warnings in the log")
    group.add_argument("-v", "--verbose", action="store_true", help="debug log, and a traceback with errors")
    return parser


def is_zarr_store(path: Path) -> bool:
    """Whether ``path`` is a zarr group (v3 ``zarr.json`` or v2 ``.zgroup``)."""
    return path.is_dir() and any((path / marker).is_file() for marker in ZARR_MARKERS)


def check_stores(paths) -> None:
    """Raise a clear error for the first of ``paths`` that is missing or not a zarr store, before any work starts."""
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"zarr store '{path}' not found.")
        if not is_zarr_store(path):
            raise ValueError(
                f"'{path}' is not a zarr store (it has no {' or '.join(ZARR_MARKERS)}); write one with "
                "`st.io.write_zarr`."
            )


def read_store(path: str | Path):
    """Open a SpatialData zarr store, backed by it (elements written to the object go into the store)."""
    import spatialdata as sd

    check_stores([path])
    return sd.read_zarr(path)


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs of ``fit`` and ``pretrain``: zarr stores, or her2st sections."""
    parser.add_argument("stores", nargs="*", type=Path, help="zarr stores of samples (written by st.io.write_zarr)")
    parser.add_argument("--her2st", type=Path, metavar="ROOT", help="her2st repository (the folder holding data/)")
    parser.add_argument("--sections", nargs="+", metavar="NAME", help="her2st sections to read, e.g. C2 C3")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The training options of ``fit`` and ``pretrain``: checkpoints, seed and device."""
    parser.add_argument(
        "--checkpoint-dir", type=Path, metavar="DIR", help="checkpoint every epoch there; resume from it if present"
    )
    parser.add_argument("--seed", type=int, metavar="N", help="random seed (default: st.settings.seed)")
    parser.add_argument("--device", metavar="DEVICE", help="cpu, cuda, mps (default: st.settings.device)")


def check_sample_arguments(opts: argparse.Namespace) -> None:
    """A usage error when ``opts`` names no samples, or her2st sections without the repository or the reverse."""
    from .config import UsageError

    if bool(opts.her2st) != bool(opts.sections):
        raise UsageError("--her2st ROOT and --sections NAME ... go together.")
    if not opts.stores and not opts.her2st:
        raise UsageError("give zarr stores, or --her2st ROOT --sections NAME ...")


def read_samples(opts: argparse.Namespace) -> dict:
    """``{name: SpatialData}`` of the stores and her2st sections of ``opts`` (see :func:`check_sample_arguments`)."""
    import histo2st as st

    paths = [Path(p) for p in opts.stores]
    check_stores(paths)
    stores = [read_store(p) for p in progress(paths, quiet=opts.quiet, desc="reading", unit="store")]
    samples = dict(zip(sample_names(paths, stores), stores, strict=True))
    for section in progress(opts.sections, quiet=opts.quiet, desc="reading her2st", unit="section"):
        if section in samples:
            raise ValueError(f"Section '{section}' is given twice.")
        samples[section] = st.io.read_her2st(opts.her2st, section)
    return samples


def sample_names(paths: list[Path], samples: list) -> list[str]:
    """One name per store: the sample names recorded in the stores if they differ, else the store names."""
    from .._core import get_scale

    recorded = []
    for sdata in samples:
        try:
            recorded.append(get_scale(sdata).sample)
        except ValueError:
            recorded.append(None)
    if None not in recorded and len(set(recorded)) == len(recorded):
        return recorded
    stems = [Path(p).name.removesuffix(".zarr") for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    raise ValueError(f"Two stores share a name: {[str(p) for p in paths]}; give the stores different names.")


@contextmanager
def verbosity(*, quiet: bool, verbose: bool) -> Iterator[None]:
    """Set :attr:`histo2st.settings.verbosity` for one run (warnings when quiet, debug when verbose), then restore.

    Unless ``verbose``, the library notices in ``QUIET_WARNINGS`` and ``QUIET_LOGGERS`` are silenced meanwhile.
    """
    from .._settings import settings

    before = settings.verbosity
    loggers = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    settings.verbosity = 3 if verbose else 1 if quiet else before
    with warnings.catch_warnings():
        if not verbose:
            for message in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=UserWarning)
            for name in loggers:
                logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield
        finally:
            settings.verbosity = before
            for name, level in loggers.items():
                logging.getLogger(name).setLevel(level)


def dask_progress(*, quiet: bool, desc: str):
    """A tqdm bar over the dask tasks computed inside the ``with`` block (nothing when quiet)."""
    if quiet:
        return nullcontext()
    from tqdm.dask import TqdmCallback

    return TqdmCallback(desc=desc)


def progress(items: list, *, quiet: bool, desc: str, unit: str):
    """A tqdm bar over ``items``, shown only for more than one item and when not quiet."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, disable=quiet or len(items) < 2)


def normalize_if_needed(sdata, table_key: str | None = None) -> None:
    """Run :func:`histo2st.pp.normalize` on a table that it has not processed (``uns["histo2st"]["normalize"]``)."""
    from .. import pp
    from .._constants import ATTRS_KEY
    from .._core import get_scale

    key = get_scale(sdata).table_key if table_key is None else table_key
    if key not in sdata.tables:
        raise KeyError(f"The sample has no table '{key}' (tables: {list(sdata.tables)}).")
    if "normalize" not in sdata.tables[key].uns.get(ATTRS_KEY, {}):
        pp.normalize(sdata, table_key=key)
