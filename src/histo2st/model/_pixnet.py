"""PixNet, the user-facing model: dense gene maps from H&E, trained on measured spots."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import dask.array as da
import numpy as np

from .._core._resample import resample_image
from .._logging import logger
from .._settings import settings
from ._base import BaseModel
from ._tiling import PAD_VALUE, core_chunks, make_grid, run_network


class PixNet(BaseModel):
    """PixNet (Zhang, Yang, Pan): a ResNet18 pyramid encoder and U-Net-style decoder predicting a dense gene map.

    A spot's expression is the mean of the dense map over its circle, so the model trained on measured spots predicts
    at any spot or bin size. Train with :meth:`train` (or :func:`histo2st.tl.fit`), predict with
    :func:`histo2st.tl.predict`.

    Parameters
    ----------
    genes
        Genes to predict (the table's normalised expression of these genes is the target).
    microns_per_pixel
        Resolution the network works at; every slide is resampled to it.
    hidden_dim
        Decoder width (paper: 512).
    encoder_weights
        ``None`` (random initialisation) or a path to a torchvision-format ResNet18 checkpoint.
    lam
        Weight of the ``1 − PCC`` loss term (paper: 0.5).
    lr, weight_decay
        Adam settings (paper: 5e-4, 1e-4).
    crop_px
        Training crop edge in pixels at ``microns_per_pixel``.
    batch_size
        Crops per batch.
    tile_px
        Input tile edge for prediction (context halo included).
    augment
        Flips, 90° rotations and colour jitter during training.
    **module_kwargs
        Passed to :class:`~histo2st.module.PixNetModule`.
    """

    model_name = "pixnet"

    def __init__(
        self,
        genes,
        *,
        microns_per_pixel: float = 2.0,
        hidden_dim: int = 512,
        encoder_weights: str | Path | None = None,
        lam: float = 0.5,
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
        crop_px: int = 256,
        batch_size: int = 8,
        tile_px: int = 512,
        augment: bool = True,
        **module_kwargs,
    ) -> None:
        params = {
            "hidden_dim": hidden_dim,
            "encoder_weights": None if encoder_weights is None else str(encoder_weights),
            "lam": lam,
            "lr": lr,
            "weight_decay": weight_decay,
            "crop_px": crop_px,
            "batch_size": batch_size,
            "tile_px": tile_px,
            "augment": augment,
            **module_kwargs,
        }
        super().__init__(genes, microns_per_pixel=microns_per_pixel, init_params=params)
        self.card["encoder"] = {"architecture": "resnet18", "weights": _weights_origin(encoder_weights)}

    def _build_module(self):
        from ..module import PixNetModule

        p = self.init_params
        extra = {k: v for k, v in p.items() if k not in _PLAN_KEYS and k not in ("hidden_dim", "encoder_weights")}
        return PixNetModule(self.n_genes, hidden_dim=p["hidden_dim"], encoder_weights=p["encoder_weights"], **extra)

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
    ) -> list[dict]:
        """Train on one or several normalised sections.

        Parameters
        ----------
        data
            A SpatialData, or a list or dict of them, normalised with :func:`histo2st.pp.normalize`.
        epochs
            Maximum number of epochs.
        validation
            Section name(s) to hold out, a fraction of spots per section, or ``None``; see
            :func:`histo2st.train.split_validation`.
        device
            Torch device; default :attr:`histo2st.settings.device`.
        checkpoint_dir
            Save a checkpoint after every epoch there and resume from it if one exists.
        patience
            Early stopping patience in epochs (on validation PCC).
        max_time
            Stop after the epoch during which this many seconds have passed.
        seed
            Random seed; default :attr:`histo2st.settings.seed`.
        progress
            Show a progress bar.

        Returns
        -------
        The training history (also in ``model.history``).
        """
        from ..train import PixNetPlan, Trainer, TrainerConfig, prepare_sections, split_validation

        seed = settings.seed if seed is None else seed
        device = settings.resolve_device(device)
        start = time.perf_counter()
        sections, norm = prepare_sections(data, self.genes, self.microns_per_pixel)
        train, val, val_desc = split_validation(sections, validation, seed=seed)
        p = self.init_params
        plan = PixNetPlan(
            self.module,
            train,
            val,
            crop_px=p["crop_px"],
            batch_size=p["batch_size"],
            lam=p["lam"],
            lr=p["lr"],
            weight_decay=p["weight_decay"],
            augment=p["augment"],
        )
        config = TrainerConfig(
            epochs=epochs,
            seed=seed,
            device=device,
            checkpoint_dir=checkpoint_dir,
            patience=patience if val else None,
            max_time=max_time,
            progress=progress,
        )
        if not self.history:
            _start_at_the_mean(self.module, train)
        self.history = Trainer(plan, config).fit()
        self.card.update(
            normalization=norm,
            training={
                "sections": [s.name for s in sections],
                "n_spots": int(sum(s.n_spots for s in train)),
                "spot_diameter_um": _spot_diameters(sections),
                "validation": val_desc,
                "epochs_run": len(self.history),
                "seconds": round(time.perf_counter() - start, 1),
                "device": device,
                "seed": seed,
            },
            validation_metrics=_best_record(self.history),
        )
        return self.history

    def predict_image(self, image: da.Array, image_mpp: float, *, device: str | None = None) -> da.Array:
        """Lazy dense prediction ``(genes, y, x)`` float32 at the model's resolution for an H&E ``(3, y, x)``.

        The image is resampled to ``model.microns_per_pixel``; each output chunk is the core of a ``tile_px`` input
        tile, the remaining pixels on each side giving the network context, so seams never sit at a tile edge.
        """
        device = settings.resolve_device(device)
        factor = image_mpp / self.microns_per_pixel
        if not math.isclose(factor, 1.0, rel_tol=0.05):
            logger.info(f"Resampling the H&E from {image_mpp:.3g} to {self.microns_per_pixel:.3g} µm/px.")
        image = resample_image(image, factor)
        grid = make_grid(self.init_params["tile_px"], halo=self.init_params["tile_px"] // 4)
        image = image.rechunk((3, *(core_chunks(n, grid) for n in image.shape[1:])))
        padded = da.overlap.overlap(image, depth={0: 0, 1: grid.halo, 2: grid.halo}, boundary=PAD_VALUE)
        self.module.to(device).eval()
        return da.map_blocks(
            _predict_block,
            padded,
            dtype=np.float32,
            chunks=((self.n_genes,), *image.chunks[1:]),
            meta=np.empty((0, 0, 0), dtype=np.float32),
            module=self.module,
            grid=grid,
            device=device,
        )


def _predict_block(block: np.ndarray, module, grid, device) -> np.ndarray:
    from ..nn import normalize_images

    _, h, w = block.shape
    dense = run_network(module, block[None], device, normalize=normalize_images)[0]
    return dense[:, grid.halo : h - grid.halo, grid.halo : w - grid.halo]


def _start_at_the_mean(module, sections) -> None:
    """Set the output bias to the training targets' per-gene mean, so the first steps learn variation, not offset.

    A randomly initialised head predicts about 0 where log-normalised targets are around 1-8: without this, the MSE
    term spends its first epochs moving every pixel up, and the validation PCC drifts while it does.
    """
    import torch

    mean = np.concatenate([s.targets for s in sections]).mean(0)
    if getattr(module, "output_activation", None) == "softplus":
        mean = np.log(np.expm1(np.maximum(mean, 1e-4)))  # inverse softplus
    with torch.no_grad():
        module.head.bias.copy_(torch.as_tensor(mean, dtype=module.head.bias.dtype))


_PLAN_KEYS = ("lam", "lr", "weight_decay", "crop_px", "batch_size", "tile_px", "augment")


def _weights_origin(path) -> dict:
    if path is None:
        return {"source": "random initialisation"}
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"source": str(path), "sha256": digest}


def _spot_diameters(sections) -> list[float]:
    return sorted({round(float(2 * np.median(s.radii) * s.microns_per_pixel), 1) for s in sections if s.n_spots})


def _best_record(history: list[dict]) -> dict:
    scored = [h for h in history if np.isfinite(h.get("val_pcc", np.nan))]
    return max(scored, key=lambda h: h["val_pcc"]) if scored else (history[-1] if history else {})
