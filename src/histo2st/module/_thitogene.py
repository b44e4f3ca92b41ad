"""THItoGene network (Jia et al., Brief Bioinform 2024, doi:10.1093/bib/bbad464) as a pure ``nn.Module``."""

from __future__ import annotations

import torch
from torch import nn

from histo2st.nn import GAT, EfficientCapsNet, ODConv2d, SpotViT


class THItoGeneModule(nn.Module):
    """Patches of the spots of one window -> their gene expression.

    ODConv (3 -> 16 channels, kernel 4, stride 4) and ReLU, Efficient-CapsNet to ``caps`` capsules of
    ``route_dim``, a ViT over the window's spots with x/y grid position embeddings concatenated to the capsules,
    a GAT over the spot graph and an MLP head (``Linear, ReLU, LayerNorm, Linear``), as in the reference.

    The network predicts log-normalized expression and is trained, as in the reference, with the MSE against it
    (:func:`torch.nn.functional.mse_loss`); the reference uses Adam with learning rate 1e-5.

    Parameters
    ----------
    n_genes
        Output genes.
    patch_px
        Side of the square input patches in pixels (THItoGene: 112 at ~0.69 µm/px, i.e. ~77 µm of tissue).
        At least 44 (the capsule encoder needs an 11 x 11 map after the stride-``odconv_kernel`` ODConv).
    odconv_channels, odconv_kernel, odconv_kernels
        ODConv output channels, kernel size (= stride) and number of candidate kernels (16, 4, 4).
    caps, route_dim
        Routed capsules per spot and their dimension (20, 64); also the position embedding dimension.
    n_pos
        Rows of the x and y position tables (64); grid coordinates outside are clipped to the table.
    depth, heads, mlp_dim
        ViT layers, heads and feed-forward width (4, 16, 2048; the reference's ``2 * dim`` with ``dim=1024``).
    gat_heads, gat_hidden, gat_out
        GAT heads, per-head hidden width and output width (8, 1024, 512).
    head_hidden
        Hidden width of the gene head (1024).
    dropout
        Dropout of the ViT (also on its input), the GAT features and the GAT attention (0.2).

    Notes
    -----
    Batch norm in ODConv's attention and in the capsule encoder normalizes over the spots of a forward call, so in
    training a window needs at least two spots. Inputs are expected as normalized floats (e.g. RGB in [0, 1]); the
    reference fed raw 0-255 values.
    """

    def __init__(
        self,
        n_genes: int,
        *,
        patch_px: int = 112,
        odconv_channels: int = 16,
        odconv_kernel: int = 4,
        odconv_kernels: int = 4,
        caps: int = 20,
        route_dim: int = 64,
        n_pos: int = 64,
        depth: int = 4,
        heads: int = 16,
        mlp_dim: int = 2048,
        gat_heads: int = 8,
        gat_hidden: int = 1024,
        gat_out: int = 512,
        head_hidden: int = 1024,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.n_genes = n_genes
        self.patch_px = patch_px
        self.odconv = ODConv2d(3, odconv_channels, odconv_kernel, stride=odconv_kernel, kernel_num=odconv_kernels)
        map_size = (patch_px - odconv_kernel) // odconv_kernel + 1
        self.capsules = EfficientCapsNet(odconv_channels, map_size, n_caps=caps, caps_dim=route_dim)
        self.vit = SpotViT(route_dim, caps, n_pos=n_pos, depth=depth, heads=heads, mlp_dim=mlp_dim, dropout=dropout)
        self.gat = GAT(self.vit.dim, gat_hidden, gat_out, heads=gat_heads, dropout=dropout)
        self.head = nn.Sequential(
            nn.Linear(gat_out, head_hidden),
            nn.ReLU(),
            nn.LayerNorm(head_hidden),
            nn.Linear(head_hidden, n_genes),
        )

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """``(M, 3, p, p)`` patches -> ``(M, caps, route_dim)`` capsules; independent of the other spots in eval."""
        return self.capsules(torch.relu(self.odconv(patches)))

    def forward(
        self,
        patches: torch.Tensor,
        grid_xy: torch.Tensor,
        adjacency: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the expression of every spot of one window or a batch of padded windows.

        Parameters
        ----------
        patches
            ``(N, 3, p, p)`` or ``(B, N, 3, p, p)`` float patches centered on the spots, ``p = patch_px``.
        grid_xy
            ``(N, 2)`` or ``(B, N, 2)`` integer grid coordinates ``(x, y)`` of the spots, from 0.
        adjacency
            ``(N, N)`` or ``(B, N, N)`` boolean spot graph, see :func:`histo2st.nn.knn_adjacency`.
        key_padding_mask
            ``(B, N)`` boolean, ``True`` at padding spots (batched input only). Padding patches are not encoded
            (they do not enter the batch norm statistics); their outputs are meaningless.

        Returns
        -------
        ``(N, n_genes)`` or ``(B, N, n_genes)`` predicted log-normalized expression.
        """
        unbatched = patches.ndim == 4
        if unbatched:
            if key_padding_mask is not None:
                raise ValueError("key_padding_mask needs batched input (B, N, 3, p, p); drop it for one window.")
            patches, grid_xy, adjacency = patches.unsqueeze(0), grid_xy.unsqueeze(0), adjacency.unsqueeze(0)
        b, n = patches.shape[:2]
        if patches.shape[2:] != (3, self.patch_px, self.patch_px):
            raise ValueError(
                f"expected patches of shape (..., 3, {self.patch_px}, {self.patch_px}), got {tuple(patches.shape)}; "
                "cut patches of patch_px pixels or build the module with the patch size you use."
            )
        if key_padding_mask is None:
            tokens = self.encode_patches(patches.flatten(0, 1)).unflatten(0, (b, n))
        else:
            valid = ~key_padding_mask
            encoded = self.encode_patches(patches[valid])
            tokens = encoded.new_zeros(b, n, *encoded.shape[1:])
            tokens[valid] = encoded
        x = self.vit(tokens, grid_xy, key_padding_mask)
        out = self.head(self.gat(x, adjacency))
        return out.squeeze(0) if unbatched else out
