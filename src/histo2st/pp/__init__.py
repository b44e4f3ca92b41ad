"""Preprocessing (``st.pp``): normalisation and gene selection, scanpy conventions."""

from ._normalize import normalize
from ._select_genes import GeneSelection, select_genes

__all__ = ["GeneSelection", "normalize", "select_genes"]
