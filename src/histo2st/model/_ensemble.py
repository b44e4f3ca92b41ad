"""A seed ensemble: models of one class trained with different seeds, predicting their mean and spread."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np

from .._logging import logger
from ._base import BaseModel, read_card, write_card, write_dir_atomic

ENSEMBLE_NAME = "ensemble"


class Ensemble:
    """Models of one class and one set of genes (e.g. trained with different seeds) used as one.

    Predictions are the mean over the members; their spread, the standard deviation over the members (``ddof=0``), is
    returned beside it as an uncertainty. Build one with ``st.tl.fit(..., n_seeds=5)`` or from trained models; save
    with :meth:`save` and load with :func:`histo2st.tl.load_model`.

    Parameters
    ----------
    members
        Trained models of the same class, genes and resolution.
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
            if type(member) is not type(first):
                raise TypeError(
                    f"Ensemble members must be of one class, got {type(first).__name__} and {type(member).__name__}."
                )
            if member.genes != first.genes:
                raise ValueError("Ensemble members must predict the same genes in the same order.")
            scales = [(m.microns_per_pixel, m.map_microns_per_pixel) for m in (first, member)]
            if scales[0] != scales[1]:
                raise ValueError("Ensemble members must work at one µm per pixel and write maps of one pixel size.")
        self.members = members
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
        return self.members[0].microns_per_pixel

    @property
    def map_microns_per_pixel(self) -> float:
        """Pixel size in µm of the dense image, for members whose map is coarser than their input (THItoGene)."""
        return self.members[0].map_microns_per_pixel

    @property
    def predicts_at_points(self) -> bool:
        return self.members[0].predicts_at_points

    @property
    def init_params(self) -> dict:
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
        maps = [m.predict_image(image, image_mpp, device=device, **tiling) for m in self.members]
        chunks = ((self.n_genes,), *maps[0].chunks[1:])
        maps = [m.rechunk(chunks) for m in maps]
        return da.map_blocks(
            _mean_and_std,
            *maps,
            scale=self.std_scale[:, None, None],
            dtype=np.float32,
            chunks=((2 * self.n_genes,), *chunks[1:]),
            meta=np.empty((0, 0, 0), dtype=np.float32),
        )

    def predict_points(self, image, image_mpp: float, xy_px, *, device: str | None = None, tta: int = 1):
        """The members' ``(mean, std)`` at points, each ``(n, genes)`` float32 (``std`` times :attr:`std_scale`).

        ``None`` when the members aggregate the dense image instead (see
        :meth:`histo2st.model.THItoGene.predict_points`).
        """
        values = []
        for member in self.members:
            points = member.predict_points(image, image_mpp, xy_px, device=device, tta=tta)
            if points is None:
                return None
            values.append(np.asarray(points, dtype=np.float32))
        stacked = np.stack(values)
        return stacked.mean(0), stacked.std(0) * self.std_scale

    def save(self, path: str | Path, *, overwrite: bool = False, include_encoder: bool = False) -> Path:
        """Save every member (``member_<i>/``, each by its own ``save``, with its weights' sha256) and a card.

        The directory appears complete or not at all; ``overwrite`` replaces an existing one; ``include_encoder`` as
        in :meth:`BaseModel.save`.
        """
        names = [f"member_{i}" for i in range(len(self.members))]
        card = {
            "model": ENSEMBLE_NAME,
            "member_model": self.members[0].model_name,
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


def _mean_and_std(*blocks: np.ndarray, scale: np.ndarray) -> np.ndarray:
    stacked = np.stack(blocks)
    return np.concatenate([stacked.mean(0), stacked.std(0) * scale]).astype(np.float32, copy=False)
