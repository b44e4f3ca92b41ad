"""Models recorded on the samples they were fit on.

As scanpy records results in ``.uns`` and scvi-tools registers a model on its AnnData.

A model fit with :func:`histo2st.tl.fit` is recorded on every sample it was trained on, under a key:

- in memory: the model object, in a registry keyed weakly by the SpatialData object (a torch model cannot live in
  ``sdata.attrs``, which spatialdata writes as JSON), so it goes away with the sample;
- in ``sdata.attrs["histo2st"]["models"][key]``: the model card's summary (genes, µm per pixel, normalization,
  training sections, seeds, preset, metrics), which ``sdata.write`` keeps;
- on a zarr-backed sample, the saved model (weights and card) inside the store, at ``<store>/histo2st/models/<key>``:
  spatialdata reads only its own element groups, so ``spatialdata.read_zarr`` neither reads nor warns about it, and a
  sample read back in a fresh process finds its model there.

:func:`histo2st.tl.predict` and the command line resolve ``model=None``, a key, a path or a sample through
:func:`resolve_model`.
"""

from __future__ import annotations

import math
from pathlib import Path

from .._constants import ATTRS_KEY
from .._core import quiet_zarr
from .._core._recorded import STORE_MODELS_DIR, in_memory, save_recorded, store_path, stored_models
from ..model import Predictor
from ..model import load_model as load_model_dir

#: ``sdata.attrs[ATTRS_KEY]`` key of the recorded models' card summaries.
ATTRS_MODELS = "models"
#: The parts of a model card recorded in ``sdata.attrs`` (all JSON: they are written with the sample).
SUMMARY_KEYS = ("model", "genes", "microns_per_pixel", "preset", "normalization", "training", "validation_metrics",
                "stain_normalization", "ensemble")  # fmt: skip


def record_model(sdata, model, key: str, *, overwrite: bool = False) -> None:
    """Record ``model`` on ``sdata`` under ``key``: in memory, its card summary in ``attrs``, and in a backed store.

    Parameters
    ----------
    sdata
        The sample the model was fit on.
    model
        A trained model or ensemble.
    key
        Name of the model on the sample.
    overwrite
        Replace a model of that name already saved in the sample's zarr store (one only in memory is replaced).
    """
    check_free(sdata, key, overwrite=overwrite)
    in_memory.setdefault(sdata, {})[key] = model
    summaries = sdata.attrs.setdefault(ATTRS_KEY, {}).setdefault(ATTRS_MODELS, {})
    summaries[key] = card_summary(model)
    if store_path(sdata) is not None:
        save_recorded(sdata, keys=[key], overwrite=True)
        with quiet_zarr():
            sdata.write_attrs()


def check_free(sdata, key: str, *, overwrite: bool) -> None:
    """Refuse, before any training, to replace a model saved in the sample's store without ``overwrite``."""
    store = store_path(sdata)
    if store is not None and key in stored_models(store) and not overwrite:
        raise FileExistsError(
            f"The store '{store}' already holds a model '{key}'. Pass `overwrite=True` to replace it, or "
            "`key_added=` to record this one under another name."
        )


def recorded_models(sdata) -> list[str]:
    """Keys of the models recorded on ``sdata``: in memory, in its ``attrs`` and in its store."""
    keys = set(in_memory.get(sdata, {}))
    keys |= set(sdata.attrs.get(ATTRS_KEY, {}).get(ATTRS_MODELS, {}) or {})
    store = store_path(sdata)
    if store is not None:
        keys |= set(stored_models(store))
    return sorted(keys)


