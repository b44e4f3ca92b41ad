"""User-facing models: a network with its card, training, saving and loading."""

from ._base import CARD_FILE, MODELS, BaseModel, ModelFileError, check_model_dir, read_card
from ._color_ridge import ColorTextureRidge
from ._encoder_source import EncoderSource, resolve_encoder
from ._ensemble import Ensemble
from ._interface import Predictor
from ._load import load_model
from ._pixnet import PixNet
from ._ridge import RidgeProbe
from ._thitogene import THItoGene

__all__ = [
    "CARD_FILE",
    "MODELS",
    "BaseModel",
    "ColorTextureRidge",
    "EncoderSource",
    "Ensemble",
    "ModelFileError",
    "PixNet",
    "Predictor",
    "RidgeProbe",
    "THItoGene",
    "check_model_dir",
    "load_model",
    "read_card",
    "resolve_encoder",
]
