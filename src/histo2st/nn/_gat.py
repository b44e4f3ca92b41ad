"""Graph attention over the spot graph of a window (THItoGene Eq. 12-16).

Written by hand on a dense adjacency rather than with torch_geometric: a window holds at most a few thousand
spots, where a masked ``(N, N)`` attention is fast and simple, and one layer does not justify a heavy dependency
with compiled extensions tied to torch versions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def knn_adjacency(
    coords: torch.Tensor, k: int = 4, *, self_loops: bool = True, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Dense graph of each spot's ``k`` nearest neighbors by Euclidean distance.

    Parameters
    ----------
    coords
        ``(N, 2)`` or ``(B, N, 2)`` spot coordinates (grid or pixel; any units).
    k
        Neighbors per spot (THItoGene: 4). Fewer when the window has fewer other spots.
    self_loops
        Also connect every spot to itself. The reference graph has no self-loops, so there a spot's GAT output
        ignores its own features; the GAT paper includes the node in its neighborhood, and so do we by default.
    mask
        ``(N,)`` or ``(B, N)`` boolean, ``True`` at real spots. Padding spots are nobody's neighbor and have no
        neighbors (only their self-loop).

    Returns
    -------
    Boolean ``(N, N)`` or ``(B, N, N)``; ``adj[i, j]`` is ``True`` when spot ``i`` aggregates from spot ``j``
    (``j`` is among ``i``'s nearest). Not symmetric in general. Ties in distance go to the lower index.
    """
    dist = torch.cdist(coords.double(), coords.double())
    n = coords.shape[-2]
    eye = torch.eye(n, dtype=torch.bool, device=coords.device)
    dist = dist.masked_fill(eye, torch.inf)
    if mask is not None:
        pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
        dist = dist.masked_fill(~pair, torch.inf)
    k = min(k, n - 1)
    order = torch.sort(dist, dim=-1, stable=True).indices[..., :k]
    adj = torch.zeros(dist.shape, dtype=torch.bool, device=coords.device)
    adj.scatter_(-1, order, True)
    adj &= torch.isfinite(dist)  # drop "neighbors" picked among padding when a spot has fewer than k real ones
    return adj | eye if self_loops else adj


class GraphAttention(nn.Module):
    """Multi-head graph attention layer (Velickovic et al. 2018; THItoGene Eq. 12-15) on a dense adjacency.

    ``e_ij = LeakyReLU(a^T [W h_i || W h_j])`` for every edge, softmax over each node's neighbors ``j``,
    attention dropout, ``h'_i = sum_j alpha_ij W h_j`` per head; heads are concatenated (``concat=True``) or
    averaged. A node without neighbors gets zeros.

    Parameters
    ----------
    in_dim, out_dim
        Features in and per head out.
    heads
        Attention heads.
    concat
        Concatenate the heads (output ``heads * out_dim``) or average them (``out_dim``).
    dropout
        Dropout on the attention coefficients (the reference: 0.2).
    negative_slope
        LeakyReLU slope of the attention logits (the reference: 0.01).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        heads: int = 8,
        concat: bool = True,
        dropout: float = 0.2,
        negative_slope: float = 0.01,
    ):
        super().__init__()
        self.heads = heads
        self.out_dim = out_dim
        self.concat = concat
        self.dropout = dropout
        self.negative_slope = negative_slope
        self.proj = nn.Linear(in_dim, heads * out_dim, bias=False)
        # a = [a_dst || a_src]: the halves that score the receiving and the sending node.
        self.att_dst = nn.Parameter(torch.empty(heads, out_dim))
        self.att_src = nn.Parameter(torch.empty(heads, out_dim))
        gain = 1.414  # the reference's (and pyGAT's) Xavier gain
        nn.init.xavier_uniform_(self.proj.weight, gain=gain)
        nn.init.xavier_uniform_(self.att_dst, gain=gain)
        nn.init.xavier_uniform_(self.att_src, gain=gain)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, N, in_dim)``, boolean ``adjacency`` ``(B, N, N)`` -> ``(B, N, heads * out_dim or out_dim)``."""
        b, n, _ = x.shape
        wh = self.proj(x).view(b, n, self.heads, self.out_dim)
        score_dst = torch.einsum("bnhd,hd->bhn", wh, self.att_dst)
        score_src = torch.einsum("bnhd,hd->bhn", wh, self.att_src)
        logits = F.leaky_relu(score_dst.unsqueeze(-1) + score_src.unsqueeze(-2), self.negative_slope)
        edges = adjacency.unsqueeze(1)  # (B, 1, N, N), shared by the heads
        logits = logits.masked_fill(~edges, torch.finfo(logits.dtype).min)
        # Zeroing after the softmax leaves nodes without neighbors at zero instead of NaN or a uniform average.
        alpha = torch.softmax(logits, dim=-1) * edges
        alpha = F.dropout(alpha, self.dropout, self.training)
        out = torch.einsum("bhij,bjhd->bihd", alpha, wh)
        return out.flatten(-2) if self.concat else out.mean(dim=-2)


class GAT(nn.Module):
    """THItoGene's two-layer GAT (the reference's ``MultiHeadGAT``, after pyGAT).

    Dropout, ``heads`` concatenated attention heads of ``hidden`` with ELU, dropout, one attention head to
    ``out_dim``, ELU (Eq. 16).

    Parameters
    ----------
    in_dim, hidden, out_dim
        Widths (THItoGene: the ViT width 1408, 1024, 512).
    heads
        Heads of the first layer (THItoGene: 8).
    dropout, negative_slope
        Feature and attention dropout, LeakyReLU slope (THItoGene: 0.2, 0.01).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 1024,
        out_dim: int = 512,
        *,
        heads: int = 8,
        dropout: float = 0.2,
        negative_slope: float = 0.01,
    ):
        super().__init__()
        self.dropout = dropout
        self.hidden = GraphAttention(
            in_dim, hidden, heads=heads, concat=True, dropout=dropout, negative_slope=negative_slope
        )
        self.out = GraphAttention(
            heads * hidden, out_dim, heads=1, concat=False, dropout=dropout, negative_slope=negative_slope
        )

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """``(N, in_dim)`` with ``(N, N)`` or ``(B, N, in_dim)`` with ``(B, N, N)`` boolean adjacency."""
        unbatched = x.ndim == 2
        if unbatched:
            x, adjacency = x.unsqueeze(0), adjacency.unsqueeze(0)
        if adjacency.dtype != torch.bool or adjacency.shape != (*x.shape[:2], x.shape[1]):
            raise ValueError(
                f"GAT expects a boolean adjacency of shape {(*x.shape[:2], x.shape[1])}, got {adjacency.dtype} "
                f"{tuple(adjacency.shape)}; build it with histo2st.nn.knn_adjacency."
            )
        x = F.dropout(x, self.dropout, self.training)
        x = F.elu(self.hidden(x, adjacency))
        x = F.dropout(x, self.dropout, self.training)
        x = F.elu(self.out(x, adjacency))
        return x.squeeze(0) if unbatched else x
