"""View-making augmentations (SimCLR, MoCo v2, BYOL, DINO, SwAV): random-resized crop (with
n crops: a multi-crop's local crops), horizontal flip, colour jitter, grayscale, Gaussian blur,
solarisation and normalisation, as graph ops a topology's phase applies to raw images.

Images are float [..., C, H, W] in [0, 1] (normalize excepted); every leading index is a sample
with its own random parameters, drawn on every call (train or eval: they make training views).
The torch code and its conventions (torchvision.transforms.v2's) are archdsl/nn/views.py.
None has parameters; none does work FlopCounterMode counts (flops 0); other_flops is each op's
elementwise work, with the formula on the op.
"""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, numel, register


def _images(name: str, x, channels: int | None = None) -> tuple[int, ...]:
    if len(x) < 4:
        raise ShapeError(f"{name} expects images [B, C, H, W] (or [n, B, C, H, W]), got {list(x)}")
    if channels is not None and x[-3] != channels:
        raise ShapeError(f"{name} needs RGB images ({channels} channels), got {x[-3]} in {list(x)}")
    return tuple(x)


def _probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ShapeError(f"{name}: p must be in [0, 1], got {p}")


def _range(name: str, what: str, r: list[float], lo: float = 0.0) -> tuple[float, float]:
    if len(r) != 2 or not lo < r[0] <= r[1]:
        raise ShapeError(f"{name}: {what} is [min, max] with {lo:g} < min ≤ max, got {r}")
    return float(r[0]), float(r[1])


class CropAttrs(Attrs):
    size: int | list[int]
    scale: list[float] = [0.08, 1.0]
    ratio: list[float] = [3 / 4, 4 / 3]
    n: int = 0


def crop_size(a: CropAttrs) -> tuple[int, int]:
    size = (a.size, a.size) if isinstance(a.size, int) else tuple(a.size)
    if len(size) != 2 or min(size) < 1:
        raise ShapeError(f"random_resized_crop: size is a side or [height, width] ≥ 1, got {a.size}")
    return size


@register
class RandomResizedCrop(Op):
    """A random crop of each image, resized to `size` (Inception's crop, torchvision's
    RandomResizedCrop): area fraction ~ U(scale), aspect ratio log-uniform in `ratio`. With
    n ≥ 1, n independent crops of each image stacked in front: [n, ..., C, size, size] (a
    multi-crop's local crops). Needs 0 < scale ≤ 1, 0 < ratio. other_flops: 8 · numel(out)
    (a bilinear sample: four products and sums per output element)."""
    name = "random_resized_crop"
    Attrs = CropAttrs
    positional = ("size",)

    def infer(self, a, ins):
        x = _images(self.name, ins[0])
        size = crop_size(a)
        _range(self.name, "scale", a.scale)
        _range(self.name, "ratio", a.ratio)
        if a.scale[1] > 1 or a.n < 0:
            raise ShapeError(f"random_resized_crop: scale ≤ 1 and n ≥ 0, got scale={a.scale}, n={a.n}")
        return ((a.n,) if a.n else ()) + (*x[:-2], *size)

    def other_flops(self, a, ins, out):
        return 8 * numel(out)

    def emit(self, a, ins, fx, args):
        from archdsl.nn.views import random_resized_crop
        return fx.call(random_resized_crop, args[0], crop_size(a), tuple(a.scale), tuple(a.ratio), a.n)


class FlipAttrs(Attrs):
    p: float = 0.5


@register
class HFlip(Op):
    """Each image mirrored left–right with probability p. other_flops: numel (a select)."""
    name = "hflip"
    Attrs = FlipAttrs
    positional = ("p",)

    def infer(self, a, ins):
        _probability(self.name, a.p)
        return _images(self.name, ins[0])

    def emit(self, a, ins, fx, args):
        from archdsl.nn.views import hflip
        return fx.call(hflip, args[0], a.p)


class JitterAttrs(Attrs):
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    p: float = 1.0


@register
class ColorJitter(Op):
    """With probability p, brightness, contrast, saturation and hue changed by random factors
    (U[max(0, 1 − s), 1 + s]; hue shifted by U[−hue, hue] of a turn) in a random order per image
    (torchvision's ColorJitter inside RandomApply). RGB images; needs strengths ≥ 0, hue ≤ 0.5.
    other_flops per element: 1 (the select) + 2 (brightness), 4 (contrast), 4 (saturation), 30
    (hue: the HSV round trip) for each adjustment of nonzero strength."""
    name = "color_jitter"
    Attrs = JitterAttrs
    positional = ("brightness", "contrast", "saturation", "hue")

    def infer(self, a, ins):
        _probability(self.name, a.p)
        if min(a.brightness, a.contrast, a.saturation, a.hue) < 0 or a.hue > 0.5:
            raise ShapeError(f"color_jitter: strengths are ≥ 0 and hue ≤ 0.5, got brightness={a.brightness}, "
                             f"contrast={a.contrast}, saturation={a.saturation}, hue={a.hue}")
        return _images(self.name, ins[0], channels=3)

    def other_flops(self, a, ins, out):
        per = 1 + sum(c for c, s in ((2, a.brightness), (4, a.contrast), (4, a.saturation), (30, a.hue)) if s > 0)
        return per * numel(out)

    def emit(self, a, ins, fx, args):
        from archdsl.nn.views import color_jitter
        return fx.call(color_jitter, args[0], a.brightness, a.contrast, a.saturation, a.hue, a.p)


