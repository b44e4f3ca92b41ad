"""Predicted maps as stored, and as histo2st computes with them.

A stored map holds 0 off the tissue and comes with a labels element, ``"{map}_tissue"``, that is 1 where the map
holds a prediction: spatialdata-plot refuses to render an image with NaN pixels, and its rasterizer (scipy's affine
transform) and napari take float32 but not float16, so a map stored as float32 without NaN opens in both as it is,
and the labels element draws or masks the tissue there. histo2st's own readers (aggregation, evaluation, plots) put
NaN back where the labels are 0 through :func:`valued_image`, so a bin at the tissue edge averages only the pixels
that hold a prediction. Images without such labels (a user's own NaN map, a truth map) are read unchanged.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from ._tissue import regions_on_tissue

TISSUE_SUFFIX = "_tissue"


def tissue_key(image_key: str) -> str:
    """Name of the labels element that marks the pixels of ``image_key`` holding a prediction."""
    return f"{image_key}{TISSUE_SUFFIX}"


def full_resolution(element):
    """The finest level of an image or labels element (a DataArray)."""
    return element["scale0"].ds["image"] if hasattr(element, "children") else element


def valued_image(sdata, image_key: str, *, tissue_labels: str | None = None):
    """The full-resolution ``(c, y, x)`` DataArray of ``image_key``, NaN where its tissue labels are 0.

    ``tissue_labels`` names the labels element; default :func:`tissue_key` of ``image_key``. Without one in the
    sample, the image is returned as it is.
    """
    image = full_resolution(sdata.images[image_key])
    name = tissue_labels or tissue_key(image_key)
    if name not in sdata.labels:
        if tissue_labels is not None:
            raise KeyError(f"No labels element '{tissue_labels}' in this sample; labels: {list(sdata.labels)}.")
        return image
    labels = full_resolution(sdata.labels[name])
    if tuple(labels.shape) != tuple(image.shape[1:]):
        raise ValueError(
            f"labels['{name}'] is {tuple(labels.shape)} pixels and images['{image_key}'] {tuple(image.shape[1:])}: "
            f"the tissue labels of a map must share its pixel grid. Predict again, or delete labels['{name}']."
        )
    on = da.asarray(labels.data).rechunk(image.data.chunks[1:] if hasattr(image.data, "chunks") else "auto") > 0
    nan = np.asarray(np.nan, dtype=image.dtype)
    return image.copy(data=da.where(on[None], da.asarray(image.data), nan))


def tissue_pixels(mask: np.ndarray, mask_px: float, shape: tuple[int, int], chunks) -> da.Array:
    """Lazy ``shape`` uint8 array of a map's pixels: 1 where the pixel holds any tissue of ``mask``, else 0.

    ``mask_px`` is the number of map pixels per mask pixel. A pixel counts when any mask pixel it covers is tissue,
    not only the one at its center: a bin of ``st.tl.aggregate``'s grid is kept when the mask at its center is tissue,
    and the map pixel over that center must then hold a value, or the bin's row would be NaN.
    """

    def block(block_info=None) -> np.ndarray:
        rows, cols = block_info[None]["array-location"]
        return tissue_pixels_block(mask, mask_px, rows, cols).astype(np.uint8)

    return da.map_blocks(block, chunks=chunks, dtype=np.uint8, meta=np.empty((0, 0), dtype=np.uint8))


def tissue_pixels_block(mask: np.ndarray, mask_px: float, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Bool :func:`tissue_pixels` of the map pixels ``rows[0]:rows[1]``, ``cols[0]:cols[1]``."""
    return regions_on_tissue(mask, mask_px, np.arange(rows[0], rows[1] + 1), np.arange(cols[0], cols[1] + 1))
