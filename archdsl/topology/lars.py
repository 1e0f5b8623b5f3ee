"""LARS (You, Gitman, Ginsburg 2017), the forms SimCLR and BYOL train with, and apex's LARC
around SGD (SwAV).

Per parameter p with gradient g, in a group whose `decay` flag is set (biases and norm
parameters are excluded from both weight decay and adaptation when the recipe says
`no_decay=true`):
    u = g + wd · p
    r = eta · ‖p‖ / ‖u‖ if ‖p‖ > 0 and ‖u‖ > 0 else 1          (trust ratio; 1 when excluded)
lr_inside_momentum=True (SimCLR tf2/lars_optimizer.py, `classic_momentum`):
    v ← m · v + lr · r · u;   p ← p − v
lr_inside_momentum=False (BYOL byol/utils/optimizers.py: scale_by_lars, then trace, then −lr):
    v ← m · v + r · u;        p ← p − lr · v
"""
from __future__ import annotations

import torch


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001, lr_inside_momentum: bool = True):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                                      lr_inside_momentum=lr_inside_momentum, decay=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                u = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad.clone()
                if group["decay"]:
                    pn, un = torch.linalg.vector_norm(p), torch.linalg.vector_norm(u)
                    ratio = torch.where((pn > 0) & (un > 0), group["eta"] * pn / un, torch.ones_like(pn))
                    u.mul_(ratio)
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = torch.zeros_like(p)
                if group["lr_inside_momentum"]:
                    buf.mul_(m).add_(u, alpha=lr)
                    p.sub_(buf)
                else:
                    buf.mul_(m).add_(u)
                    p.sub_(buf, alpha=lr)
        return loss


class LARC(torch.optim.SGD):
    """apex.parallel.LARC (clip=False) wrapping SGD, as SwAV trains (main_swav.py): before the SGD
    step each parameter's gradient becomes (g + wd · p) · r with r = trust · ‖p‖ / (‖g‖ + wd · ‖p‖ + eps)
    when ‖p‖ and ‖g‖ are non-zero (else g alone: no weight decay either), and SGD runs without its
    own weight decay. Every parameter adapts (no exclusions)."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 1e-8):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.trust_coefficient, self.eps = trust_coefficient, eps

    def step(self, closure=None):
        decays = []
        with torch.no_grad():
            for group in self.param_groups:
                wd = group["weight_decay"]
                decays.append(wd)
                group["weight_decay"] = 0
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    pn, gn = torch.norm(p), torch.norm(p.grad)
                    if pn != 0 and gn != 0:
                        adaptive_lr = self.trust_coefficient * pn / (gn + pn * wd + self.eps)
                        p.grad += wd * p
                        p.grad *= adaptive_lr
        try:
            return super().step(closure)
        finally:
            for group, wd in zip(self.param_groups, decays):
                group["weight_decay"] = wd
