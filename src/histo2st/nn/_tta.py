"""Test-time augmentation over the symmetries of a square: H&E has no preferred orientation."""

from __future__ import annotations

#: Transforms averaged for each allowed count, as ``(quarter turns, mirrored)``: the identity and its mirror image,
#: the four rotations, or the whole dihedral group of the square.
TRANSFORMS = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: tuple((turns, False) for turns in range(4)),
    8: tuple((turns, mirrored) for mirrored in (False, True) for turns in range(4)),
}


#: The counts of transforms :func:`dihedral_mean` accepts.
TTA_COUNTS = tuple(TRANSFORMS)


def _transform(x, turns: int, mirrored: bool):
    x = x.flip(-1) if mirrored else x
    return x.rot90(turns, dims=(-2, -1)) if turns else x


def _invert(y, turns: int, mirrored: bool):
    y = y.rot90(-turns, dims=(-2, -1)) if turns else y
    return y.flip(-1) if mirrored else y


def dihedral_mean(forward, x, *, n: int = 8, dense: bool = True):
    """Mean of ``forward`` over ``n`` rotations and mirror images of the square images ``x`` (``(..., s, s)``).

    ``n`` is 1 (``forward(x)``), 2 (with its mirror image), 4 (the quarter turns) or 8 (the whole dihedral group).
    With ``dense``, ``forward`` returns maps aligned with its input, each turned back to the original orientation
    before averaging (PixNet); otherwise one vector per image, averaged as they are (THItoGene's spots). ``x`` may
    be a tuple of square image batches (a PixNet's tiles and their context), each turned alike and passed to
    ``forward`` in order; the maps are aligned with the first. Costs ``n`` forward passes; returns float32.
    """
    if n not in TRANSFORMS:
        raise ValueError(f"Test-time augmentation averages {sorted(TRANSFORMS)} transforms, got {n!r}.")
    total = None
    for turns, mirrored in TRANSFORMS[n]:
        inputs = x if isinstance(x, tuple) else (x,)
        y = forward(*(_transform(v, turns, mirrored) for v in inputs)).float()
        y = _invert(y, turns, mirrored) if dense else y
        total = y if total is None else total + y
    return total / n
