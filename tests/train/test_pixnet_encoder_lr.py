import numpy as np
import pytest
import torch

import histo2st as st
from histo2st.model import PixNet
from histo2st.train import PixNetPlan, prepare_sections


def _painted():
    rng = np.random.default_rng(0)
    xy = np.array([[60, 60], [180, 60], [60, 180], [180, 180.0]])
    image = rng.integers(0, 255, (240, 240, 3), dtype=np.uint8)
    sdata = st.io.from_arrays(
        image, xy, np.diag([10, 20, 30, 40]) + 1, list("abcd"), microns_per_pixel=1.0, spot_diameter_um=40
    )
    st.pp.normalize(sdata)
    return sdata


def test_encoder_lr_sets_the_encoders_learning_rate_only(tiny_pixnet):
    model = PixNet(list("abcd"), microns_per_pixel=1.0, **{**tiny_pixnet, "crop_px": 64}, lr=1e-3, encoder_lr=0.0)
    encoder_before = {k: v.clone() for k, v in model.module.encoder.state_dict().items() if v.is_floating_point()}
    decoder_before = model.module.head.weight.detach().clone()
    model.train(_painted(), epochs=1, validation=0.0, progress=False)
    assert model.card["hyperparameters"]["encoder_lr"] == 0.0
    # lr 0 leaves the encoder's weights as they were; batch norm statistics still follow the data
    state = model.module.encoder.state_dict()
    for key, before in encoder_before.items():
        if "running" not in key:
            torch.testing.assert_close(state[key], before, msg=key)
    assert not torch.equal(model.module.head.weight.detach(), decoder_before)


def test_encoder_lr_default_is_the_paper_single_rate(tiny_pixnet):
    sdata = _painted()
    model = PixNet(list("abcd"), microns_per_pixel=1.0, **tiny_pixnet)
    assert model.init_params["encoder_lr"] is None
    (section,), _ = prepare_sections(sdata, list("abcd"), 1.0)
    plan = PixNetPlan(model.module, [section], [], crop_px=64, lr=5e-4)
    assert len(plan.configure_optimizer(model.module.parameters()).param_groups) == 1
    plan = PixNetPlan(model.module, [section], [], crop_px=64, lr=5e-4, encoder_lr=1e-5)
    groups = plan.configure_optimizer(model.module.parameters()).param_groups
    assert [g["lr"] for g in groups] == [1e-5, 5e-4]
    assert [len(g["params"]) for g in groups] == [
        len(list(model.module.encoder.parameters())),
        len(list(model.module.parameters())) - len(list(model.module.encoder.parameters())),
    ]


def test_encoder_warmup_trains_the_decoder_alone_then_the_whole_network(tiny_pixnet):
    model = PixNet(list("abcd"), microns_per_pixel=1.0, **{**tiny_pixnet, "crop_px": 64}, encoder_warmup_epochs=1)
    encoder = model.module.encoder
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model.train(_painted(), epochs=1, validation=0.0, progress=False)
    # during the warm-up the encoder is untouched, batch norm statistics included
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)
    assert model.card["hyperparameters"]["encoder_warmup_epochs"] == 1

    model.train(_painted(), epochs=2, validation=0.0, progress=False)
    assert not model.module.encoder_frozen
    assert not torch.equal(encoder.conv1.weight.detach(), before["conv1.weight"])


def test_encoder_warmup_rejects_a_frozen_encoder_and_bad_values(tiny_pixnet):
    with pytest.raises(ValueError, match="freeze_encoder"):
        PixNet(list("abcd"), microns_per_pixel=1.0, **tiny_pixnet, freeze_encoder=True, encoder_warmup_epochs=1)
    (section,), _ = prepare_sections(_painted(), list("abcd"), 1.0)
    model = PixNet(list("abcd"), microns_per_pixel=1.0, **tiny_pixnet)
    with pytest.raises(ValueError, match="encoder_warmup_epochs"):
        PixNetPlan(model.module, [section], [], crop_px=64, encoder_warmup_epochs=-1)
