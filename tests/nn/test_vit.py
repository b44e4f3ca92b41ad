import pytest
import torch

from histo2st.nn import GridPositionEmbedding, SpotViT


def _vit(**kw):
    torch.manual_seed(0)
    return SpotViT(8, 4, n_pos=10, depth=2, heads=4, mlp_dim=32, dropout=0.0, **kw)


def test_shapes_unbatched_and_batched():
    vit = _vit()
    assert vit.dim == 48
    assert vit(torch.randn(7, 4, 8), torch.randint(0, 10, (7, 2))).shape == (7, 48)
    assert vit(torch.randn(3, 7, 4, 8), torch.randint(0, 10, (3, 7, 2))).shape == (3, 7, 48)


def test_every_parameter_gets_a_finite_gradient():
    vit = _vit()
    vit(torch.randn(2, 6, 4, 8), torch.randint(0, 10, (2, 6, 2))).square().mean().backward()
    bad = [n for n, p in vit.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert bad == []


def test_permutation_equivariant_when_positions_move_with_spots():
    vit = _vit().eval()
    tokens, grid = torch.randn(9, 4, 8), torch.randint(0, 10, (9, 2))
    perm = torch.randperm(9)
    torch.testing.assert_close(vit(tokens[perm], grid[perm]), vit(tokens, grid)[perm], rtol=1e-4, atol=1e-5)


def test_position_embedding_changes_the_output():
    vit = _vit().eval()
    tokens, grid = torch.randn(5, 4, 8), torch.randint(0, 5, (5, 2))
    moved = grid.clone()
    moved[0, 0] += 3
    out, out_moved = vit(tokens, grid), vit(tokens, moved)
    assert not torch.allclose(out[0], out_moved[0])
    assert not torch.allclose(out[1:], out_moved[1:])  # the other spots attend to the moved one


def test_spots_attend_to_each_other_but_not_to_padding():
    vit = _vit().eval()
    tokens, grid = torch.randn(1, 6, 4, 8), torch.randint(0, 10, (1, 6, 2))
    changed = tokens.clone()
    changed[0, 5] += 1.0
    assert not torch.allclose(vit(tokens, grid)[0, :5], vit(changed, grid)[0, :5])
    mask = torch.tensor([[False] * 5 + [True]])
    torch.testing.assert_close(vit(tokens, grid, mask)[0, :5], vit(changed, grid, mask)[0, :5])
    torch.testing.assert_close(vit(tokens, grid, mask)[0, :5], vit(tokens[:, :5], grid[:, :5])[0])


def test_positions_outside_the_table_are_clipped():
    emb = GridPositionEmbedding(10, 3)
    inside = emb(torch.tensor([[0, 9]]))
    outside = emb(torch.tensor([[-4, 25]]))
    torch.testing.assert_close(outside, inside)
    assert inside.shape == (1, 2, 3)


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="not divisible by heads"):
        SpotViT(8, 4, heads=5)


def test_spots_keep_their_differences_through_the_encoder():
    # Regression: without the input and output LayerNorms, small capsule vectors (norm < 1) were swamped by the
    # spot-independent part of the sublayer outputs, and the per-spot spread of the output fell ~10x.
    torch.manual_seed(0)
    vit = SpotViT(64, 20).eval()
    tokens = torch.nn.functional.normalize(torch.randn(300, 20, 64), dim=-1) * 0.3 + 0.05
    with torch.no_grad():
        out = vit(tokens, torch.randint(0, 30, (300, 2)))

    def relative_spread(t):
        return float(t.std(0).mean() / t.pow(2).mean().sqrt())

    assert relative_spread(out) > 0.5 * relative_spread(tokens.flatten(1))
