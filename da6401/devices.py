"""Where to train, and in which precision: the same notebook runs on a laptop CPU or a GPU.

    >>> device, amp_dtype = pick_device()
    >>> with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
    ...     logits = model(x)
"""
from __future__ import annotations

import torch


def cpu_has_fast_bfloat16() -> bool:
    """True on CPUs with bfloat16 instructions (AVX512-BF16 or AMX), where bf16 autocast is 2-3x faster."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so probe with care
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def pick_device() -> tuple[torch.device, torch.dtype | None]:
    """The device to train on and the autocast dtype worth using there.

    Returns:
        (device, amp_dtype): CUDA when available, else the CPU; ``torch.bfloat16`` where the
        hardware runs it fast (a recent GPU, or a CPU with bf16 instructions), else ``None``
        (train in float32). bfloat16 needs no loss scaling, unlike float16.
    """
    if torch.cuda.is_available():
        return torch.device("cuda"), (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)
    return torch.device("cpu"), (torch.bfloat16 if cpu_has_fast_bfloat16() else None)
