"""nn.Module for the EMA vector quantiser of archdsl/ops/vq_ema.py (VQ-VAE-2's codebooks).

Self-contained (torch, F and nn only), so the standalone source writer can copy it verbatim.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Sum x over ranks in place when torch.distributed is initialised (the codebook statistics
    of every rank's batch, as rosinality's dist_fn.all_reduce); x otherwise."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x)
    return x


class EMAQuantizer(nn.Module):
    """Vector quantisation with a codebook updated by exponential moving averages (van den Oord
    et al. 2017, Appendix A.1; VQ-VAE-2, Razavi et al. 2019, §3.1), buffers and update as
    rosinality/vq-vae-2-pytorch's Quantize (after sonnet's VectorQuantizerEMA): `embed` [D, K]
    (N(0, 1) at init), `cluster_size` [K] (ones) and `embed_avg` [D, K] (a copy of embed).

    forward(x) → (quantized, codes, commit_loss): the D-vectors of x along `axis` go to their
    nearest codebook column (squared L2, ties to the lowest index); `quantized` carries the
    straight-through gradient (z + sg[e − z]); `codes` (int64) is x's shape without `axis`;
    commit_loss = beta · mean((z − sg[e])²). In training, with one-hot assignments A [N, K]:
    cluster_size ← decay · cluster_size + (1 − decay) · Σ_n A; embed_avg ← decay · embed_avg +
    (1 − decay) · zᵀA; embed ← embed_avg / ((cluster_size + eps) / (n + K · eps) · n), n = Σ
    cluster_size (Laplace smoothing), the sums all_reduced over ranks when distributed. The
    codebook gets no gradient: it moves only by these updates."""

    def __init__(self, num_codes: int, dim: int, decay: float = 0.99, eps: float = 1e-5,
                 beta: float = 0.25, axis: int = 1):
        super().__init__()
        self.num_codes, self.dim, self.decay, self.eps, self.beta, self.axis = \
            num_codes, dim, decay, eps, beta, axis
        embed = torch.randn(dim, num_codes)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_avg", embed.clone())

    def forward(self, x: torch.Tensor):
        z = x.movedim(self.axis, -1)
        flat = z.reshape(-1, self.dim)
        e = self.embed
        d = flat.pow(2).sum(1, keepdim=True) - 2 * torch.mm(flat, e) + e.pow(2).sum(0, keepdim=True)
        codes = d.argmin(1)
        zq = F.embedding(codes, e.t()).view_as(z).detach()  # looked up before the update
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(codes, self.num_codes).to(flat.dtype)
                count = _all_reduce(onehot.sum(0))
                total = _all_reduce(flat.detach().t() @ onehot)
                self.cluster_size.mul_(self.decay).add_(count, alpha=1 - self.decay)
                self.embed_avg.mul_(self.decay).add_(total, alpha=1 - self.decay)
                n = self.cluster_size.sum()
                size = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
                self.embed.copy_(self.embed_avg / size.unsqueeze(0))
        commit = self.beta * (zq - z).pow(2).mean()
        quantized = (z + (zq - z).detach()).movedim(-1, self.axis)
        return quantized, codes.view(z.shape[:-1]), commit
