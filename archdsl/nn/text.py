"""Functions of the sequence-model ops of archdsl/ops/text.py: a row lookup in a shared table and
the sinusoidal position table."""
from __future__ import annotations

import math


def lookup_rows(ids, table):
    import torch.nn.functional as F
    return F.embedding(ids, table)


def sinusoid_table(x):
    """PE[pos, 2i] = sin(pos / 10000^(2i/D)), PE[pos, 2i+1] = cos(pos / 10000^(2i/D)): [1, L, D]."""
    import torch
    length, d = x.shape[1], x.shape[2]
    pos = torch.arange(length, device=x.device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d, 2, device=x.device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d, device=x.device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.unsqueeze(0).to(x.dtype)
