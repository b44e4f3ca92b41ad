"""One progress bar per training: steps within epochs, loss, validation metric, and an ETA that respects the cap."""

from __future__ import annotations

import time


class TrainingProgress:
    """A ``tqdm.auto`` bar (a widget in Jupyter) counting optimizer steps over the whole training.

    An epoch's number of steps is known only once one has run, so the total is set after the first epoch
    (``epochs`` times its steps). With a time cap the total is also the number of steps the cap leaves room for at
    the rate so far, so the ETA is the time training will really take, not the time ``epochs`` would.

    Parameters
    ----------
    epochs
        Maximum number of epochs.
    initial_epoch
        Epochs already done (a resumed run).
    max_time
        The training's time cap in seconds, or ``None``.
    monitor
        Validation metric shown beside the loss.
    """

    def __init__(self, epochs: int, *, initial_epoch: int = 0, max_time: float | None = None, monitor=None) -> None:
        from tqdm.auto import tqdm

        self.epochs = epochs
        self.epoch = initial_epoch
        self.max_time = max_time
        self.monitor = monitor
        self.steps_per_epoch: int | None = None
        #: Steps counted when the epoch under way began.
        self.epoch_start = 0
        self.postfix: dict[str, str] = {}
        self.start = time.perf_counter()
        self.bar = tqdm(total=None, desc=self._desc(), unit="step", dynamic_ncols=True)

    def _desc(self) -> str:
        return f"epoch {min(self.epoch + 1, self.epochs)}/{self.epochs}"

    def step(self, loss: float) -> None:
        """One optimizer step done, with its loss."""
        self.bar.update(1)
        self.postfix["loss"] = f"{loss:.4g}"
        self._retotal()
        self.bar.set_postfix(self.postfix, refresh=False)

    def end_epoch(self, record: dict, steps: int) -> None:
        """An epoch done in ``steps`` steps, with its history ``record``."""
        if self.steps_per_epoch is None and steps:
            self.steps_per_epoch = steps
        self.epoch += 1
        self.epoch_start = self.bar.n
        if self.monitor is not None and self.monitor in record:
            self.postfix[self.monitor] = f"{record[self.monitor]:.4g}"
        self.bar.set_description(self._desc(), refresh=False)
        self._retotal()
        self.bar.set_postfix(self.postfix)

    def _retotal(self) -> None:
        if self.steps_per_epoch is None:
            return
        total = self.epoch_start + self.steps_per_epoch * (self.epochs - self.epoch)
        elapsed = time.perf_counter() - self.start
        if self.max_time is not None and self.bar.n and elapsed > 0:
            total = min(total, self.bar.n + int(max(self.max_time - elapsed, 0) * self.bar.n / elapsed))
        self.bar.total = max(total, self.bar.n)

    def close(self) -> None:
        """Finish the bar at the steps actually run (early stopping or the time cap end it before its total)."""
        self.bar.total = self.bar.n
        self.bar.refresh()
        self.bar.close()
