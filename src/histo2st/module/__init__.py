"""Networks as pure ``nn.Module``s (no training logic); imported only by the models."""

from ._pixnet import PixNetModule
from ._probe import LinearProbeModule
from ._ssl import BYOLModule
from ._thitogene import THItoGeneModule

__all__ = [
    "BYOLModule",
    "LinearProbeModule",
    "PixNetModule",
    "THItoGeneModule",
]
