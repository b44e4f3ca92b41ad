"""Writing a sample to a zarr store without ever leaving a half-written or clobbered store behind."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .._core import quiet_zarr
from .._core._recorded import save_recorded
from .._logging import logger

if TYPE_CHECKING:
    from spatialdata import SpatialData


def write_zarr(sdata: SpatialData, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``sdata`` to a zarr store atomically.

    The store is written next to ``path`` under a temporary name and renamed into place only when complete, so an
    interrupted write never leaves something that looks like a finished store, and an existing store is only
    replaced when ``overwrite=True``. The models recorded on the sample by :func:`histo2st.tl.fit` are saved inside
    it (``<path>/histo2st/models/<key>``), so the sample read back in another session predicts with them.

    Parameters
    ----------
    sdata
        The SpatialData to write.
    path
        Destination ``.zarr`` directory.
    overwrite
        Replace an existing store at ``path``.

    Returns
    -------
    The path written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' already exists. Pass `overwrite=True` to replace it, or choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    try:
        with quiet_zarr():
            sdata.write(tmp)
        if path.exists():
            trash = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            path.rename(trash)
            tmp.rename(path)
            shutil.rmtree(trash)
        else:
            tmp.rename(path)
        sdata.path = path  # `write` made the object backed by the temporary store, which is now `path`
        save_recorded(sdata, overwrite=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    logger.info(f"Wrote '{path}' ({time.perf_counter() - start:.1f}s).")
    return path
