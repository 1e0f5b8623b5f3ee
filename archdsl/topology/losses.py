"""Training losses, as plain functions of tensors. Each is wrapped as a graph op in
archdsl/ops/loss.py (shape rule, costs); the formulas and conventions are stated here.

Conventions: logits-based losses take raw scores; every loss returns a scalar mean over the
batch; temperatures divide similarities; embeddings are L2-normalised by the caller unless said.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from archdsl.topology import dist


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: the positive is (q, k), negatives are the queue's columns [D, K].
    logits = [q·k, q·queue] / T; cross-entropy towards index 0. k and queue get no gradient."""
    pos = (q * k.detach()).sum(dim=1, keepdim=True)
    neg = q @ queue.detach()
    logits = torch.cat([pos, neg], dim=1) / temperature
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, labels)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, sum_views: bool = False) -> torch.Tensor:
    """SimCLR's NT-Xent over 2N views: each view's positive is its pair, negatives are the other
    2N − 2 views; self-pairs are excluded. The mean over the 2N views, or (sum_views) twice that:
    the official TF code sums the two views' means. Across ranks, the negatives are gathered with
    the local gradient kept (dist.gather_with_grad)."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    local = torch.cat([z1, z2], dim=0)                       # [2n, D]
    everything = dist.gather_with_grad(local)                # [2n·world, D]
    n = z1.shape[0]
    offset = dist.rank() * 2 * n
    sim = local @ everything.t() / temperature               # [2n, 2n·world]
    idx = torch.arange(2 * n, device=sim.device)
    self_mask = F.one_hot(idx + offset, sim.shape[1]).bool()
    sim = sim.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([idx[n:], idx[:n]]) + offset
    return F.cross_entropy(sim, positives) * (2.0 if sum_views else 1.0)


def neg_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """−cos(p, sg(z)) averaged over the batch (SimSiam; BYOL's 2 − 2 cos is 2 + 2 · this)."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with class indices [B] or soft targets [B, C] (mixup/cutmix, distillation;
    integer [B, C] targets are read as one-hot or count weights). The shape decides, as in the
    op's static rule: float [B] targets are class indices too."""
    if target.dim() == logits.dim() - 1 and target.is_floating_point():
        target = target.long()
    if target.dim() == logits.dim():  # soft targets, smoothed too: (1 − eps) · t + eps / K
        target = target.to(logits.dtype)
        if label_smoothing:
            target = target * (1.0 - label_smoothing) + label_smoothing / logits.shape[-1]
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation: T² · KL(softmax(t/T) ‖ softmax(s/T)); the teacher gets no gradient."""
    t = F.softmax(teacher.detach() / temperature, dim=-1)
    log_s = F.log_softmax(student / temperature, dim=-1)
    return F.kl_div(log_s, t, reduction="batchmean") * temperature ** 2


def dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, n_global: int,
              student_temp: float, teacher_temp: float, temp: torch.Tensor | None = None) -> torch.Tensor:
    """DINO's cross-entropy between sharpened, centred teacher outputs (global crops only, no
    gradient) and student outputs over all crops, skipping same-view pairs.
    student: [V·B, K] (views stacked, globals first); teacher: [G·B, K]; `temp`, when given,
    is the teacher temperature of this step (a scalar tensor), replacing `teacher_temp`."""
    if temp is not None:
        teacher_temp = temp.detach().reshape(())
    views = student.shape[0] // (teacher.shape[0] // n_global)
    if views < 2:
        raise ValueError("DINO needs at least two views: a single view gives no cross-view pairs")
    s = (student / student_temp).chunk(views)
    t = F.softmax((teacher.detach() - center) / teacher_temp, dim=-1).chunk(n_global)
    total, pairs = 0.0, 0
    for i, ti in enumerate(t):
        for j, sj in enumerate(s):
            if i == j:
                continue
            total = total + torch.sum(-ti * F.log_softmax(sj, dim=-1), dim=-1).mean()
            pairs += 1
    return total / pairs


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = False) -> torch.Tensor:
    """MAE: mean squared error on masked patches only (mask = 1 where removed). With norm_pix, each
    target patch is normalised: (x − mean) / sqrt(var + 1e-6)."""
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
              max_scale: float | None = None) -> torch.Tensor:
    """CLIP's symmetric loss: (CE(img→txt) + CE(txt→img)) / 2 over cosine similarities scaled
    by exp(logit_scale) (open_clip's ClipLoss). The official training clamps the stored
    log-scale after each step (`after clamp(...)`); `max_scale` clamps it here instead."""
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    scale = (logit_scale if max_scale is None else logit_scale.clamp(max=max_scale)).exp()
    logits = scale * image @ text.t()
    labels = torch.arange(image.shape[0], device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def gan_loss(real_or_fake: torch.Tensor, kind: str, fake: torch.Tensor | None = None) -> torch.Tensor:
    """GAN objectives on discriminator logits.
    d_nonsat: softplus(−D(x)) + softplus(D(G(z)));  g_nonsat: softplus(−D(G(z)));
    d_hinge: relu(1 − D(x)) + relu(1 + D(G(z)));   g_hinge / g_wgan: −D(G(z));
    d_wgan: D(G(z)) − D(x) (add a gradient penalty separately);
    d_lsgan: mean((D(x) − 1)²) + mean(D(G(z))²);  g_lsgan: mean((D(G(z)) − 1)²) (least squares,
    Mao et al. 2017, targets 1 and 0 as CycleGAN's GANLoss('lsgan'); CycleGAN halves the D loss)."""
    if kind == "g_nonsat":
        return F.softplus(-real_or_fake).mean()
    if kind == "g_lsgan":
        return (real_or_fake - 1).square().mean()
    if kind == "d_lsgan":
        assert fake is not None
        return (real_or_fake - 1).square().mean() + fake.square().mean()
    if kind in ("g_hinge", "g_wgan"):
        return -real_or_fake.mean()
    assert fake is not None
    if kind == "d_nonsat":
        return F.softplus(-real_or_fake).mean() + F.softplus(fake).mean()
    if kind == "d_hinge":
        return F.relu(1 - real_or_fake).mean() + F.relu(1 + fake).mean()
    if kind == "d_wgan":
        return fake.mean() - real_or_fake.mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (pix2pix L1, CycleGAN cycle and identity terms)."""
    return (a - b).abs().mean()


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return ((a - b) ** 2).mean()


def kl_gauss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, 1)), summed over features, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).flatten(1).sum(dim=1).mean()


def gradient_penalty(d_out: torch.Tensor, x: torch.Tensor, kind: str = "r1") -> torch.Tensor:
    """A gradient penalty on the discriminator's input gradient g = ∂ Σ D(x) / ∂x, taken with
    create_graph=True so the penalty's own gradient reaches D's parameters (second order).
    kind "r1" (Mescheder et al. 2018; StyleGAN): mean over the batch of ‖g‖² (the per-sample sum of
    squares) — the spec multiplies by gamma / 2. kind "wgan_gp" (Gulrajani et al. 2017; PGGAN):
    mean over the batch of (‖g‖₂ − 1)², x being the interpolates — the spec multiplies by lambda.
    x must require grad and d_out must have been computed from it."""
    if kind not in ("r1", "wgan_gp"):
        raise ValueError(f"unknown gradient penalty {kind!r}: 'r1' or 'wgan_gp'")
    (grad,) = torch.autograd.grad(d_out.sum(), x, create_graph=True)
    sq = grad.pow(2).flatten(1).sum(dim=1)
    if kind == "r1":
        return sq.mean()
    return ((sq + 1e-12).sqrt() - 1.0).pow(2).mean()


# ---- ssl-a: SwAV, InstDisc / CMC (memory-bank NCE), InvaSpread, CPC ----------------------------

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
        logits = torch.einsum("kbd,kcd->kbc", z[:, at + 1:at + 1 + steps].transpose(0, 1),
                              pred[:, at].reshape(b, steps, d).transpose(0, 1))   # [steps, B, B]
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


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """The focal loss of RetinaNet (Lin et al. 2017, eq. 5), per element (torchvision's
    sigmoid_focal_loss, reduction 'none'): p = σ(x), p_t = p·t + (1 − p)(1 − t),
    FL = −α_t (1 − p_t)^γ log p_t with α_t = α·t + (1 − α)(1 − t) (no weight when α < 0); the
    log term is BCE-with-logits, numerically stable."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def retina_loss(cls_logits: torch.Tensor, bbox_regression: torch.Tensor, anchors: torch.Tensor,
                boxes: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
                fg_iou: float = 0.5, bg_iou: float = 0.4, box_loss: str = "l1", beta: float = 0.11,
                part: str = "total") -> torch.Tensor:
    """RetinaNet's training loss (Lin et al. 2017 §4; torchvision RetinaNetHead.compute_loss).
    cls_logits [B, N, K], bbox_regression [B, N, 4], anchors [N, 4]; ground truth padded to G
    boxes per image: boxes [B, G, 4] (x1, y1, x2, y2) and labels [B, G] (int64 class in [0, K),
    −1 for padding; boxes without positive width and height are ignored like padding, a class
    ≥ K is an error). Per image: anchors are matched to boxes by IoU (≥ fg_iou foreground,
    < bg_iou background, in between ignored, each box keeps its best anchors); the focal loss
    over all non-ignored anchors and classes (one-hot targets) and the box loss (L1, or smooth L1
    with `beta`, on torchvision's encoded (dx, dy, dw, dh) targets) of foreground anchors are each
    summed and divided by max(1, number of foreground anchors); the result is averaged over
    images. part: 'total' (cls + box), 'cls' or 'box'."""
    from archdsl.topology.detection import box_iou, encode_boxes, match_anchors
    cls_total = cls_logits.new_zeros(())
    box_total = cls_logits.new_zeros(())
    n_images, k = cls_logits.shape[0], cls_logits.shape[-1]
    if bool((labels >= k).any()):
        raise ValueError(f"retina_loss: a label is {int(labels.max())}, but there are {k} classes")
    for i in range(n_images):
        b = boxes[i]
        valid_gt = (labels[i] >= 0) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        gt_boxes, gt_labels = boxes[i][valid_gt], labels[i][valid_gt]
        with torch.no_grad():
            matched = match_anchors(box_iou(gt_boxes, anchors), fg_iou, bg_iou)
        fg = matched >= 0
        num_fg = int(fg.sum())
        target = torch.zeros_like(cls_logits[i])
        target[fg, gt_labels[matched[fg]]] = 1.0
        keep = matched != -2
        cls_total = cls_total + sigmoid_focal_loss(cls_logits[i][keep], target[keep], alpha,
                                                   gamma).sum() / max(1, num_fg)
        reg_target = encode_boxes(gt_boxes[matched[fg]], anchors[fg])
        pred = bbox_regression[i][fg]
        if box_loss == "l1":
            box = F.l1_loss(pred, reg_target, reduction="sum")
        else:
            box = F.smooth_l1_loss(pred, reg_target, reduction="sum", beta=beta)
        box_total = box_total + box / max(1, num_fg)
    cls_total, box_total = cls_total / n_images, box_total / n_images
    return {"total": cls_total + box_total, "cls": cls_total, "box": box_total}[part]


def masked_token_ce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BEiT's masked image modelling loss: cross-entropy of the predicted visual tokens at the
    masked positions only, averaged over them (BEiT: CE(lm_head(x[mask]), ids[mask])).
    logits [B, N, V], target [B, N] token ids, mask [B, N] (bool or 0/1, 1 = masked); a batch with
    no masked position gives 0."""
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(target.shape)
    m = mask.to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp(min=1.0)
