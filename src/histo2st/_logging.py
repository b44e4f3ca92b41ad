"""The package logger and the write log that every in-place function ends with (squidpy ``_save_data``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

logger = logging.getLogger("histo2st")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.propagate = False


def log_added(where: str, keys: Iterable[str], start: float | None = None) -> None:
    """Log which ``keys`` were written to ``where``, and the time since ``start`` (perf_counter) if given."""
    keys = [f"'{k}'" for k in keys]
    took = f" ({time.perf_counter() - start:.2f}s)" if start is not None else ""
    logger.info(f"Finished{took}. Added to `{where}`: {', '.join(keys)}")
