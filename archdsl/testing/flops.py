"""FlopCounterMode as archdsl's cost convention uses it.

Stock FlopCounterMode has no formula for the CPU SDPA kernel
(`aten._scaled_dot_product_flash_attention_for_cpu`) and would count attention as 0; the
reference fixtures count it with torch's own SDPA formula (4·B·H·Lq·Lk·D), and so do we.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_ops() -> dict:
    ops = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu",):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            ops[op] = _sdpa
    return ops


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode (display off) that also counts the CPU attention kernel."""
    return FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_ops())


def count_flops(module: torch.nn.Module, *inputs) -> int:
    """FLOPs of one forward pass under no_grad, 2 per multiply-add."""
    with torch.no_grad(), flop_counter() as counter:
        module(*inputs)
    return counter.get_total_flops()
