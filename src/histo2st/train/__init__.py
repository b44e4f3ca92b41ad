"""Training: one trainer for every model, the training plans, and the sections they train on."""

from ._pixnet_plan import PixNetPlan
from ._precision import native_bfloat16
from ._progress import TrainingProgress
from ._sections import Section, common_genes, normalize_stains, prepare_sections, split_validation
from ._ssl_plan import BYOLPlan, TileSlide, tissue_tile_centers
from ._thitogene_plan import THItoGenePlan
from ._trainer import Trainer, TrainerConfig, TrainingPlan

__all__ = [
    "BYOLPlan",
    "PixNetPlan",
    "Section",
    "THItoGenePlan",
    "TileSlide",
    "Trainer",
    "TrainerConfig",
    "TrainingPlan",
    "TrainingProgress",
    "common_genes",
    "native_bfloat16",
    "normalize_stains",
    "prepare_sections",
    "split_validation",
    "tissue_tile_centers",
]
