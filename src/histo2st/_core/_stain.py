"""Macenko stain normalization of H&E tiles (numpy): fit on a reference, re-stain other slides to look like it.

squidpy (>= 1.8, experimental) has a Macenko fit, but only on SpatialData elements with a tissue label element, and
its normalization changes the stain colors without rescaling the stain amounts; histo2st also supports squidpy
releases without it. scikit-image only has the fixed Ruifrok-Johnston deconvolution (``rgb2hed``). The method is
short, so it is written here in numpy (Macenko et al., ISBI 2009) and checked against squidpy's fit in the tests.
"""

from __future__ import annotations

import math

import numpy as np

#: Unit optical-density vectors of hematoxylin and eosin (Ruifrok & Johnston 2001, ``skimage.color.rgb_from_hed``),
#: used only to tell which fitted vector is which.
CANONICAL_HE = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]]) / np.linalg.norm(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]], axis=1, keepdims=True
)
#: Stain normalizations a model can apply to its inputs (its ``stain_normalization`` hyperparameter).
STAIN_METHODS = ("macenko",)
#: Spacing in µm of the pixels a slide's stains are estimated on.
SAMPLE_UM = 8.0
#: Small images are sampled more densely, down to every pixel, to keep about this many pixels.
MIN_SAMPLE_PIXELS = 2**16
#: Longest side of the sample: larger slides are sampled more sparsely so the estimate stays small in memory.
MAX_SAMPLE_SIDE = 2048
#: Fewest stained tissue pixels a slide's stains are estimated from.
MIN_STAINED_PIXELS = 500
#: Block edge when normalizing an image held in memory.
BLOCK_PX = 1024


