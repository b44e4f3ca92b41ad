"""Preprocessing (``st.pp``): normalization and gene selection, scanpy conventions."""

from ._normalize import normalize
from ._select_genes import select_genes

__all__ = ["normalize", "select_genes"]
