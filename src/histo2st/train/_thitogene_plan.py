"""Training plan of THItoGene: windows of spots, a patch per spot, MSE (or PixNet's loss) at the training spots."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .._core._scale import pitch_from_centers
from ._augment import color_jitter
from ._batchnorm import recalibrate_batchnorm
from ._metrics import spot_metrics
from ._optimizer import adam
from ._sections import Section
from ._spot_windows import GRAPH_K, cut_patches, grid_coordinates, predict_windows, window_grid

LOSSES = ("mse", "pixnet")
#: Patches per forward pass when re-estimating BatchNorm statistics.
BN_CHUNK = 256


@dataclass
class SpotContext:
    """Every spot of one section that the network may see, and which of them are training or validation targets.

    With spot-fraction validation the held-out spots stay in their section as context (their patches and positions
    enter attention and the graph, as every spot of a new section does at prediction) but never as loss targets.
    """

    section: Section
    is_train: np.ndarray
    is_val: np.ndarray
    pitch_um: float
    grid: np.ndarray
    tree: cKDTree


class THItoGenePlan:
    """Supervision of THItoGene on windows of spots (the reference trains on one whole section per step).

    A section with at most ``window_spots`` spots is one window; a larger one gives ``ceil(n / window_spots)``
    windows per pass, each the ``window_spots`` spots nearest a random training spot (a KD-tree query). An epoch is
    one pass over the sections, or as many passes (shuffled, each with its own anchors and augmentation) as give
    ``windows_per_epoch`` windows. A window's spots get a ``patch_px`` patch around their centers (white
    outside the image), grid coordinates ``round(center_um / pitch_um)`` shifted to start at 0 (positions past the
    embedding table are clipped by it) and the graph of their 4 nearest neighbors. The loss is taken at training
    spots only.

    Parameters
    ----------
    module
        A :class:`~histo2st.module.THItoGeneModule`.
    train, val
        Sections at the model resolution from :func:`~histo2st.train.split_validation`; ``val`` may be empty.
        Validation spots of a section that also has training spots are that section's context in training windows,
        never a loss target; validation predicts them with the whole section as context.
    window_spots
        Most spots per window (at least 2: batch norm needs two spots in training).
    windows_per_epoch
        Windows per epoch; ``None``: one pass over the sections (the reference's epoch). Small sections make an
        epoch of one pass a few optimizer steps (her2st: ~185 spots per section, one window each), while every
        epoch also re-estimates batch norm and validates, and early stopping counts epochs: a larger epoch spends
        the time on training steps and gives ``patience`` a meaning in steps.
    batch_size
        Windows per batch (padded to the largest).
    loss
        ``"mse"`` (the reference) or ``"pixnet"`` (MSE + ``lam`` (1 − PCC), :func:`histo2st.nn.pixnet_loss`).
    lam
        Weight of the PCC term of the ``"pixnet"`` loss.
    lr, weight_decay
        Adam settings (the reference: 1e-5, 0).
    encoder_lr
        Learning rate of the patch encoder (ODConv and capsules); ``None``: ``lr``, as in the reference. See
        :class:`~histo2st.model.THItoGene` for why the two may differ.
    augment
        Random flips and 90° rotations of each patch (as the reference, independently per patch) and color jitter.
    augment_positions
        Give each training window's grid a random flip, transpose and offset inside the position tables (a
        deviation from the reference, which trains on fixed positions). Serial sections share a layout, and with
        fixed positions the network learns expression by grid position: trained on her2st C3-C5, its PCC@M on C2
        fell from 0.17 to 0.04 when the test spots' positions were permuted. Moving the grid at random makes a
        position mean nothing on its own, so the prediction must come from the tissue and the spots' relative
        places.
    """

    def __init__(
        self,
        module,
        train: list[Section],
        val: list[Section],
        *,
        window_spots: int = 1024,
        windows_per_epoch: int | None = None,
        batch_size: int = 1,
        loss: str = "mse",
        lam: float = 0.5,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        encoder_lr: float | None = None,
        augment: bool = True,
        augment_positions: bool = False,
    ) -> None:
        if window_spots < 2:
            raise ValueError(f"`window_spots` must be at least 2 (batch norm needs two spots), got {window_spots}.")
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}, got {loss!r}.")
        self.module = module
        if windows_per_epoch is not None and windows_per_epoch < 1:
            raise ValueError(f"`windows_per_epoch` must be a positive number or None, got {windows_per_epoch}.")
        self.window_spots, self.batch_size = window_spots, batch_size
        self.loss, self.lam, self.lr, self.weight_decay, self.augment = loss, lam, lr, weight_decay, augment
        self.encoder_lr, self.augment_positions = encoder_lr, augment_positions
        self.contexts = _contexts(train, val)
        self._trainable = [i for i, c in enumerate(self.contexts) if c.is_train.any() and c.section.n_spots >= 2]
        if not self._trainable:
            raise ValueError(
                "No section has two or more spots with training targets; THItoGene needs windows of spots."
            )
        one_pass = sum(math.ceil(self.contexts[i].section.n_spots / window_spots) for i in self._trainable)
        self.windows_per_epoch = windows_per_epoch or one_pass

    @property
    def pitch_um(self) -> float:
        """Median spot pitch of the training sections: the grid step used at prediction."""
        return float(np.median([self.contexts[i].pitch_um for i in self._trainable]))

    def configure_optimizer(self, parameters):
        return adam(parameters, lr=self.lr, weight_decay=self.weight_decay,
                    part=(self.module.odconv, self.module.capsules), part_lr=self.encoder_lr)  # fmt: skip

    def windows(self, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
        """The ``(context, spot indices)`` windows of one epoch: whole passes, each in random order, then a part."""
        out = []
        while len(out) < self.windows_per_epoch:
            out.extend(self._one_pass(rng))
        return out[: self.windows_per_epoch]

    def _one_pass(self, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
        """Every section once (``ceil(n / window_spots)`` windows each), in random order."""
        out = []
        for i in self._trainable:
            ctx = self.contexts[i]
            n = ctx.section.n_spots
            if n <= self.window_spots:
                out.append((i, np.arange(n)))
                continue
            anchors = rng.choice(np.flatnonzero(ctx.is_train), size=math.ceil(n / self.window_spots))
            for a in anchors:
                _, near = ctx.tree.query(ctx.section.centers[a], k=self.window_spots)
                out.append((i, np.sort(near)))
        return [out[j] for j in rng.permutation(len(out))]

    def batches(self, epoch: int, rng: np.random.Generator):
        windows = self.windows(rng)
        for start in range(0, len(windows), self.batch_size):
            yield self._make_batch(windows[start : start + self.batch_size], rng)

    def _make_batch(self, windows: list[tuple[int, np.ndarray]], rng: np.random.Generator) -> dict:
        size = max(len(idx) for _, idx in windows)
        p = self.module.patch_px
        n_genes = self.contexts[windows[0][0]].section.targets.shape[1]
        b = len(windows)
        batch = {
            "patches": np.full((b, size, 3, p, p), 255, dtype=np.uint8),
            "grid": np.zeros((b, size, 2), dtype=np.int64),
            "centers_um": np.zeros((b, size, 2), dtype=np.float32),
            "valid": np.zeros((b, size), dtype=bool),
            "is_target": np.zeros((b, size), dtype=bool),
            "targets": np.zeros((b, size, n_genes), dtype=np.float32),
            "jitter_seed": int(rng.integers(2**31)),
        }
        for w, (ci, idx) in enumerate(windows):
            ctx = self.contexts[ci]
            sec, m = ctx.section, len(idx)
            patches = cut_patches(sec.image, sec.centers[idx], p)
            batch["patches"][w, :m] = _flip_rotate_each(patches, rng) if self.augment else patches
            grid = window_grid(ctx.grid[idx])
            batch["grid"][w, :m] = (
                _move_grid(grid, self.module.vit.position.n_pos, rng) if self.augment_positions else grid
            )
            batch["centers_um"][w, :m] = sec.centers[idx] * sec.microns_per_pixel
            batch["valid"][w, :m] = True
            batch["is_target"][w, :m] = ctx.is_train[idx]
            batch["targets"][w, :m] = sec.targets[idx]
        return batch

    def training_step(self, module, batch: dict, device) -> dict:
        import torch
        import torch.nn.functional as F

        from ..nn import knn_adjacency, pixnet_loss

        valid = torch.from_numpy(batch["valid"]).to(device)
        x = torch.from_numpy(batch["patches"]).to(device).float().div_(255)
        if self.augment:
            gen = torch.Generator(device=x.device).manual_seed(batch["jitter_seed"])
            x[valid] = color_jitter(x[valid], gen)
        centers = torch.from_numpy(batch["centers_um"]).to(device)
        adjacency = knn_adjacency(centers, k=GRAPH_K, mask=valid)
        padding = None if bool(valid.all()) else ~valid
        pred = module(x, torch.from_numpy(batch["grid"]).to(device), adjacency, key_padding_mask=padding)
        target_mask = torch.from_numpy(batch["is_target"]).to(device)
        pred, target = pred[target_mask].float(), torch.from_numpy(batch["targets"]).to(device)[target_mask]
        if self.loss == "pixnet":
            return pixnet_loss(pred, target, lam=self.lam)
        return {"loss": F.mse_loss(pred, target)}

    def end_of_epoch(self, module, device) -> None:
        """Re-estimate the patch encoder's BatchNorm statistics exactly on the training patches (precise BN).

        A deviation from the reference, which keeps momentum averages: with them, evaluation-mode patch features
        stayed ~20x flatter than in training on her2st and synthetic tissue, and predictions collapsed to the mean.
        """
        import torch

        def chunks():
            for ctx in self.contexts:
                sec, idx = ctx.section, np.flatnonzero(ctx.is_train)
                for start in range(0, len(idx), BN_CHUNK):
                    patches = cut_patches(sec.image, sec.centers[idx[start : start + BN_CHUNK]], module.patch_px)
                    yield torch.from_numpy(patches).to(device).float().div_(255)

        recalibrate_batchnorm(module, module.encode_patches, chunks())

    def validate(self, module, device) -> dict:
        preds, targets = [], []
        for ctx in self.contexts:
            held = np.flatnonzero(ctx.is_val)
            if not len(held):
                continue
            sec = ctx.section
            preds.append(
                predict_windows(
                    module, sec.image, sec.centers, ctx.grid, held, window_spots=self.window_spots, device=device
                )
            )
            targets.append(sec.targets[held])
        return spot_metrics(preds, targets) if preds else {}


def _contexts(train: list[Section], val: list[Section]) -> list[SpotContext]:
    """One context per section name: its training and validation spots together, with flags."""
    parts: dict[str, list[tuple[Section, bool]]] = {}
    for sec, is_train in [(s, True) for s in train] + [(s, False) for s in val]:
        parts.setdefault(sec.name, []).append((sec, is_train))
    contexts = []
    for name, pieces in parts.items():
        pieces = [(s, t) for s, t in pieces if s.n_spots]
        if not pieces:
            continue
        first = pieces[0][0]
        centers = np.concatenate([s.centers for s, _ in pieces])
        flags = np.concatenate([np.full(s.n_spots, t) for s, t in pieces])
        section = Section(
            name=name,
            image=first.image,
            centers=centers,
            radii=np.concatenate([s.radii for s, _ in pieces]),
            targets=np.concatenate([s.targets for s, _ in pieces]),
            spot_names=np.concatenate([s.spot_names for s, _ in pieces]),
            microns_per_pixel=first.microns_per_pixel,
        )
        centers_um = centers.astype(np.float64) * first.microns_per_pixel
        pitch = pitch_from_centers(centers_um) if len(centers) >= 2 else math.nan
        contexts.append(
            SpotContext(
                section=section,
                is_train=flags,
                is_val=~flags,
                pitch_um=pitch,
                grid=grid_coordinates(centers_um, pitch) if len(centers) >= 2 else np.zeros((1, 2), dtype=np.int64),
                tree=cKDTree(centers),
            )
        )
    return contexts


def _move_grid(grid: np.ndarray, n_pos: int, rng: np.random.Generator) -> np.ndarray:
    """``(m, 2)`` grid coordinates from 0, randomly transposed and mirrored, then shifted inside ``[0, n_pos)``."""
    if rng.random() < 0.5:
        grid = grid[:, ::-1]
    grid = np.where(rng.random(2) < 0.5, grid.max(0) - grid, grid)
    room = np.maximum(n_pos - 1 - grid.max(0), 0)
    return grid + rng.integers(0, room + 1)


def _flip_rotate_each(patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random flip and 90° rotation of every ``(3, p, p)`` patch, drawn independently."""
    flips = rng.random(len(patches)) < 0.5
    turns = rng.integers(4, size=len(patches))
    out = np.where(flips[:, None, None, None], patches[..., ::-1], patches)
    for k in range(1, 4):
        sel = turns == k
        out[sel] = np.rot90(out[sel], k, axes=(2, 3))
    return np.ascontiguousarray(out)
