import numpy as np
import pytest
from numba import njit

from histo2st._kernels._half import as_kernel_input, decode_half_bits, value

ALL_BITS = np.arange(2**16, dtype=np.uint32).astype(np.uint16)


@njit
def _decode_all(bits, out, arithmetic):
    for i in range(len(bits)):
        out[i] = decode_half_bits(bits[i]) if arithmetic else value(bits[i])


@pytest.mark.parametrize("arithmetic", [False, True], ids=["kernel", "arithmetic-fallback"])
def test_every_float16_bit_pattern_decodes_exactly(arithmetic):
    out = np.empty(len(ALL_BITS))
    _decode_all(ALL_BITS, out, arithmetic)
    expected = ALL_BITS.view(np.float16).astype(np.float64)
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(out), nan)
    np.testing.assert_array_equal(out[~nan], expected[~nan])  # subnormals, +-0 and +-inf included
    np.testing.assert_array_equal(np.signbit(out[~nan]), np.signbit(expected[~nan]))


def test_kernel_input_dtypes():
    assert as_kernel_input(np.zeros((1, 2, 2), np.float16)).dtype == np.uint16  # bits, no copy
    assert as_kernel_input(np.zeros((1, 2, 2), np.uint16)).dtype == np.float32  # integer uint16 is not float16
    with pytest.raises(TypeError, match="dtype"):
        as_kernel_input(np.zeros((1, 2, 2), np.complex64))
