"""Private numba kernels: arrays in, arrays out."""
