"""Building a sample from in-memory arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._constants import IMAGE_KEY, SHAPES_KEY, TABLE_KEY
from .._core import SpatialScale, as_gene_list, build_sample, pitch_from_centers


def derive_microns_per_pixel(spot_xy: np.ndarray, spot_pitch_um: float) -> float:
    """Microns per pixel from the spot centers and the platform's center-to-center spot pitch.

    The pixel pitch is the median nearest-neighbor distance of the spot centers, which is robust to missing spots.
    """
    if spot_pitch_um is None or spot_pitch_um <= 0:
        raise ValueError(
            "Cannot derive microns per pixel: pass `microns_per_pixel=`, or the platform's `spot_pitch_um=` "
            "(center-to-center distance of neighboring spots) so it can be derived from the spot centers."
        )
    return float(spot_pitch_um) / pitch_from_centers(spot_xy)


def from_arrays(
    image,
    spot_xy: np.ndarray,
    counts,
    genes: str | Sequence[str],
    *,
    microns_per_pixel: float | None = None,
    spot_diameter_um: float,
    spot_pitch_um: float | None = None,
    spot_names: Sequence[str] | None = None,
    array_coords: np.ndarray | None = None,
    sample: str = "sample",
    scale_factors: Sequence[int] | None = None,
    image_key: str = IMAGE_KEY,
    shapes_key: str = SHAPES_KEY,
    table_key: str = TABLE_KEY,
):
    """Build a histo2st sample from an image, spot centers and a count matrix.

    Parameters
    ----------
    image
        H&E image as an array (``(y, x, 3)`` or ``(3, y, x)``; numpy, dask or xarray) or a path to a TIFF/JPEG/PNG.
        Grayscale, RGBA, uint16 and float images are converted with a warning.
    spot_xy
        ``(n, 2)`` spot centers ``(x, y)`` in the image's full-resolution pixels.
    counts
        ``(n, n_genes)`` raw counts (dense or scipy sparse), non-negative.
    genes
        Unique gene names, one per column of ``counts`` (a string is one gene).
    microns_per_pixel
        Size of an image pixel in µm. If ``None`` it is derived from ``spot_pitch_um`` and the spot centers.
    spot_diameter_um
        Spot diameter in µm (55 for Visium, 100 for legacy ST).
    spot_pitch_um
        Center-to-center distance of neighboring spots in µm (100 for Visium, 200 for legacy ST).
    spot_names
        Unique spot barcodes (``obs_names``).
    array_coords
        ``(n, 2)`` array (row, col) coordinates of the spots.
    sample
        Sample (section) name, stored in ``sdata.attrs["histo2st"]["sample"]``.
    scale_factors
        Downscale factors for a multiscale H&E, e.g. ``[2, 2, 2]``.
    image_key, shapes_key, table_key
        Element names.

    Returns
    -------
    :class:`spatialdata.SpatialData` in the histo2st conventions: image ``image_key``, circles ``shapes_key``,
    table ``table_key`` (``X`` and ``layers["counts"]`` hold the raw counts, ``obsm["spatial"]`` the centers) and
    ``attrs["histo2st"]`` with the scale.
    """
    if microns_per_pixel is None:
        microns_per_pixel = derive_microns_per_pixel(spot_xy, spot_pitch_um)
        source = "spot pitch"
    else:
        source = "given"
    scale = SpatialScale(
        microns_per_pixel=float(microns_per_pixel),
        spot_diameter_um=float(spot_diameter_um),
        spot_pitch_um=None if spot_pitch_um is None else float(spot_pitch_um),
        mpp_source=source,
        sample=str(sample),
        image_key=image_key,
        shapes_key=shapes_key,
        table_key=table_key,
    )
    return build_sample(
        image,
        spot_xy,
        counts,
        as_gene_list(genes),
        scale=scale,
        spot_names=spot_names,
        array_coords=array_coords,
        scale_factors=scale_factors,
    )
