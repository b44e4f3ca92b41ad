"""PixNet, the user-facing model: dense gene maps from H&E, trained on measured spots."""

from __future__ import annotations

import math
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from .._core._resample import resample_image
from .._docs import TARGET_COMPONENTS_DOC, doc_params
from .._logging import logger
from .._settings import settings
from ..train import (
    MAX_HALO_PX,
    PAD_VALUE,
    ContextImage,
    core_chunks,
    cores_per_chunk,
    default_batch_size,
    make_grid,
    predict_cores,
    snap_halo,
)
from ._base import BaseModel, init_params
from ._encoder_model import EncoderReference


@doc_params(target_components=TARGET_COMPONENTS_DOC)
class PixNet(EncoderReference, BaseModel):
    """PixNet (Zhang, Yang, Pan): a pyramidal encoder and a U-Net-style decoder predicting a dense gene map.

    A spot's expression is the mean of the dense map over its circle, so the model trained on measured spots predicts
    at any spot or bin size. Train with :meth:`train` (or :func:`histo2st.tl.fit`), predict with
    :func:`histo2st.tl.predict`.

    Parameters
    ----------
    genes
        Genes to predict (the table's normalized expression of these genes is the target).
    microns_per_pixel
        Resolution the network works at; every slide is resampled to it.
    hidden_dim
        Decoder width (paper: 512).
    encoder
        The image encoder: ``"resnet18"`` (the paper's), ``"resnet34"``, ``"resnet50"`` (torchvision), a timm
        Vision Transformer name (``"vit_small_patch16_224"``, ``"vit_large_patch16_224"``, ...), a local directory
        laid out as a timm hub repository (``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``), or
        a Hugging Face hub id ``"hf-hub:<org>/<name>"`` (e.g. ``"hf-hub:MahmoodLab/UNI"``; downloaded once into the
        hub cache by ``huggingface_hub``, gated models need a login). See the docs page "Models", encoders.
    encoder_weights
        ``None`` (random initialization, or the weights a directory or hub id brings) or a weights file of the
        architecture in its published layout (``torch.save`` or ``.safetensors``; torchvision's keys for a ResNet,
        timm's for a ViT), loaded strictly.
    encoder_args
        Architecture arguments of a timm ViT, updating those of a hub ``config.json`` (e.g. UNI2-h's
        ``{"mlp_layer": "swiglu_packed", "act_layer": "silu"}``, which its configuration cannot hold as JSON).
    freeze_encoder
        Keep the encoder's weights fixed; ``None``: frozen for a pretrained ViT (its decoder and feature pyramid
        train) unless ``encoder_lr`` or ``encoder_warmup_epochs`` asks to fine-tune it; trained for a ResNet (the
        paper) and for a randomly initialized ViT (frozen random features would be of no use).
    lam
        Weight of the ``1 − PCC`` loss term (paper: 0.5).
    lr, weight_decay
        Adam settings (paper: 5e-4, 1e-4).
    encoder_lr
        Learning rate of the encoder; ``None``: ``lr`` (the paper). For fine-tuning a pretrained encoder gently.
    encoder_warmup_epochs
        Train only the decoder, encoder frozen, for this many epochs, then the whole network (linear probing then
        fine-tuning, for a pretrained encoder); ``0``: end to end from the start, as in the paper.
    crop_px
        Training crop edge in pixels at ``microns_per_pixel``.
    batch_size
        Crops per batch.
    tile_px
        Input tile edge for prediction (context halo included).
    augment
        Flips, 90° rotations and color jitter during training.
    stain_augment
        H&E re-staining, blur and 0.9-1.1x scale changes during training (see :class:`~histo2st.train.PixNetPlan`).
    cache_features
        With a frozen ViT encoder, compute its output over each training slide once and train on crops of it (see
        :class:`~histo2st.train.PixNetPlan`): epochs then cost no encoder forward pass.
    stain_normalization
        ``"macenko"`` normalizes every slide's stains to a reference fitted on the training sections, in training
        and prediction (each slide's own stains are estimated on its tissue); ``None`` uses the H&E as it is. See the
        docs page "Encoder pretraining, stain robustness and weight averaging".
    context_um
        Two-scale input (not in the paper): µm of tissue on each side of every crop and tile that a second, small
        encoder sees at 4x coarser resolution, its features added to the deepest ones (see
        :class:`~histo2st.module.PixNetModule`); ``None``: one scale, as in the paper. Rounded to 8 coarse pixels.
    {target_components}
    **module_kwargs
        Passed to :class:`~histo2st.module.PixNetModule`.
    """

    model_name = "pixnet"
    #: Settings of ``st.tl.fit(..., preset=)``, training options included; explicit keywords override them.
    #: ``"paper"``: the paper's GPU training (Zhang, Yang, Pan, section 3: Adam 5e-4, weight decay 1e-4, decoder
    #: width 512, λ 0.5, 500 epochs; 2 µm/px and 256 px crops are this package's reading of its 512 µm patches).
    #: ``"cpu"``: the best setting measured on a 2-core CPU (docs/benchmarks.md: 4 µm/px, width 128, 128 px crops,
    #: at most 8 epochs with patience 3, weights averaged with decay 0.99), under a time budget.
    presets = {
        "paper": {"microns_per_pixel": 2.0, "hidden_dim": 512, "crop_px": 256, "lr": 5e-4, "weight_decay": 1e-4,
                  "lam": 0.5, "epochs": 500, "patience": None, "max_time": None, "ema_decay": None},
        "cpu": {"microns_per_pixel": 4.0, "hidden_dim": 128, "crop_px": 128, "lr": 5e-4, "weight_decay": 1e-4,
                "lam": 0.5, "epochs": 8, "patience": 3, "max_time": 420.0, "ema_decay": 0.99},
    }  # fmt: skip
    _plan_args = ("crop_px", "batch_size", "lam", "lr", "weight_decay", "encoder_lr", "encoder_warmup_epochs",
                  "augment", "stain_augment", "cache_features")  # fmt: skip

    def __init__(
        self,
        genes,
        *,
        microns_per_pixel: float = 2.0,
        hidden_dim: int = 512,
        encoder: str = "resnet18",
        encoder_weights: str | Path | None = None,
        encoder_args: dict | None = None,
        freeze_encoder: bool | None = None,
        lam: float = 0.5,
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
        encoder_lr: float | None = None,
        encoder_warmup_epochs: int = 0,
        crop_px: int = 256,
        batch_size: int = 8,
        tile_px: int = 512,
        augment: bool = True,
        stain_augment: bool = False,
        cache_features: bool = False,
        stain_normalization: str | None = None,
        context_um: float | None = None,
        target_components: int | None = None,
        **module_kwargs,
    ) -> None:
        params = init_params(locals())
        if context_um is not None and not context_um > 0:
            raise ValueError(f"`context_um` must be a positive number of µm or None, got {context_um!r}.")
        from ..nn import is_resnet

        if encoder_warmup_epochs and freeze_encoder:
            raise ValueError(
                "`encoder_warmup_epochs` unfreezes the encoder after the warm-up, but `freeze_encoder=True` keeps it "
                "frozen; use one or the other."
            )
        self._resolve_encoder(params)
        if freeze_encoder is None:
            fine_tune = encoder_lr is not None or encoder_warmup_epochs > 0 or self._encoder_source.weights is None
            params["freeze_encoder"] = not is_resnet(self._encoder_source.architecture) and not fine_tune
        super().__init__(genes, microns_per_pixel=microns_per_pixel, init_params=params)
        self.card["encoder"] = self._encoder_card()

    def _build_module(self):
        from ..module import PixNetModule

        p, source = self.init_params, self._encoder_source
        not_module = {*self._plan_args, "tile_px", "hidden_dim", "stain_normalization", "encoder", "encoder_weights",
                      "encoder_args", "context_um", "target_components"}  # fmt: skip
        extra = {k: v for k, v in p.items() if k not in not_module}
        if p.get("context_um"):
            coarse_um = self.microns_per_pixel * 2 ** extra.get("pyramid_levels", 5) / 8
            extra["context_margin"] = 8 * max(1, round(p["context_um"] / coarse_um / 8))
        stats = {k: v for k, v in (("input_mean", source.mean), ("input_std", source.std)) if v is not None}
        return PixNetModule(self.n_genes, hidden_dim=p["hidden_dim"], encoder=source.architecture,
                            encoder_args=source.model_args or None, encoder_weights=source.weights,
                            **{**stats, **extra})  # fmt: skip

    def _after_training(self, plan) -> None:
        if not self.module.encoder_frozen:
            self.card["encoder"]["fine_tuned"] = True

    def _plan_class(self):
        from ..train import PixNetPlan

        return PixNetPlan

    def _output_bias(self):
        return self.module.head.bias

    def predict_image(
        self,
        image: da.Array,
        image_mpp: float,
        *,
        device: str | None = None,
        tissue_mask: tuple[np.ndarray, float] | None = None,
        batch_size: int | None = None,
        tta: int = 1,
    ) -> da.Array:
        """Lazy dense prediction ``(genes, y, x)`` float32 at the model's resolution for an H&E ``(3, y, x)``.

        The image is resampled to ``model.microns_per_pixel`` (and, with ``stain_normalization``, normalized with
        the slide's stains estimated once on its tissue) and cut into tiles of ``tile_px``: each predicts its
        core, the tile less a halo of context on each side (a quarter of the tile, at most
        :data:`~histo2st.train._tiling.MAX_HALO_PX`), so seams never sit at a tile edge. Each output chunk is a
        block of cores whose tiles run in batches of ``batch_size``; tiles that touch no tissue are not run and are
        NaN.

        Parameters
        ----------
        image
            ``(3, y, x)`` uint8 H&E, numpy or dask.
        image_mpp
            µm per pixel of ``image``.
        device
            Torch device; default :attr:`histo2st.settings.device`.
        tissue_mask
            ``(mask, factor)`` as from :func:`histo2st._core._tissue.tissue_mask`, with ``factor`` in pixels of
            ``image`` per mask pixel; tiles more than a halo away from tissue are skipped. ``None`` predicts all.
        batch_size
            Tiles per forward pass; default from the device (a pixel budget on a CPU, the free memory of a GPU).
        tta
            Test-time augmentation: each tile's map is the mean over 1, 2, 4 or 8 of its rotations and mirror images
            (:func:`histo2st.nn.dihedral_mean`), each turned back; costs as many forward passes.
        """
        from .._core._tissue import regions_on_tissue

        device = settings.resolve_device(device)
        factor = image_mpp / self.microns_per_pixel
        if not math.isclose(factor, 1.0, rel_tol=0.05):
            logger.info(f"Resampling the H&E from {image_mpp:.3g} to {self.microns_per_pixel:.3g} µm/px.")
        image = self._stain_normalized(resample_image(image, factor))
        tile_px = self.init_params["tile_px"]
        # beyond the image the halo is only padding: an image smaller than the halo (dask's overlap refuses a depth
        # larger than the array) gets a halo as wide as the image
        grid = make_grid(tile_px, halo=snap_halo(min(tile_px // 4, MAX_HALO_PX, *image.shape[1:]), self.module))
        self.module.to(device).eval()
        batch_size = batch_size or default_batch_size(self.module, grid.input_px, device)
        image = image.rechunk((3, *(core_chunks(n, grid, cores_per_chunk(batch_size)) for n in image.shape[1:])))
        y_edges, x_edges = (np.append(np.arange(0, n, grid.core), n) for n in image.shape[1:])
        if tissue_mask is None:
            on = np.ones((len(y_edges) - 1, len(x_edges) - 1), dtype=bool)
        else:
            on = regions_on_tissue(*tissue_mask, y_edges, x_edges, scale=1 / factor, margin=grid.halo)
        padded = da.overlap.overlap(image, depth={0: 0, 1: grid.halo, 2: grid.halo}, boundary=PAD_VALUE)
        return da.map_blocks(
            _predict_block,
            padded,
            dtype=np.float32,
            chunks=((self.n_genes,), *image.chunks[1:]),
            meta=np.empty((0, 0, 0), dtype=np.float32),
            # one shared graph node: a cluster ships the weights once per worker, not once per block
            module=dask.delayed(self.module, pure=False),
            grid=grid,
            on=on,
            device=device,
            batch_size=batch_size,
            tta=tta,
            context=ContextImage.of(image, self.module, lazy=True),  # one graph node, like the module
        )


def _predict_block(window: np.ndarray, module, grid, on, device, batch_size, tta, context,
                   block_info=None) -> np.ndarray:  # fmt: skip
    (y0, _), (x0, _) = block_info[None]["array-location"][1:]
    i0, j0 = y0 // grid.core, x0 // grid.core
    return predict_cores(module, window, grid, on[i0:, j0:], block_info[None]["chunk-shape"][0], device,
                         normalize=module.normalize, batch_size=batch_size, tta=tta, context=context,
                         origin=(y0, x0))  # fmt: skip
