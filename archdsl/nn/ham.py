"""nn.Module for the matrix-decomposition op of archdsl/ops/ham.py (SegNeXt's Hamburger).

Self-contained (torch, F and nn only), so the standalone source writer can copy it verbatim;
`init_args` holds its constructor arguments.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NMF2D(nn.Module):
    """Non-negative matrix factorisation of a feature map (Geng et al., "Is Attention Better Than
    Matrix Decomposition?", ICLR 2021; mmseg's NMF2D as SegNeXt's LightHamHead uses it).

    x [B, C, H, W] is viewed as S matrices X [D = C / S, N = H·W]; bases [D, R] start uniform
    in [0, 1) and L2-normalised over D — random at every forward in training (mmseg's
    rand_init), in eval a fixed pseudo-random draw (fract(43758.5453 · sin(12.9898 · i + 78.233))
    over the D·R entries, the same for every matrix), so inference is deterministic and compiles
    to the same values (mmseg draws fresh random bases at inference too) — and coefficients as
    softmax(inv_t · Xᵀ bases); then `train_steps` (training) or `eval_steps` (eval) multiplicative
    updates
        coef ← coef ⊙ (Xᵀ bases) / (coef bases ᵀbases + 1e-6)
        bases ← bases ⊙ (X coef) / (bases coefᵀ coef + 1e-6)
    then one more coefficient update, and the output is bases coefᵀ, viewed as x. Gradients flow
    through every step, as in SegNeXt's release and mmseg (whose `@torch.no_grad()` on the
    iterations — HamNet's one-step gradient — is commented out).
    """

    def __init__(self, S: int = 1, R: int = 64, train_steps: int = 6, eval_steps: int = 7,
                 inv_t: float = 1.0):
        super().__init__()
        self.S, self.R, self.train_steps, self.eval_steps, self.inv_t = S, R, train_steps, eval_steps, inv_t
        self.init_args = dict(S=S, R=R, train_steps=train_steps, eval_steps=eval_steps, inv_t=inv_t)

    @staticmethod
    def fixed_bases(d: int, r: int, device=None, dtype=None) -> torch.Tensor:
        """The eval-mode initial bases [1, d, r]: a deterministic draw in [0, 1)."""
        i = torch.arange(d * r, device=device, dtype=torch.float32)
        return torch.frac(torch.sin(i * 12.9898 + 78.233).abs() * 43758.5453).reshape(1, d, r).to(dtype)

    @staticmethod
    def _coef_step(x, bases, coef):
        numerator = torch.bmm(x.transpose(1, 2), bases)
        denominator = coef.bmm(bases.transpose(1, 2).bmm(bases))
        return coef * numerator / (denominator + 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d, n = c // self.S, h * w
        x_ = x.reshape(b * self.S, d, n)
        if self.training:
            bases = torch.rand(b * self.S, d, self.R, device=x.device, dtype=x.dtype)
        else:
            bases = self.fixed_bases(d, self.R, x.device, x.dtype).expand(b * self.S, d, self.R)
        bases = F.normalize(bases, dim=1)
        coef = F.softmax(self.inv_t * torch.bmm(x_.transpose(1, 2), bases), dim=-1)
        for _ in range(self.train_steps if self.training else self.eval_steps):
            coef = self._coef_step(x_, bases, coef)
            numerator = torch.bmm(x_, coef)
            denominator = bases.bmm(coef.transpose(1, 2).bmm(coef))
            bases = bases * numerator / (denominator + 1e-6)
        coef = self._coef_step(x_, bases, coef)
        return torch.bmm(bases, coef.transpose(1, 2)).reshape(b, c, h, w)
