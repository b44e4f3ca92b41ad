import pytest
import torch
import torch.nn.functional as F

from histo2st.nn import ODConv2d, ODConvAttentions


def _all_grads_finite(module):
    return {name for name, p in module.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()}


def test_shape_matches_thitogene_stem():
    conv = ODConv2d(3, 16, 4, stride=4)
    out = conv(torch.rand(5, 3, 112, 112))
    assert out.shape == (5, 16, 28, 28)


def test_padding_and_dilation_follow_conv2d_arithmetic():
    conv = ODConv2d(4, 6, 3, stride=2, padding=1, dilation=2)
    ref = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2)
    x = torch.rand(3, 4, 17, 13)
    assert conv(x).shape == ref(x).shape


def test_every_parameter_gets_a_finite_gradient():
    conv = ODConv2d(3, 8, 3, padding=1)
    conv(torch.rand(4, 3, 12, 12)).square().mean().backward()
    assert _all_grads_finite(conv) == set()


def test_one_kernel_with_unit_attentions_is_a_plain_convolution(monkeypatch):
    conv = ODConv2d(3, 5, 3, stride=2, padding=1, kernel_num=1)
    x = torch.randn(4, 3, 16, 16)

    def unit_attentions(inp):
        b = inp.shape[0]
        return ODConvAttentions(
            channel=torch.ones(b, 3, 1, 1),
            filter=torch.ones(b, 5, 1, 1),
            spatial=torch.ones(b, 1, 1, 1, 3, 3),
            kernel=torch.ones(b, 1, 1, 1, 1, 1),
        )

    monkeypatch.setattr(conv.attention, "forward", unit_attentions)
    expected = F.conv2d(x, conv.weight[0], stride=2, padding=1)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_kernel_attention_is_a_distribution_and_others_are_gates():
    conv = ODConv2d(3, 8, 4, stride=4)
    att = conv.attention(torch.rand(6, 3, 20, 20))
    torch.testing.assert_close(att.kernel.sum(dim=1).flatten(), torch.ones(6))
    for gate in (att.channel, att.filter, att.spatial):
        assert ((gate > 0) & (gate < 1)).all()
    assert att.spatial.shape == (6, 1, 1, 1, 4, 4)


def test_kernels_are_per_sample():
    torch.manual_seed(0)
    conv = ODConv2d(3, 8, 4, stride=4).eval()  # eval: batch norm uses running stats, not the batch's
    a, b = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24) * 3
    together = conv(torch.cat([a, b]))
    torch.testing.assert_close(together[:1], conv(a), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(together[1:], conv(b), rtol=1e-5, atol=1e-6)
    # different inputs really get different kernels: the attentions differ
    att = conv.attention(torch.cat([a, b]))
    assert not torch.allclose(att.kernel[0], att.kernel[1])


def test_wrong_channels_raise_a_clear_error():
    with pytest.raises(ValueError, match="expects input of shape"):
        ODConv2d(3, 8, 3)(torch.rand(2, 4, 10, 10))
