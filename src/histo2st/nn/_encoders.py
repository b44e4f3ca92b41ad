"""PixNet's encoders by name: torchvision ResNets or timm Vision Transformers, each a feature pyramid."""

from __future__ import annotations

from torch import nn

from ._resnet import IMAGENET_MEAN, IMAGENET_STD, RESNET_CHANNELS, ResNet
from ._vit_encoder import ViTEncoder


def is_resnet(architecture: str) -> bool:
    """Whether ``architecture`` names one of the torchvision ResNets (:data:`RESNET_CHANNELS`)."""
    return architecture in RESNET_CHANNELS


def build_encoder(architecture: str, *, levels: int = 5, model_args: dict | None = None) -> nn.Module:
    """A randomly initialized pyramidal encoder.

    :class:`ResNet` for ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``, else :class:`ViTEncoder` for a timm ViT
    name, built with ``model_args``.
    """
    if is_resnet(architecture):
        if model_args:
            raise ValueError(
                f"`encoder_args` change the architecture of a timm ViT; {architecture!r} takes none, got {model_args}."
            )
        return ResNet(architecture, num_classes=None, levels=levels)
    return ViTEncoder(architecture, model_args, levels=levels)


def encoder_input_stats(encoder: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The RGB mean and standard deviation an encoder's published weights expect, by default.

    ImageNet's for the ResNets (torchvision's weights; Ciga et al.'s too), and timm's configuration of the
    architecture for a ViT. Weights that say otherwise (a hub ``config.json``) override this.
    """
    if isinstance(encoder, ViTEncoder):
        return encoder.input_stats
    return IMAGENET_MEAN, IMAGENET_STD