class GrayAttrs(Attrs):
    p: float = 0.1


@register
class Grayscale(Op):
    """With probability p, an image's luma (0.2989 R + 0.587 G + 0.114 B) on all three channels
    (RandomGrayscale). RGB images. other_flops: 2 · numel (five operations per pixel, rounded)."""
    name = "grayscale"
    Attrs = GrayAttrs
    positional = ("p",)

    def infer(self, a, ins):
        _probability(self.name, a.p)
        return _images(self.name, ins[0], channels=3)

    def other_flops(self, a, ins, out):
        return 2 * numel(out)

    def emit(self, a, ins, fx, args):
        from archdsl.nn.views import grayscale
        return fx.call(grayscale, args[0], a.p)


class BlurAttrs(Attrs):
    p: float = 0.5
    sigma: list[float] = [0.1, 2.0]
    kernel: int = 0


@register
class GaussianBlur(Op):
    """With probability p, a Gaussian blur of sigma ~ U(sigma) with `kernel` taps along each axis
    and reflect padding (GaussianBlur; kernel 0: 10% of the smaller side, odd — 23 at 224, as
    SimCLR and BYOL). Needs an odd kernel whose half is smaller than the image.
    other_flops: 4 · kernel · numel (two passes, a product and a sum per tap)."""
    name = "gaussian_blur"
    Attrs = BlurAttrs
    positional = ("p",)

    def infer(self, a, ins):
        x = _images(self.name, ins[0])
        _probability(self.name, a.p)
        _range(self.name, "sigma", a.sigma)
        k = self.kernel(a, x)
        if k < 1 or k % 2 == 0 or k // 2 >= min(x[-2:]):
            raise ShapeError(f"gaussian_blur: the kernel must be odd with half of it smaller than the image "
                             f"{list(x[-2:])}, got {k}")
        return x

    @staticmethod
    def kernel(a, x) -> int:
        from_size = int(0.1 * min(x[-2:])) // 2 * 2 + 1
        return a.kernel or from_size

    def other_flops(self, a, ins, out):
        return 4 * self.kernel(a, out) * numel(out)

    def emit(self, a, ins, fx, args):
        from archdsl.nn.views import gaussian_blur
        return fx.call(gaussian_blur, args[0], a.p, tuple(a.sigma), self.kernel(a, ins[0]))


class SolarizeAttrs(Attrs):
    p: float = 0.2
    threshold: float = 0.5


@register
class Solarize(Op):
    """With probability p, every value x ≥ threshold becomes 1 − x (RandomSolarize; BYOL's second
    view, DINO's second global crop). other_flops: 2 · numel (a compare and a subtraction)."""
    name = "solarize"
    Attrs = SolarizeAttrs
    positional = ("p",)

    def infer(self, a, ins):
        _probability(self.name, a.p)
        return _images(self.name, ins[0])

    def other_flops(self, a, ins, out):
        return 2 * numel(out)

    def emit(self, a, ins, fx, args):
        from archdsl.nn.views import solarize
        return fx.call(solarize, args[0], a.p, a.threshold)


IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class NormalizeAttrs(Attrs):
    mean: list[float] = IMAGENET_MEAN
    std: list[float] = IMAGENET_STD


@register
class Normalize(Op):
    """(x − mean) / std per channel (ImageNet's statistics by default). Needs one mean and one
    positive std per channel. other_flops: 2 · numel."""
    name = "normalize"
    Attrs = NormalizeAttrs

    def infer(self, a, ins):
        x = ins[0]
        if len(x) < 3 or not len(a.mean) == len(a.std) == x[-3] or min(a.std) <= 0:
            raise ShapeError(f"normalize needs a mean and a positive std per channel of [..., C, H, W], "
                             f"got mean={a.mean}, std={a.std} for {list(x)}")
        return tuple(x)

    def other_flops(self, a, ins, out):
        return 2 * numel(out)

    def emit(self, a, ins, fx, args):
        from archdsl.nn.views import normalize
        return fx.call(normalize, args[0], tuple(a.mean), tuple(a.std))
