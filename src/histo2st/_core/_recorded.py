"""Where the models recorded on a sample live: in memory beside the SpatialData, and inside its zarr store.

Kept below the model classes (it only calls a model's ``save``), so that :func:`histo2st.io.write_zarr` can save the
recorded models with the sample and :mod:`histo2st.tl` can find them; see :mod:`histo2st.tl._registry`.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from .._constants import ATTRS_KEY
from .._logging import logger

#: Where a zarr store keeps the models recorded on its sample (outside spatialdata's element groups, which are all
#: spatialdata reads: ``spatialdata.read_zarr`` neither reads this folder nor warns about it).
STORE_MODELS_DIR = Path(ATTRS_KEY) / "models"

#: The model objects recorded on each sample, by key. Keyed weakly by the SpatialData object: a torch model cannot
#: live in ``sdata.attrs`` (written as JSON), and the models go away with the sample.
in_memory: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def store_path(sdata) -> Path | None:
    """The local zarr directory backing ``sdata``, or ``None``."""
    if not sdata.is_backed() or sdata.path is None or not Path(sdata.path).is_dir():
        return None
    return Path(sdata.path)


def stored_models(store: Path) -> list[str]:
    """Keys of the models saved in a zarr store."""
    folder = Path(store) / STORE_MODELS_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def save_recorded(sdata, *, keys=None, overwrite: bool = False) -> list[str]:
    """Save the in-memory models recorded on a backed ``sdata`` into its store (by default those not there yet).

    Each is written atomically by its own ``save``. Returns the keys saved.
    """
    store = store_path(sdata)
    if store is None:
        return []
    models = in_memory.get(sdata, {})
    there = set(stored_models(store))
    saved = []
    for key in models if keys is None else keys:
        if key in there and not overwrite:
            continue
        models[key].save(store / STORE_MODELS_DIR / key, overwrite=True)
        logger.info(f"Saved model '{key}' in the sample's store: '{store / STORE_MODELS_DIR / key}'.")
        saved.append(key)
    return saved
