"""The end-of-text feature gather of the clip_text ops (archdsl/ops/clip_text.py)."""
from __future__ import annotations


def eot_features(x, ids):
    """x[b, argmax ids[b]] for every b: the features at each sequence's end-of-text token."""
    import torch
    rows = torch.arange(x.shape[0], device=x.device)
    return x[rows, ids.argmax(dim=-1)]
