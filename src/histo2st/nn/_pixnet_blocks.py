"""Decoder blocks of PixNet (Zhang, Yang & Pan 2025): the convolutional feed-forward block and the U-Net-style stage.

The decoder turns the encoder pyramid F_1..F_L into a feature map at stride 2 (Eq. 3):
``D_0 = F_L`` and, for ``l = 1..L-1``, ``D_l = DFFN(Dconv(D_{l-1}) + delta_l * F_{L-l})``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class DFFN(nn.Module):
    """Convolutional two-layer feed-forward block with a residual connection: ``x + W2(GELU(W1(x)))``.

    ``W1`` is a 3 x 3 convolution ``channels -> hidden_dim`` and ``W2`` a 1 x 1 convolution back to ``channels``.

    Choices where the paper leaves the block open (its method section says "a convolution-based two-layer feedforward
    block", citing Fan et al., CVPR 2024, and its implementation section "hidden dimensions of 512 in our decoder"):
    the first layer is 3 x 3 because the stride-2 transposed convolutions
    before it mix no information across their 2 x 2 output blocks, so a purely 1 x 1 decoder would give blocky maps;
    the second is 1 x 1 to halve the cost, which dominates the whole network at fine levels. The residual connection
    keeps the block near identity at initialization, as in transformer feed-forward blocks, so the skip features
    reach the output from the first step. No normalization: training batches of a few crops make batch statistics
    noisy.

    Parameters
    ----------
    channels
        Input and output channels.
    hidden_dim
        Width of the hidden layer.
    """

    def __init__(self, channels: int, hidden_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden_dim, 3, padding=1)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(hidden_dim, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class DecoderStage(nn.Module):
    """One decoder stage: ``DFFN(Dconv(d) + delta * skip)``.

    ``Dconv`` is a transposed convolution with kernel 2 and stride 2 (exact 2x upsampling without the uneven
    overlaps of larger kernels); ``delta`` is a learnable scalar weighting the encoder skip feature, initialized to 1
    (a plain additive U-Net skip).

    Parameters
    ----------
    in_channels
        Channels of the coarser decoder map ``d``.
    skip_channels
        Channels of the encoder feature ``skip`` (also the output channels).
    hidden_dim
        Hidden width of the :class:`DFFN`.
    """

    def __init__(self, in_channels: int, skip_channels: int, hidden_dim: int) -> None:
        super().__init__()
        self.dconv = nn.ConvTranspose2d(in_channels, skip_channels, 2, stride=2)
        self.delta = nn.Parameter(torch.ones(()))
        self.dffn = DFFN(skip_channels, hidden_dim)

    def forward(self, d: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.dconv(d)
        if up.shape[-2:] != skip.shape[-2:]:
            raise ValueError(
                f"Decoder map {tuple(up.shape[-2:])} and skip feature {tuple(skip.shape[-2:])} differ in size; "
                "the input height and width must be multiples of the encoder's total stride."
            )
        return self.dffn(up + self.delta * skip)


class PixNetDecoder(nn.Module):
    """The L-1 decoder stages of PixNet, from ``D_0 = F_L`` up to ``D_{L-1}`` at the resolution of F_1.

    Parameters
    ----------
    channels
        Channels of the encoder levels F_1..F_L (at least 2 levels).
    hidden_dim
        Hidden width of every :class:`DFFN`.
    """

    def __init__(self, channels: Sequence[int], hidden_dim: int = 512) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"The decoder needs at least 2 pyramid levels, got {len(channels)}.")
        # stage l (1-based) upsamples D_{l-1} (channels of F_{L-l+1}) and adds F_{L-l}
        self.stages = nn.ModuleList(
            DecoderStage(channels[i], channels[i - 1], hidden_dim) for i in range(len(channels) - 1, 0, -1)
        )
        self.out_channels = channels[0]

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decode ``[F_1, ..., F_L]`` into ``D_{L-1}`` of shape ``(B, channels[0], H_1, W_1)``."""
        if len(features) != len(self.stages) + 1:
            raise ValueError(f"Expected {len(self.stages) + 1} feature maps, got {len(features)}.")
        d = features[-1]
        for stage, skip in zip(self.stages, reversed(features[:-1]), strict=True):
            d = stage(d, skip)
        return d
