"""BYOL (Grill et al., NeurIPS 2020) around our ResNet18: online and target networks, projection and prediction."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from histo2st.nn import PYRAMID_CHANNELS, ResNet18


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """BYOL's projection and prediction head: ``Linear, BatchNorm, ReLU, Linear``."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
    )


class BYOLModule(nn.Module):
    """Bootstrap Your Own Latent: the online network learns to predict the target network's view of another crop.

    ``forward(view_a, view_b)`` returns the symmetric BYOL loss: for both orders, ``2 - 2 cos(q, z')`` between the
    online prediction ``q`` of one view and the target projection ``z'`` of the other, averaged (0 when they agree,
    at most 4). The target network (encoder and projector) gets no gradient; :meth:`update_target` moves it towards
    the online network after each optimizer step. The representation is the global average of the encoder's last
    feature map (512 channels); after pretraining only :attr:`encoder` is kept.

    Parameters
    ----------
    hidden_dim
        Hidden width of the projector and predictor (BYOL: 4096).
    projection_dim
        Output width of the projector and predictor (BYOL: 256).
    """

    def __init__(self, *, hidden_dim: int = 4096, projection_dim: int = 256) -> None:
        super().__init__()
        self.encoder = ResNet18(num_classes=None)
        self.projector = mlp(PYRAMID_CHANNELS[-1], hidden_dim, projection_dim)
        self.predictor = mlp(projection_dim, hidden_dim, projection_dim)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        """Online representation ``(B, 512)`` of normalized images ``(B, 3, H, W)``."""
        return _pool(self.encoder, images)

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        """Symmetric BYOL loss of two batches of views of the same images, ``(B, 3, H, W)`` each."""
        views = torch.cat([view_a, view_b])  # one pass through each network for both views
        online = self.predictor(self.projector(_pool(self.encoder, views)))
        with torch.no_grad():
            target = self.target_projector(_pool(self.target_encoder, views))
        q_a, q_b = online.chunk(2)
        z_a, z_b = target.chunk(2)
        return (_byol_distance(q_a, z_b) + _byol_distance(q_b, z_a)).mean() / 2

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """``target = momentum * target + (1 - momentum) * online``; batch norm statistics are copied."""
        pairs = ((self.encoder, self.target_encoder), (self.projector, self.target_projector))
        for online, target in pairs:
            for p_online, p_target in zip(online.parameters(), target.parameters(), strict=True):
                p_target.lerp_(p_online, 1 - momentum)
            for b_online, b_target in zip(online.buffers(), target.buffers(), strict=True):
                b_target.copy_(b_online)


def _pool(encoder: ResNet18, images: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(encoder.forward_pyramid(images)[-1], 1).flatten(1)


def _byol_distance(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # in float32 under bfloat16 autocast: the loss is a small difference of numbers near 2
    return 2 - 2 * F.cosine_similarity(prediction.float(), target.detach().float(), dim=-1)
