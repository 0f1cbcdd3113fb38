"""Does the notebooks' device choice pick CUDA when there is one, and bfloat16 only where it is fast?"""
from __future__ import annotations

import torch

from da6401 import devices


def test_cpu_with_bfloat16_instructions_uses_bfloat16(monkeypatch):
    """On a CPU-only machine with bf16 instructions, is it (cpu, bfloat16)?"""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: True)
    assert devices.pick_device() == (torch.device("cpu"), torch.bfloat16)


def test_older_cpu_trains_in_float32(monkeypatch):
    """On a CPU without bf16 instructions (where bf16 is emulated and slow), is autocast off?"""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: False)
    assert devices.pick_device() == (torch.device("cpu"), None)


def test_gpu_is_preferred_and_float16_only_gpus_train_in_float32(monkeypatch):
    """With CUDA, is the GPU chosen, with bf16 where supported and float32 where only fp16 would need scaling?"""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devices.pick_device() == (torch.device("cuda"), torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devices.pick_device() == (torch.device("cuda"), None)
