"""The user-facing model: a network plus everything needed to use it again (genes, scale, normalization, history)."""

from __future__ import annotations

import datetime
import hashlib
import json
import pickle
import shutil
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np

from .._core import as_gene_list
from .._core._stain import STAIN_METHODS
from .._docs import TRAINING_DOC, doc_params
from .._logging import logger
from .._settings import settings

CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.pt"
#: Card entry holding the sha256 (hex) of ``weights.pt``, checked at load: a damaged file must not load silently.
WEIGHTS_SHA256 = "weights_sha256"
#: Card entries a single model is rebuilt from.
CARD_ENTRIES = ("model", "genes", "microns_per_pixel", "init_params")
#: What every damaged-file error ends with.
FILE_FIX = "save the model again or restore the file"
#: Model classes by ``model_name``; filled as subclasses are defined (used by ``st.tl.fit`` and ``load_model``).
MODELS: dict[str, type[BaseModel]] = {}


class ModelFileError(ValueError):
    """A file of a saved model is damaged, replaced or unreadable; the message names the file and what to do."""


class BaseModel:
    """Common part of histo2st models (scvi-tools' ``BaseModelClass``): card, history, save and load.

    Subclasses set ``model_name``, build ``self.module`` in ``_build_module`` from ``self.init_params`` and
    implement training and prediction.
    """

    model_name: str = ""
    #: Named settings for :func:`histo2st.tl.fit`'s ``preset``: init parameters and the training options
    #: ``epochs``, ``patience`` and ``max_time``.
    presets: dict[str, dict] = {}
    #: A single model has no spread to calibrate (see :class:`~histo2st.model.Ensemble`).
    calibration = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.model_name:
            MODELS[cls.model_name] = cls

    def __init__(self, genes, *, microns_per_pixel: float, init_params: dict) -> None:
        genes = [str(g) for g in as_gene_list(genes)]
        if len(set(genes)) != len(genes):
            raise ValueError("Gene names must be unique.")
        if microns_per_pixel <= 0:
            raise ValueError(f"`microns_per_pixel` must be positive, got {microns_per_pixel}.")
        stain = init_params.get("stain_normalization")
        if stain is not None and stain not in STAIN_METHODS:
            raise ValueError(f"Unknown `stain_normalization={stain!r}`; use None or one of {list(STAIN_METHODS)}.")
        components = init_params.get("target_components")
        integer = isinstance(components, int | np.integer) and not isinstance(components, bool)
        if components is not None and not (integer and components >= 1):
            raise ValueError(f"`target_components` must be a positive integer or None, got {components!r}.")
        self.genes = genes
        self.microns_per_pixel = float(microns_per_pixel)
        self.init_params = dict(init_params)
        #: ``(dask name of an input image, its estimated stains)``: a slide predicted in several calls (THItoGene's
        #: map, then a patch per spot) is estimated once.
        self._stain_cache: tuple[str, tuple] | None = None
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

    #: ``init_params`` passed on to the training plan.
    _plan_args: tuple[str, ...] = ()

    def _plan_class(self):
        """The training plan class of this model (see :mod:`histo2st.train`)."""
        raise NotImplementedError

    def _make_plan(self, train: list, val: list):
        return self._plan_class()(self.module, train, val, **{k: self.init_params[k] for k in self._plan_args})

    def _output_bias(self):
        """The bias of the layer that outputs the genes."""
        raise NotImplementedError

    def _after_training(self, plan) -> None:
        """Record what training learnt besides the weights (e.g. a grid pitch)."""

    @doc_params(training_options=TRAINING_DOC)
    def train(
        self,
        data,
        *,
        epochs: int = 30,
        validation=0.15,
        device: str | None = None,
        checkpoint_dir: str | Path | None = None,
        patience: int | None = 8,
        max_time: float | None = None,
        seed: int | None = None,
        progress: bool = True,
        ema_decay: float | None = None,
    ) -> list[dict]:
        """Train on one or several normalized sections.

        Parameters
        ----------
        data
            A SpatialData, or a list or dict of them, normalized with :func:`histo2st.pp.normalize`.
        epochs
            Maximum number of epochs.
        {training_options}
        checkpoint_dir
            Save a checkpoint after every epoch there and resume from it if one exists.
        patience
            Early stopping patience in epochs (on validation PCC); ``None`` trains all ``epochs``.
        max_time
            Stop once this many seconds of training have passed (checked after every step; that epoch is still
            validated).
        seed
            Random seed; default :attr:`histo2st.settings.seed`.

        Returns
        -------
        The training history (also in ``model.history``); ``model.card`` gains the normalization, the training
        sections, each gene's mean over the training spots (``"target_mean"``) and the best validation metrics.
        """
        from ..train import TrainerConfig

        config = TrainerConfig(
            epochs=epochs,
            seed=settings.seed if seed is None else seed,
            device=settings.resolve_device(device),
            checkpoint_dir=checkpoint_dir,
            patience=patience,
            max_time=max_time,
            progress=progress,
            ema_decay=ema_decay,
        )
        return self.train_with(data, config, validation=validation)

    def train_with(self, data, config, *, validation=0.15) -> list[dict]:
        """Train with the options held in one :class:`histo2st.train.TrainerConfig`.

        :func:`histo2st.tl.fit` builds that object once, from a preset and the keywords it was given, and hands it
        here; :meth:`train` builds it from its keywords. ``config.seed`` and ``config.device`` are used as given
        (resolved, not ``None``); ``validation`` as in :meth:`train`. Without validation data, early stopping is off
        whatever ``config.patience`` says. Returns the history, as :meth:`train`.
        """
        from dataclasses import replace

        from ..train import prepare_sections, split_validation

        start = time.perf_counter()
        sections, norm = prepare_sections(data, self.genes, self.microns_per_pixel)
        train, val, val_desc = split_validation(sections, validation, seed=config.seed)
        sections, train, val = self._normalize_training_stains(sections, train, val)
        train = self._denoise_training_targets(train)
        if not val:
            config = replace(config, patience=None)
        self.history = self._fit_sections(train, val, config)
        self.card.update(
            normalization=norm,
            target_mean=_target_mean(train).tolist(),
            training={
                "sections": [s.name for s in sections],
                "n_spots": int(sum(s.n_spots for s in train)),
                "spot_diameter_um": sorted(
                    {round(float(2 * np.median(s.radii) * s.microns_per_pixel), 1) for s in sections if s.n_spots}
                ),
                "validation": val_desc,
                "epochs_run": len(self.history),
                "seconds": round(time.perf_counter() - start, 1),
                "device": config.device,
                "seed": config.seed,
                "ema_decay": config.ema_decay,
            },
            validation_metrics=_best_record(self.history),
        )
        return self.history

    def _fit_sections(self, train: list, val: list, config) -> list[dict]:
        """Train on prepared sections (:class:`~histo2st.train.Section`) with the one trainer; the history.

        Models fitted in closed form rather than by gradient steps override this.
        """
        from ..train import Trainer

        plan = self._make_plan(train, val)
        if not self.history:
            self._start_at_the_mean(train)
        history = Trainer(plan, config).fit()
        self._after_training(plan)
        return history

    def _denoise_training_targets(self, train: list) -> list:
        """The training sections, their targets projected on principal components as ``target_components`` asks.

        Validation spots keep their measured values, so early stopping judges against what a user will measure.
        """
        from ..train import denoise_targets

        components = self.init_params.get("target_components")
        if components is None:
            return train
        train, self.card["target_denoising"] = denoise_targets(train, int(components))
        return train

    def _normalize_training_stains(self, sections: list, train: list, val: list) -> tuple[list, list, list]:
        """Stain-normalize the training images as set by ``stain_normalization`` and record it in the card.

        The reference is fitted on the training sections (held-out validation sections are treated like new slides)
        unless the model already has one (trained before, or loaded): continued training keeps the colors the network
        learnt. Returns ``sections``, ``train`` and ``val`` with their images replaced.
        """
        from dataclasses import replace

        from ..train import normalize_stains

        if self.init_params.get("stain_normalization") is None:
            return sections, train, val
        images, self.card["stain_normalization"] = normalize_stains(
            sections,
            reference_sections=[s.name for s in sections if s.name in {t.name for t in train}],
            fitted=self.card.get("stain_normalization"),
        )
        return tuple([replace(s, image=images[s.name]) for s in group] for group in (sections, train, val))

    def _stain_normalized(self, image):
        """Dask ``image`` ``(3, y, x)`` at the model's resolution, lazily stain-normalized like the training images.

        The slide's own stains are estimated once on its tissue pixels (:func:`histo2st._core._stain.tissue_pixels`)
        and every block is normalized with them; without ``stain_normalization`` the image is returned as it is.
        """
        from .._core._stain import MacenkoNormalizer, describe_stains, tissue_pixels, transform_blocks

        if self.init_params.get("stain_normalization") is None:
            return image
        fitted = self.card.get("stain_normalization")
        if fitted is None:
            raise RuntimeError(
                "This model normalizes stains but has no stain reference yet; train it first with `model.train`."
            )
        reference = MacenkoNormalizer.from_dict(fitted["reference"])
        if self._stain_cache is None or self._stain_cache[0] != image.name:
            pixels, spacing = tissue_pixels(image, self.microns_per_pixel)
            source = reference.slide_stains(pixels, name="The slide to predict")
            logger.info(
                f"Stain normalization: the slide's stains, from {pixels.shape[1]} tissue pixels every "
                f"{spacing:.3g} µm: {describe_stains(source)}."
            )
            self._stain_cache = (image.name, source)
        return transform_blocks(image, reference, self._stain_cache[1])

    def _start_at_the_mean(self, sections) -> None:
        """Set the output bias to the training targets' per-gene mean, so the first steps learn variation.

        A fresh head predicts about 0 where log-normalized targets lie around 1-8: without this the MSE term spends
        the first epochs moving every prediction up (at THItoGene's lr of 1e-5, hundreds of steps), and validation
        PCC drifts meanwhile. A deviation from both papers, which do not say how the head starts.
        """
        import torch

        mean = _target_mean(sections)
        if getattr(self.module, "output_activation", None) == "softplus":
            mean = np.log(np.expm1(np.maximum(mean, 1e-4)))  # inverse softplus
        bias = self._output_bias()
        with torch.no_grad():
            bias.copy_(torch.as_tensor(mean, dtype=bias.dtype))

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def map_microns_per_pixel(self) -> float:
        """Pixel size in µm of the dense map (see :class:`~histo2st.model.Predictor`); the input's by default."""
        return self.microns_per_pixel

    #: Maps per gene of :meth:`predict_image`: one model predicts values, without an uncertainty.
    n_maps = 1
    #: Whether :meth:`predict_points` predicts from a patch at each point (see :class:`~histo2st.model.Predictor`).
    predicts_at_points = False

    @property
    def members(self) -> list[BaseModel]:
        """The models whose weights run: this one (see :class:`~histo2st.model.Ensemble`)."""
        return [self]

    def predict_points(self, image, image_mpp: float, xy_px, *, device: str | None = None, tta: int = 1):
        """``None``: a spot's value is the dense map's mean over the spot (models that predict at points override)."""
        return None

    def check_genes(self, genes) -> list[int]:
        """Indices of ``genes`` (a string is one gene) in the model's genes; an error lists those it lacks."""
        genes = as_gene_list(genes)
        missing = [g for g in genes if g not in self.genes]
        if missing:
            raise KeyError(
                f"The model does not predict {len(missing)} of the requested genes, e.g. {missing[:5]}. "
                f"It predicts {self.n_genes} genes (see `model.genes`)."
            )
        return [self.genes.index(g) for g in genes]

    def save(self, path: str | Path, *, overwrite: bool = False, include_encoder: bool = False) -> Path:
        """Save weights and the model card to the directory ``path`` (atomically; ``overwrite`` to replace).

        A frozen, never-trained encoder loaded from a file or hub repository is not copied: the card records where it
        came from and its sha256, and :meth:`load` reads it from there (refusing other weights). ``include_encoder``
        copies it too, so the directory is self-contained (a foundation-model encoder can be gigabytes).
        """
        import torch

        state, card_entries = self._state_to_save(include_encoder)
        card = {**self.card, **card_entries, "init_params": self.init_params, "history": self.history}

        def write(tmp: Path) -> None:
            torch.save(state, tmp / WEIGHTS_FILE)
            write_card(tmp, {**card, WEIGHTS_SHA256: file_sha256(tmp / WEIGHTS_FILE)})

        write_dir_atomic(path, write, overwrite=overwrite)
        logger.info(f"Saved {self.model_name} model to '{path}'.")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> BaseModel:
        """Load a model saved with :meth:`save` (of any model class through ``BaseModel``).

        The weights are checked against the sha256 in the card (models saved before it was recorded load unchecked).
        A missing file raises :class:`FileNotFoundError`, a damaged or replaced one :class:`ModelFileError`.
        """
        path = Path(path)
        card = read_card(path)
        if card["model"] == "ensemble":
            raise TypeError(
                f"'{path}' holds an ensemble of models, not a {cls.__name__}; load it with "
                "`histo2st.tl.load_model(path)` (or `histo2st.model.Ensemble.load`)."
            )
        klass = MODELS.get(card.get("model"))
        if klass is None:
            raise ValueError(
                f"Unknown model type {card.get('model')!r} in '{path / CARD_FILE}'; known: {sorted(MODELS)}."
            )
        if cls is not BaseModel and klass is not cls:
            raise TypeError(f"'{path}' holds a {klass.__name__}, not a {cls.__name__}.")
        check_weights(path, card)
        model = klass._from_card(card)
        weights = path / WEIGHTS_FILE
        state = model._complete_state(_read_weights(weights, device), card)
        try:
            model.module.load_state_dict(state)
        except RuntimeError as err:  # missing, unexpected or mis-shaped tensors: not the network the card describes
            reason = str(err).splitlines()[0]
            raise ModelFileError(
                f"'{weights}' does not fit the {klass.__name__} its {CARD_FILE} describes ({reason}): the file or "
                f"the card was replaced; {FILE_FIX}."
            ) from None
        model.module.eval()
        model.history = card.pop("history", [])
        model.card = card
        return model

    def _state_to_save(self, include_encoder: bool) -> tuple[dict, dict]:
        """The state dict :meth:`save` writes and entries of the card that go with it: all of the module here."""
        return self.module.state_dict(), {}

    @classmethod
    def _from_card(cls, card: dict) -> BaseModel:
        """The untrained model a saved card describes (its weights are loaded next)."""
        # saved weights include the encoder: never re-read the original encoder checkpoint (it may be gone)
        params = dict(card["init_params"])
        if "encoder_weights" in params:
            params["encoder_weights"] = None
        return cls(card["genes"], microns_per_pixel=card["microns_per_pixel"], **params)

    def _complete_state(self, state: dict, card: dict) -> dict:
        """The saved ``state`` with what :meth:`save` left out restored (nothing here)."""
        return state

    def __repr__(self) -> str:
        trained = f"trained {len(self.history)} epochs" if self.history else "untrained"
        return f"{type(self).__name__}({self.n_genes} genes, {self.microns_per_pixel} µm/px, {trained})"


