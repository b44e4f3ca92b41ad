"""Training plan of PixNet: crops holding measured spots, spot means of the dense map, MSE + λ(1 − PCC)."""

from __future__ import annotations

import math

import numpy as np

from ._augment import color_jitter, dihedral, random_dihedral, stain_jitter
from ._feature_cache import TOKEN_STRIDE, aligned_start, slide_tokens
from ._metrics import spot_metrics
from ._optimizer import adam
from ._sections import Section
from ._tiling import ContextImage, make_grid, predict_spots_tiled, read_tile

#: Range of the scale change of ``stain_augment`` (crop pixels per image pixel).
ZOOM = (0.9, 1.1)


class PixNetPlan:
    """Sparse supervision of a dense map (PixNet paper, Eq. 5–6).

    Each batch holds ``batch_size`` crops of ``crop_px`` pixels. A crop is placed at random so that an anchor spot
    lies fully inside; every training spot whose circle is fully inside the crop is supervised with the mean of the
    dense map over its circle (the paper sums; the mean keeps predictions on the scale of the targets at any spot
    size). One epoch anchors one crop on every training spot, in random order. With a module that has a context
    branch (two-scale input), every crop starts on a multiple of its ``context_factor`` and comes with its coarse
    surroundings (:class:`~histo2st.train._tiling.ContextImage`), flipped, turned and color-jittered alike.

    Parameters
    ----------
    module
        A :class:`~histo2st.module.PixNetModule`.
    train, val
        Sections at the model resolution; ``val`` may be empty.
    crop_px
        Crop edge in pixels (multiple of 32).
    batch_size
        Crops per batch.
    lam
        Weight of the ``1 − PCC`` term.
    lr, weight_decay
        Adam settings (paper: 5e-4, 1e-4).
    encoder_lr
        Learning rate of the encoder; ``None``: ``lr``, as in the paper. A lower one keeps more of a pretrained
        encoder's features while the decoder, which starts from random weights, learns at ``lr``.
    encoder_warmup_epochs
        Epochs at the start during which the encoder is frozen (no gradients, batch norm statistics fixed) and only
        the decoder learns; then the whole network is fine-tuned. Linear probing then fine-tuning (Kumar et al.,
        ICLR 2022, who argue that a random decoder's first gradients distort a pretrained encoder's features).
        ``0``: the paper's end-to-end training from the first step.
    augment
        Random flips, 90° rotations and color jitter.
    stain_augment
        H&E-specific augmentation: each crop re-stained in hematoxylin-eosin space and sometimes blurred
        (:func:`~histo2st.train._augment.stain_jitter`), and read at a random scale of 0.9-1.1x (spots scale with it).
    cache_features
        For a frozen ViT encoder: run its trunk once over every training slide (tiles of ``crop_px``, see
        :func:`~histo2st.train._feature_cache.slide_tokens`) and train the feature pyramid, decoder and head on crops
        of that token map, placed at multiples of 16 pixels. Each epoch then costs no trunk forward pass. A crop's
        tokens are those of the fixed tiles it overlaps rather than of the crop itself, and augmentation is limited
        to flips and rotations of the token map (color jitter and ``stain_augment`` change pixels the cache never
        sees again).
    """

    def __init__(
        self,
        module,
        train: list[Section],
        val: list[Section],
        *,
        crop_px: int = 256,
        batch_size: int = 8,
        lam: float = 0.5,
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
        encoder_lr: float | None = None,
        encoder_warmup_epochs: int = 0,
        augment: bool = True,
        stain_augment: bool = False,
        cache_features: bool = False,
    ) -> None:
        if cache_features and not (module.encoder_frozen and hasattr(module.encoder, "tokens")):
            raise ValueError("`cache_features` needs a frozen ViT encoder (a trained encoder changes its features).")
        if cache_features and (stain_augment or encoder_warmup_epochs):
            raise ValueError("`cache_features` cannot go with `stain_augment` or `encoder_warmup_epochs`.")
        if getattr(module, "context_margin", 0) and (cache_features or stain_augment):
            raise ValueError(
                "A context branch cannot go with `cache_features` or `stain_augment` (their crops do not line up with "
                "the coarse context image)."
            )
        self.cache_features = cache_features
        self._tokens: list[np.ndarray] | None = None
        self.module = module
        self.train, self.val = train, val
        self.crop_px, self.batch_size, self.lam = crop_px, batch_size, lam
        self.lr, self.weight_decay, self.augment, self.stain_augment = lr, weight_decay, augment, stain_augment
        self.encoder_lr = encoder_lr
        if not isinstance(encoder_warmup_epochs, int) or encoder_warmup_epochs < 0:
            raise ValueError(f"`encoder_warmup_epochs` must be an int >= 0, got {encoder_warmup_epochs!r}.")
        self.encoder_warmup_epochs = encoder_warmup_epochs
        # the trainable parameters change between epochs: DDP must look for parameters without gradients
        self.ddp_find_unused_parameters = encoder_warmup_epochs > 0
        r_max = max(float(s.radii.max()) for s in train if s.n_spots)
        smallest_read = crop_px / ZOOM[1] if stain_augment else crop_px
        if crop_px % 32 or smallest_read < 2 * r_max + 2:
            raise ValueError(
                f"`crop_px={crop_px}` must be a multiple of 32 and larger than a spot ({2 * r_max:.0f} px across at "
                "the model resolution); raise `crop_px` or train at a coarser `microns_per_pixel`."
            )
        self.step = module.context_factor if getattr(module, "context_margin", 0) else 1
        halo = self.step * math.ceil((math.ceil(r_max) + 16) / self.step)
        self.grid = make_grid(max(crop_px, 32 * math.ceil((4 * r_max + 64) / 32)), halo=halo)
        self._context = [ContextImage.of(s.image, module) for s in train]
        self._val_context = [ContextImage.of(s.image, module) for s in val]
        self._anchors = np.concatenate(
            [np.stack([np.full(s.n_spots, i), np.arange(s.n_spots)], 1) for i, s in enumerate(train)]
        )
        self.crops_per_epoch = max(self.batch_size, len(self._anchors))

    def configure_optimizer(self, parameters):
        return adam(parameters, lr=self.lr, weight_decay=self.weight_decay, part=self.module.encoder,
                    part_lr=self.encoder_lr)  # fmt: skip

    def batches(self, epoch: int, rng: np.random.Generator):
        if self.cache_features and self._tokens is None:  # here, once the trainer has moved the module to its device
            self._tokens = [slide_tokens(self.module, s.image, margin=self.crop_px, tile_px=self.crop_px)
                            for s in self.train]  # fmt: skip
        if self.encoder_warmup_epochs:
            self.module.set_encoder_frozen(epoch < self.encoder_warmup_epochs)
        order = rng.permutation(len(self._anchors))
        n_anchor = self.crops_per_epoch
        picks = np.resize(order, n_anchor)
        for start in range(0, n_anchor - self.batch_size + 1, self.batch_size):
            yield self._make_batch(self._anchors[picks[start : start + self.batch_size]], rng)

    def _make_batch(self, anchors: np.ndarray, rng: np.random.Generator) -> dict:
        s = self.crop_px
        images, contexts, bidx, centers, radii, targets = [], [], [], [], [], []
        for b, (si, spot) in enumerate(anchors):
            sec = self.train[si]
            (cx, cy), r = sec.centers[spot], sec.radii[spot]
            # with stain_augment, read a window of `read` pixels and resize it to the crop: a small change of scale
            read = round(s / np.exp(rng.uniform(*np.log(ZOOM)))) if self.stain_augment else s
            if self.cache_features:
                x0, y0 = aligned_start(rng, cx + r - read, cx - r), aligned_start(rng, cy + r - read, cy - r)
            else:
                x0, y0 = _start(rng, cx + r - read, cx - r, self.step), _start(rng, cy + r - read, cy - r, self.step)
            local = sec.centers - np.array([x0, y0], dtype=np.float32)
            inside = np.flatnonzero(
                (local[:, 0] - sec.radii >= 0)
                & (local[:, 0] + sec.radii <= read)
                & (local[:, 1] - sec.radii >= 0)
                & (local[:, 1] + sec.radii <= read)
            )
            crop = self._crop(si, y0, x0, read)
            xy, radius = local[inside], sec.radii[inside]
            if read != s:
                crop, xy, radius = _resize(crop, s), xy * (s / read), radius * (s / read)
            context = None if self._context[si] is None else self._context[si].tiles([(y0, x0)], s)[0]
            if self.augment:
                symmetry = random_dihedral(rng)
                crop, xy = dihedral(crop, xy, *symmetry, size=s)
                if context is not None:
                    context = dihedral(context, xy[:0], *symmetry)[0]
            images.append(crop)
            contexts.append(context)
            bidx.append(np.full(len(inside), b))
            centers.append(xy)
            radii.append(radius)
            targets.append(sec.targets[inside])
        batch = {
            "tokens" if self.cache_features else "images": np.stack(images),
            "batch_index": np.concatenate(bidx),
            "centers": np.concatenate(centers).astype(np.float32),
            "radii": np.concatenate(radii).astype(np.float32),
            "targets": np.concatenate(targets),
            "jitter_seed": int(rng.integers(2**31)),
        }
        if contexts[0] is not None:
            batch["context"] = np.stack(contexts)
        return batch

    def _crop(self, si: int, y0: int, x0: int, size: int) -> np.ndarray:
        """The crop of section ``si`` at ``(y0, x0)``: its pixels, or its cached tokens (``y0``, ``x0`` aligned)."""
        if not self.cache_features:
            return read_tile(self.train[si].image, y0, x0, size)
        i, j, n = (y0 + self.crop_px) // TOKEN_STRIDE, (x0 + self.crop_px) // TOKEN_STRIDE, size // TOKEN_STRIDE
        return self._tokens[si][:, i : i + n, j : j + n]

    def training_step(self, module, batch: dict, device) -> dict:
        import torch

        if "tokens" in batch:
            maps = module(torch.from_numpy(batch["tokens"]).to(device).float(), from_tokens=True)
            return self._loss(maps, batch, device)
        x = self._jittered(torch.from_numpy(batch["images"]).to(device), batch["jitter_seed"])
        extra = {}
        if "context" in batch:  # the same seed gives the crop and its context the same colors
            context = self._jittered(torch.from_numpy(batch["context"]).to(device), batch["jitter_seed"])
            extra["context"] = self.module.normalize(context)
        maps = module(self.module.normalize(x), **extra)  # `module` may be DDP's wrapper
        return self._loss(maps, batch, device)

    def _jittered(self, x, seed: int):
        import torch

        if self.augment:
            gen = torch.Generator(device=x.device).manual_seed(seed)
            x = color_jitter(x.float().div_(255), gen).mul_(255).round_().to(torch.uint8)
        if self.stain_augment:
            gen = torch.Generator(device=x.device).manual_seed(seed + 1)
            x = stain_jitter(x.float().div_(255), gen).mul_(255).round_().to(torch.uint8)
        return x

    def _loss(self, maps, batch: dict, device) -> dict:
        import torch

        from ..nn import pixnet_loss, spot_pool

        pred = spot_pool(
            maps,
            torch.from_numpy(batch["batch_index"]).to(device),
            torch.from_numpy(batch["centers"]).to(device),
            torch.from_numpy(batch["radii"]).to(device),
        )
        return pixnet_loss(pred.float(), torch.from_numpy(batch["targets"]).to(device), lam=self.lam)

    def validate(self, module, device) -> dict:
        if not self.val:
            return {}
        preds = [
            predict_spots_tiled(module, s.image, s.centers, s.radii, self.grid, device, normalize=self.module.normalize,
                                context=context)
            for s, context in zip(self.val, self._val_context, strict=True)
        ]  # fmt: skip
        return spot_metrics(preds, [s.targets for s in self.val])


def _start(rng: np.random.Generator, low: float, high: float, step: int) -> int:
    """A random crop start in ``[low, high]``, a multiple of ``step`` (1: any pixel)."""
    first, last = math.ceil(low / step), math.floor(high / step)
    if last < first:
        raise ValueError(f"No crop start on a multiple of {step} px between {low:.1f} and {high:.1f}; raise `crop_px`.")
    return step * int(rng.integers(first, last + 1))


def _resize(crop: np.ndarray, size: int) -> np.ndarray:
    """A ``(c, h, w)`` uint8 crop resized to ``size`` x ``size`` (area average down, bilinear up)."""
    from PIL import Image

    method = Image.Resampling.BOX if crop.shape[-1] > size else Image.Resampling.BILINEAR
    return np.stack([np.asarray(Image.fromarray(c).resize((size, size), method)) for c in crop])
