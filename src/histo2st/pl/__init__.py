"""Plotting (``st.pl``): genes over the H&E, per-gene correlations, training curves, multi-scale maps and trust."""

from ._correlation import gene_correlation
from ._history import history
from ._multiscale import multiscale
from ._report import report
from ._spatial import spatial_gene
from ._trust import trust

__all__ = ["gene_correlation", "history", "multiscale", "report", "spatial_gene", "trust"]
