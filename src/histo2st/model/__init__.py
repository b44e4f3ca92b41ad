"""User-facing models: a network with its card, training, saving and loading."""

from ._base import BaseModel, load_model
from ._pixnet import PixNet
from ._thitogene import THItoGene

MODELS = {"pixnet": PixNet, "thitogene": THItoGene}

__all__ = ["MODELS", "BaseModel", "PixNet", "THItoGene", "load_model"]
