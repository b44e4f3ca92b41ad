"""Training plan of self-supervised encoder pretraining (BYOL) on unlabeled tissue tiles."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._augment import color_jitter, random_views, stain_jitter
from ._tiling import read_tile

#: Side of the region read around a tile, in tiles: room for the views' shifts and rotations.
REGION_FACTOR = 1.5
#: Most tiles held out to monitor the loss and the spread of the representations.
MAX_VAL_TILES = 32
#: Strength of the H&E re-staining for pretraining views; stronger than for supervised training (the point of
#: the views is to make the representation ignore staining).
SSL_STAIN = {"stain_scale": 0.25, "stain_shift": 0.02, "blur_sigma": 1.0, "blur_p": 0.5}
#: Seed of the fixed views of the held-out tiles.
VAL_SEED = 12345
#: Fewest steps in an epoch: a few slides hold only a few batches of tiles, and validating (and checkpointing) after
#: every two or three steps would spend a large share of the run there.
MIN_STEPS_PER_EPOCH = 25


@dataclass
class TileSlide:
    """One slide for pretraining: the H&E at the pretraining resolution and the centers of its tissue tiles.

    Attributes
    ----------
    name
        Slide (sample) name.
    image
        ``(3, h, w)`` uint8 H&E at the pretraining resolution.
    centers
        ``(n, 2)`` tile centers ``(y, x)`` in pixels of ``image``.
    """

    name: str
    image: np.ndarray
    centers: np.ndarray


def tissue_tile_centers(mask: np.ndarray, mask_px: float, shape: tuple[int, int], tile_px: int, *, min_tissue: float):
    """Centers ``(y, x)`` of the tiles of a ``tile_px`` grid over an image of ``shape`` that hold enough tissue.

    The grid is centered on the image; a tile is kept when at least ``min_tissue`` of the mask pixels it covers are
    tissue. ``mask_px`` is the number of image pixels per mask pixel.
    """
    h, w = shape
    ny, nx = h // tile_px, w // tile_px
    oy, ox = (h - ny * tile_px) // 2, (w - nx * tile_px) // 2
    centers = []
    for i in range(ny):
        for j in range(nx):
            y0, x0 = oy + i * tile_px, ox + j * tile_px
            r0, c0 = int(y0 / mask_px), int(x0 / mask_px)
            r1 = max(r0 + 1, math.ceil((y0 + tile_px) / mask_px))
            c1 = max(c0 + 1, math.ceil((x0 + tile_px) / mask_px))
            window = mask[r0:r1, c0:c1]
            if window.size and window.mean() >= min_tissue:
                centers.append((y0 + tile_px / 2, x0 + tile_px / 2))
    return np.asarray(centers, dtype=np.float64).reshape(-1, 2)


class BYOLPlan:
    """BYOL on tissue tiles: two random views of the region around a tile, the online network predicts the target's.

    One epoch visits every training tile once, in random order, each moved by up to half a tile in x and y so that
    epochs see different crops; when the tiles fill fewer than ``MIN_STEPS_PER_EPOCH`` batches, an epoch makes that
    many steps, passing over the tiles several times in a new order each pass (``steps_per_epoch`` sets the number).
    A batch holds the ``REGION_FACTOR * tile_px`` regions around ``batch_size`` tiles; on the training device each
    region gives two views of ``tile_px`` (:func:`~histo2st.train._augment.random_views`: any rotation, mirror,
    0.8-1.25x zoom, shift), each re-stained and blurred
    (:func:`~histo2st.train._augment.stain_jitter`) and jittered in brightness, contrast and saturation.

    The target network follows the online one with momentum ``1 - (1 - base_momentum) (cos(pi k / K) + 1) / 2``
    after step ``k`` of ``K`` (BYOL's schedule). Validation on up to ``MAX_VAL_TILES`` held-out tiles, with fixed
    views, reports ``val_loss`` (the BYOL loss) and ``val_feature_std`` (the standard deviation of the normalized
    512-d representations across tiles, times sqrt(512): about 1 when they spread over every direction, 0 when they
    collapse to one point).

    Parameters
    ----------
    module
        A :class:`~histo2st.module._ssl.BYOLModule`.
    slides
        Slides with their tissue tiles.
    tile_px
        Side of the views in pixels.
    batch_size
        Tiles per batch.
    epochs
        Planned epochs (for the momentum schedule).
    lr, weight_decay
        AdamW settings.
    base_momentum
        Momentum of the target network at the start (BYOL: 0.996 in ImageNet runs of about 300 000 steps; the
        default 0.99 lets the target follow faster in runs of a few thousand).
    steps_per_epoch
        Steps in an epoch; ``None``: one pass over the training tiles, and at least :data:`MIN_STEPS_PER_EPOCH`.
    seed
        Seed of the choice of held-out tiles.
    """

    def __init__(
        self,
        module,
        slides: list[TileSlide],
        *,
        tile_px: int = 224,
        batch_size: int = 32,
        epochs: int = 100,
        lr: float = 1e-3,
        weight_decay: float = 1e-6,
        base_momentum: float = 0.99,
        steps_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        self.module = module
        self.slides = slides
        self.tile_px, self.batch_size, self.lr, self.weight_decay = tile_px, batch_size, lr, weight_decay
        self.region_px = math.ceil(REGION_FACTOR * tile_px)
        self.base_momentum = base_momentum
        tiles = np.concatenate(
            [np.column_stack([np.full(len(s.centers), i), s.centers]) for i, s in enumerate(slides)]
        ).reshape(-1, 3)
        n_val = min(MAX_VAL_TILES, len(tiles) // 10)
        held = np.zeros(len(tiles), dtype=bool)
        held[np.random.default_rng(seed).choice(len(tiles), size=n_val, replace=False)] = True
        self.train_tiles, self.val_tiles = tiles[~held], tiles[held]
        if len(self.train_tiles) < batch_size:
            raise ValueError(
                f"Only {len(self.train_tiles)} tissue tiles of {tile_px} px to pretrain on, fewer than `batch_size="
                f"{batch_size}`. Add slides, or lower `tile_px` or `batch_size`."
            )
        self.steps_per_epoch = steps_per_epoch or max(MIN_STEPS_PER_EPOCH, len(self.train_tiles) // batch_size)
        self.total_steps = max(1, epochs * self.steps_per_epoch)
        self._val_regions = self._regions(self.val_tiles)

    def configure_optimizer(self, parameters):
        import torch

        # multi-tensor kernels: the per-tensor loop took 0.21 s a step for the 16 M parameters on 2 cores, these 0.13 s
        return torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay, foreach=True)

    def _regions(self, tiles: np.ndarray) -> np.ndarray:
        r = self.region_px
        out = np.empty((len(tiles), 3, r, r), dtype=np.uint8)
        for k, (i, cy, cx) in enumerate(tiles):
            out[k] = read_tile(self.slides[int(i)].image, int(round(cy - r / 2)), int(round(cx - r / 2)), r)
        return out

    def batches(self, epoch: int, rng: np.random.Generator):
        passes = math.ceil(self.steps_per_epoch * self.batch_size / len(self.train_tiles))
        order = np.concatenate([rng.permutation(len(self.train_tiles)) for _ in range(passes)])
        for b in range(self.steps_per_epoch):
            tiles = self.train_tiles[order[b * self.batch_size : (b + 1) * self.batch_size]].copy()
            tiles[:, 1:] += rng.uniform(-self.tile_px / 2, self.tile_px / 2, size=(len(tiles), 2))
            yield {
                "regions": self._regions(tiles),
                "seed": int(rng.integers(2**31)),
                "step": epoch * self.steps_per_epoch + b,
            }

    def _views(self, regions: np.ndarray, seed: int, device):
        import torch

        from ..nn import IMAGENET_MEAN, IMAGENET_STD

        x = torch.from_numpy(regions).to(device).float().div_(255)
        gen = torch.Generator(device=x.device).manual_seed(seed)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        views = []
        for _ in range(2):
            v = random_views(x, self.tile_px, gen)
            v = stain_jitter(v, gen, **SSL_STAIN)
            v = color_jitter(v, gen, brightness=0.2, contrast=0.2, saturation=0.2)
            views.append((v - mean) / std)  # the input statistics of normalize_images, which PixNet uses
        return views

    def training_step(self, module, batch: dict, device) -> dict:
        view_a, view_b = self._views(batch["regions"], batch["seed"], device)
        return {"loss": module(view_a, view_b)}

    def after_step(self, module, batch: dict) -> None:
        progress = min(1.0, (batch["step"] + 1) / self.total_steps)
        module.update_target(1 - (1 - self.base_momentum) * (math.cos(math.pi * progress) + 1) / 2)

    def validate(self, module, device) -> dict:
        if len(self.val_tiles) < 2:
            return {}
        import torch

        losses, features = [], []
        for start in range(0, len(self.val_tiles), self.batch_size):
            regions = self._val_regions[start : start + self.batch_size]
            view_a, view_b = self._views(regions, VAL_SEED + start, device)
            losses.append(float(module(view_a, view_b)) * len(regions))
            features.append(torch.nn.functional.normalize(module.represent(view_a).float(), dim=1))
        features = torch.cat(features)
        spread = float(features.std(0).mean()) * math.sqrt(features.shape[1])
        return {"val_loss": sum(losses) / len(self.val_tiles), "val_feature_std": spread}
