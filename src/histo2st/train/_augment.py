"""Augmentations applied to a training crop and its spot centers together."""

from __future__ import annotations

import numpy as np


def random_dihedral(rng: np.random.Generator) -> tuple[bool, int]:
    """A random symmetry of the square: ``(mirrored, quarter turns)``, for :func:`dihedral`."""
    return bool(rng.random() < 0.5), int(rng.integers(4))


def dihedral(
    image: np.ndarray, centers: np.ndarray, mirrored: bool, turns: int, *, size: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A ``(c, s, s)`` crop mirrored left-right, then turned ``turns`` quarter turns; spot centers move with it.

    Crops centered on the same point (a crop and its coarse context) stay aligned when given the same symmetry.
    """
    size = image.shape[-1] if size is None else size
    xy = centers.copy()
    if mirrored:
        image = image[:, :, ::-1]
        xy[:, 0] = size - xy[:, 0]
    for _ in range(turns):
        # rotating the array by 90° counter-clockwise maps (x, y) to (y, size - x)
        image = np.rot90(image, 1, axes=(1, 2))
        xy = np.stack([xy[:, 1], size - xy[:, 0]], axis=1)
    return np.ascontiguousarray(image), xy


def color_jitter(images, generator, *, brightness: float = 0.1, contrast: float = 0.1, saturation: float = 0.1):
    """Per-image random brightness, contrast and saturation of a ``(b, 3, h, w)`` float batch in [0, 1] (torch)."""
    import torch

    b = images.shape[0]

    def factor(amount: float):
        return 1 + (torch.rand(b, 1, 1, 1, generator=generator, device=images.device) * 2 - 1) * amount

    images = images * factor(brightness)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * factor(contrast) + mean
    gray = (images * torch.tensor([0.299, 0.587, 0.114], device=images.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    images = (images - gray) * factor(saturation) + gray
    return images.clamp(0, 1)


def stain_jitter(
    images,
    generator,
    *,
    stain_scale: float = 0.1,
    stain_shift: float = 0.01,
    blur_sigma: float = 0.5,
    blur_p: float = 0.5,
):
    """H&E-specific color augmentation of a ``(b, 3, h, w)`` float batch in [0, 1] (torch): re-staining and blur.

    Per image, each stain amount of the Ruifrok-Johnston decomposition (hematoxylin, eosin, DAB; see
    :func:`histo2st.nn._stain.perturb_hed`) is multiplied by ``exp(U(-stain_scale, stain_scale))`` and shifted by
    ``U(-stain_shift, stain_shift)``: a stain that took more or less strongly, as between labs and batches, where
    RGB jitter would also produce colors no H&E slide has. Then, with probability ``blur_p``, a Gaussian blur with a
    standard deviation drawn from ``U(0, blur_sigma)`` pixels (focus differences between scanners).
    """
    import torch

    from ..nn import gaussian_blur, perturb_hed

    b, device = images.shape[0], images.device

    def uniform(*shape, low: float, high: float):
        return low + (high - low) * torch.rand(*shape, generator=generator, device=device)

    scale = torch.exp(uniform(b, 3, low=-stain_scale, high=stain_scale))
    shift = uniform(b, 3, low=-stain_shift, high=stain_shift)
    images = perturb_hed(images, scale, shift)
    sigma = uniform(b, low=0.0, high=blur_sigma) * (torch.rand(b, generator=generator, device=device) < blur_p)
    return gaussian_blur(images, sigma)


def random_views(regions, size: int, generator, *, zoom: tuple[float, float] = (0.8, 1.25)):
    """Random square views of ``size`` pixels cut from ``(b, 3, r, r)`` float regions (torch), one per region.

    Each view is rotated by a uniform angle, mirrored with probability 1/2, magnified by a log-uniform factor in
    ``zoom`` (a small change of scale: the networks work at a fixed µm per pixel) and placed at a uniform position
    that keeps it inside its region where the rotation allows; corners that fall outside are reflected. Bilinear
    sampling.
    """
    import math

    import torch
    import torch.nn.functional as F

    b, _, r, _ = regions.shape
    device, dtype = regions.device, regions.dtype

    def uniform(low: float, high: float):
        return low + (high - low) * torch.rand(b, generator=generator, device=device, dtype=dtype)

    angle = uniform(0.0, 2 * math.pi)
    mirror = torch.where(torch.rand(b, generator=generator, device=device) < 0.5, -1.0, 1.0).to(dtype)
    half = size / (r * torch.exp(uniform(math.log(zoom[0]), math.log(zoom[1]))))  # half-side in region units
    cos, sin = torch.cos(angle), torch.sin(angle)
    room = (1 - half * (cos.abs() + sin.abs())).clamp_min(0)
    shift_x, shift_y = (uniform(-1.0, 1.0) * room, uniform(-1.0, 1.0) * room)
    theta = torch.stack(
        [
            torch.stack([half * cos * mirror, -half * sin, shift_x], 1),
            torch.stack([half * sin * mirror, half * cos, shift_y], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, [b, regions.shape[1], size, size], align_corners=False)
    return F.grid_sample(regions, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
