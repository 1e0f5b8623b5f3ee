"""torch.compile: archdsl against timm, compile time and steady-state training speed, one command.

    PYTHONPATH=$PWD /work/venv-bench/bin/python bench/compile_vs_timm.py            # CPU, short
    PYTHONPATH=$PWD python bench/compile_vs_timm.py --device cuda --batch 64 --steps 20

For each model both sides hold the same weights (timm's state_dict loaded into the archdsl model,
strictly), are compiled with `torch.compile` (inductor, default mode) and run the same training
step: forward, cross-entropy, backward, SGD step. On CUDA the step runs under bf16 autocast; conv
nets use channels-last memory (as timm's training script does with --channels-last), on both
sides. Compile time is the first step (tracing, inductor, the step itself), wall time and this
process's CPU time including its finished children (inductor compiles in-process,
TORCHINDUCTOR_COMPILE_THREADS=1 is set here, and runs g++ per kernel).
Fair compile figures: a throw-away model is compiled first (inductor's one-time start: imports,
toolchain checks), each side compiles under its own empty inductor cache (nothing compiled for one
side is reused by the other), and which side compiles first alternates from model to model. The
steady state is the median of `--steps` further steps, the two models alternating step by step;
the step ratio is the median of the per-pair ratios. The load average is printed per model (the
machine may be shared). Peak memory is CUDA's max_memory_allocated (not measured on the CPU).

The topology row is MoCo v2 (stdlib/ssl/moco.arch) against the same method written here on
timm's ResNet-50: a query encoder with the 2048-2048-128 MLP head, its momentum twin (m = 0.999),
a 65536-key queue, InfoNCE at T = 0.2, shuffle-BN left out on both sides (one process). The
archdsl side calls its TopologyModule's nets through the same step (the compiled query and key
encoders), so the two rows compare networks, not the topology runtimes.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

MODELS = {  # archdsl variant → timm name, channels-last
    "resnet50": ("resnet50", True),
    "convnext_tiny": ("convnext_tiny", True),
    "vit_small_patch16_224": ("vit_small_patch16_224", False),
    "swin_tiny_patch4_window7_224": ("swin_tiny_patch4_window7_224", False),
    "efficientnet_b0": ("efficientnet_b0", True),
}


BACKEND = "inductor"


def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Classifier:
    """One compiled training step of a classifier."""

    def __init__(self, model, device, channels_last: bool, amp: bool, lr=0.01):
        import torch
        self.model = model.to(device).train()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.compiled = torch.compile(self.model, backend=BACKEND)
        self.device, self.amp, self.channels_last = device, amp, channels_last

    def step(self, x, y):
        import torch
        import torch.nn.functional as F
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss = F.cross_entropy(self.compiled(x), y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


class _MoCo:
    """MoCo v2's step on two encoders (query trained, key its momentum twin) and a queue."""

    def __init__(self, query, key, device, channels_last: bool, amp: bool, K=65536, dim=128, T=0.2, m=0.999):
        import torch
        self.query, self.key = query.to(device).train(), key.to(device).train()
        if channels_last:
            self.query = self.query.to(memory_format=torch.channels_last)
            self.key = self.key.to(memory_format=torch.channels_last)
        for p in self.key.parameters():
            p.requires_grad_(False)
        self.q, self.k = torch.compile(self.query, backend=BACKEND), torch.compile(self.key, backend=BACKEND)
        self.queue = torch.nn.functional.normalize(torch.randn(dim, K, device=device), dim=0)
        self.ptr, self.T, self.m = 0, T, m
        self.opt = torch.optim.SGD(self.query.parameters(), lr=0.03, momentum=0.9)
        self.device, self.amp, self.channels_last = device, amp, channels_last

    def step(self, x_q, x_k):
        import torch
        import torch.nn.functional as F
        if self.channels_last:
            x_q, x_k = (t.contiguous(memory_format=torch.channels_last) for t in (x_q, x_k))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            q = F.normalize(self.q(x_q).float(), dim=1)
            with torch.no_grad():
                k = F.normalize(self.k(x_k).float(), dim=1)
            logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue], dim=1) / self.T
            loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for pk, pq in zip(self.key.parameters(), self.query.parameters()):
                pk.mul_(self.m).add_(pq.detach(), alpha=1 - self.m)
            n = len(k)
            self.queue[:, self.ptr:self.ptr + n] = k.T
            self.ptr = (self.ptr + n) % self.queue.shape[1]


def _timm_moco_encoder(timm):
    import torch
    backbone = timm.create_model("resnet50", num_classes=0)
    return torch.nn.Sequential(backbone, torch.nn.Linear(2048, 2048), torch.nn.ReLU(inplace=True),
                               torch.nn.Linear(2048, 128))


