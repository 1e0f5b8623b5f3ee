"""The view-making augmentations of self-supervised recipes, on float image tensors in [0, 1].

Every function takes images [..., C, H, W] — each leading index is one sample (a batch [B], or
crops × batch [n, B]) — and draws its random parameters per sample from torch's global CPU
generator (so `torch.manual_seed` makes a run repeatable on any device, and a checkpoint that
saves the RNG state resumes it), then applies them on the images' device. Each follows the
formulas of torchvision.transforms.v2's functional ops and its transforms' parameter draws:
    random_resized_crop  RandomResizedCrop.get_params: 10 tries of area ~ U(scale) · H · W and
                         log aspect ~ U(log ratio); w = round(sqrt(area · aspect)),
                         h = round(sqrt(area / aspect)); the first that fits, at a uniform
                         position; else the whole image cropped to the ratio range, centred.
                         Then a bilinear resize with antialiasing.
    color_jitter         ColorJitter: factors ~ U[max(0, 1 − b), 1 + b] (hue ~ U[−h, h]), the four
                         adjustments in a random order, inside RandomApply(p).
    grayscale            RandomGrayscale: L = 0.2989 R + 0.587 G + 0.114 B on every channel.
    gaussian_blur        GaussianBlur: sigma ~ U(sigma range), a normalised Gaussian of `kernel`
                         taps along each axis, reflect padding.
    solarize             RandomSolarize: 1 − x where x ≥ threshold.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GRAY = (0.2989, 0.587, 0.114)


def _samples(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, *x.shape[-3:])


def _drawn(n: int, p: float) -> torch.Tensor:
    """Which of n samples a transform applied with probability p touches ([n] bool, on CPU)."""
    return torch.rand(n) < p


def _per_sample(mask: torch.Tensor, x: torch.Tensor, fn) -> torch.Tensor:
    """x with fn applied to the samples where mask holds (fn sees only those)."""
    idx = mask.nonzero().flatten().to(x.device)
    if idx.numel() == 0:
        return x
    out = x.clone()
    out[idx] = fn(x[idx], idx.cpu())
    return out


def _column(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


# ---- random-resized crop

def crop_boxes(n: int, h: int, w: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """[n, 4] boxes (top, left, height, width), one RandomResizedCrop draw each."""
    area = h * w
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, 10)).double()
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, 10).double())
    cw = torch.round(torch.sqrt(target * aspect)).long()
    ch = torch.round(torch.sqrt(target / aspect)).long()
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = fits.long().argmax(dim=1, keepdim=True)
    bh, bw = ch.gather(1, first).squeeze(1), cw.gather(1, first).squeeze(1)
    top = (torch.rand(n) * (h - bh + 1)).long().clamp(max=h - bh)
    left = (torch.rand(n) * (w - bw + 1)).long().clamp(max=w - bw)
    fh, fw = _fallback(h, w, ratio)
    none = ~fits.any(dim=1)
    bh, bw = torch.where(none, fh, bh), torch.where(none, fw, bw)
    top, left = torch.where(none, (h - fh) // 2, top), torch.where(none, (w - fw) // 2, left)
    return torch.stack([top, left, bh, bw], dim=1)


def _fallback(h: int, w: int, ratio) -> tuple[int, int]:
    """The whole image, cropped centrally to the nearest aspect ratio in range."""
    if w / h < min(ratio):
        return int(round(w / min(ratio))), w
    if w / h > max(ratio):
        return h, int(round(h * max(ratio)))
    return h, w


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Each sample's box, resized to `size` (bilinear, antialiased: torchvision's resized_crop)."""
    out = []
    for xi, (t, l, bh, bw) in zip(x, boxes.tolist()):
        crop = xi[None, :, t:t + bh, l:l + bw]
        out.append(crop if (bh, bw) == size else
                   F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out)


def random_resized_crop(x: torch.Tensor, size: tuple[int, int], scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3), n: int = 0) -> torch.Tensor:
    """One random crop of each sample resized to `size`; n > 0 makes n crops of each, stacked
    in front ([n, ..., C, *size]: a multi-crop's local crops)."""
    lead = x.shape[:-3]
    xs = _samples(x)
    if n > 0:
        xs, lead = xs.repeat(n, 1, 1, 1), (n, *lead)
    boxes = crop_boxes(xs.shape[0], xs.shape[-2], xs.shape[-1], scale, ratio)
    return resized_crop(xs, boxes, tuple(size)).view(*lead, x.shape[-3], *size)


# ---- flips, colour

