import numpy as np
import pytest
import torch

from histo2st.model import PixNet
from histo2st.train import Trainer, TrainerConfig


class LinePlan:
    """Fit ``y = 2x`` with one weight; records the weight after every step and the weight that validation sees."""

    def __init__(self, metric=None):
        torch.manual_seed(0)
        self.module = torch.nn.Linear(1, 1, bias=False)
        self.metric = metric
        self.trajectory, self.validated = [], []

    def configure_optimizer(self, parameters):
        return torch.optim.SGD(parameters, lr=0.05)

    def batches(self, epoch, rng):
        for _ in range(3):
            yield torch.from_numpy(rng.normal(size=(4, 1)).astype(np.float32))

    def training_step(self, module, batch, device):
        return {"loss": ((module(batch) - 2 * batch) ** 2).mean()}

    def after_step(self, module, batch):
        self.trajectory.append(module.weight.item())

    def validate(self, module, device):
        self.validated.append(module.weight.item())
        return {} if self.metric is None else {"val_pcc": self.metric(len(self.validated))}


def _fit(plan, **kwargs):
    config = TrainerConfig(**{"epochs": 3, "progress": False, "patience": None, **kwargs})
    Trainer(plan, config).fit()
    return plan


def _ema(start, trajectory, decay):
    average, out = start, []
    for n, weight in enumerate(trajectory, 1):
        d = min(decay, (1 + n) / (10 + n))
        average = d * average + (1 - d) * weight
        out.append(average)
    return out


def test_validation_and_the_final_weights_are_the_average():
    start = LinePlan().module.weight.item()
    raw = _fit(LinePlan())
    plan = _fit(LinePlan(), ema_decay=0.8)
    assert plan.trajectory == pytest.approx(raw.trajectory)  # training itself never sees the averaged weights
    expected = _ema(start, plan.trajectory, 0.8)
    assert plan.validated == pytest.approx(expected[2::3], rel=1e-6)
    assert plan.module.weight.item() == pytest.approx(expected[-1], rel=1e-6)
    assert plan.module.weight.item() != pytest.approx(plan.trajectory[-1], rel=1e-3)


def test_the_best_averaged_weights_are_restored():
    plan = _fit(LinePlan(metric=lambda epoch: -abs(epoch - 2)), ema_decay=0.8)
    assert plan.module.weight.item() == pytest.approx(plan.validated[1])


def test_without_a_monitor_the_last_weights_are_kept():
    plan = _fit(LinePlan(metric=lambda epoch: -epoch), monitor=None)
    assert plan.module.weight.item() == pytest.approx(plan.trajectory[-1])
    assert _fit(LinePlan(metric=lambda epoch: -epoch)).module.weight.item() == pytest.approx(plan.validated[0])


def test_resume_restores_the_average(tmp_path):
    full = _fit(LinePlan(metric=lambda epoch: 0.0), ema_decay=0.8)
    _fit(LinePlan(metric=lambda epoch: 0.0), ema_decay=0.8, epochs=2, checkpoint_dir=tmp_path)
    resumed = _fit(LinePlan(metric=lambda epoch: 0.0), ema_decay=0.8, checkpoint_dir=tmp_path)
    assert resumed.trajectory == pytest.approx(full.trajectory[6:])
    assert resumed.validated == pytest.approx(full.validated[2:])
    _fit(LinePlan(), epochs=2, checkpoint_dir=tmp_path / "plain")
    with pytest.raises(ValueError, match="without weight averaging"):
        _fit(LinePlan(), ema_decay=0.8, checkpoint_dir=tmp_path / "plain")


@pytest.mark.slow
def test_pixnet_resume_with_ema_retraces_the_uninterrupted_run(small_tissue, tmp_path, tiny_pixnet):
    def model():
        return PixNet(list(small_tissue["table"].var_names), microns_per_pixel=4.0, **tiny_pixnet)

    kwargs = {"validation": 0.2, "progress": False, "patience": None, "ema_decay": 0.9}
    full = model()
    full.train(small_tissue, epochs=3, checkpoint_dir=tmp_path / "a", **kwargs)
    model().train(small_tissue, epochs=2, checkpoint_dir=tmp_path / "b", **kwargs)
    resumed = model()
    history = resumed.train(small_tissue, epochs=3, checkpoint_dir=tmp_path / "b", **kwargs)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-4)
    assert history[-1]["val_pcc"] == pytest.approx(full.history[-1]["val_pcc"], abs=1e-4)
    assert resumed.card["training"]["ema_decay"] == 0.9
    for key, value in full.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[key], value, atol=1e-5, rtol=1e-4)
