import json

import numpy as np
import pytest
import torch

import histo2st as st
from histo2st.nn import ResNet18, load_encoder_weights
from histo2st.tl._pretrain import _pyramid_level

# 300 x 400 px at 1 µm/px -> 150 x 200 px at 2 µm/px: 24 tiles of 32 px, 2 held out, 2 steps of 8 per epoch
SMALL = {"tile_px": 32, "batch_size": 8, "steps_per_epoch": 2, "min_tissue": 0.0, "progress": False}


def test_pretrained_encoder_loads_into_pixnet(tiny_sample, tmp_path):
    out = st.tl.pretrain_encoder(tiny_sample, epochs=1, out=tmp_path / "enc.pt", **SMALL)
    assert out == tmp_path / "enc.pt"
    card = json.loads((tmp_path / "enc.json").read_text())
    assert card["slides"] == ["tiny"]
    assert card["tiles"] == {"tiny": 24}
    assert card["n_validation_tiles"] == 2
    assert card["method"] == "byol"
    assert card["microns_per_pixel"] == 2.0
    assert card["settings"]["tile_um"] == 64.0
    assert card["epochs_run"] == 1
    assert card["steps_run"] == 2
    assert "transductive" in card["transductive"]
    assert np.isfinite([card["history"][0][k] for k in ("loss", "val_loss", "val_feature_std")]).all()

    state = torch.load(out, weights_only=True)
    assert not any(k.startswith("fc.") for k in state)
    report = load_encoder_weights(ResNet18(num_classes=None), out)  # strict: every encoder tensor present
    assert len(report.loaded) == len(state)
    model = st.model.PixNet(["a", "b"], encoder_weights=out, hidden_dim=8, pyramid_levels=3)
    torch.testing.assert_close(model.module.encoder.conv1.weight, state["conv1.weight"])
    assert model.card["encoder"]["weights"]["pretraining"]["slides"] == ["tiny"]


def test_resume_and_overwrite(tiny_sample, tmp_path):
    first = st.tl.pretrain_encoder(tiny_sample, epochs=1, checkpoint_dir=tmp_path, **SMALL)
    assert first == tmp_path / "encoder.pt"
    assert (tmp_path / "last.pt").is_file()
    history = json.loads(first.with_suffix(".json").read_text())["history"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        st.tl.pretrain_encoder(tiny_sample, epochs=2, checkpoint_dir=tmp_path, **SMALL)
    st.tl.pretrain_encoder(tiny_sample, epochs=2, checkpoint_dir=tmp_path, overwrite=True, **SMALL)
    resumed = json.loads(first.with_suffix(".json").read_text())["history"]
    assert [h["epoch"] for h in resumed] == [1, 2]
    assert resumed[0]["loss"] == history[0]["loss"]  # epoch 1 came from the checkpoint, not a new run


def test_clear_errors(tiny_sample, tmp_path):
    with pytest.raises(ValueError, match="Unknown pretraining method"):
        st.tl.pretrain_encoder(tiny_sample, method="simclr")
    with pytest.raises(ValueError, match="lower `tile_px` or `batch_size`"):
        st.tl.pretrain_encoder(tiny_sample, out=tmp_path / "e.pt", **{**SMALL, "batch_size": 64})
    with pytest.raises(ValueError, match="min_tissue"):
        st.tl.pretrain_encoder(tiny_sample, min_tissue=2.0)


def test_a_pyramid_is_read_at_the_coarsest_level_fine_enough():
    from spatialdata.models import Image2DModel

    image = np.zeros((3, 64, 64), np.uint8)
    pyramid = Image2DModel.parse(image, dims=("c", "y", "x"), scale_factors=[2, 2])
    data, mpp = _pyramid_level(pyramid, 0.5, 1.2)
    assert mpp == 1.0
    assert data.shape == (3, 32, 32)
    data, mpp = _pyramid_level(pyramid, 0.5, 0.4)
    assert mpp == 0.5
    assert data.shape == (3, 64, 64)


def test_bfloat16_pretraining_is_recorded_and_finite(tiny_sample, tmp_path):
    out = st.tl.pretrain_encoder(tiny_sample, epochs=1, out=tmp_path / "enc.pt", mixed_precision=True, **SMALL)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["settings"]["mixed_precision"] is True
    assert np.isfinite(card["history"][0]["loss"])
    state = torch.load(out, weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())  # saved as float32 weights


def test_native_bfloat16_is_decided_by_the_device():
    from histo2st.train._precision import native_bfloat16

    assert native_bfloat16("cpu") is bool(torch.cpu._is_amx_tile_supported())
    assert native_bfloat16("meta") is False
