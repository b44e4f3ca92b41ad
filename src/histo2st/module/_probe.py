"""A frozen encoder and a linear map: the HEST-benchmark baseline as one network (image patch in, genes out)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from histo2st.nn import build_encoder, encoder_input_stats, load_encoder_weights, normalize_images


class LinearProbeModule(nn.Module):
    """A frozen pyramidal encoder's pooled representation of a patch, then one affine map to the genes.

    ``images (B, 3, H, W)`` -> ``(B, n_genes)``. The affine map (``head``) is what scikit-learn's standardization,
    PCA and ridge regression fold into (see :class:`~histo2st.model.RidgeProbe`): all three are linear, so their
    composition is one matrix and one bias, kept here so the probe saves, loads and predicts like any network.

    Parameters
    ----------
    n_genes
        Number of genes (outputs).
    encoder, encoder_args, encoder_weights, input_mean, input_std
        As :class:`~histo2st.module.PixNetModule`'s; the encoder is always frozen and in evaluation mode.
    """

    def __init__(
        self,
        n_genes: int,
        *,
        encoder: str = "resnet18",
        encoder_args: dict | None = None,
        encoder_weights: str | Path | dict | None = None,
        input_mean: tuple[float, float, float] | None = None,
        input_std: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(encoder, model_args=encoder_args).requires_grad_(False)
        if encoder_weights is not None:
            load_encoder_weights(self, encoder_weights, strict=True)
        mean, std = encoder_input_stats(self.encoder)
        self.input_mean = tuple(float(v) for v in (mean if input_mean is None else input_mean))
        self.input_std = tuple(float(v) for v in (std if input_std is None else input_std))
        self.head = nn.Linear(self.encoder.pooled_dim, n_genes).requires_grad_(False)
        self.encoder_frozen = True

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``(B, 3, H, W)`` as the encoder's input (see :class:`~histo2st.module.PixNetModule`)."""
        return normalize_images(images, mean=self.input_mean, std=self.input_std)

    def train(self, mode: bool = True) -> LinearProbeModule:
        """The encoder stays in evaluation mode: its batch norm statistics are those of its weights."""
        super().train(mode)
        self.encoder.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's pooled representation ``(B, pooled_dim)`` of normalized float images."""
        return self.encoder.pooled(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted expression ``(B, n_genes)`` of normalized float images ``(B, 3, H, W)``."""
        return self.head(self.features(images))
