"""Default element names, keys and physical constants, named in one place.

Every reader, tool and plot takes its default keys from here, so a user who renames an element
only has to pass the new name; nothing else hard-codes these strings.
"""

# --- SpatialData element names -------------------------------------------------------------------------------------
IMAGE_KEY = "he"  #: H&E image element, (c=3, y, x) uint8
SHAPES_KEY = "spots"  #: circles of the measured spots, radius in image pixels
TABLE_KEY = "table"  #: AnnData of the measured spots, linked to SHAPES_KEY
TRUTH_KEY = "truth"  #: dense ground-truth expression image (genes as channels), synthetic data only
CELLS_KEY = "cells"  #: label image of cell bodies, synthetic data only
CELLS_TABLE_KEY = "table_cells"  #: table of the cells in CELLS_KEY (cell types), synthetic data only
BINS_KEY = "bins_{:03d}um"  #: square bins of an edge in µm, e.g. "bins_008um" (Visium HD style)
BINS_TABLE_KEY = "table_{:03d}um"  #: table of the square bins of an edge in µm, e.g. "table_008um"
EXPECTED_LAYER = "expected"  #: noise-free expected counts of a synthetic table (what the counts were drawn from)
PRED_KEY = "pred"  #: prefix of prediction outputs

# --- coordinate systems ------------------------------------------------------------------------------------------
PIXEL_CS = "global"  #: the H&E full-resolution pixel system (what spatialdata-io readers use)
MICRONS_CS = "microns"  #: physical system, a Scale by microns per pixel from PIXEL_CS

# --- table keys --------------------------------------------------------------------------------------------------
REGION_KEY = "region"
INSTANCE_KEY = "spot_id"
COUNTS_LAYER = "counts"
SPATIAL_KEY = "spatial"  #: obsm key of spot centers (x, y) in image pixels
ARRAY_ROW = "array_row"
ARRAY_COL = "array_col"
TRAINING_MEAN = "training_mean"  #: var column of a prediction table: each gene's mean over the model's training spots

# --- metadata ----------------------------------------------------------------------------------------------------
ATTRS_KEY = "histo2st"  #: key in ``sdata.attrs`` and ``adata.uns`` holding histo2st metadata
IMAGE_CHANNELS = ("r", "g", "b")

# --- physical defaults -------------------------------------------------------------------------------------------
VISIUM_SPOT_UM = 55.0
VISIUM_PITCH_UM = 100.0
LEGACY_ST_SPOT_UM = 100.0
LEGACY_ST_PITCH_UM = 200.0
VISIUM_HD_BINS_UM = (2, 8, 16)
