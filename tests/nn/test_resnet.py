import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from histo2st.nn import ResNet18, load_encoder_weights, normalize_images


def _bn(prefix, n):
    return [(f"{prefix}.{s}", (n,)) for s in ("weight", "bias", "running_mean", "running_var")]


# The tensors of torchvision's resnet18 checkpoint file (resnet18-f37072fd.pth), in its order, written out by hand:
# stem, then per layer two BasicBlocks (conv1, bn1, conv2, bn2; downsample.0/.1 in block 0 of layers 2-4), then fc.
TORCHVISION_RESNET18 = [
    ("conv1.weight", (64, 3, 7, 7)),
    *_bn("bn1", 64),
    ("layer1.0.conv1.weight", (64, 64, 3, 3)),
    *_bn("layer1.0.bn1", 64),
    ("layer1.0.conv2.weight", (64, 64, 3, 3)),
    *_bn("layer1.0.bn2", 64),
    ("layer1.1.conv1.weight", (64, 64, 3, 3)),
    *_bn("layer1.1.bn1", 64),
    ("layer1.1.conv2.weight", (64, 64, 3, 3)),
    *_bn("layer1.1.bn2", 64),
    ("layer2.0.conv1.weight", (128, 64, 3, 3)),
    *_bn("layer2.0.bn1", 128),
    ("layer2.0.conv2.weight", (128, 128, 3, 3)),
    *_bn("layer2.0.bn2", 128),
    ("layer2.0.downsample.0.weight", (128, 64, 1, 1)),
    *_bn("layer2.0.downsample.1", 128),
    ("layer2.1.conv1.weight", (128, 128, 3, 3)),
    *_bn("layer2.1.bn1", 128),
    ("layer2.1.conv2.weight", (128, 128, 3, 3)),
    *_bn("layer2.1.bn2", 128),
    ("layer3.0.conv1.weight", (256, 128, 3, 3)),
    *_bn("layer3.0.bn1", 256),
    ("layer3.0.conv2.weight", (256, 256, 3, 3)),
    *_bn("layer3.0.bn2", 256),
    ("layer3.0.downsample.0.weight", (256, 128, 1, 1)),
    *_bn("layer3.0.downsample.1", 256),
    ("layer3.1.conv1.weight", (256, 256, 3, 3)),
    *_bn("layer3.1.bn1", 256),
    ("layer3.1.conv2.weight", (256, 256, 3, 3)),
    *_bn("layer3.1.bn2", 256),
    ("layer4.0.conv1.weight", (512, 256, 3, 3)),
    *_bn("layer4.0.bn1", 512),
    ("layer4.0.conv2.weight", (512, 512, 3, 3)),
    *_bn("layer4.0.bn2", 512),
    ("layer4.0.downsample.0.weight", (512, 256, 1, 1)),
    *_bn("layer4.0.downsample.1", 512),
    ("layer4.1.conv1.weight", (512, 512, 3, 3)),
    *_bn("layer4.1.bn1", 512),
    ("layer4.1.conv2.weight", (512, 512, 3, 3)),
    *_bn("layer4.1.bn2", 512),
    ("fc.weight", (1000, 512)),
    ("fc.bias", (1000,)),
]


