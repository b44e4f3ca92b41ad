"""Thread count of the numba kernels, taken from ``histo2st.settings.n_jobs``."""

from __future__ import annotations

import numba


def n_threads() -> int:
    """Threads for a parallel kernel: ``settings.n_jobs`` capped at numba's pool size (all cores when ``None``)."""
    from .._settings import settings

    pool = numba.config.NUMBA_NUM_THREADS
    return pool if settings.n_jobs is None else max(1, min(int(settings.n_jobs), pool))


def use_threads(n: int) -> None:
    """Set numba's thread count for the calling thread (numba keeps it per thread, so dask workers are unaffected)."""
    numba.set_num_threads(n)
