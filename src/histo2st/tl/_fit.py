"""``st.tl.fit``: train a model on one or several sections."""

from __future__ import annotations

from numbers import Integral
from pathlib import Path

from .._logging import logger


def fit(
    data,
    model: str = "pixnet",
    *,
    genes=None,
    epochs: int = 30,
    batch_size: int | None = None,
    microns_per_pixel: float | None = None,
    validation=0.15,
    device: str | None = None,
    checkpoint_dir: str | Path | None = None,
    patience: int | None = 8,
    max_time: float | None = None,
    seed: int | None = None,
    progress: bool = True,
    ema_decay: float | None = None,
    n_seeds: int = 1,
    **hyperparameters,
):
    """Train a model that predicts gene expression from H&E.

    Parameters
    ----------
    data
        A normalised SpatialData (:func:`histo2st.pp.normalize`), or a list or dict of them (several sections).
    model
        ``"pixnet"`` (dense maps, :class:`~histo2st.model.PixNet`) or ``"thitogene"`` (a patch per spot, spots attending
        to each other, :class:`~histo2st.model.THItoGene`).
    genes
        Genes to predict; default the genes shared by every section's table (usually after
        :func:`histo2st.pp.select_genes`).
    epochs
        Maximum number of epochs (early stopping on validation PCC may stop sooner).
    batch_size
        Crops (PixNet) or windows of spots (THItoGene) per batch; default the model's.
    microns_per_pixel
        Resolution the model works at; default the model's (PixNet: 2 µm/px; THItoGene: 0.69 µm/px, so its 112 px
        patches hold the paper's 77 µm).
    validation
        A fraction of spots per section held out at random, a section name or list of names held out whole, or
        ``None`` for no validation. Validation spots never enter the loss.
    device
        ``"cpu"``, ``"cuda"``, ``"mps"``; default :attr:`histo2st.settings.device`.
    checkpoint_dir
        Directory for a checkpoint after every epoch; a run pointed at an existing checkpoint resumes from it. With
        ``n_seeds > 1`` each member checkpoints into its own subdirectory ``seed_<seed>``.
    patience
        Stop after this many epochs without a better validation PCC (the best weights are kept); ``None`` trains
        all ``epochs``.
    max_time
        Stop once this many seconds of training have passed (checked after every step; that epoch is still validated).
    seed
        Random seed; default :attr:`histo2st.settings.seed`. Ensemble members use ``seed``, ``seed + 1``, ...
    progress
        Show a progress bar with the loss and validation PCC.
    ema_decay
        Keep an exponential moving average of the weights with this decay (e.g. 0.999; ``None``: off). Validation,
        early stopping and the returned model then use the averaged weights.
    n_seeds
        Train this many models with seeds ``seed``, ``seed + 1``, ... on the same data and settings and return them as
        a seed ensemble, whose predictions are the members' mean with their standard deviation as an uncertainty
        (see :func:`histo2st.tl.predict`). Each member's initial weights are drawn under its own seed. ``1``: one
        model, as without this option.
    **hyperparameters
        Passed to the model class (e.g. PixNet's ``hidden_dim``, ``lr``, ``lam``, ``crop_px``, ``encoder_weights``;
        THItoGene's ``lr``, ``loss``, ``patch_um``, ``window_spots``, ``dense_um``).

    Returns
    -------
    The trained model (:class:`histo2st.model.PixNet` or :class:`histo2st.model.THItoGene`), with ``model.history``
    and ``model.card``; with ``n_seeds > 1`` a :class:`histo2st.model.Ensemble` of such models (``.members``).
    """
    import torch

    from .._core import as_samples
    from .._settings import settings
    from ..model import MODELS, Ensemble
    from ..train import common_genes

    if model not in MODELS:
        raise ValueError(f"Unknown model {model!r}; choose one of {sorted(MODELS)}.")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, Integral) or n_seeds < 1:
        raise ValueError(f"`n_seeds` must be a whole number of models, at least 1; got {n_seeds!r}.")
    samples = as_samples(data)
    genes = common_genes(samples) if genes is None else list(genes)
    kwargs = dict(hyperparameters)
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if microns_per_pixel is not None:
        kwargs["microns_per_pixel"] = microns_per_pixel
    options = {"epochs": epochs, "validation": validation, "device": device, "patience": patience,
               "max_time": max_time, "progress": progress, "ema_decay": ema_decay}  # fmt: skip
    if n_seeds == 1:
        instance = MODELS[model](genes, **kwargs)
        instance.train(samples, checkpoint_dir=checkpoint_dir, seed=seed, **options)
        return instance
    seed = settings.seed if seed is None else seed
    members = []
    for member_seed in range(seed, seed + int(n_seeds)):
        logger.info(f"Training ensemble member {member_seed - seed + 1} of {n_seeds} (seed {member_seed}).")
        # the initial weights are the main source of a seed ensemble's diversity: draw them under the member's seed,
        # without moving the caller's global torch random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(member_seed)
            instance = MODELS[model](genes, **kwargs)
        member_dir = None if checkpoint_dir is None else Path(checkpoint_dir) / f"seed_{member_seed}"
        instance.train(samples, checkpoint_dir=member_dir, seed=member_seed, **options)
        members.append(instance)
    return Ensemble(members)
