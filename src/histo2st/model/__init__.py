"""User-facing models: a network with its card, training, saving and loading."""

from ._base import BaseModel, load_model
from ._pixnet import PixNet

MODELS = {"pixnet": PixNet}

__all__ = ["MODELS", "BaseModel", "PixNet", "load_model"]
