"""Adam with an optional learning rate of its own for part of the network (PixNet's and THItoGene's encoders)."""

from __future__ import annotations


def adam(parameters, *, lr: float, weight_decay: float, part=None, part_lr: float | None = None):
    """``torch.optim.Adam`` over ``parameters``; with ``part_lr``, the parameters of the module ``part`` learn at it.

    ``part`` may be a module or a sequence of modules. The first parameter group is ``part``'s, the second the rest.
    """
    import torch

    parameters = list(parameters)
    if part_lr is not None:
        modules = part if isinstance(part, list | tuple) else [part]
        own = {id(p) for module in modules for p in module.parameters()}
        parameters = [
            {"params": [p for p in parameters if id(p) in own], "lr": part_lr},
            {"params": [p for p in parameters if id(p) not in own]},
        ]
    return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
