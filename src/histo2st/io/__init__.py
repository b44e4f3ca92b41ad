"""Reading data into the histo2st SpatialData conventions (``st.io``)."""

from .._core import ConventionError, SpatialScale, get_scale, set_scale, validate
from ._arrays import derive_microns_per_pixel, from_arrays
from ._her2st import read_her2st
from ._st import read_st
from ._visium import read_visium, read_visium_hd
from ._write import write_zarr
from ._wsi import read_wsi

__all__ = [
    "ConventionError",
    "SpatialScale",
    "derive_microns_per_pixel",
    "from_arrays",
    "get_scale",
    "read_her2st",
    "read_st",
    "read_visium",
    "read_visium_hd",
    "read_wsi",
    "set_scale",
    "validate",
    "write_zarr",
]
