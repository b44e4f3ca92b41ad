"""The user-facing model: a network plus everything needed to use it again (genes, scale, normalisation, history)."""

from __future__ import annotations

import datetime
import json
import shutil
import uuid
from pathlib import Path

from .._logging import logger

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.pt"
_REGISTRY: dict[str, type[BaseModel]] = {}


class BaseModel:
    """Common part of histo2st models (scvi-tools' ``BaseModelClass``): card, history, save and load.

    Subclasses set ``model_name``, build ``self.module`` in ``_build_module`` from ``self.init_params`` and
    implement training and prediction.
    """

    model_name: str = ""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.model_name:
            _REGISTRY[cls.model_name] = cls

    def __init__(self, genes, *, microns_per_pixel: float, init_params: dict) -> None:
        genes = [str(g) for g in genes]
        if len(set(genes)) != len(genes):
            raise ValueError("Gene names must be unique.")
        if microns_per_pixel <= 0:
            raise ValueError(f"`microns_per_pixel` must be positive, got {microns_per_pixel}.")
        self.genes = genes
        self.microns_per_pixel = float(microns_per_pixel)
        self.init_params = dict(init_params)
        self.history: list[dict] = []
        self.card: dict = {
            "model": self.model_name,
            "genes": genes,
            "microns_per_pixel": self.microns_per_pixel,
            "hyperparameters": self.init_params,
        }
        self.module = self._build_module()

    def _build_module(self):
        raise NotImplementedError

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    def check_genes(self, genes) -> list[int]:
        """Indices of ``genes`` in the model's genes; a clear error lists those the model does not predict."""
        missing = [g for g in genes if g not in self.genes]
        if missing:
            raise KeyError(
                f"The model does not predict {len(missing)} of the requested genes, e.g. {missing[:5]}. "
                f"It predicts {self.n_genes} genes (see `model.genes`)."
            )
        return [self.genes.index(g) for g in genes]

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Save weights and the model card to the directory ``path`` (atomically; ``overwrite`` to replace)."""
        import torch

        from .. import __version__

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"'{path}' exists. Pass `overwrite=True` to replace it.")
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir(parents=True)
        card = {
            **self.card,
            "init_params": self.init_params,
            "history": self.history,
            "histo2st_version": __version__,
            "saved": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        torch.save(self.module.state_dict(), tmp / WEIGHTS_FILE)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, default=_jsonable))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
        logger.info(f"Saved {self.model_name} model to '{path}'.")
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> BaseModel:
        """Load a model saved with :meth:`save`."""
        import torch

        path = Path(path)
        card_path = path / CARD_FILE
        if not card_path.is_file():
            raise FileNotFoundError(f"No model card at '{card_path}': is '{path}' a directory written by `model.save`?")
        card = json.loads(card_path.read_text())
        klass = _REGISTRY.get(card.get("model"))
        if klass is None:
            raise ValueError(f"Unknown model type {card.get('model')!r} in '{card_path}'; known: {sorted(_REGISTRY)}.")
        if cls is not BaseModel and klass is not cls:
            raise TypeError(f"'{path}' holds a {klass.__name__}, not a {cls.__name__}.")
        model = klass(
            card["genes"], microns_per_pixel=card["microns_per_pixel"], **_without_weights(card["init_params"])
        )
        state = torch.load(path / WEIGHTS_FILE, map_location=device, weights_only=True)
        model.module.load_state_dict(state)
        model.module.eval()
        model.history = card.pop("history", [])
        model.card = card
        return model

    def __repr__(self) -> str:
        trained = f"trained {len(self.history)} epochs" if self.history else "untrained"
        return f"{type(self).__name__}({self.n_genes} genes, {self.microns_per_pixel} µm/px, {trained})"


def load_model(path: str | Path, *, device: str = "cpu") -> BaseModel:
    """Load any histo2st model saved with ``model.save(path)``.

    Parameters
    ----------
    path
        Directory written by :meth:`BaseModel.save`.
    device
        Where to map the weights.

    Returns
    -------
    The model, of the class recorded in its card.
    """
    return BaseModel.load(path, device=device)


def _without_weights(params: dict) -> dict:
    # saved weights include the encoder: never re-read the original encoder checkpoint (it may be gone)
    return {**params, "encoder_weights": None} if "encoder_weights" in params else dict(params)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
