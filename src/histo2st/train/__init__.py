"""Training: one trainer for every model, the training plans, and the sections they train on."""

from ._pixnet_plan import PixNetPlan
from ._progress import TrainingProgress
from ._sections import Section, common_genes, prepare_sections, split_validation
from ._thitogene_plan import THItoGenePlan
from ._trainer import Trainer, TrainerConfig, TrainingPlan

__all__ = [
    "PixNetPlan",
    "Section",
    "THItoGenePlan",
    "Trainer",
    "TrainerConfig",
    "TrainingProgress",
    "TrainingPlan",
    "common_genes",
    "prepare_sections",
    "split_validation",
]
