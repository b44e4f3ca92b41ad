"""Dense maps of models that predict a patch at a time (THItoGene, the ridge probe): one pixel per patch center."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np

from .._core._resample import resample_image
from .._logging import logger

#: H&E images up to this size (at the model's resolution) are loaded once for prediction instead of per window.
IMAGE_BYTES = 2 * 2**30


def model_image(model, image, image_mpp: float):
    """The (stain-normalized) H&E at ``model``'s resolution: in memory up to ``IMAGE_BYTES``, else lazy."""
    factor = image_mpp / model.microns_per_pixel
    if not math.isclose(factor, 1.0, rel_tol=0.05):
        logger.info(f"Resampling the H&E from {image_mpp:.3g} to {model.microns_per_pixel:.3g} µm/px.")
    resampled = model._stain_normalized(resample_image(image, factor))
    if resampled.nbytes <= IMAGE_BYTES:
        # patches read overlapping regions; a lazy JPEG-backed slide would be decoded again for each one
        return np.asarray(resampled)
    return resampled


def patch_grid_map(image, image_mpp: float, map_mpp: float, n_genes: int, tissue_mask, predict_at) -> da.Array:
    """Dense prediction ``(genes, y, x)`` float32, one pixel per ``map_mpp`` µm, for an H&E ``(3, y, x)``.

    Pixel ``(i, j)`` is ``predict_at`` of the patch centered on ``((j + 0.5), (i + 0.5)) * map_mpp`` µm (``xy`` in
    ``image`` pixels in, ``(n, genes)`` out), so a scale of ``map_mpp / image_mpp`` aligns it with the H&E. Only
    pixels that cover tissue (``tissue_mask``, ``(mask, image pixels per mask pixel)``, default the Otsu mask of
    :func:`histo2st.tl.aggregate`) are predicted; the others are NaN. Computed in memory (``genes`` x grid points).
    """
    from .._core._maps import tissue_pixels_block
    from .._core._tissue import tissue_mask as find_tissue

    stride_px = map_mpp / image_mpp
    height, width = (math.ceil(n / stride_px) for n in image.shape[1:])
    gy, gx = np.mgrid[0:height, 0:width]
    xy = np.column_stack([(gx.ravel() + 0.5) * stride_px, (gy.ravel() + 0.5) * stride_px])
    mask, factor = find_tissue(image) if tissue_mask is None else tissue_mask
    # the pixels st.tl.predict keeps and labels as tissue: those that cover any tissue of the mask
    on = np.flatnonzero(tissue_pixels_block(mask, factor / stride_px, (0, height), (0, width)))
    logger.info(f"Predicting a {height} x {width} map every {map_mpp:.3g} µm ({len(on)} patches).")
    dense = np.full((n_genes, height * width), np.nan, dtype=np.float32)
    if len(on):
        dense[:, on] = predict_at(xy[on]).T
    return da.from_array(dense.reshape(n_genes, height, width), chunks=(n_genes, 1024, 1024))
