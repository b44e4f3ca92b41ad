"""``st.tl.fit``: train a model on one or several sections."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING

from .._docs import TRAINING_DOC, doc_params
from .._logging import logger

if TYPE_CHECKING:
    from spatialdata import SpatialData


#: Training options a preset may set (the rest of a preset goes to the model class).
TRAINING_OPTIONS = ("epochs", "patience", "max_time", "ema_decay")
#: Training options recorded in the model card's ``"preset"`` (beside the preset's name and hyperparameters).
_RECORDED = (*TRAINING_OPTIONS, "device")
PRESETS = ("auto", "cpu", "paper")


class _FromPreset:
    """Default of the options a preset sets: ``None`` means something (no early stopping, no time cap)."""

    def __repr__(self) -> str:
        return "<from preset>"


FROM_PRESET = _FromPreset()


@doc_params(training_options=TRAINING_DOC)
def fit(
    sdata: SpatialData | Sequence[SpatialData] | Mapping[str, SpatialData],
    model: str | Sequence[str] = "pixnet",
    *,
    preset: str = "auto",
    genes=None,
    epochs: int = FROM_PRESET,
    batch_size: int | None = None,
    microns_per_pixel: float | None = None,
    validation=0.15,
    device: str | None = None,
    checkpoint_dir: str | Path | None = None,
    patience: int | None = FROM_PRESET,
    max_time: float | None = FROM_PRESET,
    seed: int | None = None,
    progress: bool = True,
    ema_decay: float | None = FROM_PRESET,
    n_seeds: int = 1,
    key_added: str | None = None,
    overwrite: bool = False,
    **hyperparameters,
):
    """Train a model that predicts gene expression from H&E, and record it on the samples it was fit on.

    Like scanpy records a result in ``.uns``, the trained model is recorded on every sample under ``key_added``, so
    ``st.tl.predict(sdata)`` finds it; on a zarr-backed sample it is also saved inside the store (see Returns).

    Parameters
    ----------
    sdata
        A normalized SpatialData (:func:`histo2st.pp.normalize`), or a list or dict of them (several sections).
    model
        ``"pixnet"`` (dense maps, :class:`~histo2st.model.PixNet`), ``"thitogene"`` (a patch per spot, spots attending
        to each other, :class:`~histo2st.model.THItoGene`) or ``"ridge"`` (the HEST-benchmark baseline: a frozen
        encoder's features of each spot's patch, PCA and ridge regression, :class:`~histo2st.model.RidgeProbe`;
        fitted in closed form, so the training options do not apply). A list of names, e.g.
        ``["pixnet", "thitogene"]``, trains each with its own preset and returns them as one mixed
        :class:`~histo2st.model.Ensemble` (their mean, their spread as the uncertainty; at spots each member counts
        by its own spot values, PixNet's map aggregates and THItoGene's predictions at the centers). On her2st the
        mean of PixNet's and THItoGene's spot predictions scored above either alone (see the docs' benchmarks).
        Per-model keywords (``batch_size``, ``microns_per_pixel``, hyperparameters) are then refused.
    preset
        Settings that fit the machine: ``"cpu"`` (the best measured on a 2-core CPU, within a time budget of
        7 minutes), ``"paper"`` (each paper's GPU settings, e.g. PixNet's 500 epochs at width 512) or ``"auto"``
        (``"paper"`` on a CUDA device, else ``"cpu"``; the choice is logged). The values are the model class's
        ``presets`` (:attr:`histo2st.model.PixNet.presets`); every keyword given explicitly overrides its preset
        value, and the model card records the preset and every resolved value under ``"preset"``.
    genes
        Genes to predict; default the genes shared by every section's table (usually after
        :func:`histo2st.pp.select_genes`).
    epochs
        Maximum number of epochs (early stopping on validation PCC may stop sooner); default the preset's.
    batch_size
        Crops (PixNet) or windows of spots (THItoGene) per batch; default the model's.
    microns_per_pixel
        Resolution the model works at; default the preset's, else the model's (PixNet: 2 µm/px, 4 µm/px with the
        ``"cpu"`` preset; THItoGene: 0.69 µm/px, so its 112 px patches hold the paper's 77 µm).
    {training_options}
    checkpoint_dir
        Directory for a checkpoint after every epoch; a run pointed at an existing checkpoint resumes from it. With
        ``n_seeds > 1`` each member checkpoints into its own subdirectory ``seed_<seed>``.
    patience
        Stop after this many epochs without a better validation PCC (the best weights are kept); ``None`` trains
        all ``epochs``. Default the preset's.
    max_time
        Stop once this many seconds of training have passed (checked after every step; that epoch is still
        validated); ``None``: no limit. Default the preset's (``"cpu"``: 420 s per model).
    seed
        Random seed; default :attr:`histo2st.settings.seed`. Ensemble members use ``seed``, ``seed + 1``, ...
    n_seeds
        Train this many models with seeds ``seed``, ``seed + 1``, ... on the same data and settings and return them as
        a seed ensemble, whose predictions are the members' mean with their standard deviation as an uncertainty
        (see :func:`histo2st.tl.predict`). Each member's initial weights are drawn under its own seed. ``1``: one
        model, as without this option.
    key_added
        Name the model is recorded under on the samples; default the model's name (``"pixnet"``, ``"thitogene"``;
        ``"pixnet+thitogene"`` for a list).
    overwrite
        Replace a model of that name saved in a sample's zarr store (checked before training starts).
    **hyperparameters
        Passed to the model class (e.g. PixNet's ``hidden_dim``, ``lr``, ``lam``, ``crop_px``, ``encoder``,
        ``encoder_weights``, ``cache_features``; THItoGene's ``lr``, ``encoder_lr``, ``loss``, ``patch_um``,
        ``window_spots``, ``windows_per_epoch``, ``augment_positions``, ``dense_um``; the ridge probe's ``encoder``,
        ``patch_px``, ``n_components``).

    Returns
    -------
    The trained model (:class:`histo2st.model.PixNet`, :class:`histo2st.model.THItoGene` or
    :class:`histo2st.model.RidgeProbe`), with ``model.history``
    and ``model.card``; with ``n_seeds > 1`` or several models a :class:`histo2st.model.Ensemble` of such models
    (``.members``).
    Also records it on every sample it was fit on:

    the model object under ``key_added``
        in memory, for :func:`histo2st.tl.predict` (``model=None``) and :func:`histo2st.tl.load_model`;
    ``sdata.attrs["histo2st"]["models"][key_added]``
        the card's summary: genes, µm per pixel, preset, normalization, training sections, seeds, metrics;
    ``<store>/histo2st/models/<key_added>/``
        on a zarr-backed sample, the saved model (weights and card, written atomically), which
        ``spatialdata.read_zarr`` leaves alone and ``st.tl.predict`` finds in a fresh process.
    """
    from .._core import as_gene_list, as_samples
    from ..model import Ensemble
    from ..train import common_genes
    from ._registry import check_free, record_model

    names = _model_names(model, {"batch_size": batch_size, "microns_per_pixel": microns_per_pixel, **hyperparameters})
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, Integral) or n_seeds < 1:
        raise ValueError(f"`n_seeds` must be a whole number of models, at least 1; got {n_seeds!r}.")
    samples = as_samples(sdata)
    key_added = "+".join(names) if key_added is None else key_added
    for sample in samples.values():
        check_free(sample, key_added, overwrite=overwrite)
    genes = common_genes(samples) if genes is None else as_gene_list(genes)
    explicit = {"epochs": epochs, "patience": patience, "max_time": max_time, "ema_decay": ema_decay,
                "batch_size": batch_size, "microns_per_pixel": microns_per_pixel, **hyperparameters}  # fmt: skip
    explicit = {k: v for k, v in explicit.items() if v is not FROM_PRESET and not (v is None and k in _NONE_UNSET)}
    options = {"device": device, "seed": seed, "checkpoint_dir": checkpoint_dir, "progress": progress,
               "validation": validation, "n_seeds": int(n_seeds)}  # fmt: skip
    fitted = [_fit_one(name, preset, genes, samples, explicit, options) for name in names]
    trained = fitted[0] if len(fitted) == 1 else Ensemble([m for f in fitted for m in f.members])
    for sample in samples.values():
        record_model(sample, trained, key_added, overwrite=overwrite)
    return trained


def _model_names(model, per_model: dict) -> list[str]:
    """The model names of ``model`` (one, or a list for a mixed ensemble), checked."""
    from ..model import MODELS

    names = [model] if isinstance(model, str) else list(model)
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(
            f"Unknown model {unknown[0]!r}; choose one of {sorted(MODELS)}." if unknown else
            f"`model` must be a name or a list of different names, got {model!r}."
        )  # fmt: skip
    given = sorted(k for k, v in per_model.items() if v is not None)
    if len(names) > 1 and given:
        raise ValueError(
            f"{given} would apply to every model of {names}; fit each with its own settings and combine them with "
            "`histo2st.model.Ensemble([...])`, or leave them to each model's preset."
        )
    return names


def _fit_one(name: str, preset: str, genes, samples: dict, explicit: dict, options: dict):
    """One model (or seed ensemble) of class ``name`` trained with its preset and ``explicit`` keywords."""
    from ..model import MODELS

    chosen, resolved = resolve_preset(MODELS[name], preset, options["device"])
    resolved.update(explicit)
    config = _trainer_config(resolved, device=options["device"], seed=options["seed"],
                             checkpoint_dir=options["checkpoint_dir"], progress=options["progress"])  # fmt: skip
    trained = _train(MODELS[name], genes, samples, resolved, config, validation=options["validation"],
                     n_seeds=options["n_seeds"])  # fmt: skip
    recorded = {"name": chosen, "requested": preset, **{k: getattr(config, k) for k in _RECORDED},
                "validation": options["validation"], "n_seeds": options["n_seeds"],
                "hyperparameters": resolved}  # fmt: skip
    for member in trained.members:
        member.card["preset"] = recorded
    return trained


#: Explicit keywords whose ``None`` means "not given" (the model's or preset's default).
_NONE_UNSET = ("batch_size", "microns_per_pixel")


def resolve_preset(model_class, preset: str, device: str | None) -> tuple[str, dict]:
    """The preset ``"auto"`` stands for on ``device``, and a copy of that preset's values for ``model_class``."""
    from .._settings import settings

    if preset not in PRESETS:
        raise ValueError(f"Unknown `preset={preset!r}`; use one of {list(PRESETS)}.")
    chosen = preset
    if preset == "auto":
        resolved_device = settings.resolve_device(device)
        chosen = "paper" if resolved_device.startswith("cuda") else "cpu"
        logger.info(
            f"preset='auto' chose {chosen!r}: training runs on {resolved_device!r}"
            + (" (a CUDA GPU: the paper's settings)." if chosen == "paper" else
               ", not a CUDA GPU, so the settings measured best on a CPU within a time budget; pass "
               "preset='paper' for the paper's.")
        )  # fmt: skip
    return chosen, dict(model_class.presets.get(chosen, {}))


