"""A baseline without deep features: color and texture statistics of the H&E patch around each spot, then ridge.

Per pixel the RGB values, the hematoxylin, eosin and DAB amounts of scikit-image's color deconvolution (``rgb2hed``),
the gray-level gradient magnitude (Sobel) and a difference of Gaussians at nucleus scale; per patch their mean,
standard deviation and 10th, 50th and 90th percentiles (40 features). scikit-learn standardises them and fits
``RidgeCV`` (one alpha for all genes, by efficient leave-one-out on the training spots). The benchmarks' baseline and
:func:`histo2st.tl.evaluate`'s ``baseline=``: what a model must beat to have learnt more than colour.
"""

from __future__ import annotations

import numpy as np

from .._core import as_samples, get_scale
from .._core._maps import full_resolution
from .._core._resample import resample_image

#: Per-pixel channels the patch statistics are taken over.
CHANNELS = ("red", "green", "blue", "hematoxylin", "eosin", "dab", "gradient", "dog")
#: Percentiles of each channel over a patch, besides its mean and standard deviation.
PERCENTILES = (10, 50, 90)
#: Standard deviations in µm of the difference of Gaussians (texture at the scale of nuclei).
DOG_UM = (2.0, 4.0)
#: Ridge penalties tried by RidgeCV.
ALPHAS = np.logspace(-2, 5, 15)
#: Patches whose statistics are computed at once (bounds the memory of a batch).
BATCH = 2048


class ColorTextureRidge:
    """Ridge regression from the color and texture statistics of a square H&E patch centered on each spot.

    Parameters
    ----------
    genes
        Genes to predict (columns of the training tables' log-normalized ``X``).
    patch_um
        Side of the square patch in µm (the training spots' diameter: a spot sees the tissue it measured).
    microns_per_pixel
        Resolution the H&E is resampled to before the statistics are taken.

    Notes
    -----
    Written here rather than taken from a library: no package computes stain-deconvolved patch statistics at given
    points; the per-pixel filters (scikit-image) and the regression (scikit-learn) are the libraries'.
    """

    def __init__(self, genes, *, patch_um: float, microns_per_pixel: float = 2.0) -> None:
        self.genes = [str(g) for g in genes]
        self.patch_um = float(patch_um)
        self.microns_per_pixel = float(microns_per_pixel)
        self.patch_px = max(3, round(self.patch_um / self.microns_per_pixel))
        self.pipeline = None

    @property
    def alpha(self) -> float:
        """The ridge penalty RidgeCV chose."""
        return float(self.pipeline[-1].alpha_)

    def fit(self, samples) -> ColorTextureRidge:
        """Fit on every measured spot of these normalized sections (a SpatialData, or a list or dict of them)."""
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        features, targets = [], []
        for sdata in as_samples(samples).values():
            table = _spot_table(sdata)
            features.append(self.features(sdata, table.obsm["spatial"]))
            x = table[:, self.genes].X
            targets.append(np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64))
        self.pipeline = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
        self.pipeline.fit(np.concatenate(features), np.concatenate(targets))
        return self

    def predict_points(self, sdata, xy_px: np.ndarray) -> np.ndarray:
        """``(n, genes)`` predictions for patches centered on ``xy_px`` (x, y in the sample's H&E pixels)."""
        if self.pipeline is None:
            raise RuntimeError("Fit the baseline first (`ColorTextureRidge.fit`).")
        return self.pipeline.predict(self.features(sdata, xy_px)).astype(np.float32)

    def predict_spots(self, sdata):
        """An AnnData of the predictions at the sample's measured spots, rows named like the measured table."""
        import anndata as ad
        import pandas as pd

        table = _spot_table(sdata)
        values = self.predict_points(sdata, table.obsm["spatial"])
        return ad.AnnData(
            values, obs=pd.DataFrame(index=table.obs_names.copy()), var=pd.DataFrame(index=pd.Index(self.genes))
        )

    def features(self, sdata, xy_px: np.ndarray) -> np.ndarray:
        """``(n, len(CHANNELS) * 5)`` patch statistics at ``xy_px`` (H&E pixels)."""
        stack, factor = channel_stack(sdata, self.microns_per_pixel)
        return patch_statistics(stack, np.asarray(xy_px, dtype=np.float64) * factor, self.patch_px)


def _spot_table(sdata):
    return sdata.tables[get_scale(sdata).table_key]


def resampled_rgb(sdata, microns_per_pixel: float) -> tuple[np.ndarray, float]:
    """The sample's H&E resampled to ``microns_per_pixel`` as ``(3, h, w)`` uint8, and H&E px -> its px."""
    scale = get_scale(sdata)
    image = full_resolution(sdata.images[scale.image_key])
    factor = scale.microns_per_pixel / microns_per_pixel
    return np.asarray(resample_image(image.data, factor).compute()), factor


def channel_stack(sdata, microns_per_pixel: float) -> tuple[np.ndarray, float]:
    """The sample's H&E at ``microns_per_pixel`` as ``(len(CHANNELS), h, w)`` float32, and H&E px -> stack px."""
    from skimage.color import rgb2gray, rgb2hed
    from skimage.filters import difference_of_gaussians, sobel

    image, factor = resampled_rgb(sdata, microns_per_pixel)
    rgb = image.transpose(1, 2, 0).astype(np.float32) / 255
    gray = rgb2gray(rgb)
    sigmas = [um / microns_per_pixel for um in DOG_UM]
    texture = [sobel(gray), np.abs(difference_of_gaussians(gray, *sigmas))]
    stack = np.concatenate([rgb.transpose(2, 0, 1), rgb2hed(rgb).astype(np.float32).transpose(2, 0, 1)])
    return np.concatenate([stack, np.stack(texture).astype(np.float32)]), factor


def patch_statistics(stack: np.ndarray, xy: np.ndarray, size: int) -> np.ndarray:
    """Mean, standard deviation and percentiles of each channel over the ``size`` px square centered on each point.

    Points are ``(x, y)`` in stack pixels (continuous, pixel corners at integers); the image is mirrored at its edges.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    channels = stack.shape[0]
    padded = np.pad(stack, ((0, 0), (size, size), (size, size)), mode="reflect")
    windows = sliding_window_view(padded, (size, size), axis=(1, 2))
    start = np.round(xy - size / 2).astype(np.int64) + size
    start[:, 0] = np.clip(start[:, 0], 0, windows.shape[2] - 1)
    start[:, 1] = np.clip(start[:, 1], 0, windows.shape[1] - 1)
    out = np.empty((len(xy), channels * (2 + len(PERCENTILES))), dtype=np.float32)
    for lo in range(0, len(xy), BATCH):
        s = start[lo : lo + BATCH]
        patches = windows[:, s[:, 1], s[:, 0]].reshape(channels, len(s), size * size)
        stats = [patches.mean(-1)[None], patches.std(-1)[None], np.percentile(patches, PERCENTILES, axis=-1)]
        out[lo : lo + len(s)] = np.concatenate(stats).transpose(2, 1, 0).reshape(len(s), -1)
    return out
