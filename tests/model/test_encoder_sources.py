"""PixNet's encoder from a name, a file, a directory or the Hugging Face hub cache; saved by reference or inside."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import histo2st as st
from histo2st.model import ModelFileError, PixNet
from histo2st.model._encoder_source import resolve_encoder

ARCH = "vit_small_patch16_224"
ARGS = {"depth": 1, "embed_dim": 48, "num_heads": 2, "init_values": 1e-5}
#: RGB statistics a hub config may give (H-optimus-0's), to check they reach the network's input.
MEAN, STD = (0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _write_repo(directory, seed=0):
    """A timm hub repository's files: config.json (current form) and model.safetensors."""
    import timm

    torch.manual_seed(seed)
    trunk = timm.create_model(ARCH, pretrained=False, num_classes=0, **ARGS)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"architecture": ARCH, "num_classes": 0, "model_args": ARGS,
              "pretrained_cfg": {"mean": list(MEAN), "std": list(STD), "input_size": [3, 224, 224]}}  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in trunk.state_dict().items()}, directory / "model.safetensors")
    return trunk.state_dict()


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face hub cache holding 'histo2st-test/tiny-vit', laid out as huggingface_hub writes it."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--histo2st-test--tiny-vit"
    state = _write_repo(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # never the network in tests
    return state


def test_hub_id_resolves_from_the_cache(hub_cache):
    source = resolve_encoder("hf-hub:histo2st-test/tiny-vit")
    assert source.architecture == ARCH
    assert source.model_args == ARGS
    assert source.mean == MEAN
    assert source.std == STD
    assert source.origin["source"] == "hf-hub:histo2st-test/tiny-vit"
    assert source.origin["revision"] == COMMIT
    assert source.origin["file"] == "model.safetensors"
    assert len(source.origin["sha256"]) == 64

    model = PixNet(["a", "b"], encoder="hf-hub:histo2st-test/tiny-vit", hidden_dim=8)
    assert model.module.encoder_frozen  # a pretrained ViT is frozen by default
    assert model.module.input_mean == MEAN
    torch.testing.assert_close(model.module.encoder.trunk.blocks[0].ls1.gamma, hub_cache["blocks.0.ls1.gamma"])
    with pytest.raises(FileNotFoundError, match="not in the local hub cache and HF_HUB_OFFLINE is set"):
        resolve_encoder("hf-hub:histo2st-test/absent")
    with pytest.raises(ValueError, match="brings its own weights"):
        PixNet(["a"], encoder="hf-hub:histo2st-test/tiny-vit", encoder_weights="w.pt")


def test_a_referenced_encoder_is_not_copied_and_is_checked(tmp_path):
    repo = tmp_path / "encoder"
    _write_repo(repo, seed=1)
    model = PixNet(["a", "b"], encoder=str(repo), hidden_dim=8)
    x = model.module.normalize(torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8))
    with torch.no_grad():
        expected = model.module.eval()(x)

    by_reference = model.save(tmp_path / "ref")
    card = json.loads((by_reference / "card.json").read_text())
    assert card["encoder"]["included"] is False
    assert card["encoder"]["weights"]["source"] == str(repo)
    assert not any(k.startswith("encoder.trunk.") for k in torch.load(by_reference / "weights.pt"))
    inside = model.save(tmp_path / "inside", include_encoder=True)
    assert any(k.startswith("encoder.trunk.") for k in torch.load(inside / "weights.pt"))
    with torch.no_grad():
        np.testing.assert_array_equal(st.tl.load_model(by_reference).module(x).numpy(), expected.numpy())

    _write_repo(repo, seed=2)  # other weights under the same name
    with pytest.raises(ModelFileError, match="not those this model was trained with"):
        st.tl.load_model(by_reference)
    (repo / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="none of the weight files"):
        st.tl.load_model(by_reference)
    with torch.no_grad():  # the self-contained copy needs nothing else
        np.testing.assert_array_equal(st.tl.load_model(inside).module(x).numpy(), expected.numpy())


def test_a_weights_file_of_a_named_architecture(tmp_path):
    import torchvision

    torch.manual_seed(4)
    path = tmp_path / "resnet50.safetensors"
    save_file(torchvision.models.resnet50(weights=None).state_dict(), path)
    model = PixNet(["a"], encoder="resnet50", encoder_weights=path, hidden_dim=8)
    assert not model.module.encoder_frozen  # a ResNet trains end to end, as in the paper
    assert model.card["encoder"]["weights"]["sha256"] == resolve_encoder("resnet50", path).origin["sha256"]
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "card.json").read_text())["encoder"]["included"]


def test_fit_and_predict_with_a_vit_encoder():
    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=5)
    st.pp.normalize(sdata)
    model = st.tl.fit(sdata, "pixnet", encoder=ARCH, encoder_args=ARGS, epochs=1, microns_per_pixel=4.0,
                      hidden_dim=8, crop_px=64, batch_size=2, tile_px=128, progress=False)  # fmt: skip
    assert not model.module.encoder_frozen  # random weights: the whole network trains
    assert model.card["encoder"]["architecture"] == ARCH
    assert model.card["preset"]["hyperparameters"]["encoder"] == ARCH
    st.tl.predict(sdata, model, spot_um=None)
    assert np.isfinite(sdata.tables["pred_spots"].X).all()


def test_feature_cache_holds_the_tokens_of_each_tile_and_trains():
    from histo2st.train._feature_cache import slide_tokens

    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=6, seed=6)
    st.pp.normalize(sdata)
    genes = list(sdata["table"].var_names)
    model = PixNet(genes, encoder=ARCH, encoder_args=ARGS, freeze_encoder=True, microns_per_pixel=4.0,
                   hidden_dim=8, crop_px=64, batch_size=2, tile_px=128, cache_features=True)  # fmt: skip
    image = np.ascontiguousarray(sdata["he"].data[:, ::2, ::2].compute())  # 4 µm/px
    tokens = slide_tokens(model.module, image, margin=64, tile_px=64)
    assert tokens.shape == (48, 5 * 4, 5 * 4)  # (150 + 128) px padded, in tiles of 64 px, tokens of 16 px
    tile = torch.from_numpy(np.ascontiguousarray(image[None, :, 0:64, 64:128]))
    with torch.no_grad():
        expected = model.module.encoder.tokens(model.module.normalize(tile))[0].numpy()
    np.testing.assert_allclose(tokens[:, 4:8, 8:12], expected, rtol=2e-3, atol=2e-3)  # float16

    history = model.train(sdata, epochs=2, validation=0.2, progress=False)
    assert len(history) == 2
    assert np.isfinite(history[-1]["val_pcc"])
    with pytest.raises(ValueError, match="frozen ViT"):
        PixNet(genes, encoder=ARCH, encoder_args=ARGS, cache_features=True, crop_px=64).train(sdata, epochs=1)
