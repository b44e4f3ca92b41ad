"""Loading any saved model: a single model or a seed ensemble, by what its card says."""

from __future__ import annotations

from pathlib import Path

from ._base import BaseModel, read_card
from ._ensemble import ENSEMBLE_NAME, Ensemble


def load_model(path: str | Path, *, device: str = "cpu") -> BaseModel | Ensemble:
    """Load any histo2st model saved with ``model.save(path)``, a seed ensemble included.

    Parameters
    ----------
    path
        Directory written by :meth:`BaseModel.save` or :meth:`histo2st.model.Ensemble.save`.
    device
        Where to map the weights.

    Returns
    -------
    The model, of the class recorded in its card; a :class:`histo2st.model.Ensemble` for a saved ensemble.
    """
    if read_card(Path(path))["model"] == ENSEMBLE_NAME:
        return Ensemble.load(path, device=device)
    return BaseModel.load(path, device=device)
