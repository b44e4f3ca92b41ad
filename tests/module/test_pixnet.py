import pytest
import torch

from histo2st.module import PixNetModule
from histo2st.nn import DecoderStage, ResNet18, load_encoder_weights


def _small(**kwargs):
    torch.manual_seed(kwargs.pop("seed", 0))
    return PixNetModule(kwargs.pop("n_genes", 5), hidden_dim=kwargs.pop("hidden_dim", 8), **kwargs)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (96, 96), (64, 96)])
def test_forward_backward_every_parameter(height, width):
    model = _small().train()
    images = torch.randn(2, 3, height, width)
    out = model(images)
    assert out.shape == (2, 5, height, width)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    # the learnable skip weights of the decoder receive a real (non-zero) gradient
    assert all(stage.delta.grad.abs() > 0 for stage in model.decoder.stages)


def test_any_size_is_padded_and_cropped():
    model = _small().eval()
    images = torch.randn(1, 3, 50, 77)
    with torch.no_grad():
        out = model(images)
        assert out.shape == (1, 5, 50, 77)
        # the input is padded at the bottom/right by replication, then cropped: padding it by hand gives the same map
        big = torch.nn.functional.pad(images, (0, 96 - 77, 0, 64 - 50), mode="replicate")
        torch.testing.assert_close(model(big)[..., :50, :77], out)
    assert model.input_multiple == 32


def test_structure_follows_the_paper():
    model = _small(pyramid_levels=5)
    # L - 1 decoder stages, each a stride-2 transposed convolution with a learnable scalar delta
    assert len(model.decoder.stages) == 4
    assert all(isinstance(s, DecoderStage) and s.delta.shape == () for s in model.decoder.stages)
    assert [s.dconv.stride for s in model.decoder.stages] == [(2, 2)] * 4
    # stage l maps the channels of F_{L-l+1} to those of F_{L-l}
    assert [(s.dconv.in_channels, s.dconv.out_channels) for s in model.decoder.stages] == [
        (512, 256), (256, 128), (128, 64), (64, 64)
    ]  # fmt: skip
    assert model.decoder.stages[0].dffn.conv1.out_channels == 8  # hidden_dim
    assert model.head.kernel_size == (1, 1)
    assert model.head.out_channels == 5
    assert not hasattr(model.encoder, "fc")
    assert PixNetModule(3).decoder.stages[0].dffn.conv1.out_channels == 512  # paper default width


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_fewer_pyramid_levels(levels):
    model = _small(pyramid_levels=levels)
    assert len(model.decoder.stages) == levels - 1
    assert model.input_multiple == 2**levels
    out = model(torch.randn(1, 3, 40, 24))
    assert out.shape == (1, 5, 40, 24)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_deterministic_under_seed():
    images = torch.randn(2, 3, 64, 64)
    a, b = _small(seed=7).eval(), _small(seed=7).eval()
    with torch.no_grad():
        torch.testing.assert_close(a(images), b(images), rtol=0, atol=0)
    c = _small(seed=8).eval()
    with torch.no_grad():
        assert not torch.allclose(a(images), c(images))


def test_softplus_output_is_positive():
    model = _small(output_activation="softplus").eval()
    with torch.no_grad():
        assert (model(torch.randn(1, 3, 32, 32)) > 0).all()


def test_frozen_encoder():
    model = _small(freeze_encoder=True).train()
    assert not model.encoder.training
    assert model.decoder.training
    running_mean = model.encoder.bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("encoder."))
    torch.testing.assert_close(model.encoder.bn1.running_mean, running_mean, rtol=0, atol=0)
    model.set_encoder_frozen(False)
    assert model.encoder.training
    assert all(p.requires_grad for p in model.encoder.parameters())


def test_encoder_weights_are_loaded(tmp_path):
    torch.manual_seed(1)
    source = ResNet18()
    path = tmp_path / "resnet18.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    model = _small(encoder_weights=path)
    torch.testing.assert_close(model.encoder.layer4[1].conv2.weight, source.layer4[1].conv2.weight, rtol=0, atol=0)
    # a 4-level encoder takes layers up to layer3 from the same file
    shallow = _small(pyramid_levels=4)
    report = load_encoder_weights(shallow, path)
    assert report.missing == []
    assert any(k.startswith("layer4.") for k in report.ignored)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="n_genes"):
        PixNetModule(0)
    with pytest.raises(ValueError, match="pyramid_levels"):
        PixNetModule(3, pyramid_levels=6)
    with pytest.raises(ValueError, match="output_activation"):
        PixNetModule(3, output_activation="exp")
    model = _small()
    with pytest.raises(TypeError, match="module.normalize"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.zeros(3, 32, 32))
