"""Self-supervised losses of SwAV, InstDisc / CMC, InvaSpread and CPC, as plain functions of
tensors. Each is wrapped as a graph op in archdsl/ops/ssl_losses.py (shape rule, costs); the
formulas and conventions are stated here, as in archdsl/nn/loss.py."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from archdsl.nn import dist


def _all_reduce(x: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all_reduce (sum or max) of x when torch.distributed is initialised; x otherwise."""
    if dist.active():
        import torch.distributed as torch_dist
        torch_dist.all_reduce(x, op=torch_dist.ReduceOp.MAX if op == "max" else torch_dist.ReduceOp.SUM)
    return x


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iters: int = 3) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp codes (Caron et al. 2020; `distributed_sinkhorn` of
    facebookresearch/swav). scores [B, K] → codes [B, K], no gradient. In the reference's K×B
    orientation Q = exp(scores / eps)ᵀ is scaled to total 1, then `iters` times: rows (prototypes)
    to 1/K each, columns (samples) to 1/B each; finally × B. So each sample's codes sum to exactly
    1 and each prototype's total approaches B/K (exactly only at convergence). Under
    torch.distributed the total, the row sums and B are global (all_reduced), so the codes equal
    those of one process on the concatenated batch. The global max of scores / eps is subtracted
    before exp (a constant factor the first normalisation removes) so large scores cannot overflow."""
    s = scores.detach().float() / epsilon
    top = _all_reduce(s.max().clone(), "max")
    q = torch.exp(s - top).t()                                   # [K, B]
    k, b = q.shape[0], q.shape[1] * dist.world()
    q /= _all_reduce(q.sum())
    for _ in range(iters):
        q /= _all_reduce(q.sum(dim=1, keepdim=True))
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t().to(scores.dtype)


def swav_loss(scores: torch.Tensor, n_views: int, n_assign: int = 2, temperature: float = 0.1,
              epsilon: float = 0.05, iters: int = 3) -> torch.Tensor:
    """SwAV's swapped prediction. scores [V·B, K]: prototype scores of V crops stacked (the crops
    that get codes — the global ones — first). For each of the first `n_assign` crops i, codes
    q_i = sinkhorn(scores_i) (no gradient) are predicted from every other crop v ≠ i:
    −mean_b Σ_k q_i · log softmax(scores_v / T), averaged over the V − 1 crops and the n_assign
    assignments (main_swav.py's loop)."""
    b = scores.shape[0] // n_views
    crops = scores.split(b)
    log_p = [F.log_softmax(c / temperature, dim=1) for c in crops]
    total = 0.0
    for i in range(n_assign):
        q = sinkhorn(crops[i], epsilon, iters)
        sub = 0.0
        for v in range(n_views):
            if v != i:
                sub = sub - torch.mean(torch.sum(q * log_p[v], dim=1))
        total = total + sub / (n_views - 1)
    return total / n_assign


def nce_draw(idx: torch.Tensor, n: int, negatives: int) -> torch.Tensor:
    """The slots memory-bank NCE scores each sample against: [B, K + 1] int64 drawn uniformly from
    the n slots, slot 0 the sample's own (idx). lemniscate's and CMC's AliasMethod over uniform
    unigrams draws the same numbers from the same generator state (`random_(0, n)`)."""
    sample = torch.randint(0, n, (idx.shape[0], negatives + 1), device=idx.device)
    sample[:, 0] = idx
    return sample


def nce_bank(f: torch.Tensor, idx: torch.Tensor, bank: torch.Tensor, z: torch.Tensor,
             negatives: int = 4096, temperature: float = 0.07, sample: torch.Tensor | None = None) -> torch.Tensor:
    """Non-parametric instance discrimination with NCE (Wu et al. 2018; lemniscate.pytorch's
    NCEAverage + NCECriterion). f [B, D] (L2-normalised features), idx [B] int64 (each sample's
    slot), bank [N, D] (memory bank, no gradient), z [] (the normalising constant Z, a state:
    negative until the first call sets it to mean(exp(v·f / T)) · N over that batch, all-reduced
    across ranks, then kept). For each sample, K = `negatives` slots are drawn uniformly from the
    bank (slot 0 is its own, the positive); P(i|v) = exp(bank[i]·f / T) / Z and, with the noise
    distribution Pn = 1/N: loss = −(Σ_b log P₀/(P₀ + K·Pn + ε) + Σ_b Σ_j log K·Pn/(P_j + K·Pn + ε)) / B,
    ε = 1e-7. CMC (Tian et al. 2019) uses it once per view against the other view's bank, both
    views on one draw of slots: `sample` (nce_draw's [B, K + 1]) replaces this call's own draw."""
    b, n = f.shape[0], bank.shape[0]
    if sample is None:
        sample = nce_draw(idx, n, negatives)
    weight = bank.detach()[sample]                                   # [B, K + 1, D]
    out = torch.exp(torch.bmm(weight, f.unsqueeze(2)).squeeze(2) / temperature)
    with torch.no_grad():
        estimate = out.detach().mean().reshape(z.shape) * n
        estimate = _all_reduce(estimate) / dist.world()
        z.copy_(torch.where(z < 0, estimate.to(z.dtype), z))         # set once, on the first batch
    out = out / z.detach()
    kpn, eps = negatives / n, 1e-7
    ln_pmt = torch.log(out[:, 0] / (out[:, 0] + kpn + eps))
    ln_pon = torch.log(kpn / (out[:, 1:] + kpn + eps))
    return -(ln_pmt.sum() + ln_pon.sum()) / b


def inva_spread(x: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Invariant and spreading instance features (Ye et al. 2019; BatchCriterion of
    mangye16/Unsupervised_Embedding_Learning, negM = 1). x [2N, D]: the N images' features, then
    their augmentations' (L2-normalised, from one forward pass); row i's positive is row
    (i + N) mod 2N. With s_ij = exp(x_i · x_j / T) over j ≠ i and P_ij = s_ij / Σ_{j≠i} s_ij (the
    other side of every product carries no gradient, as the reference's `.data`):
    loss = −(Σ_i log P_i,pos(i) + Σ_i Σ_{j ∉ {i, pos(i)}} log(1 − P_ij)) / 2N."""
    n2 = x.shape[0]
    other = torch.roll(x, n2 // 2, dims=0).detach()                  # [f2; f1]
    pos = torch.exp((x * other).sum(dim=1) / temperature)
    off_diag = 1.0 - torch.eye(n2, device=x.device, dtype=x.dtype)
    all_prob = torch.exp(torch.mm(x, x.detach().t()) / temperature) * off_diag
    all_div = all_prob.sum(dim=1)
    p_pos = pos / all_div
    ln_on = torch.log(1 - all_prob / all_div[:, None]).sum(dim=1) - torch.log(1 - p_pos)
    return -(torch.log(p_pos).sum() + ln_on.sum()) / n2


def cpc_nce(z: torch.Tensor, pred: torch.Tensor, steps: int, cdck2: bool = False) -> torch.Tensor:
    """CPC's InfoNCE over future latents (van den Oord et al. 2018). z [B, T, D]: the encoder's
    latents; pred [B, T, steps·D]: W_k c_t for k = 1..steps stacked on the last dim (slice k − 1).
    For every k and every t < T − k the prediction from c_t must pick z_{t+k} of its own sequence
    among the z_{t+k} of the B sequences of the batch (the negatives):
    loss = mean over (k, t, b) of −log softmax_b'(W_k c_t^b · z_{t+k}^b')[b].
    cdck2: the public CDCK2 code's form (jefflai108/Contrastive-Predictive-Coding-PyTorch
    src/model/model.py): one t drawn per batch, uniform in [0, T − steps), and the latent z_{t+k}^b
    must pick its own sequence's prediction among the B predictions:
    loss = mean over (k, b) of −log softmax_b'(z_{t+k}^b · W_k c_t^b')[b]."""
    b, t, d = z.shape
    if cdck2:
        at = int(torch.randint(t - steps, size=(1,)))
        # bmm, not einsum: einsum turns size-1 products into a mul that FlopCounterMode does not count
        logits = torch.bmm(z[:, at + 1:at + 1 + steps].transpose(0, 1),
                           pred[:, at].reshape(b, steps, d).permute(1, 2, 0))   # [steps, B, B]
        return F.cross_entropy(logits.reshape(-1, b), torch.arange(b, device=z.device).repeat(steps))
    total, count = 0.0, 0
    labels = torch.arange(b, device=z.device)
    for k in range(1, steps + 1):
        p = pred[:, :t - k, (k - 1) * d:k * d].transpose(0, 1)       # [T − k, B, D]
        target = z[:, k:, :].transpose(0, 1)                          # [T − k, B, D]
        logits = torch.bmm(p, target.transpose(1, 2))                 # [T − k, B, B]
        total = total + F.cross_entropy(logits.reshape(-1, b), labels.repeat(t - k), reduction="sum")
        count += (t - k) * b
    return total / count
