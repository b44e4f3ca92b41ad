"""``st.tl.pretrain_encoder``: self-supervised pretraining of the ResNet18 encoder on unlabeled H&E tissue tiles."""

from __future__ import annotations

import datetime
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._logging import logger

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from spatialdata import SpatialData

METHODS = ("byol",)
#: Encoder file written in ``checkpoint_dir`` when ``out`` is not given.
ENCODER_FILE = "encoder.pt"
TRANSDUCTIVE_NOTE = (
    "The encoder saw every tissue tile of the slides in `slides` (images only, no expression). A model that uses it "
    "and is evaluated on one of these slides is transductive: report such results apart from results on slides the "
    "pretraining never saw."
)


def pretrain_encoder(
    sdata: SpatialData | Sequence[SpatialData] | Mapping[str, SpatialData],
    *,
    method: str = "byol",
    epochs: int = 100,
    microns_per_pixel: float = 2.0,
    tile_px: int = 224,
    batch_size: int = 32,
    steps_per_epoch: int | None = None,
    lr: float = 1e-3,
    min_tissue: float = 0.5,
    device: str | None = None,
    mixed_precision: bool | None = None,
    max_time: float | None = None,
    checkpoint_dir: str | Path | None = None,
    seed: int | None = None,
    progress: bool = True,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Pretrain a ResNet18 encoder on the tissue of H&E slides without expression (self-supervised, BYOL).

    Every tissue tile of every slide is used, not only the spots: the H&E is resampled to ``microns_per_pixel``,
    a tissue mask (Otsu threshold of the saturation) keeps the tiles of ``tile_px`` that are at least
    ``min_tissue`` tissue, and BYOL teaches the encoder to give two random views of the same tile (rotated,
    mirrored, slightly zoomed and shifted, re-stained in hematoxylin-eosin space, blurred) the same representation.
    The result loads into PixNet with ``st.tl.fit(..., encoder_weights=path)``; pretrain at the ``microns_per_pixel``
    the model will use.

    Pretraining on the slides you will predict is transductive (see the card's ``"transductive"`` note): it uses
    their images, never their expression, but results on them are not results on unseen slides.

    Parameters
    ----------
    sdata
        A SpatialData, or a list or dict of them (one per slide), with an H&E image and ``attrs["histo2st"]`` (any
        histo2st reader); tables and spots are not needed.
    method
        ``"byol"`` (Grill et al. 2020): no negative pairs, so it works with the small batches a CPU affords, unlike
        SimCLR, and has fewer settings to tune than DINO. See the docs page "Encoder pretraining".
    epochs
        Maximum number of epochs.
    microns_per_pixel
        Resolution of the tiles (PixNet's default is 2 µm per pixel).
    tile_px
        Side of the views the encoder sees, in pixels at ``microns_per_pixel``.
    batch_size
        Tiles per step (each gives two views).
    steps_per_epoch
        Steps between validations (and checkpoints). ``None``: one pass over the tissue tiles, and at least 25 steps
        (a few slides hold only a few batches of tiles; they are then visited several times per epoch).
    lr
        AdamW learning rate.
    min_tissue
        Smallest fraction of tissue in a tile for it to be used.
    device
        Torch device; default :attr:`histo2st.settings.device`.
    mixed_precision
        Compute in bfloat16 (autocast). ``None``: where the device computes it natively, CUDA or a CPU with AMX
        (:func:`~histo2st.train._precision.native_bfloat16`), where it about halves the time of a step.
    max_time
        Stop once this many seconds of training have passed (checked after every step; that epoch is still validated).
    checkpoint_dir
        Save a checkpoint after every epoch there and resume from it if one exists.
    seed
        Random seed; default :attr:`histo2st.settings.seed`.
    progress
        Show a progress bar.
    out
        File to write the encoder to (a ``.pt`` state dict); its card goes beside it with the suffix ``.json``.
        Default ``checkpoint_dir/encoder.pt``, or a new temporary directory without ``checkpoint_dir``.
    overwrite
        Replace an existing ``out``.

    Returns
    -------
    The path of the encoder: a torchvision-format ResNet18 state dict without the ``fc`` classifier (what
    :func:`histo2st.nn.load_encoder_weights` and PixNet's ``encoder_weights`` take). Beside it, ``<out>.json``: the
    slides, tiles per slide, settings, seconds, the per-epoch history (``loss``, held-out ``val_loss`` and
    ``val_feature_std``) and the ``transductive`` note.
    """
    import torch

    from .._core import as_samples
    from .._settings import settings
    from ..module import BYOLModule
    from ..train import BYOLPlan, Trainer, TrainerConfig, native_bfloat16

    _check_options(method, tile_px, min_tissue)
    out = _encoder_path(out, checkpoint_dir)
    card_path = out.with_suffix(".json")
    if not overwrite and (out.exists() or card_path.exists()):
        raise FileExistsError(f"'{out}' or its card '{card_path}' exists. Pass `overwrite=True` to replace them.")
    seed = settings.seed if seed is None else seed
    device = settings.resolve_device(device)
    if mixed_precision is None:
        mixed_precision = native_bfloat16(device)
    start = time.perf_counter()

    slides = [
        _tile_slide(name, sample, microns_per_pixel, tile_px, min_tissue) for name, sample in as_samples(sdata).items()
    ]
    torch.manual_seed(seed)
    module = BYOLModule()
    plan = BYOLPlan(
        module,
        slides,
        tile_px=tile_px,
        batch_size=batch_size,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        lr=lr,
        seed=seed,
    )
    logger.info(
        f"Pretraining on {len(plan.train_tiles)} tissue tiles of {tile_px * microns_per_pixel:.0f} µm from "
        f"{len(slides)} slide(s) ({len(plan.val_tiles)} held out), {plan.steps_per_epoch} steps per epoch."
    )
    config = TrainerConfig(
        epochs=epochs,
        seed=seed,
        device=device,
        checkpoint_dir=checkpoint_dir,
        patience=None,
        monitor=None,
        progress=progress,
        max_time=max_time,
        mixed_precision=mixed_precision,
    )
    history = Trainer(plan, config).fit()

    settings_used = {"epochs": epochs, "tile_px": tile_px, "batch_size": batch_size, "lr": lr, "min_tissue": min_tissue,
                     "max_time": max_time, "mixed_precision": mixed_precision, "seed": seed}  # fmt: skip
    card = _card(method, slides, plan, history, settings_used, microns_per_pixel, device, time.perf_counter() - start)
    state = {k: v.detach().cpu() for k, v in module.encoder.state_dict().items()}
    _write_atomic(out, lambda tmp: torch.save(state, tmp))
    _write_atomic(card_path, lambda tmp: tmp.write_text(json.dumps(card, indent=2)))
    logger.info(f"Saved the pretrained encoder to '{out}' and its card to '{card_path}'.")
    return out


def _check_options(method: str, tile_px: int, min_tissue: float) -> None:
    if method not in METHODS:
        raise ValueError(f"Unknown pretraining method {method!r}; available: {list(METHODS)}.")
    if tile_px < 32:
        raise ValueError(f"`tile_px` must be at least 32 (the encoder's stride), got {tile_px}.")
    if not 0 <= min_tissue <= 1:
        raise ValueError(f"`min_tissue` must be a fraction in [0, 1], got {min_tissue}.")


def _card(method: str, slides: list, plan, history: list, settings_used: dict, microns_per_pixel: float, device: str,
          seconds: float) -> dict:  # fmt: skip
    """The encoder's card: what it is, what it saw, how it was trained."""
    from .._version import __version__

    tile_px = settings_used["tile_px"]
    return {
        "kind": "histo2st encoder",
        "architecture": "resnet18",
        "format": "torchvision ResNet18 state dict without fc",
        "input": "RGB / 255 normalized with ImageNet mean and std (histo2st.nn.normalize_images)",
        "method": method,
        "slides": [s.name for s in slides],
        "tiles": {s.name: len(s.centers) for s in slides},
        "n_validation_tiles": len(plan.val_tiles),
        "microns_per_pixel": microns_per_pixel,
        "settings": {
            **settings_used,
            "tile_um": tile_px * microns_per_pixel,
            "steps_per_epoch": plan.steps_per_epoch,
            "base_momentum": plan.base_momentum,
        },
        "epochs_run": len(history),
        "steps_run": len(history) * plan.steps_per_epoch,
        "seconds": round(seconds, 1),
        "device": device,
        "history": history,
        "transductive": TRANSDUCTIVE_NOTE,
        "histo2st_version": __version__,
        "saved": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _encoder_path(out, checkpoint_dir) -> Path:
    if out is not None:
        return Path(out)
    if checkpoint_dir is not None:
        return Path(checkpoint_dir) / ENCODER_FILE
    return Path(tempfile.mkdtemp(prefix="histo2st-encoder-")) / ENCODER_FILE


def _write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    write(tmp)
    os.replace(tmp, path)


def _tile_slide(name: str, sdata, microns_per_pixel: float, tile_px: int, min_tissue: float):
    from .._core import get_scale
    from .._core._resample import resample_image
    from .._core._tissue import tissue_mask
    from ..train import TileSlide, tissue_tile_centers

    scale = get_scale(sdata)
    if scale.image_key not in sdata.images:
        raise ValueError(f"Slide '{name}' has no image '{scale.image_key}' (images: {list(sdata.images)}).")
    data, mpp = _pyramid_level(sdata.images[scale.image_key], scale.microns_per_pixel, microns_per_pixel)
    if data.ndim != 3 or data.shape[0] != 3 or data.dtype != np.uint8:
        raise ValueError(
            f"Slide '{name}': the H&E must be (3, y, x) uint8 RGB, got shape {data.shape} and dtype {data.dtype}; "
            "read the slide with a `histo2st.io` reader or build it with `histo2st.io.from_arrays`."
        )
    image = np.asarray(resample_image(data, mpp / microns_per_pixel).compute())
    mask, mask_px = tissue_mask(image)
    centers = tissue_tile_centers(mask, mask_px, image.shape[1:], tile_px, min_tissue=min_tissue)
    logger.debug(
        f"Slide '{name}': {len(centers)} tissue tiles, image {image.shape[1:]} px at {microns_per_pixel} µm/px."
    )
    return TileSlide(name=name, image=image, centers=centers)


def _pyramid_level(element, mpp: float, target_mpp: float):
    """The image data of the coarsest pyramid level that is still at least as fine as ``target_mpp``, and its µm/px."""
    if not hasattr(element, "children"):
        return element.data, mpp
    levels = [element[k].ds["image"] for k in sorted(element.children, key=lambda k: int(k.removeprefix("scale")))]
    full_width = levels[0].shape[-1]
    best, best_mpp = levels[0].data, mpp
    for level in levels[1:]:
        level_mpp = mpp * full_width / level.shape[-1]
        if level_mpp <= target_mpp * 1.001:
            best, best_mpp = level.data, level_mpp
    return best, best_mpp
