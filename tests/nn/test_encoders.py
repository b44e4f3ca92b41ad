"""Encoders in their published layouts: torchvision ResNets and timm Vision Transformers, loaded strictly."""

import pytest
import torch
from safetensors.torch import save_file

from histo2st.nn import (
    ResNet50,
    SimpleFeaturePyramid,
    ViTEncoder,
    build_encoder,
    encoder_input_stats,
    load_encoder_weights,
)

#: Published ViT layouts, each as the timm arguments of its release, shrunk (depth 2, width 64) so a test builds it
#: in milliseconds, and keys of its checkpoints (https://huggingface.co model pages of each).
VIT_LAYOUTS = {
    # MahmoodLab/UNI: timm vit_large_patch16_224, init_values 1e-5 (LayerScale)
    "UNI": ("vit_large_patch16_224", {"init_values": 1e-5}, {"cls_token", "pos_embed", "blocks.0.ls1.gamma"}),
    # MahmoodLab/UNI2-h: patch 14, 8 register tokens, no position embedding for the prefix tokens, SwiGLU (packed)
    "UNI2-h": (
        "vit_giant_patch14_224",
        {
            "init_values": 1e-5,
            "reg_tokens": 8,
            "no_embed_class": True,
            "mlp_ratio": 5.33334,
            "mlp_layer": "swiglu_packed",
            "act_layer": "silu",
        },
        {"cls_token", "reg_token", "pos_embed", "blocks.0.ls2.gamma", "blocks.0.mlp.fc1.weight"},
    ),  # fmt: skip
    # bioptimus/H-optimus-0: timm vit_giant_patch14_reg4_dinov2, init_values 1e-5
    "H-optimus-0": ("vit_giant_patch14_reg4_dinov2", {"init_values": 1e-5}, {"reg_token", "blocks.1.ls1.gamma"}),
    # paige-ai/Virchow2: vit_huge_patch14_224, 4 register tokens, SwiGLU (packed), SiLU
    "Virchow2": (
        "vit_huge_patch14_224",
        {"init_values": 1e-5, "reg_tokens": 4, "mlp_ratio": 5.3375, "mlp_layer": "swiglu_packed", "act_layer": "silu"},
        {"reg_token", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight"},
    ),
    # prov-gigapath/prov-gigapath (tile encoder): vit_giant_patch14_dinov2
    "Prov-GigaPath": ("vit_giant_patch14_dinov2", {"init_values": 1e-5}, {"cls_token", "blocks.1.ls2.gamma"}),
}
SMALL = {"depth": 2, "embed_dim": 96, "num_heads": 2}


def _published_state(architecture, model_args, seed):
    """A checkpoint as its authors publish it: timm's model without a head, its state dict."""
    import timm

    from histo2st.nn._vit_encoder import timm_model_args

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=0, **timm_model_args(model_args))
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", list(VIT_LAYOUTS))
def test_published_vit_layouts_load_strictly(tmp_path, name):
    architecture, args, published_keys = VIT_LAYOUTS[name]
    args = {**args, **SMALL}
    state = _published_state(architecture, args, seed=1)
    assert published_keys <= set(state)
    path = tmp_path / "model.safetensors"
    save_file(state, path)
    encoder = ViTEncoder(architecture, args)
    report = load_encoder_weights(encoder, path)
    assert report.missing == report.unexpected == report.mismatched == report.ignored == []
    for key in published_keys:
        torch.testing.assert_close(encoder.trunk.state_dict()[key], state[key], rtol=0, atol=0)
    features = encoder.forward_pyramid(torch.randn(1, 3, 96, 64))
    assert [tuple(f.shape[-2:]) for f in features] == [(48, 32), (24, 16), (12, 8), (6, 4), (3, 2)]
    assert [f.shape[1] for f in features] == list(encoder.channels)


def test_vit_checkpoint_problems_are_named(tmp_path):
    state = _published_state("vit_small_patch16_224", {**SMALL, "depth": 3}, seed=2)
    state["head.weight"] = torch.zeros(1000, 96)  # a classifier's head: ignored
    encoder = ViTEncoder("vit_small_patch16_224", SMALL)
    with pytest.raises(ValueError, match="blocks.2.attn.qkv.weight") as err:
        load_encoder_weights(encoder, state)
    assert "vit_small_patch16_224" in str(err.value)
    wider = ViTEncoder("vit_small_patch16_224", {**SMALL, "depth": 3, "embed_dim": 128, "num_heads": 2})
    with pytest.raises(ValueError, match=r"patch_embed.proj.weight: \(96, 3, 16, 16\) -> \(128, 3, 16, 16\)"):
        load_encoder_weights(wider, state)
    report = load_encoder_weights(ViTEncoder("vit_small_patch16_224", {**SMALL, "depth": 3}), state)
    assert report.ignored == ["head.weight"]


def test_resnet50_torchvision_layout(tmp_path):
    import torchvision

    torch.manual_seed(3)
    published = torchvision.models.resnet50(weights=None).state_dict()
    assert tuple(published["layer1.0.conv3.weight"].shape) == (256, 64, 1, 1)
    assert tuple(published["layer4.0.downsample.0.weight"].shape) == (2048, 1024, 1, 1)
    path = tmp_path / "resnet50.pth"
    torch.save(published, path)
    encoder = build_encoder("resnet50")
    report = load_encoder_weights(encoder, path)
    assert report.missing == report.unexpected == report.mismatched == []
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(encoder.layer3[5].bn3.running_var, published["layer3.5.bn3.running_var"])
    classifier = ResNet50().eval()
    classifier.load_state_dict(published)
    reference = torchvision.models.resnet50(weights=None).eval()
    reference.load_state_dict(published)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), reference(x))
    assert [f.shape[1] for f in encoder.forward_pyramid(x)] == [64, 256, 512, 1024, 2048]


def test_patch14_tokens_resampled_to_stride16():
    encoder = ViTEncoder("vit_small_patch14_reg4_dinov2", SMALL, levels=4)
    features = encoder.forward_pyramid(torch.randn(2, 3, 128, 96))  # 10 x 7 tokens of 14 px
    assert [tuple(f.shape) for f in features] == [(2, 64, 64, 48), (2, 64, 32, 24), (2, 128, 16, 12), (2, 256, 8, 6)]
    mean, std = encoder_input_stats(encoder)
    assert len(mean) == len(std) == 3


def test_simple_feature_pyramid_and_bad_names():
    pyramid = SimpleFeaturePyramid(32, (8, 8, 16, 32, 64))
    maps = pyramid(torch.randn(1, 32, 4, 6))
    assert [tuple(m.shape[1:]) for m in maps] == [(8, 32, 48), (8, 16, 24), (16, 8, 12), (32, 4, 6), (64, 2, 3)]
    with pytest.raises(ValueError, match="cannot build .resnet18. as a Vision Transformer"):
        ViTEncoder("resnet18")
    with pytest.raises(ValueError, match="timm cannot build"):
        ViTEncoder("vit_no_such_model")
    with pytest.raises(ValueError, match="mlp_layer"):
        ViTEncoder("vit_small_patch16_224", {"mlp_layer": "kan"})
    with pytest.raises(ValueError, match="takes none"):
        build_encoder("resnet18", model_args={"depth": 2})