def hflip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    xs = _samples(x)
    mask = _drawn(xs.shape[0], p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(mask, xs.flip(-1), xs).view_as(x)


def gray(x: torch.Tensor) -> torch.Tensor:
    """Luma [N, 1, H, W] of RGB images [N, 3, H, W] (ITU-R 601-2, torchvision's weights)."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(GRAY[0]).add_(g, alpha=GRAY[1]).add_(b, alpha=GRAY[2]).unsqueeze(-3)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return a.mul(factor).add_(b.mul(1.0 - factor)).clamp_(0.0, 1.0)


def adjust_brightness(x, f):
    return x.mul(f).clamp_(0.0, 1.0)


def adjust_contrast(x, f):
    return _blend(x, gray(x).mean(dim=(-3, -2, -1), keepdim=True), f)


def adjust_saturation(x, f):
    return _blend(x, gray(x), f)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=-3)
    hi, lo = x.amax(dim=-3), x.amin(dim=-3)
    flat = hi == lo
    chroma = hi - lo
    s = chroma / torch.where(flat, torch.ones_like(hi), hi)
    c = torch.where(flat, torch.ones_like(chroma), chroma)
    rc, gc, bc = (hi - r) / c, (hi - g) / c, (hi - b) / c
    is_r, is_g = hi == r, (hi == g) & (hi != r)
    is_b = (hi != g) & (hi != r)
    h = is_r * (bc - gc) + is_g * (2.0 + rc - bc) + is_b * (4.0 + gc - rc)
    h = torch.fmod(h / 6.0 + 1.0, 1.0)
    return torch.stack([h, s, hi], dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(dim=-3)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    sector = i.long().remainder(6).unsqueeze(-3)
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    # each channel's value in each of the six hue sectors, picked by the pixel's sector
    table = {0: (v, q, p, p, t, v), 1: (t, v, v, q, p, p), 2: (p, p, t, v, v, q)}
    return torch.cat([torch.stack(table[c], dim=-3).gather(-3, sector) for c in range(3)], dim=-3)


def adjust_hue(x, f):
    hsv = rgb_to_hsv(x)
    h = (hsv[..., 0, :, :] + f.view(-1, 1, 1)).remainder(1.0)
    return hsv_to_rgb(torch.stack([h, hsv[..., 1, :, :], hsv[..., 2, :, :]], dim=-3))


ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def jitter_params(n: int, brightness: float, contrast: float, saturation: float, hue: float):
    """Per sample: the order of the four adjustments [n, 4] and their factors [4, n]; an
    adjustment of strength 0 is never applied (its factor is None)."""
    order = torch.rand(n, 4).argsort(dim=1)
    factors = []
    for k, strength in enumerate((brightness, contrast, saturation)):
        lo = max(0.0, 1.0 - strength)
        factors.append(lo + (1.0 + strength - lo) * torch.rand(n) if strength > 0 else None)
    factors.append((2.0 * torch.rand(n) - 1.0) * hue if hue > 0 else None)
    return order, factors


def color_jitter(x: torch.Tensor, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0, p: float = 1.0) -> torch.Tensor:
    xs = _samples(x)
    mask = _drawn(xs.shape[0], p)
    order, factors = jitter_params(xs.shape[0], brightness, contrast, saturation, hue)

    def jitter(v, idx):
        for step in range(4):
            which = order[idx, step]
            for k, fn in enumerate(ADJUST):
                sel = (which == k).nonzero().flatten()
                if factors[k] is None or sel.numel() == 0:
                    continue
                rows = sel.to(v.device)
                f = _column(factors[k][idx[sel]], v)
                v = v.index_copy(0, rows, fn(v[rows], f if k < 3 else f.view(-1)))
        return v
    return _per_sample(mask, xs, jitter).view_as(x)


def grayscale(x: torch.Tensor, p: float = 0.1) -> torch.Tensor:
    xs = _samples(x)
    return _per_sample(_drawn(xs.shape[0], p), xs,
                       lambda v, idx: gray(v).expand_as(v)).view_as(x)


def solarize(x: torch.Tensor, p: float = 0.2, threshold: float = 0.5) -> torch.Tensor:
    xs = _samples(x)
    return _per_sample(_drawn(xs.shape[0], p), xs,
                       lambda v, idx: torch.where(v >= threshold, 1.0 - v, v)).view_as(x)


# ---- blur

def gaussian_kernels(sigma: torch.Tensor, k: int) -> torch.Tensor:
    """[n, k] normalised Gaussian taps at offsets −(k−1)/2 … (k−1)/2, one row per sigma."""
    offsets = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k, dtype=torch.float64)
    g = torch.exp(-0.5 * (offsets[None] / sigma.double()[:, None]) ** 2)
    return (g / g.sum(dim=1, keepdim=True)).float()


def _blur_axis(x: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    # shifted weighted sums along one spatial dim (elementwise work: a conv would be a matmul)
    k, size = taps.shape[1], x.shape[dim]
    pad = (0, 0, k // 2, k // 2) if dim == -2 else (k // 2, k // 2, 0, 0)
    xp = F.pad(x, pad, mode="reflect")
    out = torch.zeros_like(x)
    for t in range(k):
        out += _column(taps[:, t], x) * xp.narrow(dim, t, size)
    return out


def gaussian_blur(x: torch.Tensor, p: float, sigma, k: int) -> torch.Tensor:
    """With probability p per sample, a blur with k taps (odd) along each axis."""
    xs = _samples(x)
    mask = _drawn(xs.shape[0], p)
    sigmas = sigma[0] + (sigma[1] - sigma[0]) * torch.rand(xs.shape[0])

    def blur(v, idx):
        taps = gaussian_kernels(sigmas[idx], k).to(v.device)
        return _blur_axis(_blur_axis(v, taps, -1), taps, -2)
    return _per_sample(mask, xs, blur).view_as(x)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s
