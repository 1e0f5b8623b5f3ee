"""Torch-free arithmetic and vocabularies that an op's shape rule and its torch code share: the op
reads them from here, so checking and costing import no torch."""
from __future__ import annotations


# tokens: random masking (ops/tokens.py, nn/tokens.py)
def keep_count(length: int, ratio: float) -> int:
    """MAE: `len_keep = int(L * (1 - mask_ratio))`."""
    return int(length * (1 - ratio))


# detection: the anchor grid (ops/detection.py, nn/detection.py)
def level_grid(size: int, stride: int) -> int:
    """Cells of a pyramid level along one side: ⌈size / stride⌉ — what a chain of stride-2 convs
    and pools with 'auto' padding (ResNet + FPN) leaves of `size` pixels."""
    return -(-size // stride)


# spatial: TensorFlow's SAME padding (ops/spatial.py, nn/spatial.py)
def same_pads(size, kernel: int, stride: int, dilation: int, maximum=max):
    """(before, after) padding of one dim of `size`: (⌈size / stride⌉ − 1)·stride + span − size,
    span = (kernel − 1)·dilation + 1, the odd pixel after. Written as span − 1 − (size − 1) mod
    stride (one remainder; a max only where span < stride can make it negative): under
    torch.export `size` is symbolic, and ceil/max chains make its solver crawl — the module
    passes torch.sym_max as `maximum`."""
    span = (kernel - 1) * dilation + 1
    total = span - 1 - (size - 1) % stride
    if span < stride:
        total = maximum(total, 0)
    return total // 2, total - total // 2


# augment: RandAugment's scale and vocabulary (ops/augment.py, nn/augment.py)
MAX_MAGNITUDE = 30   # the paper's scale: M ∈ [0, 30] (ResNet-50: N = 2, M = 9; EfficientNet-B7: M = 28)
OPS = ("identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize",
       "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")