def init_params(arguments: dict) -> dict:
    """A model's init parameters from its ``__init__``'s ``locals()`` (scvi-tools' ``_get_init_params``).

    Called first thing in ``__init__``, so the arguments are all the locals: each parameter is then listed once, in
    the signature. ``genes`` and ``microns_per_pixel`` are kept by :class:`BaseModel` itself; ``**module_kwargs``
    are merged in.
    """
    skip = {"self", "__class__", "genes", "microns_per_pixel", "module_kwargs"}
    return {**{k: v for k, v in arguments.items() if k not in skip}, **arguments.get("module_kwargs", {})}


def read_card(path: str | Path) -> dict:
    """The model card of the model directory ``path``, checked to be one.

    Raises :class:`FileNotFoundError` without ``card.json`` and :class:`ModelFileError` for a card that is not valid
    JSON or lacks what loading needs.
    """
    path = Path(path)
    card_path = path / CARD_FILE
    if not card_path.is_file():
        raise FileNotFoundError(f"No model card at '{card_path}': is '{path}' a directory written by `model.save`?")
    try:
        card = json.loads(card_path.read_text())
    except ValueError as err:  # JSONDecodeError, or UnicodeDecodeError for bytes that are no text
        raise ModelFileError(f"'{card_path}' is not valid JSON ({err}): the file is damaged; {FILE_FIX}.") from None
    if not isinstance(card, dict):
        raise ModelFileError(f"'{card_path}' is not a model card (a JSON object): the file was replaced; {FILE_FIX}.")
    needed = ("model", "members") if card.get("model") == "ensemble" else CARD_ENTRIES
    missing = [key for key in needed if key not in card]
    if missing:
        raise ModelFileError(
            f"'{card_path}' lacks {', '.join(map(repr, missing))}: the file is damaged or was edited; {FILE_FIX}."
        )
    return card


