"""PixNet network (Zhang, Yang & Pan 2025): H&E image in, dense gene expression map out."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from histo2st.nn import PixNetDecoder, build_encoder, encoder_input_stats, load_encoder_weights, normalize_images

_ACTIVATIONS = {None: nn.Identity, "softplus": nn.Softplus}


class PixNetModule(nn.Module):
    """PixNet's dense prediction network: a pyramidal encoder (ResNet18 in the paper) and a U-Net-style decoder.

    ``images (B, 3, H, W)`` -> dense map ``G (B, n_genes, H, W)``. Spot values are obtained by aggregating ``G`` over
    each spot (Eq. 5), outside this module; the loss (Eq. 6) is :func:`histo2st.nn.pixnet_loss`.

    Architecture
        Encoder (Eq. 1-2): torchvision's ResNet18 (:class:`~histo2st.nn.ResNet`) giving F_1..F_L,
        ``L = pyramid_levels``; F_1 is the stem (stride 2, 64 channels), F_2..F_5 are layer1..layer4 (strides 4-32;
        64, 128, 256, 512 channels). Other encoders (``encoder``) give the same strides: a ResNet50 its own channels,
        a timm Vision Transformer ResNet18's channels through a simple feature pyramid
        (:class:`~histo2st.nn.ViTEncoder`).
        Decoder (Eq. 3): ``D_0 = F_L``; ``D_l = DFFN(Dconv(D_{l-1}) + delta_l * F_{L-l})`` for ``l = 1..L-1``, with
        ``Dconv`` a stride-2 transposed convolution to the channels of F_{L-l}, ``delta_l`` a learnable scalar and
        ``DFFN`` a convolutional two-layer feed-forward block of width ``hidden_dim`` (see
        :class:`~histo2st.nn.DFFN`). Head (Eq. 4): a 1 x 1 convolution from ``D_{L-1}`` (stride 2) to ``n_genes``
        channels, resized bilinearly to ``(H, W)``, then the optional ``output_activation``.

    Choices and deviations, with reasons
        - The paper's method section (Eq. 1-6) fixes the structure above; it calls DFFN "a convolution-based
          two-layer feedforward block" and leaves its kernels, the deconvolution's kernel and the start of
          ``delta`` open. The details below fill those gaps.
        - ``L = 5`` by default: every ResNet18 stage, from the stem at half resolution to layer4, as a U-Net on
          ResNet18 does; the map therefore comes from features at half the input resolution. Smaller ``L`` drops the
          deepest layers (cheaper, smaller receptive field).
        - DFFN: ``x + Conv1x1(GELU(Conv3x3(x)))``, see :class:`~histo2st.nn.DFFN` for why.
        - ``Dconv`` has kernel 2 (non-overlapping, no checkerboard artifacts); ``delta_l`` starts at 1.
        - Any ``H, W``: the input is padded at the bottom and right by edge replication to a multiple of
          :attr:`input_multiple` (``2**L``; 32 at the default) and the map is cropped back, so tiles whose sides are
          multiples of it cost nothing extra.
        - The paper's later versions swap the ResNet18 for UNI2 (a ViT) and add a fusion block; the ViT encoders here
          feed the same decoder through ViTDet's simple feature pyramid instead (a ViT has a single stride-14/16 map;
          the pyramid is the standard way to give it the strides a U-Net decoder needs), without the fusion block.
        - Two-scale input (``context_margin > 0``, not in the paper): a second, small encoder (ResNet18's stem, layer1
          and layer2, stride 8) sees the same place at :attr:`context_factor` times coarser resolution with
          ``context_margin`` extra pixels on each side, so the deepest features of a crop also know the tissue
          around it. Its stride-8 cells are the size of the main encoder's deepest cells (stride 32 when
          ``context_factor`` is 4); the cells over the crop are added to ``F_L`` through a 1 x 1 convolution that
          starts at zero, so training begins from plain PixNet.

    Parameters
    ----------
    n_genes
        Number of genes M (output channels).
    hidden_dim
        Hidden width of the decoder's DFFN blocks (512 in the paper).
    pyramid_levels
        Number of encoder levels L, 2 to 5.
    encoder
        ``"resnet18"`` (the paper's), ``"resnet34"``, ``"resnet50"`` (torchvision) or a timm Vision Transformer
        name (see :func:`~histo2st.nn.build_encoder`).
    encoder_args
        Architecture arguments of a timm ViT (depth, width, register tokens, LayerScale, MLP layer, ...).
    encoder_weights
        ``None`` (random initialization), or a checkpoint of the encoder in its published layout (path to a
        ``torch.save`` or ``.safetensors`` file, or a state dict), loaded strictly with
        :func:`~histo2st.nn.load_encoder_weights`; ImageNet weights, Ciga et al.'s histopathology ResNet18 and timm
        ViT weights all work.
    input_mean, input_std
        RGB statistics :meth:`normalize` uses; default what the encoder's weights expect
        (:func:`~histo2st.nn.encoder_input_stats`).
    output_activation
        ``None`` (linear output) or ``"softplus"`` (non-negative output, for non-negative targets such as log1p
        expression).
    freeze_encoder
        Keep the encoder fixed: no gradients, and its batch norm statistics are not updated in training mode.
    context_margin
        Pixels of the coarse context image (``context_factor`` times coarser than the input) on each side of the
        input, a multiple of 8; ``0``: no context branch (the paper). See the two-scale input above.
    """

    def __init__(
        self,
        n_genes: int,
        *,
        hidden_dim: int = 512,
        pyramid_levels: int = 5,
        encoder: str = "resnet18",
        encoder_args: dict | None = None,
        encoder_weights: str | Path | dict | None = None,
        input_mean: tuple[float, float, float] | None = None,
        input_std: tuple[float, float, float] | None = None,
        output_activation: str | None = None,
        freeze_encoder: bool = False,
        context_margin: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(n_genes, int) or n_genes < 1:
            raise ValueError(f"`n_genes` must be a positive int, got {n_genes!r}.")
        if not isinstance(hidden_dim, int) or hidden_dim < 1:
            raise ValueError(f"`hidden_dim` must be a positive int, got {hidden_dim!r}.")
        if pyramid_levels not in (2, 3, 4, 5):
            raise ValueError(f"`pyramid_levels` must be 2, 3, 4 or 5 (encoders have 5 levels), got {pyramid_levels!r}.")
        if output_activation not in _ACTIVATIONS:
            raise ValueError(f"`output_activation` must be one of {list(_ACTIVATIONS)}, got {output_activation!r}.")
        if not isinstance(context_margin, int) or context_margin < 0 or context_margin % 8:
            raise ValueError(f"`context_margin` must be a multiple of 8 pixels >= 0, got {context_margin!r}.")
        if context_margin and pyramid_levels < 4:
            raise ValueError("A context branch needs `pyramid_levels` >= 4 (its cells must be coarser than the input).")
        self.n_genes = n_genes
        self.hidden_dim = hidden_dim
        self.context_margin = context_margin
        self.pyramid_levels = pyramid_levels
        self.output_activation = output_activation

        self.encoder = build_encoder(encoder, levels=pyramid_levels, model_args=encoder_args)
        mean, std = encoder_input_stats(self.encoder)
        self.input_mean = tuple(float(v) for v in (mean if input_mean is None else input_mean))
        self.input_std = tuple(float(v) for v in (std if input_std is None else input_std))
        self.decoder = PixNetDecoder(self.encoder.channels, hidden_dim)
        self.head = nn.Conv2d(self.decoder.out_channels, n_genes, 1)
        self.context_encoder = self.context_proj = None
        if context_margin:
            self.context_encoder = build_encoder("resnet18", levels=3)
            self.context_proj = nn.Conv2d(self.context_encoder.channels[-1], self.encoder.channels[-1], 1)
            nn.init.zeros_(self.context_proj.weight)
            nn.init.zeros_(self.context_proj.bias)
        self.activation = _ACTIVATIONS[output_activation]()
        if encoder_weights is not None:
            load_encoder_weights(self, encoder_weights, strict=True)
        self.encoder_frozen = False
        self.set_encoder_frozen(freeze_encoder)

    @property
    def input_multiple(self) -> int:
        """Input sides that are multiples of this need no padding (the encoder's total stride, ``2**L``)."""
        return 2**self.pyramid_levels

    @property
    def context_factor(self) -> int:
        """How many input pixels one pixel of the context image spans, per side (``2**L / 8``)."""
        return 2**self.pyramid_levels // 8

    def context_shape(self, height: int, width: int) -> tuple[int, int]:
        """Size of the context image for an input of ``height x width`` pixels."""
        f, m = self.context_factor, self.context_margin
        return height // f + 2 * m, width // f + 2 * m

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``(B, 3, H, W)`` as this network's input.

        Scaled to [0, 1], minus :attr:`input_mean`, over :attr:`input_std` (:func:`~histo2st.nn.normalize_images`).
        """
        return normalize_images(images, mean=self.input_mean, std=self.input_std)

    def set_encoder_frozen(self, frozen: bool = True) -> None:
        """Freeze (``True``) or unfreeze the encoder: its ``requires_grad`` and its batch norm updates."""
        self.encoder_frozen = bool(frozen)
        for p in self.encoder.parameters():
            p.requires_grad_(not self.encoder_frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> PixNetModule:
        """Set training mode; a frozen encoder stays in eval mode so its batch norm statistics do not move."""
        super().train(mode)
        if getattr(self, "encoder_frozen", False):
            self.encoder.eval()
        return self

    def forward(
        self, images: torch.Tensor, *, context: torch.Tensor | None = None, from_tokens: bool = False
    ) -> torch.Tensor:
        """Dense map ``(B, n_genes, H, W)`` of normalized float images ``(B, 3, H, W)``.

        ``context``: with a context branch, the normalized coarse images around the inputs, of
        :meth:`context_shape` (inputs whose sides are multiples of :attr:`input_multiple`, as crops and tiles are).

        ``from_tokens=True``: ``images`` are a ViT encoder's cached trunk output ``(B, embed_dim, H / 16, W / 16)``
        (:meth:`~histo2st.nn.ViTEncoder.tokens`) of an input whose sides are multiples of :attr:`input_multiple`;
        only the feature pyramid, decoder and head run. A keyword of ``forward``, not a method of its own, so that
        DDP's wrapper, which synchronizes gradients in ``forward``, sees both.
        """
        if (context is None) != (self.context_encoder is None):
            raise ValueError("Pass `context` exactly when the module has a context branch (`context_margin > 0`).")
        if from_tokens:
            if context is not None:
                raise ValueError("Cached tokens cannot go with a context branch.")
            return self._maps(self.encoder.pyramid(images), images.shape[-2] * 16, images.shape[-1] * 16)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Expected images of shape (B, 3, H, W), got {tuple(images.shape)}.")
        if not images.is_floating_point():
            raise TypeError(
                f"Expected normalized float images, got dtype {images.dtype}; "
                "convert uint8 RGB with `module.normalize`."
            )
        height, width = images.shape[-2:]
        m = self.input_multiple
        pad_h, pad_w = -height % m, -width % m
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
        features = self.encoder.forward_pyramid(images)
        if context is not None:
            features[-1] = features[-1] + self._context_features(context, images.shape[-2:], features[-1].shape[-2:])
        return self._maps(features, *images.shape[-2:])[..., :height, :width]

    def _context_features(self, context: torch.Tensor, input_size, cells) -> torch.Tensor:
        if tuple(context.shape[-2:]) != self.context_shape(*input_size):
            raise ValueError(
                f"Context of shape {tuple(context.shape)} does not fit an input of {tuple(input_size)} px: expected "
                f"{self.context_shape(*input_size)} for inputs whose sides are multiples of {self.input_multiple}."
            )
        k = self.context_margin // 8
        c = self.context_encoder.forward_pyramid(context)[-1][..., k : k + cells[0], k : k + cells[1]]
        return self.context_proj(c)

    def _maps(self, features: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        g = self.head(self.decoder(features))
        return self.activation(F.interpolate(g, size=(height, width), mode="bilinear", align_corners=False))