class MacenkoNormalizer:
    """Stain normalization after Macenko et al. (2009), for ``(3, h, w)`` uint8 RGB images.

    :meth:`fit` finds the hematoxylin and eosin optical-density (OD) vectors of a reference image and the 99th
    percentile of each stain's amount. :meth:`transform` finds the same for the image to normalize (or takes them
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

    def slide_stains(self, pixels: np.ndarray, *, name: str = "The slide") -> tuple[np.ndarray, np.ndarray]:
        """:meth:`stains` of a whole slide from its tissue pixels ``(3, n)`` (:func:`tissue_pixels`).

        Raises a ``ValueError`` naming the slide when fewer than :data:`MIN_STAINED_PIXELS` of them are stained:
        a handful of pixels gives arbitrary stain vectors, which would silently re-color the whole slide.
        """
        image = np.asarray(pixels)[:, None, :]
        stained = int(np.all(self._od(image) >= self.beta, axis=1).sum())
        if stained < MIN_STAINED_PIXELS:
            raise ValueError(
                f"{name}: too little tissue to estimate the stains from: {stained} stained pixels (OD >= {self.beta} "
                f"in every channel) among {image.shape[2]} sampled on the tissue mask, fewer than the "
                f"{MIN_STAINED_PIXELS} needed. Check that the image is the H&E of a section with tissue, or leave "
                "it out; a model with `stain_normalization=None` needs no estimate."
            )
        return self.stains(image)

    def fit(self, reference_rgb: np.ndarray) -> MacenkoNormalizer:
        """Learn the reference's stain vectors and amounts from a ``(3, h, w)`` uint8 image showing tissue."""
        self.stain_matrix, self.max_concentrations = self.stains(reference_rgb)
        return self

    def transform(self, rgb: np.ndarray, *, source: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Re-stain a ``(3, h, w)`` uint8 image like the reference.

        Parameters
        ----------
        rgb
            Image to normalize.
        source
            Its stain vectors and amounts from :meth:`stains`; default: estimated on ``rgb`` itself. Estimate them
            once on a whole slide (a downsampled copy is enough) so that all its tiles are normalized alike.

        Returns
        -------
        ``(3, h, w)`` uint8.
        """
        if self.stain_matrix is None:
            raise RuntimeError("The normalizer is not fitted; call `fit(reference_rgb)` first.")
        matrix, maxima = self.stains(rgb) if source is None else source
        od = self._od(rgb)
        # the least-squares unmixing of every pixel; one pseudo-inverse is ~20x faster than `lstsq` per block
        amounts = np.linalg.pinv(matrix) @ od.T
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
        """Rebuild a normalizer written by :meth:`to_dict`."""
        if data.get("method") != "macenko":
            raise ValueError(f"Not a Macenko normalizer: method {data.get('method')!r}.")
        norm = cls(alpha=data["alpha"], beta=data["beta"], background=data["background"])
        if data["stain_matrix"] is not None:
            norm.stain_matrix = np.asarray(data["stain_matrix"], dtype=np.float64)
            norm.max_concentrations = np.asarray(data["max_concentrations"], dtype=np.float64)
        return norm


def tissue_pixels(image, microns_per_pixel: float, *, sample_um: float = SAMPLE_UM) -> tuple[np.ndarray, float]:
    """Pixels on the tissue of an H&E, about one every ``sample_um`` µm, to estimate its stains from.

    The image is read with a stride (numpy, or dask block by block: the whole image is never held in memory), and a
    tissue mask (:func:`histo2st._core._tissue.tissue_mask`) of that copy drops the glass around the tissue. Pixels are
    taken as they are, not averaged: averages mix nuclei and stroma and blunt the extreme stain directions that
    Macenko's method reads the stain vectors at.

    Parameters
    ----------
    image
        ``(3, y, x)`` uint8 H&E, numpy or dask.
    microns_per_pixel
        Its pixel size.
    sample_um
        Spacing of the pixels; smaller images are sampled more densely (to about :data:`MIN_SAMPLE_PIXELS` pixels)
        and larger ones more sparsely (at most :data:`MAX_SAMPLE_SIDE` per side).

    Returns
    -------
    pixels
        ``(3, n)`` uint8.
    spacing_um
        The spacing used, in µm.
    """
    from ._tissue import tissue_mask

    height, width = image.shape[1:]
    step = min(max(1, round(sample_um / microns_per_pixel)), max(1, math.isqrt(height * width // MIN_SAMPLE_PIXELS)))
    step = max(step, math.ceil(max(height, width) / MAX_SAMPLE_SIDE))
    sample = np.asarray(image[:3, ::step, ::step])
    mask, factor = tissue_mask(sample)
    rows = np.minimum((np.arange(sample.shape[1]) / factor).astype(int), mask.shape[0] - 1)
    cols = np.minimum((np.arange(sample.shape[2]) / factor).astype(int), mask.shape[1] - 1)
    return sample[:, mask[np.ix_(rows, cols)]], step * microns_per_pixel


def transform_blocks(image, normalizer: MacenkoNormalizer, source: tuple[np.ndarray, np.ndarray]):
    """Lazily re-stain a ``(3, y, x)`` uint8 image block by block with one slide's ``source`` stains.

    Every pixel is transformed alone, so the result does not depend on the blocks: tiles cut from it afterwards
    (with any overlap) see the same values as a transform of the whole image.
    """
    import dask.array as da

    # a numpy image in one block would be transformed in float64 all at once (about 60 bytes per pixel)
    image = da.from_array(image, chunks=(-1, BLOCK_PX, BLOCK_PX)) if isinstance(image, np.ndarray) else image
    image = image.rechunk({0: -1})
    return image.map_blocks(
        normalizer.transform, source=source, dtype=np.uint8, meta=np.empty((0, 0, 0), dtype=np.uint8)
    )


def describe_stains(source: tuple[np.ndarray, np.ndarray]) -> str:
    """One line for a log: the hematoxylin and eosin OD vectors and their 99th-percentile amounts."""
    matrix, maxima = source
    h, e = (", ".join(f"{v:.2f}" for v in matrix[:, k]) for k in range(2))
    return f"hematoxylin OD ({h}), eosin OD ({e}), 99th-percentile amounts {maxima[0]:.2f} / {maxima[1]:.2f}"
