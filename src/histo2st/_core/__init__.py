"""The histo2st data conventions: building, describing and checking samples."""

from ._build import build_sample, check_counts
from ._genes import as_gene_list
from ._image import as_rgb_uint8, read_image
from ._paths import cache_dir, candidate_roots
from ._samples import as_samples
from ._scale import (
    SpatialScale,
    add_microns_system,
    get_scale,
    microns_transformations,
    pitch_from_centers,
    set_scale,
    spot_table_keys,
)
from ._validate import ConventionError, validate
from ._zarr import quiet_zarr

__all__ = [
    "ConventionError",
    "SpatialScale",
    "add_microns_system",
    "as_gene_list",
    "as_rgb_uint8",
    "as_samples",
    "build_sample",
    "cache_dir",
    "candidate_roots",
    "check_counts",
    "get_scale",
    "microns_transformations",
    "pitch_from_centers",
    "quiet_zarr",
    "read_image",
    "set_scale",
    "spot_table_keys",
    "validate",
]
