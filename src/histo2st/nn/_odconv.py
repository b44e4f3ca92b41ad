"""Omni-dimensional dynamic convolution (ODConv; Li et al., ICLR 2022), the first layer of THItoGene."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class ODConvAttentions(NamedTuple):
    """The four per-sample attentions of one :class:`ODConv2d` call (shapes broadcast against the kernels)."""

    channel: torch.Tensor  #: input channels, ``(B, C_in, 1, 1)``, sigmoid
    filter: torch.Tensor  #: output channels, ``(B, C_out, 1, 1)``, sigmoid
    spatial: torch.Tensor  #: kernel positions, ``(B, 1, 1, 1, k, k)``, sigmoid
    kernel: torch.Tensor  #: candidate kernels, ``(B, n, 1, 1, 1, 1)``, softmax over ``n``


class ODConvAttention(nn.Module):
    """Computes the four ODConv attentions from one input (ODConv Eq. 2).

    Global average pooling squeezes the input to ``C_in`` numbers per sample; a reduction FC layer (no bias)
    with batch norm and ReLU maps them to ``hidden`` features; one linear head per attention follows.

    Parameters
    ----------
    in_channels, out_channels, kernel_size
        Shape of the convolution the attentions modulate.
    kernel_num
        Number of candidate kernels ``n``.
    reduction
        Hidden width as a fraction of ``in_channels`` ...
    min_hidden
        ... but at least this many features (ODConv's defaults, 1/16 and 16).
    temperature
        Every attention's logits are divided by it, as in ODConv's code (it anneals it for some ImageNet runs;
        THItoGene keeps 1).

    Notes
    -----
    The batch norm after the reduction layer normalizes over the samples of a batch, so training needs at least
    two samples per batch (two spots per window), as in the reference.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        kernel_num: int = 4,
        reduction: float = 0.0625,
        min_hidden: int = 16,
        temperature: float = 1.0,
    ):
        super().__init__()
        hidden = max(int(in_channels * reduction), min_hidden)
        self.kernel_size = kernel_size
        self.temperature = temperature
        self.fc = nn.Linear(in_channels, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.channel_head = nn.Linear(hidden, in_channels)
        self.filter_head = nn.Linear(hidden, out_channels)
        self.spatial_head = nn.Linear(hidden, kernel_size * kernel_size)
        self.kernel_head = nn.Linear(hidden, kernel_num)
        for module in (self.fc, self.channel_head, self.filter_head, self.spatial_head, self.kernel_head):
            # ODConv initializes its 1x1 convolutions with Kaiming (fan_out) weights and zero biases, so every
            # attention starts near sigmoid(0) = 0.5 and the kernel mixture near uniform.
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> ODConvAttentions:
        """Attentions for ``x`` of shape ``(B, C_in, H, W)``."""
        b = x.shape[0]
        h = F.relu(self.bn(self.fc(x.mean(dim=(2, 3)))))
        t = self.temperature
        k = self.kernel_size
        return ODConvAttentions(
            channel=torch.sigmoid(self.channel_head(h) / t).view(b, -1, 1, 1),
            filter=torch.sigmoid(self.filter_head(h) / t).view(b, -1, 1, 1),
            spatial=torch.sigmoid(self.spatial_head(h) / t).view(b, 1, 1, 1, k, k),
            kernel=torch.softmax(self.kernel_head(h) / t, dim=1).view(b, -1, 1, 1, 1, 1),
        )


class ODConv2d(nn.Module):
    """2-D convolution whose kernel is rebuilt for every input sample (ODConv Eq. 1).

    ``W(x) = sum_i a_wi(x) * a_fi(x) * a_ci(x) * a_si(x) * W_i`` over ``n`` candidate kernels ``W_i``, with a kernel
    attention ``a_w`` (softmax over the candidates), an output-channel (filter) attention ``a_f``, an input-channel
    attention ``a_c`` and a spatial attention ``a_s`` over the ``k x k`` kernel positions, all computed from the
    input by :class:`ODConvAttention`. THItoGene uses ``ODConv2d(3, 16, 4, stride=4)`` followed by a ReLU.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation
        As in :class:`torch.nn.Conv2d` (square kernels, ``groups=1``; THItoGene needs nothing else).
    kernel_num
        Number of candidate kernels ``n`` (ODConv's default 4).
    reduction, min_hidden, temperature
        Passed to :class:`ODConvAttention`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        kernel_num: int = 4,
        reduction: float = 0.0625,
        min_hidden: int = 16,
        temperature: float = 1.0,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.attention = ODConvAttention(
            in_channels,
            out_channels,
            kernel_size,
            kernel_num=kernel_num,
            reduction=reduction,
            min_hidden=min_hidden,
            temperature=temperature,
        )
        self.weight = nn.Parameter(torch.empty(kernel_num, out_channels, in_channels, kernel_size, kernel_size))
        for i in range(kernel_num):
            nn.init.kaiming_normal_(self.weight[i], mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` of shape ``(B, C_in, H, W)`` with its own kernel per sample."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ODConv2d expects input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}; "
                "reshape the batch or change in_channels."
            )
        att = self.attention(x)
        b, _, h, w = x.shape
        # Scaling the input channels (and, below, the output) is the same as scaling the kernel along those axes
        # and is cheaper, as ODConv's code notes; only the kernel and spatial attentions shape the weights.
        x = (x * att.channel).reshape(1, b * self.in_channels, h, w)
        weight = (att.kernel * att.spatial * self.weight.unsqueeze(0)).sum(dim=1)
        weight = weight.reshape(b * self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        # One grouped convolution with a group per sample applies B different kernels in one call.
        out = F.conv2d(x, weight, stride=self.stride, padding=self.padding, dilation=self.dilation, groups=b)
        return out.view(b, self.out_channels, out.shape[-2], out.shape[-1]) * att.filter

    def extra_repr(self) -> str:
        n = self.weight.shape[0]
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, kernel_num={n}"
        )
