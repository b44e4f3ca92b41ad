"""Reading float16 maps inside numba kernels.

numba has no float16 type on the CPU, so a float16 map is passed as its ``uint16`` bit pattern and decoded through a
65,536-entry table (256 kB, stays in cache). This avoids a float32 copy of the whole map, which would double the
memory traffic of a kernel that is bound by reading the map.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

#: float32 value of every float16 bit pattern (exact: float32 represents every float16 value, inf and nan).
HALF_TABLE = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
#: Placeholder table passed for maps that are not float16.
NO_TABLE = np.zeros(0, dtype=np.float32)


def as_kernel_input(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, table)`` for a kernel: float16 as uint16 bits with the decode table, other dtypes unchanged.

    Integer ``uint16`` maps are converted to float32 first, because the kernels read uint16 as float16 bits.
    """
    array = np.ascontiguousarray(array)
    if array.dtype == np.float16:
        return array.view(np.uint16), HALF_TABLE
    if array.dtype == np.uint16:
        return array.astype(np.float32), NO_TABLE
    if array.dtype.kind not in "fiub":
        raise TypeError(f"Cannot aggregate a map of dtype {array.dtype}; use a float or integer array.")
    return array, NO_TABLE


def value(x, table):
    """Map element as float64 (float16 bits are decoded through ``table``)."""
    return np.float64(x)


@overload(value, jit_options={"cache": True})
def _value_impl(x, table):
    if isinstance(x, types.Integer) and x.bitwidth == 16 and not x.signed:
        return lambda x, table: np.float64(table[x])
    return lambda x, table: np.float64(x)
