"""Dense-detection runtime (RetinaNet, Lin et al. 2017): anchors, IoU, matching, box encoding and
the loss.

Each function reproduces the torchvision definition the RetinaNet reference trains with
(torchvision.models.detection: AnchorGenerator, box_iou, Matcher, BoxCoder), written in plain
torch; `retina_loss` trains with them. Boxes are (x1, y1, x2, y2) in pixels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from archdsl.nn.rules import level_grid  # the op's grid arithmetic

BELOW_LOW_THRESHOLD = -1     # a background anchor
BETWEEN_THRESHOLDS = -2      # an ignored anchor (IoU in [bg_iou, fg_iou))


def base_anchors(sizes, ratios) -> torch.Tensor:
    """Zero-centred anchors of one level, ratio-major (torchvision's generate_anchors): for aspect
    ratio r (height / width) and size s, w = s / √r, h = s · √r, (−w/2, −h/2, w/2, h/2), rounded."""
    scales = torch.as_tensor(sizes, dtype=torch.float32)
    ar = torch.as_tensor(ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ar)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


def anchor_grid(images: torch.Tensor, strides, sizes, ratios) -> torch.Tensor:
    """All anchors of an image batch [B, C, H, W] → [N, 4], level by level, then row, column and
    anchor (the order of RetinaNet's head outputs). Level l has ⌈H / stride_l⌉ × ⌈W / stride_l⌉
    cells; as torchvision, the cell pitch is H // cells (not the nominal stride) and cell (i, j)
    shifts the base anchors by (j · pitch_w, i · pitch_h), with no half-cell offset."""
    h, w = int(images.shape[-2]), int(images.shape[-1])
    out = []
    for stride, level_sizes in zip(strides, sizes):
        gh, gw = level_grid(h, stride), level_grid(w, stride)
        sh, sw = h // gh, w // gw
        base = base_anchors(level_sizes, ratios).to(images.device)
        ys = torch.arange(gh, dtype=torch.float32, device=images.device) * sh
        xs = torch.arange(gw, dtype=torch.float32, device=images.device) * sw
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        xx, yy = xx.reshape(-1), yy.reshape(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=1)
        out.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
    return torch.cat(out).to(images.dtype)


def anchor_count(h: int, w: int, strides, n_per_cell: int) -> int:
    return sum(level_grid(h, s) * level_grid(w, s) for s in strides) * n_per_cell


def box_area(b: torch.Tensor) -> torch.Tensor:
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of a [N, 4] with every box of b [M, 4] → [N, M]."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter)


def match_anchors(iou: torch.Tensor, fg_iou: float = 0.5, bg_iou: float = 0.4,
                  low_quality: bool = True) -> torch.Tensor:
    """torchvision's Matcher on an IoU matrix [G, N] (ground truth × anchors) → [N]: the index of
    each anchor's best ground-truth box when its IoU ≥ fg_iou, BELOW_LOW_THRESHOLD (−1) under
    bg_iou, BETWEEN_THRESHOLDS (−2) in between. low_quality (RetinaNet): every anchor whose IoU
    with some box equals that box's best IoU keeps its best match even under fg_iou, so each box
    has at least one anchor. With no ground truth every anchor is background."""
    n = iou.shape[1]
    if iou.shape[0] == 0:
        return torch.full((n,), BELOW_LOW_THRESHOLD, dtype=torch.int64, device=iou.device)
    vals, matches = iou.max(dim=0)
    all_matches = matches.clone()
    matches[vals < bg_iou] = BELOW_LOW_THRESHOLD
    matches[(vals >= bg_iou) & (vals < fg_iou)] = BETWEEN_THRESHOLDS
    if low_quality:
        best, _ = iou.max(dim=1)
        keep = torch.nonzero(iou == best[:, None])[:, 1]
        matches[keep] = all_matches[keep]
    return matches


def encode_boxes(gt: torch.Tensor, anchors: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """torchvision's BoxCoder.encode_single: regression targets (dx, dy, dw, dh) of boxes gt
    [M, 4] relative to anchors [M, 4]: dx = wx (x_gt − x_a) / w_a, dw = ww log(w_gt / w_a), … with
    centres x = x1 + w / 2."""
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    return torch.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                        ww * torch.log(gw / aw), wh * torch.log(gh / ah)], dim=1)


def prior_bias(prior: float = 0.01) -> float:
    """The classification bias b = −log((1 − π) / π) that makes every anchor start at foreground
    probability π (RetinaNet §4.1: π = 0.01)."""
    return -math.log((1 - prior) / prior)


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
