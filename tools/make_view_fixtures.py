"""Write torchvision.transforms.v2's outputs for the view ops' fixed-parameter cases
(tests/test_views.py compares archdsl/nn/views.py against them).

Run where torchvision is installed (it is not a dependency of archdsl):
    python tools/make_view_fixtures.py tests/fixtures
Writes views_torchvision.pt: the input images (float32 in [0, 1], [2, 3, 12, 14], from
torch.Generator().manual_seed(0)) and, per case, the parameters and torchvision's output.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchvision
from torchvision.transforms.v2 import functional as F

BOXES = [(2, 3, 7, 9), (0, 0, 12, 14)]         # (top, left, height, width) per image
JITTER_ORDER = ["hue", "saturation", "brightness", "contrast"]
FACTORS = {"brightness": 1.3, "contrast": 0.6, "saturation": 1.4, "hue": -0.11}
ADJUST = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast,
          "saturation": F.adjust_saturation, "hue": F.adjust_hue}


def main(out_dir: Path) -> None:
    x = torch.rand(2, 3, 12, 14, generator=torch.Generator().manual_seed(0))
    cases = {}
    for size in [(8, 8), (16, 20)]:
        cases[f"resized_crop_{size[0]}x{size[1]}"] = {
            "boxes": BOXES, "size": size,
            "out": torch.stack([F.resized_crop(x[i], *b, size=list(size), antialias=True)
                                for i, b in enumerate(BOXES)])}
    for name, f in FACTORS.items():
        cases[name] = {"factor": f, "out": ADJUST[name](x, f)}
    cases["hue_plus"] = {"factor": 0.07, "out": F.adjust_hue(x, 0.07)}
    y = x
    for name in JITTER_ORDER:
        y = ADJUST[name](y, FACTORS[name])
    cases["jitter_sequence"] = {"order": JITTER_ORDER, "factors": FACTORS, "out": y}
    cases["grayscale"] = {"out": F.rgb_to_grayscale(x, num_output_channels=3)}
    for k, sigma in [(5, 0.8), (7, 1.7)]:
        cases[f"blur_{k}"] = {"kernel": k, "sigma": sigma,
                              "out": F.gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])}
    cases["solarize"] = {"threshold": 0.5, "out": F.solarize(x, 0.5)}
    cases["hflip"] = {"out": F.horizontal_flip(x)}
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    cases["normalize"] = {"mean": mean, "std": std, "out": F.normalize(x, mean, std)}
    torch.save({"generated_by": f"torchvision {torchvision.__version__} on torch {torch.__version__}",
                "x": x, "cases": cases}, out_dir / "views_torchvision.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
