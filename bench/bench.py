"""archdsl benchmarks (a plain script, not a test).

    python bench/bench.py                 # everything, default sizes
    python bench/bench.py --runs 30       # more forward runs per configuration
    python bench/bench.py --skip-forward  # only the compiler timings
    python bench/bench.py --cpu-time      # forward CPU time on 1 thread (for a busy machine)

(a) front end: parse, then elaborate + infer shapes, for the stdlib resnet50
    (cold: the parse cache cleared each run; cached: the file's AST reused) and costing;
(b) module build: IR graph → torch.fx GraphModule;
(c) forward latency of the archdsl-built ResNet-50 and ConvNeXt-T against the hand-written
    plain-PyTorch models in bench/handwritten.py, loaded with the same weights (outputs are
    compared), eval mode, no_grad, 224x224, batch 1 and 8, runs interleaved (the order
    alternating each round), median; the figure of merit is archdsl / hand-written.

Targets: elaborate + infer ≤ 30 ms; forward ratio ≤ 1.02.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RESNET = ROOT / "stdlib" / "nets" / "resnet.arch"
CONVNEXT = ROOT / "stdlib" / "nets" / "convnext.arch"


def median_ms(fn, runs: int, setup=None) -> tuple[float, float]:
    """(median, min) wall time of fn() in milliseconds over `runs` runs."""
    times = []
    for _ in range(runs):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def front_end(runs: int) -> list[tuple[str, float, float]]:
    import archdsl
    from archdsl.ir.cost import cost
    from archdsl.semantics import loader
    from archdsl.syntax import parse

    text = RESNET.read_text()
    archdsl.load_graph(RESNET, "resnet50")            # warm imports and lark's parser tables
    rows = [("parse resnet.arch (text → AST)", *median_ms(lambda: parse(text, str(RESNET)), runs))]
    rows.append(("load_graph resnet50, cold (parse + elaborate + infer)",
                 *median_ms(lambda: archdsl.load_graph(RESNET, "resnet50"), runs,
                            setup=loader._PARSE_CACHE.clear)))
    rows.append(("load_graph resnet50, cached AST (elaborate + infer)",
                 *median_ms(lambda: archdsl.load_graph(RESNET, "resnet50"), runs)))
    graph = archdsl.load_graph(RESNET, "resnet50")
    rows.append(("cost(graph) resnet50", *median_ms(lambda: cost(graph), runs)))
    rows.append(("check_spec resnet50, cached AST (elaborate + infer + cost)",
                 *median_ms(lambda: archdsl.check_spec(RESNET, "resnet50"), runs)))
    return rows


def build_times(runs: int) -> list[tuple[str, float, float]]:
    import archdsl
    from archdsl.lower.build import build

    rows = []
    for path, variant in ((RESNET, "resnet50"), (CONVNEXT, "convnext_tiny")):
        graph = archdsl.load_graph(path, variant)
        build(graph)                                   # warm
        rows.append((f"build {variant} (IR → GraphModule, weights allocated)",
                     *median_ms(lambda: build(graph), runs)))
        rows.append((f"load_spec {variant} (whole pipeline)",
                     *median_ms(lambda: archdsl.load_spec(path, variant), runs)))
    return rows


def forward(runs: int, warmup: int, batches: list[int], use_compile: bool,
            clock=time.perf_counter) -> list[dict]:
    import torch

    import archdsl
    import handwritten

    torch.manual_seed(0)
    pairs = [("ResNet-50", archdsl.load_spec(RESNET, "resnet50", seed=0), handwritten.resnet50()),
             ("ConvNeXt-T", archdsl.load_spec(CONVNEXT, "convnext_tiny", seed=0),
              handwritten.convnext_tiny())]
    results = []
    for name, ours, hand in pairs:
        hand.load_state_dict(ours.state_dict(), strict=True)   # same weights, same keys
        ours.eval()
        hand.eval()
        if use_compile:
            ours, hand = torch.compile(ours), torch.compile(hand)
        for batch in batches:
            x = torch.randn(batch, 3, 224, 224)
            with torch.no_grad():
                diff = (ours(x) - hand(x)).abs().max().item()
                for _ in range(warmup):
                    ours(x)
                    hand(x)
                t_ours, t_hand = [], []
                for r in range(runs):
                    order = ((ours, t_ours), (hand, t_hand))
                    for model, sink in (order if r % 2 == 0 else order[::-1]):
                        t0 = clock()
                        model(x)
                        sink.append((clock() - t0) * 1e3)
            m_ours, m_hand = statistics.median(t_ours), statistics.median(t_hand)
            b_ours, b_hand = min(t_ours), min(t_hand)
            results.append({"model": name, "batch": batch, "archdsl_ms": m_ours,
                            "handwritten_ms": m_hand, "ratio": m_ours / m_hand,
                            "min_ratio": b_ours / b_hand, "max_abs_diff": diff})
            print(f"  {name:10} batch {batch}: archdsl {m_ours:8.2f} ms   hand-written "
                  f"{m_hand:8.2f} ms   ratio {m_ours / m_hand:.3f}   (min {b_ours:.2f} / "
                  f"{b_hand:.2f} = {b_ours / b_hand:.3f})   max |Δ| {diff:.1e}   "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    return results


def machine() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="forward runs per model and batch")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--front-runs", type=int, default=30, help="runs of the compiler timings")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--torch-compile", action="store_true",
                    help="also wrap both models in torch.compile (slow to warm up on CPU)")
    ap.add_argument("--skip-forward", action="store_true")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the forward by this thread's CPU time with torch on 1 thread: "
                         "immune to being descheduled, for a machine that others are loading")
    args = ap.parse_args()

    for path in (RESNET, CONVNEXT):
        if not path.exists():
            print(f"missing {path}: the benchmark needs the stdlib ResNet and ConvNeXt", file=sys.stderr)
            return 1

    import torch
    torch.set_num_threads(1 if args.cpu_time else args.threads)
    print(f"machine: {machine()}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")

    print(f"(a) front end, median / min of {args.front_runs} runs")
    for label, med, best in front_end(args.front_runs):
        print(f"  {label:60} {med:8.2f} ms  (min {best:.2f})")
    print(f"\n(b) module build, median / min of {max(3, args.front_runs // 3)} runs")
    for label, med, best in build_times(max(3, args.front_runs // 3)):
        print(f"  {label:60} {med:8.2f} ms  (min {best:.2f})")
    if args.skip_forward:
        return 0
    what = "CPU time of 1 thread (time.thread_time)" if args.cpu_time else "wall-clock latency"
    print(f"\n(c) forward {what}, eval + no_grad, 224x224, median of {args.runs} interleaved runs"
          + (" (torch.compile)" if args.torch_compile else ""))
    results = forward(args.runs, args.warmup, args.batches, args.torch_compile,
                      time.thread_time if args.cpu_time else time.perf_counter)
    worst = max(r["ratio"] for r in results)
    print(f"\nworst forward ratio archdsl / hand-written: {worst:.3f} (target ≤ 1.02)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
