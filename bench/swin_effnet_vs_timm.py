"""Two paired measurements against timm on the CPU, one thread (issue 15), in one process.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 /work/venv-bench/bin/python bench/swin_effnet_vs_timm.py

1. Swin-T training step (forward, cross-entropy, backward; batch 2, 224²): archdsl as lowered
   (masked window attention explicit with gradients on the CPU, archdsl/nn/attention.py), archdsl
   with that attention lowered to SDPA with the float mask (the previous lowering), and timm —
   the same weights, rounds alternating the order; median CPU ms of this thread.
2. EfficientNet-B0 forward, batch 8, eval, no_grad: archdsl against timm (same weights), paired
   medians, then torch.profiler's per-op CPU totals of both over the same runs.
"""
from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
import torch.nn.functional as F

import archdsl
import archdsl.nn.attention as attention


def _cpu_ms(fn) -> float:
    t = time.thread_time()
    fn()
    return (time.thread_time() - t) * 1000


def _paired(fns: dict, rounds: int) -> dict:
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            times[k].append(_cpu_ms(fns[k]))
    return {k: statistics.median(v) for k, v in times.items()}


def _sdpa_with_mask(q, k, v, mask, scale=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def swin(rounds: int) -> None:
    ref = timm.create_model("swin_tiny_patch4_window7_224")
    ours = archdsl.load_spec("swin_tiny_patch4_window7_224")
    explicit = attention.masked_sdpa
    attention.masked_sdpa = _sdpa_with_mask   # what the next build's fx graph calls
    try:
        old = archdsl.load_spec("swin_tiny_patch4_window7_224")
    finally:
        attention.masked_sdpa = explicit
    for m in (ours, old):
        m.load_state_dict(ref.state_dict())
    x, y = torch.randn(2, 3, 224, 224), torch.randint(0, 1000, (2,))

    def step(m):
        return lambda: F.cross_entropy(m(x), y).backward()
    with torch.no_grad():
        print("Swin-T eval outputs, max |archdsl - timm|:", (ours.eval()(x) - ref.eval()(x)).abs().max().item())
    for m in (ours, old, ref):
        m.train()
        step(m)()
    med = _paired({"archdsl": step(ours), "archdsl, SDPA float mask": step(old), "timm": step(ref)}, rounds)
    for k, v in med.items():
        print(f"Swin-T train step, batch 2: {k:<26} {v:8.1f} ms  ratio to timm {v / med['timm']:.3f}")


def efficientnet(rounds: int) -> None:
    ref = timm.create_model("efficientnet_b0").eval()
    ours = archdsl.load_spec("efficientnet_b0").eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        print("EfficientNet-B0 outputs equal:", torch.equal(ours(x), ref(x)))
        med = _paired({"archdsl": lambda: ours(x), "timm": lambda: ref(x)}, rounds)
        print(f"EfficientNet-B0 forward, batch 8: archdsl {med['archdsl']:.1f} ms, timm {med['timm']:.1f} ms, "
              f"ratio {med['archdsl'] / med['timm']:.3f}")
        for name, m in (("archdsl", ours), ("timm", ref)):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    m(x)
            print(f"--- {name}: torch.profiler, 3 forwards")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    swin(args.rounds)
    efficientnet(args.rounds)


if __name__ == "__main__":
    main()
