"""Module build time: `archdsl.load_spec` against `timm.create_model`, paired, in one process.

    PYTHONPATH=$PWD /work/venv-bench/bin/python bench/build_vs_timm.py [--rounds 7] [--models a,b]

Needs a venv with timm (bench/RESULTS.md says how it was made); the archdsl measured is the one
on PYTHONPATH, so the same script times another checkout (`PYTHONPATH=/tmp/old`). Each round
builds the archdsl model and the timm model once, in alternating order, on one thread, on the
CPU, and records both times: wall clock and this thread's CPU time (which a busy machine does not
inflate). Printed: per model the median of each and the median of the per-round ratios
archdsl / timm. Both sides start warm (one untimed build each: imports, the parse cache).
"""
from __future__ import annotations

import argparse
import statistics
import time

# archdsl variant (or variant + overrides) → timm model name (+ kwargs)
MODELS = {
    "resnet50": ("resnet50", {}, "resnet50", {}),
    "convnext_tiny": ("convnext_tiny", {}, "convnext_tiny", {}),
    "vit_small": ("vit_small_patch16_224", {}, "vit_small_patch16_224", {}),
    "swin_tiny": ("swin_tiny_patch4_window7_224", {}, "swin_tiny_patch4_window7_224", {}),
    "efficientnet_b0": ("efficientnet_b0", {}, "efficientnet_b0", {}),
    "mobilenetv3_large": ("mobilenetv3_large_100", {}, "mobilenetv3_large_100", {}),
    "regnety_016": ("regnety_016", {}, "regnety_016", {}),
    "resnet_400_blocks": ("resnet50", {"layers": [3, 4, 390, 3]}, "resnet50", {"layers": [3, 4, 390, 3]}),
}


def timed(fn) -> tuple[float, float]:
    """(wall, thread CPU) seconds of fn(); the result is dropped before returning."""
    w0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - w0, time.thread_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    import timm

    import archdsl
    print(f"archdsl from {archdsl.__file__}, torch {torch.__version__}, timm {timm.__version__}")
    print(f"{'model':<20} {'archdsl wall':>12} {'timm wall':>10} {'ratio':>6}   "
          f"{'archdsl cpu':>11} {'timm cpu':>9} {'ratio':>6}")
    for name in args.models.split(","):
        variant, overrides, timm_name, timm_kwargs = MODELS[name]
        ours = lambda: archdsl.load_spec(variant, **overrides)  # noqa: E731
        theirs = lambda: timm.create_model(timm_name, pretrained=False, **timm_kwargs)  # noqa: E731
        ours(), theirs()
        rows = []
        for r in range(args.rounds):
            if r % 2 == 0:
                a = timed(ours)
                t = timed(theirs)
            else:
                t = timed(theirs)
                a = timed(ours)
            rows.append((a, t))
        med = lambda xs: statistics.median(xs)  # noqa: E731
        aw, tw = med([a[0] for a, _ in rows]), med([t[0] for _, t in rows])
        ac, tc = med([a[1] for a, _ in rows]), med([t[1] for _, t in rows])
        rw = med([a[0] / t[0] for a, t in rows])
        rc = med([a[1] / t[1] for a, t in rows])
        print(f"{name:<20} {aw * 1e3:>10.0f}ms {tw * 1e3:>8.0f}ms {rw:>6.2f}   "
              f"{ac * 1e3:>9.0f}ms {tc * 1e3:>7.0f}ms {rc:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
