"""Ensembles: models trained with different seeds, or of different classes, predicting their mean and spread."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np

from .._logging import logger
from ._base import BaseModel, read_card, write_card, write_dir_atomic

ENSEMBLE_NAME = "ensemble"


class Ensemble:
    """Models of one set of genes used as one: a seed ensemble of one class, or a mixed ensemble of several.

    Predictions are the mean over the members; their spread, the standard deviation over the members (``ddof=0``), is
    returned beside it as an uncertainty. Build one with ``st.tl.fit(..., n_seeds=5)``, with
    ``st.tl.fit(..., model=["pixnet", "thitogene"])`` (a mixed ensemble) or from trained models; save with
    :meth:`save` and load with :func:`histo2st.tl.load_model`.

    A mixed ensemble's members may work at different resolutions and draw maps of different pixel sizes (PixNet at
    its input's, THItoGene one pixel per patch): its map has the finest member map's pixels, onto which coarser maps
    are resampled bilinearly (pixel centers aligned; no value is spread onto pixels whose nearest coarse pixel has
    none). Its value at a spot or bin is the mean of each member's own value there, as that member alone would give
    it: the map members' (PixNet) aggregates of their maps, and the point members' (THItoGene, ridge) predictions at
    the centers, since THItoGene's map is drawn on a grid of patches whose spot graph is not the measured spots' (on
    her2st, leave-one-section-out, the mean of map aggregates scored PCC@M 0.253, below PixNet alone, 0.265, and the
    mean of each member's own spot values 0.277; ``docs/benchmarks.md``). Where a point member declines (more points
    than its ``max_direct_spots``, e.g. 2 µm bins) every member's value is its map's aggregate. The H&E is read at
    the finest member's resolution and resampled by each member to its own.

    Parameters
    ----------
    members
        Trained models of the same genes; of one class and resolution (a seed ensemble) or of several (mixed).
    calibration
        A post-hoc calibration of the spread, as :func:`histo2st.tl.calibrate` fits it: ``"std_scale"`` (a factor
        per gene, ``{gene: factor}``) multiplies the members' standard deviation in every prediction. Saved in the
        ensemble's card. ``None``: the raw spread.
    """

    model_name = ENSEMBLE_NAME
    #: Maps per gene of :meth:`predict_image`: the members' mean, then their standard deviation.
    n_maps = 2

    def __init__(self, members, calibration: dict | None = None) -> None:
        members = list(members)
        if not members:
            raise ValueError("An ensemble needs at least one member.")
        first = members[0]
        for member in members:
            if not isinstance(member, BaseModel):
                raise TypeError(f"Ensemble members must be histo2st models, got {type(member).__name__}.")
            if member.genes != first.genes:
                raise ValueError("Ensemble members must predict the same genes in the same order.")
            scales = [(m.microns_per_pixel, m.map_microns_per_pixel) for m in (first, member)]
            if type(member) is type(first) and scales[0] != scales[1]:
                raise ValueError("Members of one class must work at one µm per pixel and write maps of one pixel size.")
        self.members = members
        #: Whether the members are of several classes (see the class documentation).
        self.mixed = len({type(m) for m in members}) > 1
        self.calibration = calibration

    @property
    def std_scale(self) -> np.ndarray:
        """Factor per gene applied to the members' standard deviation: the calibration's (1 for a gene it lacks)."""
        fitted = (self.calibration or {}).get("std_scale", {})
        factors = np.array([fitted.get(g, 1.0) for g in self.genes], dtype=np.float32)
        return np.where(np.isfinite(factors), factors, np.float32(1.0))

    @property
    def genes(self) -> list[str]:
        return self.members[0].genes

    @property
    def n_genes(self) -> int:
        return self.members[0].n_genes

    @property
    def microns_per_pixel(self) -> float:
        """Resolution the H&E is read at: the finest member's."""
        return min(m.microns_per_pixel for m in self.members)

    @property
    def map_microns_per_pixel(self) -> float:
        """Pixel size in µm of the dense image: the finest member map's (THItoGene's is coarser than its input)."""
        return min(m.map_microns_per_pixel for m in self.members)

    @property
    def predicts_at_points(self) -> bool:
        """Whether every member predicts at points (then the ensemble's values at spots are their mean there)."""
        return all(m.predicts_at_points for m in self.members)

    @property
    def init_params(self) -> dict:
        if self.mixed:
            return {"members": [{"model": m.model_name, **m.init_params} for m in self.members]}
        return self.members[0].init_params

    @property
    def seeds(self) -> list[int | None]:
        """Each member's training seed (``None`` for an untrained member)."""
        return [m.card.get("training", {}).get("seed") for m in self.members]

    @property
    def card(self) -> dict:
        """The first member's card, with ``"ensemble"``: the number of members, their seeds and best metrics."""
        return {
            **self.members[0].card,
            ENSEMBLE_NAME: {
                "n_members": len(self.members),
                "member_models": [m.model_name for m in self.members],
                "seeds": self.seeds,
                "validation_metrics": [m.card.get("validation_metrics", {}) for m in self.members],
                "calibration": self.calibration,
            },
        }

    @property
    def history(self) -> list[list[dict]]:
        """The training history of each member."""
        return [m.history for m in self.members]

    def check_genes(self, genes) -> list[int]:
        """Indices of ``genes`` in the ensemble's genes; see :meth:`BaseModel.check_genes`."""
        return self.members[0].check_genes(genes)

    def predict_image(self, image, image_mpp: float, *, device: str | None = None, **tiling) -> da.Array:
        """Lazy ``(2 * genes, y, x)`` float32: the members' mean map of each gene, then their standard deviation.

        The standard deviation is multiplied by :attr:`std_scale` (1 without a calibration). Each block of the result
        runs each member's prediction of that block once, for both statistics.

        Parameters
        ----------
        image
            ``(3, y, x)`` uint8 H&E, numpy or dask.
        image_mpp
            µm per pixel of ``image``.
        device
            Torch device; default :attr:`histo2st.settings.device`.
        **tiling
            Passed to each member's ``predict_image`` (``tissue_mask``, ``batch_size``, ``tta``).
        """
        return self.combine_maps(self.member_maps(image, image_mpp, device=device, **tiling))

    def member_maps(self, image, image_mpp: float, *, device: str | None = None, **tiling) -> list[da.Array]:
        """Each member's lazy ``(genes, y, x)`` map on the finest member map's grid and chunks (see the class)."""
        maps = [m.predict_image(image, image_mpp, device=device, **tiling) for m in self.members]
        finest = min(range(len(maps)), key=lambda i: self.members[i].map_microns_per_pixel)
        target = self.members[finest].map_microns_per_pixel
        maps = [
            m if m.shape == maps[finest].shape else _resampled(m, maps[finest], member.map_microns_per_pixel / target)
            for m, member in zip(maps, self.members, strict=True)
        ]
        chunks = ((self.n_genes,), *maps[finest].chunks[1:])
        return [m.rechunk(chunks) for m in maps]

    def combine_maps(self, maps: list[da.Array]) -> da.Array:
        """The ``(2 * genes, y, x)`` mean and scaled standard deviation of :meth:`member_maps`' maps."""
        return da.map_blocks(
            _mean_and_std,
            *maps,
            scale=self.std_scale[:, None, None],
            dtype=np.float32,
            chunks=((2 * self.n_genes,), *maps[0].chunks[1:]),
            meta=np.empty((0, 0, 0), dtype=np.float32),
        )

    @property
    def point_members(self) -> list[int]:
        """Indices of the members that predict at points (THItoGene, ridge) rather than by their map's aggregates."""
        return [i for i, m in enumerate(self.members) if m.predicts_at_points]

    def point_share(self, maps: list[da.Array]) -> da.Array:
        """The point members' part of the mean map: the sum of their :meth:`member_maps` maps over all members.

        The mean map's aggregate over a spot minus this map's is the map members' part of the spot's mean, so a
        mixed ensemble's value at a spot can take each point member's own prediction there instead of its map's.
        """
        share = sum(maps[i] for i in self.point_members)
        return share / np.float32(len(self.members))

    def predict_points(self, image, image_mpp: float, xy_px, *, device: str | None = None, tta: int = 1):
        """The members' ``(mean, std)`` at points, each ``(n, genes)`` float32 (``std`` times :attr:`std_scale`).

        ``None`` when a member aggregates the dense image instead (see
        :meth:`histo2st.model.THItoGene.predict_points`).
        """
        values = self.member_points(image, image_mpp, xy_px, device=device, tta=tta)
        if values is None or any(v is None for v in values):
            return None
        stacked = np.stack(values)
        return stacked.mean(0), stacked.std(0) * self.std_scale

    def member_points(self, image, image_mpp: float, xy_px, *, device: str | None = None, tta: int = 1):
        """Each member's ``(n, genes)`` float32 prediction at points, ``None`` for members without point predictions.

        ``None`` as a whole when a member that predicts at points declines (more points than its
        ``max_direct_spots``): the caller then keeps the map's aggregates for every member.
        """
        values = []
        for member in self.members:
            if not member.predicts_at_points:
                values.append(None)
                continue
            points = member.predict_points(image, image_mpp, xy_px, device=device, tta=tta)
            if points is None:
                return None
            values.append(np.asarray(points, dtype=np.float32))
        return values

    def save(self, path: str | Path, *, overwrite: bool = False, include_encoder: bool = False) -> Path:
        """Save every member (``member_<i>/``, each by its own ``save``, with its weights' sha256) and a card.

        The directory appears complete or not at all; ``overwrite`` replaces an existing one; ``include_encoder`` as
        in :meth:`BaseModel.save`.
        """
        names = [f"member_{i}" for i in range(len(self.members))]
        card = {
            "model": ENSEMBLE_NAME,
            "member_model": self.members[0].model_name,
            "member_models": [m.model_name for m in self.members],
            "members": names,
            "genes": self.genes,
            "microns_per_pixel": self.microns_per_pixel,
            ENSEMBLE_NAME: self.card[ENSEMBLE_NAME],
        }

        def write(tmp: Path) -> None:
            for name, member in zip(names, self.members, strict=True):
                member.save(tmp / name, include_encoder=include_encoder)
            write_card(tmp, card)

        write_dir_atomic(path, write, overwrite=overwrite)
        logger.info(f"Saved an ensemble of {len(self.members)} {self.members[0].model_name} models to '{path}'.")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> Ensemble:
        """Load an ensemble saved with :meth:`save` (also what :func:`histo2st.tl.load_model` does).

        Each member is checked like a single model (see :meth:`BaseModel.load`).
        """
        path = Path(path)
        card = read_card(path)
        if card.get("model") != ENSEMBLE_NAME:
            raise TypeError(f"'{path}' holds a single {card.get('model')!r} model, not an ensemble.")
        members = [BaseModel.load(path / name, device=device) for name in card["members"]]
        return cls(members, calibration=card.get(ENSEMBLE_NAME, {}).get("calibration"))

    def __repr__(self) -> str:
        kind = type(self.members[0]).__name__
        epochs = "/".join(str(len(h)) for h in self.history)
        return (
            f"Ensemble({len(self.members)} {kind} members, seeds {self.seeds}, {self.n_genes} genes, "
            f"{self.microns_per_pixel} µm/px, trained {epochs} epochs)"
        )


