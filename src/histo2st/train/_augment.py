"""Augmentations applied to a training crop and its spot centres together."""

from __future__ import annotations

import numpy as np


def flip_rotate(image: np.ndarray, centers: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random flip and 90° rotation of a ``(c, s, s)`` crop; spot centres (x, y) move with the pixels."""
    size = image.shape[-1]
    xy = centers.copy()
    if rng.random() < 0.5:
        image = image[:, :, ::-1]
        xy[:, 0] = size - xy[:, 0]
    for _ in range(int(rng.integers(4))):
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
