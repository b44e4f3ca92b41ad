"""Data sets (``st.datasets``): synthetic tissue with dense ground truth, and public data."""

from ._public import her2st, mouse_olfactory_bulb
from ._synthetic import synthetic_tissue

__all__ = ["her2st", "mouse_olfactory_bulb", "synthetic_tissue"]
