import pytest
import torch

from histo2st.nn import GAT, GraphAttention, knn_adjacency


def _grid(nx=4, ny=3):
    ys, xs = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1).float()


def test_knn_adjacency_matches_brute_force():
    coords = torch.rand(15, 2) * 10
    adj = knn_adjacency(coords, k=4, self_loops=False)
    dist = torch.cdist(coords, coords) + torch.eye(15) * 1e9
    for i in range(15):
        assert set(adj[i].nonzero().flatten().tolist()) == set(dist[i].argsort()[:4].tolist())
    assert adj.dtype == torch.bool
    assert (adj.sum(1) == 4).all()
    assert not adj.diagonal().any()
    assert knn_adjacency(coords, k=4).diagonal().all()


def test_knn_adjacency_interior_grid_spot_links_its_four_direct_neighbors():
    adj = knn_adjacency(_grid(), k=4, self_loops=False)
    spot = 5  # (x=1, y=1)
    assert set(adj[spot].nonzero().flatten().tolist()) == {1, 4, 6, 9}


def test_knn_adjacency_with_padding_and_few_spots():
    coords = torch.rand(2, 5, 2)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    adj = knn_adjacency(coords, k=4, mask=mask)
    assert adj.shape == (2, 5, 5)
    assert adj[0].sum(1).eq(5).all()  # 4 neighbors + self
    assert adj[1, :3].sum(1).eq(3).all()  # only 2 real neighbors + self
    assert not adj[1, :3, 3:].any()  # nobody links to padding
    assert torch.equal(adj[1, 3:], torch.eye(5, dtype=torch.bool)[3:])  # padding: only its self-loop


def _gat():
    torch.manual_seed(0)
    return GAT(6, 5, 4, heads=3, dropout=0.0)


def test_gat_shapes_and_gradients():
    gat = _gat()
    coords = _grid()
    out = gat(torch.randn(12, 6), knn_adjacency(coords))
    assert out.shape == (12, 4)
    assert (out > -1).all()  # ELU output
    out.square().sum().backward()
    bad = [n for n, p in gat.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert bad == []
    batched = gat(torch.randn(2, 12, 6), knn_adjacency(coords).expand(2, 12, 12))
    assert batched.shape == (2, 12, 4)


def test_gat_respects_the_adjacency():
    gat = _gat().eval()
    x = torch.randn(12, 6)
    # one layer: node 5 sees itself and its 4 neighbors only
    layer = gat.hidden
    adj = knn_adjacency(_grid(), k=4)
    neighbors = adj[5].nonzero().flatten().tolist()
    far = next(j for j in range(12) if j not in neighbors)
    near = next(j for j in neighbors if j != 5)
    base = layer(x[None], adj[None])[0, 5]
    x_far, x_near = x.clone(), x.clone()
    x_far[far] += 5.0
    x_near[near] += 5.0
    torch.testing.assert_close(layer(x_far[None], adj[None])[0, 5], base)
    assert not torch.allclose(layer(x_near[None], adj[None])[0, 5], base)
    # two layers: a node outside the 2-hop neighborhood cannot reach node 0
    two_hop = (adj.float() @ adj.float())[0] > 0
    outside = (~two_hop).nonzero().flatten()[0].item()
    x_out = x.clone()
    x_out[outside] += 5.0
    torch.testing.assert_close(gat(x_out, adj)[0], gat(x, adj)[0])


def test_isolated_node_gets_zeros_not_nan():
    layer = GraphAttention(3, 2, heads=2, dropout=0.0)
    adj = torch.zeros(1, 4, 4, dtype=torch.bool)
    adj[0, 0, 1] = True
    out = layer(torch.randn(1, 4, 3), adj)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 2], torch.zeros(4))


def test_gat_rejects_a_float_adjacency():
    with pytest.raises(ValueError, match="boolean adjacency"):
        _gat()(torch.randn(4, 6), torch.ones(4, 4))
