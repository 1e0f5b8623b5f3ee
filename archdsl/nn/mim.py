"""The masked image modelling loss of BEiT (archdsl/ops/mim.py), a plain function of tensors."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_token_ce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BEiT's masked image modelling loss: cross-entropy of the predicted visual tokens at the
    masked positions only, averaged over them (BEiT: CE(lm_head(x[mask]), ids[mask])).
    logits [B, N, V], target [B, N] token ids, mask [B, N] (bool or 0/1, 1 = masked); a batch with
    no masked position gives 0."""
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(target.shape)
    m = mask.to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp(min=1.0)