def _resampled(coarse: da.Array, like: da.Array, ratio: float) -> da.Array:
    """``coarse`` (pixels ``ratio`` times those of ``like``) resampled bilinearly onto ``like``'s grid and chunks."""
    from scipy import ndimage

    values = np.asarray(coarse, dtype=np.float32)  # coarse maps are small (THItoGene's is computed in memory)
    missing = np.isnan(values[0])
    if missing.all():
        return da.full(like.shape, np.nan, dtype=np.float32, chunks=like.chunks)
    # fill gaps with the nearest value so interpolation next to them is defined; they are masked again afterwards
    nearest = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
    filled = values[:, nearest[0], nearest[1]]
    import dask

    template = da.zeros((len(values), *like.shape[1:]), dtype=np.float32, chunks=((len(values),), *like.chunks[1:]))
    # one graph node each: a cluster ships the coarse map once, not once per block
    return da.map_blocks(_resample_block, template, dtype=np.float32, filled=dask.delayed(filled),
                         missing=dask.delayed(missing), ratio=ratio,
                         meta=np.empty((0, 0, 0), dtype=np.float32))  # fmt: skip


def _resample_block(_template, filled, missing, ratio, block_info=None) -> np.ndarray:
    from scipy import ndimage

    (y0, y1), (x0, x1) = block_info[None]["array-location"][1:]
    # centers of the fine pixels in coarse pixel coordinates (a coarse pixel's center is at index + 0.5)
    yy, xx = np.meshgrid((np.arange(y0, y1) + 0.5) / ratio - 0.5, (np.arange(x0, x1) + 0.5) / ratio - 0.5,
                         indexing="ij")  # fmt: skip
    out = np.stack([ndimage.map_coordinates(g, [yy, xx], order=1, mode="nearest") for g in filled])
    gap = ndimage.map_coordinates(missing.astype(np.float32), [yy, xx], order=0, mode="nearest") > 0.5
    out[:, gap] = np.nan
    return out.astype(np.float32)


def _mean_and_std(*blocks: np.ndarray, scale: np.ndarray) -> np.ndarray:
    stacked = np.stack(blocks)
    return np.concatenate([stacked.mean(0), stacked.std(0) * scale]).astype(np.float32, copy=False)
