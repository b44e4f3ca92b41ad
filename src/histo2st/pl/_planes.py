"""Reading what a plot shows from lazy image elements: a pyramid level, strided to a few pixels, and its extent."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._constants import ATTRS_KEY, IMAGE_KEY, SHAPES_KEY, TABLE_KEY
from .._core._maps import full_resolution


@dataclass(frozen=True)
class Plane:
    """Values of an image element as plotted, and where they lie.

    Attributes
    ----------
    values
        ``(h, w)`` or ``(c, h, w)`` numpy array, at most ``max_px`` pixels per side.
    extent
        ``(left, right, bottom, top)`` in the plot's coordinate system, for ``imshow(origin="upper")``.
    """

    values: np.ndarray
    extent: tuple[float, float, float, float]


def sample_keys(sdata) -> tuple[str, str, str]:
    """H&E, spot shapes and spot table names recorded in the sample (``attrs["histo2st"]``), else the defaults."""
    meta = sdata.attrs.get(ATTRS_KEY, {})
    return meta.get("image_key", IMAGE_KEY), meta.get("shapes_key", SHAPES_KEY), meta.get("table_key", TABLE_KEY)


def affine(element, coordinate_system: str, name: str) -> tuple[float, float, float, float]:
    """``(sx, sy, tx, ty)``: an element's scale and translation from its own coordinates to ``coordinate_system``."""
    from spatialdata.transformations import get_transformation

    systems = get_transformation(element, get_all=True)
    if coordinate_system not in systems:
        raise ValueError(
            f"Element '{name}' has no transformation to the coordinate system '{coordinate_system}' (it has "
            f"{sorted(systems)}); pass `coordinate_system=` one of those, or add the transformation."
        )
    m = systems[coordinate_system].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    if abs(m[0, 1]) > 1e-9 or abs(m[1, 0]) > 1e-9:
        raise ValueError(
            f"Element '{name}' is rotated or sheared in '{coordinate_system}' (matrix {m.round(4).tolist()}); "
            "these plots draw axis-aligned images only. Resample it onto the H&E pixel grid first."
        )
    return float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2])


def levels(element) -> list:
    """The ``(c, y, x)`` DataArrays of an image element, finest first (one for a single-scale image)."""
    if hasattr(element, "children"):
        names = sorted(element.children, key=lambda k: int(k.removeprefix("scale")))
        return [element[k].ds["image"] for k in names]
    return [element]


def channel_names(element) -> list[str]:
    return [str(c) for c in full_resolution(element).coords["c"].values]


def read_plane(element, *, name: str, channels=None, max_px: int, coordinate_system: str) -> Plane:
    """Read an image element at no more than ``max_px`` pixels per side.

    The finest pyramid level that fits in ``max_px`` is used (else the coarsest level), then every ``step``-th pixel
    of it, sampled at the center of each ``step x step`` block. Only those pixels are computed, never the
    full-resolution array.

    Parameters
    ----------
    element
        Image element (DataArray or multiscale DataTree), ``(c, y, x)``.
    name
        Its name, for error messages.
    channels
        One channel name (gives ``(h, w)``), a list of names (gives ``(c, h, w)``) or ``None`` for all channels.
    max_px
        Most pixels per side of the result.
    coordinate_system
        System of the returned extent.
    """
    if max_px < 1:
        raise ValueError(f"`max_px` must be a positive number of pixels, got {max_px!r}.")
    all_levels = levels(element)
    full_h, full_w = all_levels[0].shape[-2:]
    level = next((lv for lv in all_levels if max(lv.shape[-2:]) <= max_px), all_levels[-1])
    if channels is not None:
        level = level.sel(c=channels)
    h, w = level.shape[-2:]
    step = max(1, math.ceil(max(h, w) / max_px))
    data = level.data[..., step // 2 :: step, step // 2 :: step]
    values = np.asarray(data.compute() if hasattr(data, "compute") else data)
    sx, sy, tx, ty = affine(element, coordinate_system, name)
    n_y, n_x = values.shape[-2:]
    # each plotted pixel covers `step` level pixels, and a level pixel covers full/level full-resolution pixels
    width = n_x * step * full_w / w * sx
    height = n_y * step * full_h / h * sy
    return Plane(values, (tx, tx + width, ty + height, ty))


def on_plane(labels, shape: tuple[int, int]) -> np.ndarray:
    """A labels element sampled at the pixels of a plane of ``shape`` (nearest pixel), computing only those.

    The plane is one :func:`read_plane` read from an image on the labels' full-resolution grid.
    """
    full = full_resolution(labels)
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * full.shape[0] / shape[0]).astype(np.intp), full.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * full.shape[1] / shape[1]).astype(np.intp), full.shape[1] - 1)
    data = full.data[rows][:, cols]
    return np.asarray(data.compute() if hasattr(data, "compute") else data)
