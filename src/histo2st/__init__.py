"""histo2st: predict spatially resolved gene expression from H&E histology, on SpatialData.

``import histo2st as st`` gives ``st.io``, ``st.pp``, ``st.tl``, ``st.pl``, ``st.metrics``, ``st.datasets`` and
``st.settings``.
Importing the package does not import torch; the models import it when they are used.
"""

from . import datasets, io, metrics, pl, pp, tl
from ._settings import settings
from ._version import __version__

__all__ = ["__version__", "datasets", "io", "metrics", "pl", "pp", "settings", "tl"]
