"""Reading float16 maps inside numba kernels.

numba has no float16 type on the CPU, so a float16 map is passed as its ``uint16`` bit pattern and decoded inside
the kernel: by LLVM's own ``half -> double`` conversion where the CPU has it in hardware (x86 F16C, every ARM64),
which LLVM vectorises (8 values per instruction), and otherwise by exact integer arithmetic on the bits. Both are
exact for every bit pattern, subnormals, infinities and NaN included. Measured on the development machine (AMD EPYC,
one core), decoding costs about what reading the map does; a 65,536-entry lookup table (gathers) and numpy's float16
conversion into a float32 buffer (about 0.7 GB/s) were both slower, and the buffer would double the memory traffic.
"""

from __future__ import annotations

import platform

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


def as_kernel_input(array) -> np.ndarray:
    """A C-contiguous array the kernels read: float16 as its uint16 bits, other float/integer dtypes unchanged.

    Integer ``uint16`` maps are converted to float32 first, because the kernels read uint16 as float16 bits.
    """
    array = np.ascontiguousarray(array)
    if array.dtype == np.float16:
        return array.view(np.uint16)
    if array.dtype == np.uint16:
        return array.astype(np.float32)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"Cannot aggregate a map of dtype {array.dtype}; use a float or integer array.")
    return array


#: The CPU converts float16 in hardware, so LLVM's ``fpext half`` compiles to vector instructions, not a libcall.
HARDWARE_HALF = platform.machine().lower() in ("arm64", "aarch64") or bool(llvm.get_host_cpu_features().get("f16c"))


@intrinsic
def _half_bits_to_float64(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.DoubleType())

    return types.float64(types.uint16), codegen


@intrinsic
def _float64_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.uint64), codegen


_SUBNORMAL_SCALE = 2.0**-24  # value of one unit in the last place of a subnormal float16


@njit(cache=True, inline="always")
def decode_half_bits(x):
    """float16 bits (uint16) as float64 by integer arithmetic, for CPUs without hardware half conversion."""
    h = np.uint64(x)
    exponent = (h >> np.uint64(10)) & np.uint64(0x1F)
    mantissa = h & np.uint64(0x3FF)
    # normal: rebias the exponent (15 -> 1023) and widen the mantissa; 31 (inf/nan) becomes 2047
    field = np.uint64(2047) if exponent == np.uint64(31) else exponent + np.uint64(1008)
    bits = ((h & np.uint64(0x8000)) << np.uint64(48)) | (field << np.uint64(52)) | (mantissa << np.uint64(42))
    subnormal = np.float64(np.int32(mantissa)) * _SUBNORMAL_SCALE
    subnormal = -subnormal if h & np.uint64(0x8000) else subnormal
    return subnormal if exponent == np.uint64(0) else _float64_from_bits(bits)


def value(x):
    """Map element as float64 (a uint16 is read as float16 bits)."""
    return np.float64(x)


@overload(value, jit_options={"cache": True})
def _value_impl(x):
    if isinstance(x, types.Integer) and x.bitwidth == 16 and not x.signed:
        if HARDWARE_HALF:
            return lambda x: _half_bits_to_float64(x)
        return lambda x: decode_half_bits(x)
    return lambda x: np.float64(x)


def is_nan(x):
    """Whether a map element is NaN (a uint16 is read as float16 bits)."""
    return np.isnan(x)


@overload(is_nan, jit_options={"cache": True})
def _is_nan_impl(x):
    if isinstance(x, types.Integer) and x.bitwidth == 16 and not x.signed:
        # float16 NaN: exponent all ones and a non-zero mantissa; an integer test, no decoding
        return lambda x: (x & np.uint16(0x7FFF)) > np.uint16(0x7C00)
    if isinstance(x, types.Integer):
        return lambda x: False
    return lambda x: np.isnan(x)
