"""Reading data into the histo2st SpatialData conventions (``st.io``)."""

from .._core import ConventionError, SpatialScale, get_scale, set_scale, validate
from ._arrays import derive_microns_per_pixel, from_arrays

__all__ = [
    "ConventionError",
    "SpatialScale",
    "derive_microns_per_pixel",
    "from_arrays",
    "get_scale",
    "set_scale",
    "validate",
]
