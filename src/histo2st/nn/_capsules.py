"""Efficient-CapsNet (Mazzia et al., 2021) as THItoGene uses it: conv stack, primary capsules, attention routing."""

from __future__ import annotations

import math

import torch
from torch import nn


def squash(s: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """Efficient-CapsNet squash ``(1 - 1/e^{||s||}) * s/||s||`` over the last axis.

    Keeps the direction of every capsule vector and maps its length into ``[0, 1)``. ``eps`` keeps the zero vector
    (and its gradient) finite.
    """
    norm = torch.linalg.vector_norm(s, dim=-1, keepdim=True)
    return (1.0 - torch.exp(-norm)) * s / (norm + eps)


class PrimaryCapsules(nn.Module):
    """Primary capsules from a feature map by a depthwise convolution (Efficient-CapsNet Eq. 3-4).

    A depthwise convolution whose kernel covers the whole ``size x size`` map turns every channel into one number;
    the ``n_caps * caps_dim`` numbers are grouped into ``n_caps`` capsules of ``caps_dim`` and squashed.
    """

    def __init__(self, channels: int, size: int, *, n_caps: int, caps_dim: int):
        super().__init__()
        if n_caps * caps_dim != channels:
            raise ValueError(f"n_caps * caps_dim must equal the channels ({channels}), got {n_caps} * {caps_dim}.")
        self.n_caps = n_caps
        self.caps_dim = caps_dim
        self.depthwise = nn.Conv2d(channels, channels, size, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, channels, size, size)`` -> squashed capsules ``(B, n_caps, caps_dim)``."""
        return squash(self.depthwise(x).reshape(x.shape[0], self.n_caps, self.caps_dim))


class SelfAttentionRouting(nn.Module):
    """Efficient-CapsNet self-attention routing from ``n_in`` to ``n_out`` capsules (Eq. 5-7).

    Every input capsule ``u_i`` predicts every output capsule, ``u_ji = W_ji u_i``. The agreement of a prediction
    with the other predictions for the same output, ``sum_k <u_ji, u_jk> / sqrt(out_dim)``, is turned into coupling
    coefficients ``c_ji`` by a softmax over the outputs ``j``; the learned log priors ``b_ji`` are added and
    ``v_j = squash(sum_i u_ji (c_ji + b_ji))``.
    """

    def __init__(self, n_in: int, in_dim: int, n_out: int, out_dim: int):
        super().__init__()
        self.out_dim = out_dim
        # Deviation: Kaiming init over the whole 4-D tensor (the reference) makes fan_in = n_in * in_dim * out_dim
        # and the predictions ~10x shorter than their inputs; per-matrix Xavier keeps ||u_ji|| ~ ||u_i||.
        std = math.sqrt(2.0 / (in_dim + out_dim))
        self.weight = nn.Parameter(torch.randn(n_out, n_in, in_dim, out_dim) * std)
        self.log_prior = nn.Parameter(torch.zeros(n_out, n_in, 1))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``(B, n_in, in_dim)`` -> output capsules ``(B, n_out, out_dim)``."""
        pred = torch.einsum("bid,jide->bjie", u, self.weight)  # (B, n_out, n_in, out_dim)
        # sum_k <u_ji, u_jk> = <u_ji, sum_k u_jk>: one dot product per prediction instead of the n_in x n_in matrix.
        agreement = (pred * pred.sum(dim=2, keepdim=True)).sum(dim=-1, keepdim=True) / math.sqrt(self.out_dim)
        coupling = torch.softmax(agreement, dim=1)
        return squash((pred * (coupling + self.log_prior)).sum(dim=2))


class EfficientCapsNet(nn.Module):
    """The THItoGene capsule encoder: a patch feature map to ``n_caps`` capsules of ``caps_dim``.

    Four valid convolutions with batch norm and ReLU (``in -> 32`` k5, ``32 -> 64`` k3, ``64 -> 64`` k3,
    ``64 -> 128`` k3 stride 2), primary capsules (16 of dimension 8) by a depthwise convolution over the whole
    remaining map, and self-attention routing to ``n_caps`` capsules. With THItoGene's 112 px patches the ODConv
    output is 28 x 28 and the map before the primary capsules 9 x 9, as in the reference.

    Parameters
    ----------
    in_channels
        Channels of the input map (16 after THItoGene's ODConv).
    in_size
        Side of the (square) input map; fixes the depthwise kernel. At least 11.
    n_caps, caps_dim
        Number and dimension of the routed capsules (THItoGene: 20 and 64).
    n_primary, primary_dim
        Primary capsules (Efficient-CapsNet and the reference: 16 of dimension 8, from 128 channels).
    """

    def __init__(
        self,
        in_channels: int = 16,
        in_size: int = 28,
        *,
        n_caps: int = 20,
        caps_dim: int = 64,
        n_primary: int = 16,
        primary_dim: int = 8,
    ):
        super().__init__()
        widths = (32, 64, 64, n_primary * primary_dim)
        specs = ((5, 1), (3, 1), (3, 1), (3, 2))  # (kernel, stride) of the four convolutions
        layers: list[nn.Module] = []
        size, c_in = in_size, in_channels
        for c_out, (k, s) in zip(widths, specs, strict=True):
            conv = nn.Conv2d(c_in, c_out, k, stride=s)
            nn.init.kaiming_normal_(conv.weight)
            layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU()]
            size, c_in = (size - k) // s + 1, c_out
        if size < 1:
            raise ValueError(
                f"EfficientCapsNet needs an input map of at least 11 x 11, got {in_size}; use larger patches "
                "(THItoGene: 112 px, an ODConv map of 28)."
            )
        self.features = nn.Sequential(*layers)
        self.primary = PrimaryCapsules(c_in, size, n_caps=n_primary, caps_dim=primary_dim)
        self.routing = SelfAttentionRouting(n_primary, primary_dim, n_caps, caps_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, in_size, in_size)`` -> capsules ``(B, n_caps, caps_dim)``."""
        return self.routing(self.primary(self.features(x)))