def _pairs(args, device, amp):
    """(name, archdsl stepper, timm stepper, inputs) for each model asked for."""
    import timm
    import torch

    import archdsl
    for name in args.models.split(","):
        if name == "moco_v2":
            topo = archdsl.load_spec("moco_v2", img=args.size)
            ours = _MoCo(topo.nets["query"], topo.nets["key"], device, True, amp)
            query = _timm_moco_encoder(timm)
            theirs = _MoCo(query, copy.deepcopy(query), device, True, amp)
            x = torch.randn(args.batch, 3, args.size, args.size, device=device)
            yield name, ours, theirs, (x, x.flip(3))
            continue
        timm_name, channels_last = MODELS[name]
        ref = timm.create_model(timm_name)
        ours = archdsl.load_spec(name, input_shape=(args.batch, 3, args.size, args.size))
        ours.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(args.batch, 3, args.size, args.size, device=device)
        y = torch.randint(0, 1000, (args.batch,), device=device)
        yield (name, _Classifier(ours, device, channels_last, amp),
               _Classifier(ref, device, channels_last, amp), (x, y))


def _timed(stepper, inputs, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    stepper.step(*inputs)
    _sync(device)
    return time.perf_counter() - t0


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _first_steps(stepper, inputs, device, amp):
    """(wall s, CPU s, peak MiB) of the compiling first step, under an empty inductor cache."""
    import torch
    from torch._inductor.utils import fresh_cache
    if amp:
        torch.cuda.reset_peak_memory_stats()
    with fresh_cache():
        cpu = _cpu()
        wall = _timed(stepper, inputs, device)
        cpu = _cpu() - cpu
        _timed(stepper, inputs, device)  # a second call may recompile (e.g. for grads set)
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if amp else None
    return wall, cpu, peak


def _warm_up(device, amp):
    """Compile and run a throw-away model: inductor's one-time start is paid by neither side."""
    import torch
    from torch import nn
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.LayerNorm(8), nn.Linear(8, 10))
    x = torch.randn(2, 3, 16, 16, device=device)
    y = torch.randint(0, 10, (2,), device=device)
    _first_steps(_Classifier(net, device, False, amp), (x, y), device, amp)
    torch._dynamo.reset()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224, help="input height and width")
    ap.add_argument("--steps", type=int, default=5, help="timed steps after the first")
    ap.add_argument("--models", default=",".join([*MODELS, "moco_v2"]))
    ap.add_argument("--backend", default="inductor", help="torch.compile backend ('eager': a quick dry run)")
    args = ap.parse_args()
    global BACKEND
    BACKEND = args.backend

    import torch
    device = torch.device(args.device)
    amp = device.type == "cuda"
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if amp else 'cpu'}, "
          f"threads {torch.get_num_threads()}, batch {args.batch}, {args.size}x{args.size}, "
          f"{'bf16 autocast' if amp else 'float32'}, {args.steps} timed steps, backend {args.backend}")
    _warm_up(device, amp)
    print(f"{'model':<30} {'first':>5} {'compile wall s (ours/timm)':>27} {'ratio':>6} "
          f"{'compile CPU s':>15} {'ratio':>6} {'img/s (ours/timm)':>20} {'step ratio':>10} "
          f"{'peak MiB (ours/timm)':>21} {'load':>5}")
    for n, (name, ours, theirs, inputs) in enumerate(_pairs(args, device, amp)):
        sides = [("ours", ours), ("timm", theirs)][::1 if n % 2 == 0 else -1]
        first, cpu, peaks = {}, {}, {}
        for side, stepper in sides:
            first[side], cpu[side], peaks[side] = _first_steps(stepper, inputs, device, amp)
        times = {"ours": [], "timm": []}
        for i in range(args.steps):
            order = (("ours", ours), ("timm", theirs)) if i % 2 == 0 else (("timm", theirs), ("ours", ours))
            for side, stepper in order:
                times[side].append(_timed(stepper, inputs, device))
        med = {s: statistics.median(v) for s, v in times.items()}
        ratio = statistics.median(a / b for a, b in zip(times["ours"], times["timm"]))
        peak = f"{peaks['ours']:.0f}/{peaks['timm']:.0f}" if amp else "-"
        print(f"{name:<30} {sides[0][0]:>5} {first['ours']:>13.1f}/{first['timm']:<13.1f} "
              f"{first['ours'] / first['timm']:>6.2f} {cpu['ours']:>7.1f}/{cpu['timm']:<7.1f} "
              f"{cpu['ours'] / cpu['timm']:>6.2f} {args.batch / med['ours']:>9.1f}/{args.batch / med['timm']:<9.1f} "
              f"{ratio:>10.3f} {peak:>21} {os.getloadavg()[0]:>5.1f}", flush=True)
        del ours, theirs
        torch._dynamo.reset()


if __name__ == "__main__":
    main()
