"""H&E color in optical density: Ruifrok-Johnston stain separation, stain perturbation and blur on torch batches.

The transforms follow :func:`skimage.color.rgb2hed` / :func:`skimage.color.hed2rgb` exactly (same matrix, same
``1e-6`` floor and log scaling), on ``(b, 3, h, w)`` float batches on any device, so augmentation runs on the training
device without a round trip through numpy. Unlike ``rgb2hed`` the stain amounts are not clipped at 0: with no
clipping, the round trip RGB -> HED -> RGB returns the input, so a perturbation of scale 1 and shift 0 is the
identity.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

#: Optical density of each stain (rows: hematoxylin, eosin, DAB) in RGB, Ruifrok & Johnston (2001), as
#: ``skimage.color.rgb_from_hed``.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
#: Its inverse, ``skimage.color.hed_from_rgb``.
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
# scikit-image floors intensities at 1e-6 and divides log intensities by log(1e-6), so stain amounts lie in [0, 1]
_FLOOR = 1e-6
_LOG_FLOOR = math.log(_FLOOR)


def rgb_to_hed(images: torch.Tensor) -> torch.Tensor:
    """Stain amounts ``(b, 3, h, w)`` (hematoxylin, eosin, DAB) of RGB ``images`` in [0, 1], as ``rgb2hed``.

    Not clipped at 0 (``rgb2hed`` is), so :func:`hed_to_rgb` inverts it exactly.
    """
    od = torch.log(images.clamp_min(_FLOOR)) / _LOG_FLOOR
    matrix = torch.as_tensor(HED_FROM_RGB, dtype=od.dtype, device=od.device)
    return torch.einsum("bchw,cs->bshw", od, matrix)


def hed_to_rgb(stains: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] of stain amounts ``(b, 3, h, w)``, as ``skimage.color.hed2rgb``."""
    matrix = torch.as_tensor(RGB_FROM_HED, dtype=stains.dtype, device=stains.device)
    log_rgb = torch.einsum("bshw,sc->bchw", stains, matrix) * _LOG_FLOOR
    return torch.exp(log_rgb).clamp(0, 1)


def perturb_hed(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Re-stain RGB ``images`` in [0, 1]: each stain amount ``s`` becomes ``s * scale + shift`` (Tellez et al. 2018).

    Parameters
    ----------
    images
        ``(b, 3, h, w)`` float RGB in [0, 1].
    scale, shift
        ``(b, 3)``: per image, one factor and one offset for hematoxylin, eosin and DAB (in ``rgb2hed`` units, where
        typical tissue has amounts of 0.01-0.2). Multiplying changes how strongly a stain took; adding also tints
        the unstained background.

    Returns
    -------
    ``(b, 3, h, w)`` RGB in [0, 1].
    """
    stains = rgb_to_hed(images)
    stains = stains * scale[:, :, None, None].to(stains) + shift[:, :, None, None].to(stains)
    return hed_to_rgb(stains)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of ``(b, c, h, w)`` with its own Gaussian of standard deviation ``sigma[i]`` pixels.

    A separable kernel per image (grouped convolutions), ``2 * ceil(3 * max(sigma)) + 1`` taps, reflected borders.
    A ``sigma`` of 0 leaves that image unchanged.
    """
    b, c, h, w = images.shape
    sigma = sigma.to(images).view(b)
    radius = int(math.ceil(3 * float(sigma.max()))) if b else 0
    if radius == 0:
        return images
    radius = min(radius, h - 1, w - 1)
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    safe = sigma.clamp_min(1e-3)[:, None]
    kernel = torch.exp(-0.5 * (taps[None] / safe) ** 2)
    kernel = torch.where((sigma > 0)[:, None], kernel, (taps == 0).to(kernel).expand_as(kernel))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (b * c, taps)
    x = F.pad(images.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=b * c)
    x = F.conv2d(x, kernel[:, None, :, None], groups=b * c)
    return x.reshape(b, c, h, w)
