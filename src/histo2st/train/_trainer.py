"""One training loop for every model: epochs, validation, early stopping, checkpoints, resume, DDP, AMP."""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .._logging import logger
from ._distributed import DistInfo, device_for_rank, init_distributed
from ._progress import TrainingProgress

CHECKPOINT_NAME = "last.pt"


class TrainingPlan(Protocol):
    """What a model hands to :class:`Trainer` (scvi-tools' split: the plan knows the data and the loss)."""

    module: object

    def configure_optimizer(self, parameters):
        """Return a torch optimizer over ``parameters``."""

    def batches(self, epoch: int, rng: np.random.Generator):
        """Yield the training batches of one epoch; must depend only on ``epoch`` and ``rng``."""

    def training_step(self, module, batch, device) -> dict:
        """Compute the loss of one batch; return a dict with at least ``"loss"`` (a tensor)."""

    def validate(self, module, device) -> dict:
        """Return validation metrics (floats) computed on data never used for the loss."""

    # optional: ``after_step(module, batch)``, run without gradients after each optimizer step (e.g. a momentum
    # encoder's update), and ``end_of_epoch(module, device)``, run without gradients after each epoch's training steps


@dataclass
class TrainerConfig:
    """Options of :class:`Trainer`, built once (by :func:`histo2st.tl.fit` or ``model.train``) and passed as one object.

    Attributes
    ----------
    epochs
        Maximum number of epochs.
    seed
        Seeds torch and the batch sampling; each epoch's batches depend only on (seed, epoch, rank).
    device
        Torch device string (already resolved, not ``"auto"``).
    checkpoint_dir
        Where to save ``last.pt`` after every epoch; resume from it when it exists and ``resume`` is true.
    resume
        Continue from ``checkpoint_dir/last.pt`` when present.
    patience
        Stop after this many epochs without improvement of ``monitor``; ``None`` disables early stopping.
    monitor
        Validation metric to maximise; the weights of its best epoch are restored at the end. ``None``: no selection
        and no early stopping, the last weights are kept (self-supervised training, whose validation loss says
        little about which epoch is best).
    mixed_precision
        Autocast to bfloat16 on CUDA (``"auto"`` enables it on CUDA only).
    progress
        Show a tqdm progress bar.
    max_time
        Stop once this many seconds of training have passed, checked after every optimizer step: the epoch under way
        ends there, is validated and checkpointed (a resume starts the next epoch).
    ema_decay
        Keep an exponential moving average of the weights (every floating-point entry of the state dict, batch norm
        statistics included), updated after each optimizer step with decay ``min(ema_decay, (1 + n) / (10 + n))``
        after ``n`` updates, so that early averages are not dominated by the initial weights. Validation, the best
        weights and the weights left at the end are the averaged ones; checkpoints hold both. ``None`` disables it.
    """

    epochs: int = 30
    seed: int = 0
    device: str = "cpu"
    checkpoint_dir: str | os.PathLike | None = None
    resume: bool = True
    patience: int | None = 8
    monitor: str | None = "val_pcc"
    mixed_precision: bool | str = "auto"
    progress: bool = True
    max_time: float | None = None
    ema_decay: float | None = None


