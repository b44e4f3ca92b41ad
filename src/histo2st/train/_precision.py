"""Whether a device computes bfloat16 natively, which decides the default precision of encoder pretraining."""

from __future__ import annotations


def native_bfloat16(device: str) -> bool:
    """``True`` on CUDA devices with bfloat16 support and on CPUs with AMX tiles (Intel Sapphire Rapids and later).

    There bfloat16 autocast is faster than float32 (a BYOL step of 32 tiles of 96 px took 1.5-2.3x less time on a
    2-core AMX CPU, ``benchmarks/pretrain_speed.py``); elsewhere it is emulated and slower than float32.
    """
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        # a private probe, so guarded: without it bfloat16 stays off, which is always correct
        probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(probe is not None and probe())
    return False
