"""ResNet18 written for histo2st, with torchvision's ``state_dict`` layout, and the loading of pretrained weights.

torchvision cannot be installed beside the pinned torch, so the network is our own; its parameter and buffer names
and shapes are exactly those of ``torchvision.models.resnet18`` (``conv1``, ``bn1``, ``layer1..layer4`` with two
``BasicBlock`` s each, ``downsample.0``/``downsample.1`` in the first block of layers 2-4, ``fc``), so an ImageNet
checkpoint or the histopathology ResNet18 of Ciga et al. (2022) loads without renaming.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger("histo2st")

#: ImageNet channel means of RGB in [0, 1], the statistics torchvision's ResNet18 weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: ImageNet channel standard deviations of RGB in [0, 1].
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Channels of the pyramid levels F_1..F_5: stem (stride 2), layer1 (stride 4), layer2 (8), layer3 (16), layer4 (32).
PYRAMID_CHANNELS = (64, 64, 128, 256, 512)

# Wrappers of a state dict in common checkpoint formats (Lightning, training scripts), tried in this order.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# Key prefixes added by DataParallel/DDP ("module."), Lightning modules ("model."), SimCLR-style code ("backbone.",
# "encoder.") and Ciga et al.'s release ("model.resnet."); stripped repeatedly from the front of every key.
_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "resnet.")


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


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: two 3 x 3 convolutions with batch norm and an identity (or 1 x 1) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _layer(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_channels, out_channels, stride), BasicBlock(out_channels, out_channels))


class ResNet18(nn.Module):
    """ResNet18 with torchvision-compatible ``state_dict`` keys, as a classifier and as a pyramidal feature encoder.

    Parameters
    ----------
    num_classes
        Outputs of the ``fc`` classifier (1000 as in torchvision). ``None`` builds no ``avgpool``/``fc``: the encoder
        of a dense network has no use for them, and unused parameters would get no gradient (which DDP rejects).
    levels
        Number of pyramid levels built, 1 to 5: F_1 stem (conv1-bn1-relu, stride 2, 64 channels), F_2 maxpool +
        layer1 (stride 4, 64), F_3 layer2 (stride 8, 128), F_4 layer3 (stride 16, 256), F_5 layer4 (stride 32, 512).
        Fewer than 5 levels leave out the deepest layers; a classifier needs all 5.

    Notes
    -----
    ``forward`` returns classifier logits like torchvision; ``forward_pyramid`` returns the feature pyramid.
    Weights are initialized as in torchvision (Kaiming normal convolutions, unit batch-norm scales).
    """

    def __init__(self, num_classes: int | None = 1000, *, levels: int = 5) -> None:
        super().__init__()
        if not 1 <= levels <= 5:
            raise ValueError(f"`levels` must be between 1 and 5, got {levels}.")
        if num_classes is not None and levels != 5:
            raise ValueError("A classifier (`num_classes` not None) needs all 5 levels; pass `num_classes=None`.")
        self.levels = levels
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        for i in range(1, levels):
            in_ch, out_ch = PYRAMID_CHANNELS[i - 1], PYRAMID_CHANNELS[i]
            self.add_module(f"layer{i}", _layer(in_ch, out_ch, stride=1 if i == 1 else 2))
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, num_classes)
        self._init_weights()

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of F_1..F_levels."""
        return PYRAMID_CHANNELS[: self.levels]

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits ``(B, num_classes)``, as torchvision's ``resnet18``."""
        if self.num_classes is None:
            raise RuntimeError("This ResNet18 has no classifier (`num_classes=None`); use `forward_pyramid`.")
        x = self.forward_pyramid(x)[-1]
        return self.fc(torch.flatten(self.avgpool(x), 1))


@dataclass
class EncoderLoadReport:
    """What :func:`load_encoder_weights` did.

    Attributes
    ----------
    source
        The file path, or ``"<state dict>"``.
    loaded
        Keys of the encoder that received a tensor from the checkpoint.
    missing
        Encoder keys the checkpoint did not provide (they keep their initial values).
    unexpected
        Checkpoint keys (after prefix stripping) that are not ResNet18 keys at all.
    ignored
        ResNet18 keys of the checkpoint the encoder does not have: the ``fc`` head (a classifier or a projection
        head) when it does not match, and layers a shallower encoder left out.
    mismatched
        ``key: checkpoint shape -> encoder shape`` for keys whose shapes differ.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph naming every problem."""
        lines = [f"{len(self.loaded)} encoder tensors match in {self.source}."]
        for name in ("missing", "unexpected", "mismatched", "ignored"):
            keys = getattr(self, name)
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                lines.append(f"{name}: {shown}")
        return "\n".join(lines)


