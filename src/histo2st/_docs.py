"""Docstring text shared by several functions, written once (scanpy's ``_doc_params``).

A docstring line holding only ``{name}`` is replaced by the fragment ``name``, indented like that line, so one
option is described in one place wherever it is accepted. Fragments are wrapped narrow enough for a method's
docstring (eight spaces in).
"""

from __future__ import annotations

import textwrap

#: ``show``, ``save`` and ``return_fig`` of every ``st.pl`` function (scanpy's conventions).
PLOT_DOC = """
show
    Show the figure; default when it is neither saved nor returned.
save
    Write the figure to this path (``.png``, ``.pdf``, ...), creating parent folders.
return_fig
    Return the figure.
"""

#: Training options shared by :func:`histo2st.tl.fit` and ``model.train``.
TRAINING_DOC = """
validation
    A fraction of spots per section held out at random, a section name or list of names held out
    whole, or ``None`` for no validation (see :func:`histo2st.train.split_validation`). Validation
    spots never enter the loss.
device
    ``"cpu"``, ``"cuda"``, ``"mps"``; default :attr:`histo2st.settings.device`.
progress
    Show a progress bar of the optimizer steps, with the epoch, the loss and the validation PCC; its
    ETA respects ``max_time``.
ema_decay
    Keep an exponential moving average of the weights with this decay (e.g. 0.999; ``None``: off).
    Validation, early stopping and the returned model then use the averaged weights (see
    :class:`histo2st.train.TrainerConfig`). :func:`histo2st.tl.fit` defaults to the preset's (PixNet's
    ``"cpu"``: 0.99; otherwise off).
"""

#: ``target_components`` of every model trained by gradient steps.
TARGET_COMPONENTS_DOC = """
target_components
    Train on the training spots' expression projected on its first principal components (scikit-learn's
    PCA over all training spots) instead of the measured values; validation spots keep theirs. Not in
    the papers: it drops each spot's gene-by-gene counting noise, which a few hundred spots cannot average
    out (see the docs page "Models"). ``None``: the measured values, as the papers.
"""


def doc_params(**fragments: str):
    """Decorator: replace each docstring line that holds only ``{name}`` by the fragment ``name``."""

    def decorate(obj):
        lines = []
        for line in (obj.__doc__ or "").splitlines():
            name = line.strip()[1:-1] if line.strip().startswith("{") and line.strip().endswith("}") else None
            if name not in fragments:
                lines.append(line)
                continue
            indent = line[: len(line) - len(line.lstrip())]
            lines += [indent + text if text else text for text in textwrap.dedent(fragments[name]).strip().splitlines()]
        obj.__doc__ = "\n".join(lines)
        return obj

    return decorate