def _torchvision_state_dict(seed=0, keys=TORCHVISION_RESNET18):
    """Random tensors with torchvision's keys and shapes (variances positive, as in a real checkpoint)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys:
        t = torch.randn(shape, generator=gen) * 0.05
        if key.endswith("running_var"):
            t = t.abs() + 0.5
        state[key] = t
    return state


def test_state_dict_matches_torchvision_keys_and_shapes():
    own = ResNet18().state_dict()
    tensors = [(k, tuple(v.shape)) for k, v in own.items() if not k.endswith("num_batches_tracked")]
    assert tensors == TORCHVISION_RESNET18
    # model.state_dict() of torchvision also has one num_batches_tracked per batch norm (20 of them)
    assert sum(k.endswith("num_batches_tracked") for k in own) == 20
    assert sum(p.numel() for p in ResNet18().parameters()) == 11_689_512  # torchvision's resnet18 count


def test_strict_load_of_saved_torchvision_file(tmp_path):
    state = _torchvision_state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = ResNet18()
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)

    report = load_encoder_weights(ResNet18(), path)
    assert len(report.loaded) == len(TORCHVISION_RESNET18)
    assert report.missing == report.unexpected == report.ignored == report.mismatched == []
    assert report.source == str(path)


def _reference_forward(state, x):
    """torchvision's ResNet18 forward written with functional ops, to check the architecture, not just the keys."""

    def bn(t, p):
        return F.batch_norm(t, state[f"{p}.running_mean"], state[f"{p}.running_var"], state[f"{p}.weight"],
                            state[f"{p}.bias"], training=False, eps=1e-5)  # fmt: skip

    x = F.relu(bn(F.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            stride = 2 if layer > 1 and block == 0 else 1
            out = F.relu(bn(F.conv2d(x, state[f"{p}.conv1.weight"], stride=stride, padding=1), f"{p}.bn1"))
            out = bn(F.conv2d(out, state[f"{p}.conv2.weight"], padding=1), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in state:
                x = bn(F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.relu(out + x)
    return F.linear(x.mean(dim=(2, 3)), state["fc.weight"], state["fc.bias"])


def test_forward_matches_torchvision_architecture():
    state = _torchvision_state_dict(seed=1)
    model = ResNet18().eval()
    model.load_state_dict(state)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_forward(state, x), rtol=1e-4, atol=1e-5)


def test_pyramid_shapes_and_truncation():
    x = torch.randn(1, 3, 64, 96)
    feats = ResNet18(num_classes=None).forward_pyramid(x)
    assert [tuple(f.shape) for f in feats] == [
        (1, 64, 32, 48), (1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)
    ]  # fmt: skip
    shallow = ResNet18(num_classes=None, levels=3)
    assert not hasattr(shallow, "layer3")
    assert not hasattr(shallow, "fc")
    assert [f.shape[1] for f in shallow.forward_pyramid(x)] == [64, 64, 128]
    with pytest.raises(RuntimeError, match="no classifier"):
        shallow(x)
    with pytest.raises(ValueError, match="needs all 5 levels"):
        ResNet18(levels=4)


@pytest.mark.parametrize(
    ("prefix", "wrapper"),
    [
        ("module.", None),
        ("model.", "state_dict"),
        ("backbone.", "model_state_dict"),
        ("model.resnet.", "state_dict"),
        ("module.backbone.", None),
    ],
)
def test_load_with_wrappers_and_prefixes(tmp_path, prefix, wrapper):
    state = _torchvision_state_dict(seed=2)
    saved = {prefix + k: v for k, v in state.items()}
    if wrapper is not None:
        saved = {wrapper: saved, "epoch": 3}
    path = tmp_path / "ckpt.pt"
    torch.save(saved, path)
    model = ResNet18()
    report = load_encoder_weights(model, path)
    assert report.missing == report.unexpected == []
    torch.testing.assert_close(model.layer3[1].conv2.weight, state["layer3.1.conv2.weight"], rtol=0, atol=0)


def test_ciga_style_lightning_checkpoint(tmp_path):
    # Ciga et al.'s tenpercent_resnet18.ckpt: {"state_dict": {"model.resnet.<torchvision key>": ...}, ...} whose fc
    # is a projection head; the hyper-parameters need full unpickling.
    state = _torchvision_state_dict(seed=3, keys=TORCHVISION_RESNET18[:-2])
    head = {"fc.0.weight": torch.randn(512, 512), "fc.0.bias": torch.randn(512), "fc.2.weight": torch.randn(128, 512)}
    ckpt = {
        "epoch": 1000,
        "state_dict": {f"model.resnet.{k}": v for k, v in {**state, **head}.items()},
        "hyper_parameters": argparse.Namespace(lr=1.0),
    }
    path = tmp_path / "tenpercent_resnet18.ckpt"
    torch.save(ckpt, path)
    encoder = ResNet18(num_classes=None)
    with pytest.raises(ValueError, match="weights_only=False"):
        load_encoder_weights(encoder, path)
    report = load_encoder_weights(encoder, path, weights_only=False)
    assert report.missing == report.unexpected == report.mismatched == []
    assert sorted(report.ignored) == sorted(head)
    torch.testing.assert_close(encoder.bn1.running_var, state["bn1.running_var"], rtol=0, atol=0)
    # into a classifier the projection head is ignored too, and fc keeps its initial values
    classifier = ResNet18()
    fc_before = classifier.fc.weight.detach().clone()
    report = load_encoder_weights(classifier, ckpt["state_dict"])
    assert sorted(report.ignored) == sorted(head)
    assert report.missing == []
    torch.testing.assert_close(classifier.fc.weight, fc_before, rtol=0, atol=0)


def test_truncated_encoder_ignores_deeper_layers():
    state = _torchvision_state_dict(seed=4)
    encoder = ResNet18(num_classes=None, levels=4)
    report = load_encoder_weights(encoder, state)
    assert report.missing == report.unexpected == []
    assert all(k.startswith(("layer4.", "fc.")) for k in report.ignored)
    assert len(report.ignored) == sum(k.startswith(("layer4.", "fc.")) for k, _ in TORCHVISION_RESNET18)


def test_problems_are_named(caplog):
    state = _torchvision_state_dict(seed=5)
    del state["layer2.1.bn2.running_var"]
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    state["head.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="layer2.1.bn2.running_var") as err:
        load_encoder_weights(ResNet18(), state)
    assert "head.weight" in str(err.value)
    assert "layer1.0.conv1.weight: (64, 64, 1, 1)" in str(err.value)

    model = ResNet18()
    report = load_encoder_weights(model, state, strict=False)
    assert report.missing == ["layer2.1.bn2.running_var"]
    assert report.unexpected == ["head.weight"]
    assert len(report.mismatched) == 1
    assert "missing: layer2.1.bn2.running_var" in caplog.text
    torch.testing.assert_close(model.layer4[0].conv1.weight, state["layer4.0.conv1.weight"], rtol=0, atol=0)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_encoder_weights(ResNet18(), tmp_path / "absent.pth")
    with pytest.raises(TypeError, match="ResNet18"):
        load_encoder_weights(torch.nn.Linear(2, 2), {})
    with pytest.raises(ValueError, match="No tensors"):
        load_encoder_weights(ResNet18(), {"epoch": 1})


def test_normalize_images():
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2)
    out = normalize_images(images)
    expected = (np.array([0, 128, 255]) / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(out[:, 0, 0].numpy(), expected, rtol=1e-6)
    assert out.dtype == torch.float32
    assert out.shape == (3, 2, 2)
    assert normalize_images(images[None], mean=(0.5,) * 3, std=(0.5,) * 3)[0, 2, 0, 0] == pytest.approx(1.0)
    with pytest.raises(TypeError, match="uint8"):
        normalize_images(images.float())