def _trainer_config(resolved: dict, *, device, seed, checkpoint_dir, progress):
    """The one :class:`~histo2st.train.TrainerConfig` of a fit, with seed and device resolved.

    The preset's training options are popped from ``resolved``, which keeps the model's parameters.
    """
    from .._settings import settings
    from ..train import TrainerConfig

    preset_options = {k: resolved.pop(k) for k in TRAINING_OPTIONS if k in resolved}
    return TrainerConfig(
        **preset_options,
        seed=settings.seed if seed is None else seed,
        device=settings.resolve_device(device),
        checkpoint_dir=checkpoint_dir,
        progress=progress,
    )


def _train(model_class, genes, samples, params: dict, config, *, validation, n_seeds: int):
    """One trained model, or a seed ensemble of ``n_seeds`` with seeds ``config.seed``, ``config.seed + 1``, ..."""
    from dataclasses import replace

    import torch

    from ..model import Ensemble

    if n_seeds == 1:
        instance = model_class(genes, **params)
        instance.train_with(samples, config, validation=validation)
        return instance
    members = []
    for member_seed in range(config.seed, config.seed + n_seeds):
        logger.info(f"Training ensemble member {member_seed - config.seed + 1} of {n_seeds} (seed {member_seed}).")
        # the initial weights are the main source of a seed ensemble's diversity: draw them under the member's seed,
        # without moving the caller's global torch random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(member_seed)
            instance = model_class(genes, **params)
        member_dir = None if config.checkpoint_dir is None else Path(config.checkpoint_dir) / f"seed_{member_seed}"
        member_config = replace(config, seed=member_seed, checkpoint_dir=member_dir)
        instance.train_with(samples, member_config, validation=validation)
        members.append(instance)
    return Ensemble(members)
