"""Macenko stain normalisation of H&E tiles (numpy): fit on a reference, re-stain other slides to look like it.

squidpy (>= 1.8, experimental) has a Macenko fit, but only on SpatialData elements with a tissue label element, and
its normalisation changes the stain colours without rescaling the stain amounts; histo2st also supports squidpy
releases without it. scikit-image only has the fixed Ruifrok-Johnston deconvolution (``rgb2hed``). The method is
short, so it is written here in numpy (Macenko et al., ISBI 2009) and checked against squidpy's fit in the tests.
"""

from __future__ import annotations

import numpy as np

#: Unit optical-density vectors of hematoxylin and eosin (Ruifrok & Johnston 2001, ``skimage.color.rgb_from_hed``),
#: used only to tell which fitted vector is which.
CANONICAL_HE = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]) / np.linalg.norm(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]], axis=1, keepdims=True
)


class MacenkoNormalizer:
    """Stain normalisation after Macenko et al. (2009), for ``(3, h, w)`` uint8 RGB images.

    :meth:`fit` finds the hematoxylin and eosin optical-density (OD) vectors of a reference image and the 99th
    percentile of each stain's amount. :meth:`transform` finds the same for the image to normalise (or takes them
    from ``source``, e.g. estimated once on a whole slide, so every tile of it is treated alike), unmixes its pixels
    into stain amounts, scales each stain's amounts to the reference's percentile and remixes them with the
    reference's vectors.

    Parameters
    ----------
    alpha
        Percentile (in %) of the angles in the plane of the two main OD directions at which the two stain vectors
        are taken (robust extremes).
    beta
        OD threshold: pixels with a lower OD in any channel (glass, bright background) are left out of the fit.
    background
        Intensity of unstained glass (zero OD).
    """

    def __init__(self, *, alpha: float = 1.0, beta: float = 0.15, background: float = 255.0) -> None:
        if not 0 < alpha < 50:
            raise ValueError(f"`alpha` must be a percentile in (0, 50), got {alpha}.")
        self.alpha, self.beta, self.background = float(alpha), float(beta), float(background)
        self.stain_matrix: np.ndarray | None = None
        self.max_concentrations: np.ndarray | None = None

    def _od(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[0] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"Expected a (3, h, w) uint8 RGB image, got shape {rgb.shape} and dtype {rgb.dtype}.")
        return -np.log((rgb.reshape(3, -1).T.astype(np.float64) + 1) / self.background)

    def stains(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stain vectors ``(3, 2)`` (columns: hematoxylin, eosin, unit OD) and 99th-percentile amounts ``(2,)``."""
        od = self._od(rgb)
        tissue = od[np.all(od >= self.beta, axis=1)]
        if len(tissue) < 10:
            raise ValueError(
                f"Only {len(tissue)} stained pixels (OD >= {self.beta} in every channel): the image looks empty. "
                "Fit and estimate stains on images that show tissue."
            )
        _, vectors = np.linalg.eigh(np.cov(tissue.T))
        plane = vectors[:, [2, 1]]  # the two main directions
        plane *= np.where(plane.sum(0) < 0, -1, 1)  # OD is positive: point both into it
        proj = tissue @ plane
        angles = np.arctan2(proj[:, 1], proj[:, 0])
        low, high = np.percentile(angles, [self.alpha, 100 - self.alpha])
        ends = plane @ np.array([[np.cos(low), np.cos(high)], [np.sin(low), np.sin(high)]])
        ends /= np.linalg.norm(ends, axis=0)
        similarity = CANONICAL_HE @ ends  # (he, end)
        if similarity[0, 0] - similarity[1, 0] < similarity[0, 1] - similarity[1, 1]:
            ends = ends[:, ::-1]
        amounts = np.linalg.lstsq(ends, tissue.T, rcond=None)[0]
        return ends, np.percentile(amounts, 99, axis=1)

    def fit(self, reference_rgb: np.ndarray) -> MacenkoNormalizer:
        """Learn the reference's stain vectors and amounts from a ``(3, h, w)`` uint8 image showing tissue."""
        self.stain_matrix, self.max_concentrations = self.stains(reference_rgb)
        return self

    def transform(self, rgb: np.ndarray, *, source: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Re-stain a ``(3, h, w)`` uint8 image like the reference.

        Parameters
        ----------
        rgb
            Image to normalise.
        source
            Its stain vectors and amounts from :meth:`stains`; default: estimated on ``rgb`` itself. Estimate them
            once on a whole slide (a downsampled copy is enough) so that all its tiles are normalised alike.

        Returns
        -------
        ``(3, h, w)`` uint8.
        """
        if self.stain_matrix is None:
            raise RuntimeError("The normaliser is not fitted; call `fit(reference_rgb)` first.")
        matrix, maxima = self.stains(rgb) if source is None else source
        od = self._od(rgb)
        amounts = np.linalg.lstsq(matrix, od.T, rcond=None)[0]
        amounts *= (self.max_concentrations / np.maximum(maxima, 1e-6))[:, None]
        out = self.background * np.exp(-(self.stain_matrix @ amounts)) - 1
        return np.clip(np.round(out), 0, 255).astype(np.uint8).reshape(rgb.shape)

    def to_dict(self) -> dict:
        """JSON-ready settings and fitted values (for a model card)."""
        return {
            "method": "macenko",
            "alpha": self.alpha,
            "beta": self.beta,
            "background": self.background,
            "stain_matrix": None if self.stain_matrix is None else self.stain_matrix.tolist(),
            "max_concentrations": None if self.max_concentrations is None else self.max_concentrations.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> MacenkoNormalizer:
        """Rebuild a normaliser written by :meth:`to_dict`."""
        if data.get("method") != "macenko":
            raise ValueError(f"Not a Macenko normaliser: method {data.get('method')!r}.")
        norm = cls(alpha=data["alpha"], beta=data["beta"], background=data["background"])
        if data["stain_matrix"] is not None:
            norm.stain_matrix = np.asarray(data["stain_matrix"], dtype=np.float64)
            norm.max_concentrations = np.asarray(data["max_concentrations"], dtype=np.float64)
        return norm
