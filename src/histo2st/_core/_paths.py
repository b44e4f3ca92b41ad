"""Where histo2st looks for local data and keeps downloads: shared by the data sets and the benchmark protocols."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming a local data root (a folder holding ``her2st/`` and ``stutility_mob/``).
DATA_ENV = "HISTO2ST_DATA"
#: Environment variable overriding the download cache folder (default: the OS cache folder of "histo2st").
CACHE_ENV = "HISTO2ST_CACHE"


def candidate_roots(root: str | Path | None = None) -> list[Path]:
    """Data roots searched in order.

    ``root``, ``$HISTO2ST_DATA``, ``../shared/data`` from the working directory and from the source tree, and the
    download cache.
    """
    roots = [Path(root)] if root is not None else []
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    roots.extend(_beside_project())
    roots.append(cache_dir())
    return roots


def _beside_project() -> list[Path]:
    # ../shared/data from the working directory, and beside the source tree (src/histo2st/_core/_paths.py is
    # three levels below the repository)
    return [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3].parent / "shared" / "data"]


def cache_dir() -> Path:
    """Folder the public files are downloaded to (``$HISTO2ST_CACHE`` or the OS cache folder of "histo2st")."""
    import pooch

    return Path(os.environ.get(CACHE_ENV) or pooch.os_cache("histo2st"))
