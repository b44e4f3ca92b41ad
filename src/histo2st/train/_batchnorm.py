"""Exact BatchNorm statistics after an epoch ("precise BN", Wu & Johnson, arXiv:2105.07576)."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def recalibrate_batchnorm(module, forward: Callable, inputs: Iterable) -> None:
    """Replace the running statistics of every BatchNorm layer in ``module`` by their exact mean over ``inputs``.

    Running averages with momentum 0.1 forget their initial values (mean 0, variance 1) slowly. When the true
    feature variance is tiny, as in THItoGene's patch encoder, the leftover initial variance dominates for many
    epochs and evaluation-mode features collapse. ``forward(x)`` is called on every item of ``inputs`` with the
    BatchNorm layers in training mode (cumulative averaging) and no gradients; other layers keep their mode.
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    layers = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not layers:
        return
    saved = [(m.momentum, m.training) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over the calls
        m.train()
    try:
        with torch.no_grad():
            for x in inputs:
                forward(x)
    finally:
        for m, (momentum, training) in zip(layers, saved, strict=True):
            m.momentum = momentum
            m.train(training)