def recorded_model(sdata, key: str | None = None, *, device: str = "cpu"):
    """The model recorded on ``sdata`` (the only one, or ``key``), from memory or else from the sample's store."""
    keys = recorded_models(sdata)
    if not keys:
        raise ValueError(
            "No model is recorded on this sample: fit one on it (`st.tl.fit(sdata)`), or pass one with `model=`: a "
            "model object, a directory written by `model.save`, or `st.tl.load_model(path)`."
        )
    if key is None:
        if len(keys) > 1:
            raise ValueError(f"Several models are recorded on this sample ({keys}); choose one with `model_key=`.")
        key = keys[0]
    if key not in keys:
        raise KeyError(f"No model '{key}' is recorded on this sample; it has {keys}.")
    model = in_memory.get(sdata, {}).get(key)
    if model is not None:
        return model
    store = store_path(sdata)
    if store is None or key not in stored_models(store):
        raise FileNotFoundError(
            f"Model '{key}' is described in `sdata.attrs` but its weights were not saved with the sample: it was fit "
            "before the sample was written with `sdata.write`, and the session that held it has ended. Write samples "
            "with `st.io.write_zarr`, which saves the models recorded on them, or fit on the written sample; "
            "meanwhile pass a model with `model=`."
        )
    model = load_model_dir(store / STORE_MODELS_DIR / key, device=device)
    in_memory.setdefault(sdata, {})[key] = model
    return model


def resolve_model(sdata, model=None, *, model_key: str | None = None, device: str = "cpu"):
    """The model ``predict`` should use, and the key it is recorded under on ``sdata`` (``None`` if it is not).

    ``model`` may be ``None`` (the model recorded on ``sdata``), a model object, another SpatialData (the model
    recorded on it), the key of a model recorded on ``sdata``, a directory written by ``model.save``, or a zarr store
    holding recorded models (with ``model_key`` when it holds several). A model recorded on a backed ``sdata`` but
    only in memory (fit before ``sdata.write``) is saved into its store here, so a later session finds it.
    """
    import spatialdata as sd

    if model is None:
        model = recorded_model(sdata, model_key, device=device)
    elif isinstance(model, str) and model in recorded_models(sdata):
        model = recorded_model(sdata, model, device=device)
    elif isinstance(model, sd.SpatialData):
        return recorded_model(model, model_key, device=device), None
    elif isinstance(model, str | Path):
        return load_model(model, key=model_key, device=device), None
    elif not isinstance(model, Predictor):
        raise TypeError(
            f"`model` must be a trained model, a SpatialData it was fit on, a key, a path or None; got "
            f"{type(model).__name__}."
        )
    key = next((k for k, m in in_memory.get(sdata, {}).items() if m is model), None)
    if key is not None:
        save_recorded(sdata, keys=[key])
    return model, key


def load_model(path: str | Path, *, key: str | None = None, device: str = "cpu"):
    """Load a histo2st model: a directory written by ``model.save``, or a model recorded in a zarr store.

    Parameters
    ----------
    path
        A directory written by :meth:`histo2st.model.BaseModel.save` or :meth:`histo2st.model.Ensemble.save`, or the
        zarr store of a sample a model was fit on (``st.tl.fit`` saves it there, see :func:`histo2st.tl.fit`).
    key
        Which model of the store (its ``key_added``); needed only when the store holds several.
    device
        Where to map the weights.

    Returns
    -------
    The model, of the class recorded in its card; a :class:`histo2st.model.Ensemble` for a saved ensemble.
    """
    path = Path(path)
    models_dir = path / STORE_MODELS_DIR
    if models_dir.is_dir():
        keys = stored_models(path)
        if key is None and len(keys) != 1:
            raise ValueError(f"The store '{path}' holds {len(keys)} models ({keys}); choose one with `key=`.")
        key = keys[0] if key is None else key
        if key not in keys:
            raise KeyError(f"The store '{path}' holds no model '{key}'; it has {keys}.")
        return load_model_dir(models_dir / key, device=device)
    if key is not None:
        raise ValueError(f"'{path}' is not a zarr store with recorded models, so `key={key!r}` cannot be used.")
    if not path.exists():
        raise FileNotFoundError(f"No model at '{path}': pass a directory written by `model.save` or a zarr store.")
    return load_model_dir(path, device=device)


def card_summary(model) -> dict:
    """The JSON parts of a model card worth keeping with the sample (see :data:`SUMMARY_KEYS`)."""
    card = model.card
    return _finite({k: card[k] for k in SUMMARY_KEYS if k in card})


def _finite(value):
    """``value`` with NaN and infinite floats as ``None``: zarr writes attributes as strict JSON."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _finite(value.item())
    return value
