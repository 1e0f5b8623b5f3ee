"""Costing time and memory against model size, a deep and a wide family, 10M to 100B parameters.

    PYTHONPATH=$PWD python bench/depth_scaling.py [--family resnet|convnext|both]

Each row runs in a fresh process (so that its peak RSS is its own): the stdlib is parsed and the
family's default variant elaborated first (warm parse cache and imports), then the timed part is
`check_spec` — elaborate, infer every shape, cost every node — for one configuration. Printed:
params, IR nodes, this process's CPU seconds for `check_spec`, and the process's peak RSS (which
includes the interpreter, torch-free imports and the parsed stdlib: about the first row's figure).
The archdsl timed is the one on PYTHONPATH, so the same script measures another checkout.

Deep: ResNet with `layers=[3, 4, N, 3]` (and wider bottlenecks, `base_width`, for 100B), up to
10,000 blocks. Wide: ConvNeXt-T's depths with every stage's width scaled. The elaboration limits
(`archdsl.limits`) are raised to 10^6 nodes and 10^9 steps for the timed call.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

DEEP = [  # (label, overrides)
    ("10M", {"layers": [1, 1, 1, 1]}),
    ("100M", {"layers": [3, 4, 70, 3]}),
    ("1B", {"layers": [3, 4, 880, 3]}),
    ("10B", {"layers": [3, 4, 8800, 3]}),
    ("100B", {"layers": [3, 4, 8700, 3], "base_width": 256}),
    ("10k blocks", {"layers": [3, 4, 9990, 3]}),
]
WIDE = [
    ("10M", 0.6), ("100M", 1.9), ("1B", 6.0), ("10B", 19.0), ("100B", 60.0),
]


def _convnext(scale: float) -> dict:
    return {"dims": [int(round(d * scale / 8)) * 8 for d in (96, 192, 384, 768)]}


def row(family: str, overrides: dict) -> dict:
    import resource
    import time

    import archdsl
    variant = "resnet50" if family == "resnet" else "convnext_tiny"
    archdsl.check_spec(variant)
    with archdsl.limits(nodes=10 ** 6, steps=10 ** 9):
        t0 = time.process_time()
        report = archdsl.check_spec(variant, **overrides)
        seconds = time.process_time() - t0
    return {"params": report.totals.params, "nodes": len(report.nodes), "seconds": round(seconds, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=["resnet", "convnext", "both"], default="both")
    ap.add_argument("--row", help=argparse.SUPPRESS)   # internal: one measurement, as JSON
    args = ap.parse_args()
    if args.row:
        family, overrides = json.loads(args.row)
        print(json.dumps(row(family, overrides)))
        return
    rows = []
    if args.family in ("resnet", "both"):
        rows += [("resnet", label, o) for label, o in DEEP]
    if args.family in ("convnext", "both"):
        rows += [("convnext", label, _convnext(s)) for label, s in WIDE]
    print(f"{'family':<9} {'target':>10} {'params':>16} {'nodes':>8} {'seconds':>8} {'peak MB':>8}  overrides")
    for family, label, overrides in rows:
        out = subprocess.run([sys.executable, __file__, "--row", json.dumps([family, overrides])],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{family:<9} {label:>10} failed: {out.stderr.strip().splitlines()[-1]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{family:<9} {label:>10} {r['params']:>16,} {r['nodes']:>8,} {r['seconds']:>8.2f} "
              f"{r['peak_rss_mb']:>8}  {json.dumps(overrides)}", flush=True)


if __name__ == "__main__":
    main()
