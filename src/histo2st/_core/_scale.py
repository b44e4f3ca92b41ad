"""Physical scale of a sample: microns per pixel, spot diameter and pitch, stored in ``sdata.attrs``."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._constants import ATTRS_KEY, IMAGE_KEY, MICRONS_CS, PIXEL_CS, SHAPES_KEY, TABLE_KEY

if TYPE_CHECKING:
    from spatialdata import SpatialData

#: Lengths of a :class:`SpatialScale` in µm, each positive and finite.
LENGTHS = ("microns_per_pixel", "spot_diameter_um")


@dataclass(frozen=True)
class SpatialScale:
    """Physical scale and default element names of one sample (``sdata.attrs["histo2st"]``).

    Attributes
    ----------
    microns_per_pixel
        Side of one full-resolution H&E pixel in µm.
    spot_diameter_um
        Diameter of the measured spots in µm; ``None`` for a slide without measured spots (e.g. from
        :func:`histo2st.io.read_wsi`).
    spot_pitch_um
        Center-to-center distance of neighboring spots in µm, if known.
    mpp_source
        How ``microns_per_pixel`` was obtained, for example ``"given"`` or ``"spot pitch"``.
    sample
        Name of the sample (section).
    image_key, shapes_key, table_key
        Names of the H&E image, measured-spot shapes and spot table elements.
    """

    microns_per_pixel: float
    spot_diameter_um: float | None
    spot_pitch_um: float | None = None
    mpp_source: str = "given"
    sample: str = "sample"
    image_key: str = IMAGE_KEY
    shapes_key: str = SHAPES_KEY
    table_key: str = TABLE_KEY

    def __post_init__(self) -> None:
        for name in LENGTHS:
            problem = _length_problem(name, getattr(self, name))
            if problem is not None:
                raise ValueError(f"`{name}` {problem}.")

    @property
    def spot_radius_px(self) -> float:
        """Spot radius in full-resolution pixels."""
        if self.spot_diameter_um is None:
            raise ValueError(f"Sample '{self.sample}' has no measured spots, so no spot diameter; pass one explicitly.")
        return self.spot_diameter_um / 2 / self.microns_per_pixel

    def um_to_px(self, um: float) -> float:
        """Convert a length in µm to full-resolution pixels."""
        return um / self.microns_per_pixel

    def to_dict(self) -> dict:
        """Plain dict, as stored in ``sdata.attrs``."""
        return asdict(self)


def get_scale(sdata: SpatialData) -> SpatialScale:
    """Return the physical scale and default element names of a histo2st sample.

    Parameters
    ----------
    sdata
        A :class:`spatialdata.SpatialData` made by a histo2st reader or :func:`histo2st.io.from_arrays`.

    Returns
    -------
    The :class:`SpatialScale` stored in ``sdata.attrs["histo2st"]``.
    """
    meta = sdata.attrs.get(ATTRS_KEY) if hasattr(sdata, "attrs") else None
    if meta is None:
        raise ValueError(
            "This SpatialData has no histo2st metadata (`sdata.attrs['histo2st']`). Load it with a `histo2st.io` "
            "reader, or add it with `histo2st.io.set_scale(sdata, microns_per_pixel=..., spot_diameter_um=...)`."
        )
    fields = SpatialScale.__dataclass_fields__
    values = {k: v for k, v in dict(meta).items() if k in fields}
    for name in LENGTHS:
        problem = _length_problem(name, values.get(name))
        if problem is not None:
            raise ValueError(
                f"Sample '{values.get('sample', 'sample')}': `sdata.attrs['histo2st']['{name}']` {problem}, so the "
                f"scale is unknown. Set it with `histo2st.io.set_scale(sdata, {name}=...)`."
            )
    return SpatialScale(**values)


def _length_problem(name: str, value) -> str | None:
    """What is wrong with the length ``name`` of a scale (``None``: nothing); only a spot diameter may be absent."""
    if value is None:
        return None if name == "spot_diameter_um" else "is None"
    # np.isfinite raises a TypeError of its own on None or a string
    if not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        return f"must be a positive finite number, got {value!r}"
    return None


def set_scale(sdata: SpatialData, scale: SpatialScale | None = None, **kwargs) -> SpatialScale:
    """Store a :class:`SpatialScale` in ``sdata.attrs["histo2st"]`` and add the ``"microns"`` coordinate system.

    Parameters
    ----------
    sdata
        The sample to annotate; modified in place.
    scale
        The scale to store; when ``None`` it is built from ``kwargs`` on top of the current one (if any).
    **kwargs
        Fields of :class:`SpatialScale` to set, e.g. ``microns_per_pixel=0.5`` to override a derived value.

    Returns
    -------
    The stored scale. Every element that lives in the pixel system gets a ``"microns"`` transformation.
    """
    if scale is None:
        current = sdata.attrs.get(ATTRS_KEY)
        base = {k: v for k, v in dict(current).items() if k in SpatialScale.__dataclass_fields__} if current else {}
        if "microns_per_pixel" in kwargs and "mpp_source" not in kwargs:
            kwargs["mpp_source"] = "given"
        scale = SpatialScale(**{**base, **kwargs})
    attrs = dict(sdata.attrs.get(ATTRS_KEY) or {})
    attrs.update(scale.to_dict())
    sdata.attrs[ATTRS_KEY] = attrs
    add_microns_system(sdata, scale.microns_per_pixel)
    return scale


def microns_transformations(microns_per_pixel: float) -> dict:
    """Transformations of an element in full-resolution pixels: identity to pixels, a scale to microns."""
    from spatialdata.transformations import Identity, Scale

    return {PIXEL_CS: Identity(), MICRONS_CS: Scale([microns_per_pixel, microns_per_pixel], axes=("y", "x"))}


def add_microns_system(sdata: SpatialData, microns_per_pixel: float) -> None:
    """Give every element that is in the pixel system a ``"microns"`` transformation composed with its pixel one."""
    from spatialdata.transformations import Scale, Sequence, get_transformation, set_transformation

    to_um = Scale([microns_per_pixel, microns_per_pixel], axes=("y", "x"))
    for _, _name, element in sdata.gen_spatial_elements():
        transforms = get_transformation(element, get_all=True)
        if PIXEL_CS in transforms:
            set_transformation(element, Sequence([transforms[PIXEL_CS], to_um]), to_coordinate_system=MICRONS_CS)


def pitch_from_centers(xy: np.ndarray) -> float:
    """Median distance from each spot center to its nearest neighbor, in the units of ``xy``."""
    from scipy.spatial import cKDTree

    xy = np.asarray(xy, dtype=float)
    if len(xy) < 2:
        raise ValueError("At least two spots are needed to derive the spot pitch; pass `microns_per_pixel`.")
    dist, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(dist[:, 1]))


def spot_table_keys(sdata, name: str, table_key: str | None) -> tuple[str, str]:
    """``(table_key, shapes_key)`` of sample ``name``: the given table (default: from its scale) and its region."""
    key = get_scale(sdata).table_key if table_key is None else table_key
    if key not in sdata.tables:
        raise KeyError(f"Sample '{name}' has no table '{key}' (tables: {list(sdata.tables)}); pass `table_key=`.")
    region = np.atleast_1d(sdata.tables[key].uns.get("spatialdata_attrs", {}).get("region"))
    if len(region) != 1 or region[0] not in sdata.shapes:
        raise ValueError(
            f"Table '{key}' of sample '{name}' must annotate one shapes element of the sample, but its region is "
            f"{region.tolist()}. Parse it with `TableModel.parse(table, region='spots', ...)`."
        )
    return key, str(region[0])
