"""Global settings: ``st.settings``."""

from __future__ import annotations

import logging
import os

_VERBOSITY_TO_LEVEL = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}


class Settings:
    """Package-wide settings, in the spirit of ``scanpy.settings``.

    Attributes
    ----------
    seed
        Default random seed for data generation, sampling and training.
    device
        Torch device for training and prediction: ``"auto"`` (cuda, then mps, then cpu) or any torch device string.
    n_jobs
        Threads for numba kernels and data loading; ``None`` uses all cores.
    verbosity
        0 errors, 1 warnings, 2 info (default), 3 debug.
    """

    def __init__(self) -> None:
        self.seed = 0
        self.device = "auto"
        self.n_jobs = None
        self.verbosity = int(os.environ.get("HISTO2ST_VERBOSITY", 2))

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"`settings.seed` must be a non-negative int, got {value!r}.")
        self._seed = value

    @property
    def device(self) -> str:
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"`settings.device` must be a string such as 'auto', 'cpu' or 'cuda:0', got {value!r}.")
        self._device = value

    @property
    def n_jobs(self) -> int | None:
        return self._n_jobs

    @n_jobs.setter
    def n_jobs(self, value: int | None) -> None:
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"`settings.n_jobs` must be None or a positive int, got {value!r}.")
        self._n_jobs = value

    @property
    def verbosity(self) -> int:
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int) -> None:
        if value not in _VERBOSITY_TO_LEVEL:
            raise ValueError(f"`settings.verbosity` must be one of {sorted(_VERBOSITY_TO_LEVEL)}, got {value!r}.")
        self._verbosity = value
        logging.getLogger("histo2st").setLevel(_VERBOSITY_TO_LEVEL[value])

    def resolve_device(self, device: str | None = None) -> str:
        """Return a concrete torch device string for ``device`` (``None`` means this setting)."""
        device = self.device if device is None else device
        if device != "auto":
            return device
        import torch

        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"

    def __repr__(self) -> str:
        return f"Settings(seed={self.seed}, device={self.device!r}, n_jobs={self.n_jobs}, verbosity={self.verbosity})"


settings = Settings()
