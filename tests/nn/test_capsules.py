import pytest
import torch

from histo2st.nn import EfficientCapsNet, PrimaryCapsules, SelfAttentionRouting, squash


def test_squash_length_below_one_and_direction_kept():
    s = torch.randn(50, 7, 8) * torch.logspace(-3, 0.5, 50).view(50, 1, 1)
    v = squash(s)
    norm_s, norm_v = s.norm(dim=-1), v.norm(dim=-1)
    assert (norm_v < 1).all()
    assert squash(torch.full((2, 8), 1e4)).norm(dim=-1).le(1).all()  # float32 rounds 1 - e^-|s| to 1, not above
    torch.testing.assert_close(norm_v, 1 - torch.exp(-norm_s))
    cos = torch.nn.functional.cosine_similarity(s, v, dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos))


def test_squash_of_zero_is_zero_with_finite_gradient():
    s = torch.zeros(3, 4, requires_grad=True)
    v = squash(s)
    v.sum().backward()
    assert torch.equal(v, torch.zeros(3, 4))
    assert torch.isfinite(s.grad).all()


def test_primary_capsules_shape_and_squashed():
    prim = PrimaryCapsules(128, 9, n_caps=16, caps_dim=8)
    u = prim(torch.randn(3, 128, 9, 9))
    assert u.shape == (3, 16, 8)
    assert (u.norm(dim=-1) < 1).all()


def test_primary_capsules_need_matching_channels():
    with pytest.raises(ValueError, match="n_caps \\* caps_dim"):
        PrimaryCapsules(100, 9, n_caps=16, caps_dim=8)


def test_routing_shapes_and_coupling():
    routing = SelfAttentionRouting(16, 8, 20, 64)
    v = routing(squash(torch.randn(5, 16, 8)))
    assert v.shape == (5, 20, 64)
    assert (v.norm(dim=-1) < 1).all()


def test_routing_matches_the_explicit_agreement_matrix():
    torch.manual_seed(0)
    routing = SelfAttentionRouting(6, 4, 3, 5)
    with torch.no_grad():
        routing.log_prior.normal_()
    u = squash(torch.randn(2, 6, 4))
    pred = torch.einsum("bid,jide->bjie", u, routing.weight)
    agreement = torch.einsum("bjie,bjke->bjik", pred, pred).sum(-1, keepdim=True) / 5**0.5  # full n_in x n_in
    c = torch.softmax(agreement, dim=1) + routing.log_prior
    expected = squash((pred * c).sum(dim=2))
    torch.testing.assert_close(routing(u), expected)


def test_efficient_capsnet_on_thitogene_map_and_gradients():
    net = EfficientCapsNet(16, 28, n_caps=20, caps_dim=64)
    assert net.primary.depthwise.kernel_size == (9, 9)  # the reference's 9 x 9 map
    out = net(torch.rand(4, 16, 28, 28))
    assert out.shape == (4, 20, 64)
    out.square().sum().backward()
    bad = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert bad == []


def test_efficient_capsnet_rejects_too_small_maps():
    with pytest.raises(ValueError, match="at least 11"):
        EfficientCapsNet(16, 10)