def check_weights(path: str | Path, card: dict) -> bool:
    """Check ``weights.pt`` in the model directory ``path`` against the sha256 recorded in ``card``.

    Returns ``False`` when the card records none (saved before histo2st recorded it), so the file is unchecked.
    Raises :class:`FileNotFoundError` without the file and :class:`ModelFileError` when it does not match.
    """
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"'{weights}' is missing: the model directory is incomplete; {FILE_FIX}.")
    expected = card.get(WEIGHTS_SHA256)
    if expected is None:
        logger.debug(
            f"'{Path(path) / CARD_FILE}' records no sha256 (an older histo2st saved it); '{weights}' unchecked."
        )
        return False
    if file_sha256(weights) != expected:
        raise ModelFileError(
            f"'{weights}' does not match the sha256 recorded in its {CARD_FILE}: the file is damaged or was "
            f"replaced; {FILE_FIX}."
        )
    return True


def check_model_dir(path: str | Path) -> tuple[dict, bool]:
    """The card of the model or ensemble directory ``path`` once every card and weights file in it is checked.

    Returns the card and whether every weights file matched a recorded sha256 (``False``: some were saved before it
    was recorded and are unchecked). Raises like :func:`read_card` and :func:`check_weights`.
    """
    path = Path(path)
    card = read_card(path)
    if card["model"] == "ensemble":
        checked = [check_model_dir(path / name)[1] for name in card["members"]]
        return card, all(checked)
    return card, check_weights(path, card)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of the file at ``path``."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _read_weights(weights: Path, device: str) -> dict:
    """The state dict in ``weights``; :class:`ModelFileError` when the file is not one (empty, truncated)."""
    import torch

    # torch.save writes a zip archive whose directory is at the end: an empty or truncated file has none, which
    # torch reports as a bare EOFError or an unrelated-looking RuntimeError
    if not zipfile.is_zipfile(weights):
        raise ModelFileError(
            f"'{weights}' is not a PyTorch weights file (empty or truncated): the file is damaged; {FILE_FIX}."
        )
    try:
        return torch.load(weights, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refuses anything but tensors and plain containers
        reason = str(err).splitlines()[0]
        raise ModelFileError(
            f"'{weights}' cannot be read as PyTorch weights ({reason}): the file was replaced; {FILE_FIX}."
        ) from None


def write_dir_atomic(path: str | Path, write, *, overwrite: bool) -> None:
    """Make the directory ``path``: ``write(tmp)`` fills a hidden sibling, renamed into place (complete or absent)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' exists. Pass `overwrite=True` to replace it.")
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def write_card(directory: Path, card: dict) -> None:
    """``card.json`` in ``directory``, stamped with the histo2st version and the time."""
    from .._version import __version__

    stamped = {
        **card,
        "histo2st_version": __version__,
        "saved": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    (directory / CARD_FILE).write_text(json.dumps(stamped, indent=2, default=_jsonable))


def _target_mean(sections: list) -> np.ndarray:
    """Each gene's mean over the training spots: the model's start, and the trivial predictor it must beat."""
    return np.concatenate([s.targets for s in sections if s.n_spots]).mean(0)


def _best_record(history: list[dict]) -> dict:
    scored = [h for h in history if np.isfinite(h.get("val_pcc", np.nan))]
    return max(scored, key=lambda h: h["val_pcc"]) if scored else (history[-1] if history else {})


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
