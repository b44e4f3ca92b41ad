"""Vision Transformers from timm as pyramidal encoders: one stride-16 map through ViTDet's simple feature pyramid.

Pathology foundation models (UNI, UNI2-h, H-optimus, Virchow2, Prov-GigaPath) are published as timm
``VisionTransformer`` weights; the network here is timm's own, so their ``state_dict`` loads as published, and every
variant timm builds (patch 14 or 16, class and register tokens, LayerScale, SwiGLU MLPs, any width and depth) works.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._resnet import PYRAMID_CHANNELS

#: Stride of the map the pyramid is built from (ViTDet's choice; a patch-14 ViT's tokens are resampled to it).
BASE_STRIDE = 16
#: JSON names of the MLP layers of published ViTs, for ``model_args["mlp_layer"]`` (timm takes the object there), and
#: the timm names they stand for (``"timm.layers.SwiGLUPacked"`` is accepted too).
MLP_LAYERS = {"mlp": "Mlp", "swiglu": "SwiGLU", "swiglu_packed": "SwiGLUPacked", "glu": "GluMlp"}


def _mlp_layers() -> dict:
    import timm.layers

    # by name, not by class: timm's SwiGLUPacked is a functools.partial of GluMlp, not a class of its own
    return {name: getattr(timm.layers, timm_name) for name, timm_name in MLP_LAYERS.items()}


def timm_model_args(model_args: dict | None) -> dict:
    """``model_args`` as timm's constructor takes them.

    An ``mlp_layer`` name (:data:`MLP_LAYERS`) becomes timm's layer; everything else passes through (timm resolves
    ``act_layer`` and ``norm_layer`` names such as ``"silu"``).
    """
    args = dict(model_args or {})
    layer = args.get("mlp_layer")
    if isinstance(layer, str):
        timm_names = {timm_name: name for name, timm_name in MLP_LAYERS.items()}
        name = timm_names.get(layer.rsplit(".", 1)[-1], layer)
        if name not in MLP_LAYERS:
            raise ValueError(f"Unknown `mlp_layer={layer!r}`; use one of {list(MLP_LAYERS)}.")
        args["mlp_layer"] = _mlp_layers()[name]
    return args


def jsonable_model_args(model_args: dict | None) -> dict:
    """``model_args`` with layers given by name, as a model card stores them (the inverse of :func:`timm_model_args`).

    timm's MLP layer by its :data:`MLP_LAYERS` name, an activation or norm class by its lower-case name
    (``torch.nn.SiLU`` -> ``"silu"``, which timm resolves).
    """
    args = dict(model_args or {})
    layer = args.get("mlp_layer")
    if layer is not None and not isinstance(layer, str):
        name = next((n for n, obj in _mlp_layers().items() if obj is layer), None)
        if name is None:
            raise ValueError(f"Unsupported `mlp_layer={layer!r}`; use one of {list(MLP_LAYERS)} (by name).")
        args["mlp_layer"] = name
    for key in ("act_layer", "norm_layer"):
        if isinstance(args.get(key), type):
            args[key] = args[key].__name__.lower()
    return args


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid (Li et al., ECCV 2022): one stride-16 map to maps at strides 2 to 32.

    Level ``l`` (stride ``2**l``) of ``l = 1..len(out_channels)``: strides below 16 come from stride-2 transposed
    convolutions (each halving the width, down to the level's channels, with LayerNorm and GELU between), stride 16 is
    the map itself, stride 32 a 2 x 2 max pooling; then a 1 x 1 and a 3 x 3 convolution, each followed by a channel
    LayerNorm, as in ViTDet. ViTDet stops at stride 4; PixNet's decoder also takes stride 2, made the same way.
    """

    def __init__(self, in_channels: int, out_channels: tuple[int, ...] = PYRAMID_CHANNELS) -> None:
        super().__init__()
        if not 1 <= len(out_channels) <= 5:
            raise ValueError(f"A simple feature pyramid has 1 to 5 levels (strides 2-32), got {len(out_channels)}.")
        self.stages = nn.ModuleList(_stage(in_channels, c, level) for level, c in enumerate(out_channels, start=1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [stage(x) for stage in self.stages]


def _stage(width: int, channels: int, level: int) -> nn.Sequential:
    from timm.layers import LayerNorm2d

    layers: list[nn.Module] = [nn.MaxPool2d(2)] if level == 5 else []
    for _ in range(4 - level):
        narrower = max(channels, width // 2)
        layers += [nn.ConvTranspose2d(width, narrower, 2, stride=2), LayerNorm2d(narrower), nn.GELU()]
        width = narrower
    layers += [
        nn.Conv2d(width, channels, 1, bias=False),
        LayerNorm2d(channels),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        LayerNorm2d(channels),
    ]
    return nn.Sequential(*layers)


class ViTEncoder(nn.Module):
    """A timm ``VisionTransformer`` (``trunk``) and a :class:`SimpleFeaturePyramid` giving PixNet's five levels.

    Parameters
    ----------
    architecture
        A timm model name whose class is ``VisionTransformer`` (e.g. ``"vit_large_patch16_224"`` for UNI,
        ``"vit_giant_patch14_reg4_dinov2"`` for H-optimus-0, ``"vit_small_patch16_224"``).
    model_args
        Keyword arguments of timm's constructor that change the architecture (``depth``, ``embed_dim``,
        ``num_heads``, ``mlp_ratio``, ``init_values`` for LayerScale, ``reg_tokens``, ``no_embed_class``,
        ``mlp_layer`` by name, ``act_layer``, ...), as a hub ``config.json`` lists them.
    levels
        Pyramid levels, 1 to 5 (strides 2 to ``2**levels``), with the channels of ResNet18's pyramid so PixNet's
        decoder is the same for every encoder.

    Notes
    -----
    The trunk is built without a classifier (``num_classes=0``) and with ``dynamic_img_size`` and
    ``dynamic_img_pad``, so any input size works: position embeddings are interpolated to the token grid and the
    input is padded to a multiple of the patch. The final-norm tokens of the last block, class and register tokens
    dropped, are resampled bilinearly to the stride-16 grid (``ceil(H / 16)`` x ``ceil(W / 16)``; a patch-16 ViT
    needs no resampling) and fed to the pyramid.
    """

    def __init__(self, architecture: str, model_args: dict | None = None, *, levels: int = 5) -> None:
        import timm
        from timm.models import VisionTransformer

        super().__init__()
        args = timm_model_args(model_args)
        for fixed in ("num_classes", "dynamic_img_size", "dynamic_img_pad", "pretrained"):
            args.pop(fixed, None)
        try:
            trunk = timm.create_model(
                architecture, pretrained=False, num_classes=0, dynamic_img_size=True, dynamic_img_pad=True, **args
            )
        except (RuntimeError, TypeError) as err:  # an unknown name; a model that takes no ViT arguments
            raise ValueError(
                f"timm cannot build {architecture!r} as a Vision Transformer ({err}); histo2st's ViT encoder takes "
                "timm ViT architectures (names starting with 'vit_') and their arguments."
            ) from None
        if not isinstance(trunk, VisionTransformer):
            raise ValueError(
                f"{architecture!r} is a timm {type(trunk).__name__}, not a VisionTransformer; histo2st's ViT encoder "
                "takes timm ViT architectures (names starting with 'vit_')."
            )
        self.architecture = architecture
        self.model_args = dict(model_args or {})
        self.levels = levels
        self.trunk = trunk
        self.pyramid = SimpleFeaturePyramid(trunk.embed_dim, PYRAMID_CHANNELS[:levels])

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of F_1..F_levels."""
        return PYRAMID_CHANNELS[: self.levels]

    #: Key prefixes of the published layout's classifier or projection head, which an encoder ignores.
    head_prefixes = ("head.",)

    @property
    def weights_module(self) -> nn.Module:
        """The module a published checkpoint loads into: timm's ``VisionTransformer`` (its keys as published)."""
        return self.trunk

    def reference_keys(self) -> frozenset[str]:
        """Every ``state_dict`` key of the trunk (a published checkpoint's head, if any, is ignored)."""
        return frozenset(self.trunk.state_dict())

    @property
    def input_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The RGB mean and standard deviation timm's configuration of the architecture gives."""
        cfg = self.trunk.pretrained_cfg
        return tuple(cfg["mean"]), tuple(cfg["std"])

    @property
    def pooled_dim(self) -> int:
        """Length of :meth:`pooled`'s vectors."""
        return 2 * self.trunk.embed_dim

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The representation a linear probe reads, ``(B, 2 * embed_dim)``.

        The class token and the mean of the patch tokens of the last block (final norm applied), concatenated, as
        Virchow's paper probes them (UNI's probes the class token alone).
        """
        tokens = self.trunk.forward_features(x)
        prefix = self.trunk.num_prefix_tokens
        return torch.cat([tokens[:, 0], tokens[:, prefix:].mean(1)], 1)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output as a map ``(B, embed_dim, ceil(H / 16), ceil(W / 16))`` of an input ``(B, 3, H, W)``.

        What a frozen encoder's feature cache holds (see :class:`~histo2st.train.PixNetPlan`'s ``cache_features``).
        """
        (tokens,) = self.trunk.forward_intermediates(
            x, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True
        )
        grid = tuple(math.ceil(n / BASE_STRIDE) for n in x.shape[-2:])
        if tuple(tokens.shape[-2:]) != grid:
            tokens = F.interpolate(tokens, size=grid, mode="bilinear", align_corners=False)
        return tokens

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps ``[F_1, ..., F_levels]`` of an input ``(B, 3, H, W)``; F_l has stride ``2**l``."""
        return self.pyramid(self.tokens(x))
