"""Training: one trainer for every model, the training plans, and the sections they train on."""

from ._pixnet_plan import PixNetPlan
from ._precision import native_bfloat16
from ._progress import TrainingProgress
from ._sections import Section, common_genes, denoise_targets, normalize_stains, prepare_sections, split_validation
from ._spot_windows import grid_coordinates, predict_windows
from ._ssl_plan import BYOLPlan, TileSlide, tissue_tile_centers
from ._thitogene_plan import THItoGenePlan
from ._tiling import (
    MAX_HALO_PX,
    PAD_VALUE,
    ContextImage,
    core_chunks,
    cores_per_chunk,
    default_batch_size,
    make_grid,
    predict_cores,
    read_tile,
    snap_halo,
)
from ._trainer import Trainer, TrainerConfig, TrainingPlan

__all__ = [
    "MAX_HALO_PX",
    "PAD_VALUE",
    "BYOLPlan",
    "ContextImage",
    "PixNetPlan",
    "Section",
    "THItoGenePlan",
    "TileSlide",
    "Trainer",
    "TrainerConfig",
    "TrainingPlan",
    "TrainingProgress",
    "common_genes",
    "core_chunks",
    "cores_per_chunk",
    "default_batch_size",
    "denoise_targets",
    "grid_coordinates",
    "make_grid",
    "native_bfloat16",
    "normalize_stains",
    "predict_cores",
    "predict_windows",
    "prepare_sections",
    "read_tile",
    "snap_halo",
    "split_validation",
    "tissue_tile_centers",
]
