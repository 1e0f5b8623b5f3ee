"""nn.Modules for the generative ops (archdsl/ops/generative.py).

Each class depends on torch alone (torch, nn, F), so its source can be copied into a
standalone file.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VectorQuantizer(nn.Module):
    """VQ-VAE quantiser (van den Oord et al. 2017), keys as taming-transformers'
    VectorQuantizer: embedding.weight [num_codes, D].

    forward(x) → (quantized, codes, codebook_loss, commitment_loss):
    the D-vectors along `axis` are replaced by their nearest codebook entries (squared
    Euclidean distance, ‖z‖² − 2 z·e + ‖e‖², ties to the lowest index); `quantized` carries the
    straight-through gradient (z + sg[e − z], so d quantized / d x is the identity); `codes`
    (int64) has x's shape without `axis`; codebook_loss = mean((sg[z] − e)²) trains the
    codebook, commitment_loss = beta · mean((z − sg[e])²) the encoder (their sum is the VQ-VAE
    loss of Eq. 3 without the reconstruction term)."""

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, axis: int = 1):
        super().__init__()
        self.embedding = nn.Embedding(num_codes, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / num_codes, 1.0 / num_codes)
        self.beta, self.axis, self.dim = beta, axis, dim

    def forward(self, x: torch.Tensor):
        z = x.movedim(self.axis, -1)
        flat = z.reshape(-1, self.dim)
        e = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) - 2 * torch.mm(flat, e.t()) + e.pow(2).sum(1)
        codes = d.argmin(1)
        zq = F.embedding(codes, e).view_as(z)
        codebook_loss = F.mse_loss(zq, z.detach())
        commitment_loss = self.beta * F.mse_loss(z, zq.detach())
        quantized = (z + (zq - z).detach()).movedim(-1, self.axis)
        return quantized, codes.view(z.shape[:-1]), codebook_loss, commitment_loss


class Reparameterize(nn.Module):
    """The VAE reparameterisation trick (Kingma & Welling 2014): z = mu + eps · exp(logvar / 2),
    eps ~ N(0, 1), and the KL divergence to N(0, I), −½ Σ (1 + logvar − mu² − exp(logvar)) summed
    over all dims but the batch, then reduced over the batch ("mean", "sum" or "none").
    In eval mode z = mu unless `eval_sample`. One input is split in half along dim 1 into
    (mu, logvar)."""

    def __init__(self, reduction: str = "mean", eval_sample: bool = False):
        super().__init__()
        self.reduction, self.eval_sample = reduction, eval_sample

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor | None = None):
        if logvar is None:
            mu, logvar = mu.chunk(2, 1)
        if self.training or self.eval_sample:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).flatten(1).sum(1)
        if self.reduction == "mean":
            kl = kl.mean()
        elif self.reduction == "sum":
            kl = kl.sum()
        return z, kl