class Trainer:
    """Train a module through its :class:`TrainingPlan`.

    The best weights by ``config.monitor`` are restored at the end when there was validation (with
    ``config.ema_decay``, the best averaged weights, or the last averaged weights without validation). Under
    ``torchrun`` the module is wrapped in ``DistributedDataParallel`` and every rank samples different batches; all
    ranks validate on the same data, so they take the same early-stopping decision, and only rank 0 writes
    checkpoints.
    """

    def __init__(self, plan: TrainingPlan, config: TrainerConfig) -> None:
        self.plan = plan
        self.config = config
        self.history: list[dict] = []

    def fit(self) -> list[dict]:
        """Run training; returns the per-epoch history (also kept in ``self.history``)."""
        import torch

        cfg = self.config
        dist = init_distributed(cfg.device)
        device = torch.device(device_for_rank(cfg.device, dist))
        torch.manual_seed(cfg.seed)
        module = self.plan.module.to(device)
        train_module = self._wrap(module, dist, device)
        optimizer = self.plan.configure_optimizer(module.parameters())
        ema = None if cfg.ema_decay is None else _WeightAverage(module, cfg.ema_decay)
        amp = cfg.mixed_precision is True or (cfg.mixed_precision == "auto" and device.type == "cuda")

        state = _TrainState()
        ckpt = Path(cfg.checkpoint_dir) / CHECKPOINT_NAME if cfg.checkpoint_dir else None
        if ckpt is not None and cfg.resume and ckpt.is_file():
            state = self._load(ckpt, module, optimizer, ema)
            logger.info(f"Resuming from '{ckpt}' after epoch {state.epoch}.")
        self.history = state.history

        start = time.perf_counter() - state.elapsed
        bar = _progress(cfg, dist, initial=state.epoch)
        for epoch in range(state.epoch, cfg.epochs):
            if state.stopped:
                break
            rng = np.random.default_rng([cfg.seed, epoch, dist.rank])
            train_module.train()
            losses, t0, out_of_time = [], time.perf_counter(), False
            for batch in self.plan.batches(epoch, rng):
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                    out = self.plan.training_step(train_module, batch, device)
                out["loss"].backward()
                optimizer.step()
                with torch.no_grad():
                    if hasattr(self.plan, "after_step"):
                        self.plan.after_step(module, batch)
                    if ema is not None:
                        ema.update(module)
                losses.append(float(out["loss"].detach()))
                if bar is not None:
                    bar.step(losses[-1])
                if self._out_of_time(start, dist, device):
                    out_of_time = True
                    break
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else math.nan}
            record["epoch_seconds"] = time.perf_counter() - t0
            record["steps"] = len(losses)
            module.eval()
            with torch.no_grad():
                trained = None if ema is None else ema.swap_in(module)
                if hasattr(self.plan, "end_of_epoch"):
                    self.plan.end_of_epoch(module, device)
                record.update(self.plan.validate(module, device))
            self.history.append(record)
            state.epoch = epoch + 1
            state.elapsed = time.perf_counter() - start
            self._track_best(state, record, module)
            if ema is not None:
                ema.swap_out(module, trained)
            if ckpt is not None and dist.is_main:
                self._save(ckpt, state, module, optimizer, ema)
            if bar is not None:
                bar.end_epoch(record, len(losses))
            if out_of_time:
                logger.info(
                    f"Stopping in epoch {epoch + 1} after {len(losses)} steps: time budget of {cfg.max_time:.0f}s "
                    "reached."
                )
                break
        if bar is not None:
            bar.close()
        if state.best_state is not None:
            module.load_state_dict(state.best_state)
        elif ema is not None:
            module.load_state_dict(ema.state)
        module.eval()
        return self.history

    def _out_of_time(self, start: float, dist: DistInfo, device) -> bool:
        if self.config.max_time is None:
            return False
        over = time.perf_counter() - start > self.config.max_time
        if not dist.enabled:
            return over
        import torch
        import torch.distributed

        # every rank must leave the epoch at the same step, or the next gradient all-reduce waits forever
        flag = torch.tensor([float(over)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def _wrap(self, module, dist: DistInfo, device):
        if not dist.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        unused = getattr(self.plan, "ddp_find_unused_parameters", False)
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=unused)

    def _track_best(self, state: _TrainState, record: dict, module) -> None:
        value = None if self.config.monitor is None else record.get(self.config.monitor)
        if value is None or not np.isfinite(value):
            return
        if value > state.best_value:
            state.best_value, state.best_epoch, state.bad_epochs = value, record["epoch"], 0
            state.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in module.state_dict().items()})
        else:
            state.bad_epochs += 1
            if self.config.patience is not None and state.bad_epochs >= self.config.patience:
                state.stopped = True
                logger.info(
                    f"Early stopping after epoch {record['epoch']}: best {self.config.monitor}="
                    f"{state.best_value:.4f} at epoch {state.best_epoch}."
                )

    def _save(self, path: Path, state: _TrainState, module, optimizer, ema: _WeightAverage | None) -> None:
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "state": state.__dict__,
            "module": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "ema": None if ema is None else {"state": ema.state, "updates": ema.updates},
        }
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)  # atomic: a crash mid-save leaves the previous checkpoint intact

    def _load(self, path: Path, module, optimizer, ema: _WeightAverage | None) -> _TrainState:
        import torch

        payload = torch.load(path, map_location="cpu", weights_only=False)
        module.load_state_dict(payload["module"])
        optimizer.load_state_dict(payload["optimizer"])
        torch.set_rng_state(payload["torch_rng"])
        if ema is not None:
            saved = payload.get("ema")
            if saved is None:
                raise ValueError(
                    f"The checkpoint '{path}' was written without weight averaging; resume with `ema_decay=None` "
                    "or start in an empty checkpoint directory."
                )
            ema.load(saved["state"], saved["updates"])
        state = _TrainState()
        state.__dict__.update(payload["state"])
        return state


class _WeightAverage:
    """Exponential moving average of a module's state dict (floating-point entries; others are copied)."""

    def __init__(self, module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"`ema_decay` must be in (0, 1), e.g. 0.999, got {decay!r}.")
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def update(self, module) -> None:
        self.updates += 1
        weight = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in module.state_dict().items():
            average = self.state[key]
            if average.is_floating_point():
                average.lerp_(value.detach(), weight)
            else:
                average.copy_(value)

    def swap_in(self, module) -> dict:
        """Load the averaged weights into ``module``; returns a copy of the trained weights for :meth:`swap_out`."""
        trained = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.state)
        return trained

    def swap_out(self, module, trained: dict) -> None:
        """Keep evaluation's changes (re-estimated batch norm statistics) as the average; restore ``trained``."""
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(trained)

    def load(self, state: dict, updates: int) -> None:
        for key, value in state.items():
            self.state[key].copy_(value)
        self.updates = updates


@dataclass
class _TrainState:
    epoch: int = 0
    elapsed: float = 0.0
    history: list = field(default_factory=list)
    best_value: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict | None = None
    stopped: bool = False


def _progress(cfg: TrainerConfig, dist: DistInfo, *, initial: int) -> TrainingProgress | None:
    if not cfg.progress or not dist.is_main:
        return None
    return TrainingProgress(cfg.epochs, initial_epoch=initial, max_time=cfg.max_time, monitor=cfg.monitor)
