"""User-facing models: a network with its card, training, saving and loading."""

from ._base import MODELS, BaseModel, ModelFileError
from ._ensemble import Ensemble
from ._load import load_model
from ._pixnet import PixNet
from ._thitogene import THItoGene

__all__ = ["MODELS", "BaseModel", "Ensemble", "ModelFileError", "PixNet", "THItoGene", "load_model"]
