import pytest
import torch
import torch.nn.functional as F

from histo2st.module import THItoGeneModule
from histo2st.nn import knn_adjacency

SMALL = dict(
    patch_px=48, caps=4, route_dim=8, depth=1, heads=2, mlp_dim=32, gat_heads=2, gat_hidden=16, gat_out=8,
    head_hidden=16, n_pos=8,
)  # fmt: skip


def _window(n=12, p=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack([torch.arange(n) % 4, torch.arange(n) // 4], dim=1)
    patches = torch.rand(n, 3, p, p, generator=g)
    return patches, grid, knn_adjacency(grid.float(), k=4)


def test_forward_backward_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = THItoGeneModule(7, **SMALL)
    patches, grid, adj = _window()
    out = model(patches, grid, adj)
    assert out.shape == (12, 7)
    F.mse_loss(out, torch.randn(12, 7)).backward()
    bad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert bad == []


def test_a_few_adam_steps_lower_the_mse():
    torch.manual_seed(0)
    model = THItoGeneModule(5, **SMALL, dropout=0.0)
    patches, grid, adj = _window()
    # the target depends on the image, so the network has something to fit
    target = torch.log1p(patches.mean(dim=(2, 3)) @ torch.rand(3, 5) * 10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.mse_loss(model(patches, grid, adj), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_padded_batch_matches_separate_windows_in_eval():
    torch.manual_seed(0)
    model = THItoGeneModule(3, **SMALL).eval()
    a, b = _window(12, seed=1), _window(8, seed=2)
    pad = 4
    patches = torch.stack([a[0], F.pad(b[0], (0, 0, 0, 0, 0, 0, 0, pad))])
    grid = torch.stack([a[1], F.pad(b[1], (0, 0, 0, pad))])
    mask = torch.tensor([[False] * 12, [False] * 8 + [True] * pad])
    adj = knn_adjacency(grid.float(), k=4, mask=~mask)
    out = model(patches, grid, adj, key_padding_mask=mask)
    assert out.shape == (2, 12, 3)
    torch.testing.assert_close(out[0], model(*a), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[1, :8], model(*b), rtol=1e-4, atol=1e-5)


def test_paper_defaults_build_and_wrong_patch_size_is_explained():
    model = THItoGeneModule(785)
    assert model.vit.dim == (20 + 2) * 64
    assert model.capsules.primary.depthwise.kernel_size == (9, 9)
    with pytest.raises(ValueError, match="patch_px"):
        model(torch.rand(2, 3, 64, 64), torch.zeros(2, 2, dtype=torch.long), torch.eye(2, dtype=torch.bool))
