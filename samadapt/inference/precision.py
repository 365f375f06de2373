"""Inference precision: "fp32", "bf16" (the encoder and decoder under bfloat16 autocast), or "auto".

"auto" is bf16 where the device computes it natively, fp32 elsewhere: on CUDA `torch.cuda.is_bf16_supported()`;
on the CPU oneDNN's bf16 path (`torch.ops.mkldnn._is_mkldnn_bf16_supported()`) *and* bf16 instructions
(AVX512-BF16 or AMX). oneDNN also reports support on plain AVX512 CPUs, where it emulates bf16 and is slower
than fp32, hence the second check. Results always come back as float32: thresholds apply to float32 logits.
"""

import contextlib

import torch

from samadapt.errors import SamAdaptError

PRECISIONS = ("auto", "bf16", "fp32")


def cpu_has_native_bf16() -> bool:
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 inference is faster than fp32 on `device` (the "auto" rule)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" -> "bf16" or "fp32" for this device; "bf16" and "fp32" as given."""
    if precision not in PRECISIONS:
        raise SamAdaptError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        raise SamAdaptError(f"precision bf16 runs on cpu or cuda, not {device.type}; use precision fp32")
    return precision


def inference_autocast(device: torch.device, precision: str):
    """The context the model runs in: bfloat16 autocast for "bf16", nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
