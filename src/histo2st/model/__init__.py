"""User-facing models: a network with its card, training, saving and loading."""

from ._base import MODELS, BaseModel, ModelFileError
from ._ensemble import Ensemble
from ._interface import Predictor
from ._load import load_model
from ._pixnet import PixNet
from ._thitogene import THItoGene

__all__ = ["MODELS", "BaseModel", "Ensemble", "ModelFileError", "PixNet", "Predictor", "THItoGene", "load_model"]
