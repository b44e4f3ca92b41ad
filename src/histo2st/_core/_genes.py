"""Gene-list arguments: a single gene may be given as a string (scanpy's convention)."""

from __future__ import annotations

from collections.abc import Iterable


def as_gene_list(genes: str | Iterable[str] | None) -> list[str] | None:
    """``genes`` as a list: ``None`` stays ``None``, a string is one gene, any other iterable is listed.

    A string is iterable, so ``list("GENE00")`` would split one gene into characters; every public function that takes
    a gene list goes through here first.

    Parameters
    ----------
    genes
        A gene name, an iterable of gene names, or ``None``.

    Returns
    -------
    ``None``, ``[genes]`` for a string, else ``list(genes)``.
    """
    if genes is None:
        return None
    if isinstance(genes, str):
        return [genes]
    return list(genes)