def _read_checkpoint(path_or_state_dict, weights_only: bool) -> tuple[Mapping, str]:
    if isinstance(path_or_state_dict, Mapping):
        return path_or_state_dict, "<state dict>"
    path = Path(path_or_state_dict)
    if not path.is_file():
        raise FileNotFoundError(f"Encoder checkpoint not found: '{path}'. Check the path.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # torch raises UnpicklingError or RuntimeError depending on the content
        if not weights_only:
            raise
        raise ValueError(
            f"'{path}' holds Python objects besides tensors (for example a Lightning checkpoint's hyper-parameters), "
            "which safe loading refuses. If you trust the file, pass `weights_only=False`; or re-save only its "
            f"state dict with torch.save. Original error: {err}"
        ) from err
    if not isinstance(obj, Mapping):
        raise TypeError(f"'{path}' holds a {type(obj).__name__}, not a state dict; save `model.state_dict()` instead.")
    return obj, str(path)


def _unwrap(state: Mapping) -> Mapping:
    while True:
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            return state
        state = inner


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


@functools.cache
def _resnet18_keys() -> frozenset[str]:
    return frozenset(ResNet18(num_classes=1000).state_dict())


def load_encoder_weights(
    module: nn.Module, path_or_state_dict, *, strict: bool = True, weights_only: bool = True
) -> EncoderLoadReport:
    """Load a torchvision-format ResNet18 checkpoint into a :class:`ResNet18` (or a module's ``.encoder``).

    Accepted: a state dict or a file saved with ``torch.save``; wrapped in ``{"state_dict": ...}``,
    ``{"model_state_dict": ...}`` or ``{"model": ...}``; keys prefixed by ``module.``, ``model.``, ``backbone.``,
    ``encoder.`` or ``resnet.`` (Ciga et al.'s Lightning checkpoint stores ``state_dict`` with keys
    ``model.resnet.conv1.weight``, ...). The ``fc`` head is loaded only when the encoder has one of the same shape
    and is otherwise ignored; BatchNorm ``num_batches_tracked`` counters are optional.

    Parameters
    ----------
    module
        A :class:`ResNet18`, or a module whose ``encoder`` attribute is one (such as ``PixNetModule``).
    path_or_state_dict
        Checkpoint file or mapping of tensors.
    strict
        Raise when an encoder tensor is missing, a key is not a ResNet18 key, or a shape differs. With
        ``strict=False`` the matching tensors are loaded and the problems are logged as a warning.
    weights_only
        Forwarded to ``torch.load``; set ``False`` only for trusted files holding other Python objects.

    Returns
    -------
    An :class:`EncoderLoadReport` listing loaded, missing, unexpected, ignored and mismatched keys.
    """
    encoder = module if isinstance(module, ResNet18) else getattr(module, "encoder", None)
    if not isinstance(encoder, ResNet18):
        raise TypeError(f"Expected a ResNet18 or a module with a ResNet18 `encoder`, got {type(module).__name__}.")
    raw, source = _read_checkpoint(path_or_state_dict, weights_only)
    state = {_strip_prefixes(k): v for k, v in _unwrap(raw).items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"No tensors found in the checkpoint {source}; is it a model state dict?")

    own = encoder.state_dict()
    resnet_keys = _resnet18_keys()
    report = EncoderLoadReport(source=source)
    to_load = {}
    for key, value in state.items():
        if key in own:
            if tuple(value.shape) == tuple(own[key].shape):
                to_load[key] = value
            elif key.startswith("fc."):
                report.ignored.append(key)
            else:
                report.mismatched.append(f"{key}: {tuple(value.shape)} -> {tuple(own[key].shape)}")
        elif key in resnet_keys or key.startswith("fc."):
            report.ignored.append(key)
        else:
            report.unexpected.append(key)
    # the head may be absent (feature-extractor checkpoints) and BatchNorm counters are not used by the forward pass
    mismatched = {m.split(":")[0] for m in report.mismatched}
    report.missing = [
        k
        for k in own
        if k not in to_load and k not in mismatched and not (k.endswith("num_batches_tracked") or k.startswith("fc."))
    ]
    report.loaded = sorted(to_load)

    problems = report.missing or report.unexpected or report.mismatched
    if problems and strict:
        raise ValueError(
            "The checkpoint does not match the ResNet18 encoder.\n"
            + report.summary()
            + "\nCheck that it is a ResNet18 checkpoint in torchvision format, or pass `strict=False` to load the "
            "matching tensors only."
        )
    if problems:
        logger.warning(report.summary())
    encoder.load_state_dict(to_load, strict=False)
    logger.info(f"loaded {len(report.loaded)} ResNet18 tensors from {source}")
    return report
