"""User-facing models: a network with its card, training, saving and loading."""

from ._base import MODELS, BaseModel, load_model
from ._ensemble import Ensemble
from ._pixnet import PixNet
from ._thitogene import THItoGene

__all__ = ["MODELS", "BaseModel", "Ensemble", "PixNet", "THItoGene", "load_model"]
