"""ResNet encoders from torchvision as feature pyramids, and the ImageNet input normalization.

The networks are torchvision's own (``torchvision.models.resnet18`` / ``resnet50``); :class:`ResNet` re-exposes their
stem and layers as its attributes, so its ``state_dict`` keys are torchvision's (``conv1``, ``bn1``,
``layer1..layer4``, ``fc``) and an ImageNet checkpoint or the histopathology ResNet18 of Ciga et al. (2022) loads
without renaming.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

#: ImageNet channel means of RGB in [0, 1], the statistics torchvision's ResNet weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: ImageNet channel standard deviations of RGB in [0, 1].
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Channels of the pyramid levels F_1..F_5 of each ResNet: stem (stride 2), layer1 (stride 4), layer2 (8),
#: layer3 (16), layer4 (32).
RESNET_CHANNELS = {
    "resnet18": (64, 64, 128, 256, 512),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
}
#: The channels of ResNet18's pyramid (PixNet's default encoder).
PYRAMID_CHANNELS = RESNET_CHANNELS["resnet18"]


def normalize_images(images: torch.Tensor, *, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """Turn uint8 RGB images into the float input of the encoder: ``(images / 255 - mean) / std`` per channel.

    ImageNet statistics are the default because torchvision's weights expect them; we use them for Ciga et al.'s
    histopathology weights too (their release documents no input statistics and the encoder is fine-tuned end to
    end, so the encoder adapts to the small difference). Pass ``mean``/``std`` to use others.

    Parameters
    ----------
    images
        ``(3, H, W)`` or ``(B, 3, H, W)`` uint8 tensor with channels r, g, b (the ``"he"`` image convention).
    mean, std
        Per-channel statistics of RGB scaled to [0, 1].

    Returns
    -------
    Float32 tensor of the same shape.
    """
    if images.dtype != torch.uint8:
        raise TypeError(
            f"`normalize_images` expects uint8 RGB images (0-255), got dtype {images.dtype}. "
            "Convert with `images.to(torch.uint8)` if they are 0-255 integers, or normalize float images yourself."
        )
    if images.ndim not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"Expected images of shape (3, H, W) or (B, 3, H, W), got {tuple(images.shape)}.")
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(3, 1, 1)
    return (images.to(torch.float32) / 255.0 - mean_t) / std_t


class ResNet(nn.Module):
    """A torchvision ResNet, as a classifier and as a pyramidal feature encoder, with torchvision's ``state_dict`` keys.

    Parameters
    ----------
    architecture
        ``"resnet18"``, ``"resnet34"`` or ``"resnet50"`` (torchvision's constructors, random initialization as theirs:
        Kaiming normal convolutions, unit batch-norm scales).
    num_classes
        Outputs of the ``fc`` classifier (1000 as in torchvision). ``None`` builds no ``avgpool``/``fc``: the encoder
        of a dense network has no use for them, and unused parameters would get no gradient (which DDP rejects).
    levels
        Number of pyramid levels kept, 1 to 5: F_1 stem (conv1-bn1-relu, stride 2), F_2 maxpool + layer1 (stride 4),
        F_3 layer2 (8), F_4 layer3 (16), F_5 layer4 (32). Fewer than 5 levels leave out the deepest layers; a
        classifier needs all 5.

    Notes
    -----
    ``forward`` returns classifier logits like torchvision; ``forward_pyramid`` returns the feature pyramid.
    """

    def __init__(self, architecture: str = "resnet18", num_classes: int | None = 1000, *, levels: int = 5) -> None:
        import torchvision

        super().__init__()
        if architecture not in RESNET_CHANNELS:
            raise ValueError(f"Unknown ResNet {architecture!r}; use one of {list(RESNET_CHANNELS)}.")
        if not 1 <= levels <= 5:
            raise ValueError(f"`levels` must be between 1 and 5, got {levels}.")
        if num_classes is not None and levels != 5:
            raise ValueError("A classifier (`num_classes` not None) needs all 5 levels; pass `num_classes=None`.")
        self.architecture = architecture
        self.levels = levels
        self.num_classes = num_classes
        full = torchvision.models.get_model(architecture, weights=None, num_classes=num_classes or 1000)
        keep = ["conv1", "bn1", "relu", "maxpool", *(f"layer{i}" for i in range(1, levels))]
        if num_classes is not None:
            keep += ["avgpool", "fc"]
        for name in keep:
            self.add_module(name, getattr(full, name))

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of F_1..F_levels."""
        return RESNET_CHANNELS[self.architecture][: self.levels]

    #: Key prefixes of the published layout's classifier or projection head, which an encoder ignores.
    head_prefixes = ("fc.",)

    @property
    def weights_module(self) -> nn.Module:
        """The module a published checkpoint loads into: the ResNet itself (torchvision keys)."""
        return self

    def reference_keys(self) -> frozenset[str]:
        """Every ``state_dict`` key of the published layout (torchvision's classifier, ``fc`` included)."""
        return _torchvision_keys(self.architecture)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps ``[F_1, ..., F_levels]`` of an input ``(B, 3, H, W)``; F_l has stride ``2**l``."""
        x = self.relu(self.bn1(self.conv1(x)))
        features = [x]
        for i in range(1, self.levels):
            if i == 1:
                x = self.maxpool(x)
            x = getattr(self, f"layer{i}")(x)
            features.append(x)
        return features

    @property
    def pooled_dim(self) -> int:
        """Length of :meth:`pooled`'s vectors."""
        return sum(self.channels[-3:])

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The representation a linear probe reads, ``(B, 896)`` for ResNet18.

        The global averages of the last three pyramid levels (layer2, layer3 and layer4), concatenated.
        """
        return torch.cat([f.mean(dim=(2, 3)) for f in self.forward_pyramid(x)[-3:]], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits ``(B, num_classes)``, as torchvision's model."""
        if self.num_classes is None:
            raise RuntimeError(
                f"This {self.architecture} has no classifier (`num_classes=None`); use `forward_pyramid`."
            )
        x = self.forward_pyramid(x)[-1]
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNet18(ResNet):
    """torchvision's ResNet18 as :class:`ResNet` (PixNet's encoder in the paper)."""

    def __init__(self, num_classes: int | None = 1000, *, levels: int = 5) -> None:
        super().__init__("resnet18", num_classes, levels=levels)


class ResNet50(ResNet):
    """torchvision's ResNet50 as :class:`ResNet` (bottleneck blocks; pyramid channels 64, 256, 512, 1024, 2048)."""

    def __init__(self, num_classes: int | None = 1000, *, levels: int = 5) -> None:
        super().__init__("resnet50", num_classes, levels=levels)


@functools.cache
def _torchvision_keys(architecture: str) -> frozenset[str]:
    return frozenset(ResNet(architecture, num_classes=1000).state_dict())
