"""The default guard against overfitting: early stopping on validation PCC, keeping the best epoch's weights."""

import inspect
import time

import numpy as np
import torch

import histo2st as st
from histo2st.train import Trainer, TrainerConfig

#: Validation PCC per epoch: best at epoch 3, then worse (what overfitting on a few hundred spots looks like).
CURVE = [0.10, 0.20, 0.30, 0.25, 0.24, 0.23, 0.22, 0.21, 0.20, 0.19, 0.18, 0.17]


class CurvePlan:
    """One weight moved by every step; validation reads the next PCC of ``CURVE`` and records the weight it saw."""

    def __init__(self):
        torch.manual_seed(0)
        self.module = torch.nn.Linear(1, 1, bias=False)
        self.seen = []

    def configure_optimizer(self, parameters):
        return torch.optim.SGD(parameters, lr=0.1)

    def batches(self, epoch, rng):
        yield torch.from_numpy(rng.normal(size=(4, 1)).astype(np.float32))

    def training_step(self, module, batch, device):
        return {"loss": ((module(batch) - 2 * batch) ** 2).mean()}

    def validate(self, module, device):
        self.seen.append(module.weight.item())
        return {"val_pcc": CURVE[len(self.seen) - 1]}


def test_training_stops_after_patience_and_keeps_the_best_epoch():
    plan = CurvePlan()
    history = Trainer(plan, TrainerConfig(epochs=len(CURVE), patience=4, progress=False)).fit()

    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6, 7]  # 4 epochs without improvement after epoch 3
    assert plan.module.weight.item() == plan.seen[2]
    assert plan.module.weight.item() != plan.seen[-1]


def test_fit_validates_and_stops_early_by_default():
    defaults = inspect.signature(st.tl.fit).parameters
    assert defaults["validation"].default == 0.15
    for preset in ("cpu", "paper"):
        assert st.model.PixNet.presets[preset]["epochs"] <= 500
    assert st.model.PixNet.presets["cpu"]["patience"] is not None
    assert st.model.PixNet.presets["cpu"]["epochs"] <= 50


class SlowPlan(CurvePlan):
    """Twenty steps an epoch, each taking at least 50 ms."""

    steps = 0

    def batches(self, epoch, rng):
        for _ in range(20):
            time.sleep(0.05)
            yield torch.from_numpy(rng.normal(size=(4, 1)).astype(np.float32))

    def training_step(self, module, batch, device):
        self.steps += 1
        return super().training_step(module, batch, device)


def test_time_budget_stops_within_an_epoch_and_still_validates():
    plan = SlowPlan()
    history = Trainer(plan, TrainerConfig(epochs=5, max_time=0.3, patience=None, progress=False)).fit()

    assert [h["epoch"] for h in history] == [1]
    assert plan.steps < 20  # a whole epoch takes 1 s: the budget of 0.3 s ends the first one part-way
    assert len(plan.seen) == 1  # validated all the same
    assert plan.module.weight.item() == plan.seen[0]
