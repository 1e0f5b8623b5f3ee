"""Running one case in a worker process: load, elaborate, cost (and sometimes build and run) it
under a CPU-time limit and an address-space limit, and classify how it ended."""
from __future__ import annotations

import multiprocessing
import signal
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

from archdsl.testing.fuzz.cases import Case

FILENAME = "fuzz.arch"


class _Timeout(BaseException):
    """Raised by the worker's alarm; a BaseException so that no `except Exception` swallows it."""


@dataclass
class Outcome:
    kind: str                 # "ok" | "error" | "internal" | "timeout"
    seconds: float = 0.0      # wall clock
    cpu: float = 0.0          # the worker's CPU time: what "slow" is judged on (the machine is shared)
    signature: str = ""       # internal: "Type at archdsl/file.py:function"
    detail: str = ""          # the message (internal: and the traceback's last lines)
    built: bool = False


def signature(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if "/archdsl/" in f.filename.replace("\\", "/")]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return type(err).__name__
    where = frame.filename.replace("\\", "/").rsplit("/archdsl/", 1)[-1]
    return f"{type(err).__name__} at archdsl/{where}:{frame.name}"


WARM_UP = (
    "network N() {\n  in x: [B, 3, 8, 8]\n  out x -> conv(4, 3) -> bn -> relu -> flatten -> fc: linear(2)\n}\n",
    "from gan.gan import GAN\nvariant t = GAN(nz=4, img=[1, 4, 4])\n",
)


class _Runner:
    """Loads, elaborates, costs (and sometimes builds and runs) a case; lives in a worker."""

    # what "small" means for building and running a case that passed
    BUILD_PARAMS, BUILD_FLOPS, BUILD_BYTES = 2_000_000, 50_000_000, 64 << 20

    def __init__(self, build: bool):
        from archdsl.errors import ArchError
        from archdsl.semantics.loader import Loader, stdlib_dir
        self.loader = Loader()
        # warm up: a case's time is its own work, not the first load of a module it imports
        for path in sorted(stdlib_dir().rglob("*.arch")):
            try:
                self.loader.load_file(path)
            except ArchError:
                pass
        if build:
            import torch
            # one thread: CPU time is then the case's work, not other threads spinning on a busy machine
            torch.set_num_threads(1)
            for text in WARM_UP:  # torch's first module, optimizer and training step are one-time costs
                self.run(Case(text, str(stdlib_dir()), "warm-up", build=True), 60.0)

    def run(self, case: Case, timeout: float) -> Outcome:
        from archdsl.errors import ArchError
        start, cpu = time.perf_counter(), time.process_time()
        # the limit is on CPU time: on a shared machine, wall time measures the neighbours too
        signal.signal(signal.SIGPROF, _alarm)
        signal.setitimer(signal.ITIMER_PROF, timeout)
        try:
            built = self._check(case)
            kind, sig, detail = "ok", "", ""
        except ArchError as e:
            kind, sig, detail, built = "error", "", e.message, False
        except _Timeout:
            kind, sig, detail, built = "timeout", "", f"over {timeout} s of CPU", False
        except Exception as e:  # noqa: BLE001 - what we hunt (MemoryError and RecursionError too)
            tail = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-4:])
            kind, sig, detail, built = "internal", signature(e), f"{type(e).__name__}: {e}"[:400] + "\n" + tail, False
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        return Outcome(kind, time.perf_counter() - start, time.process_time() - cpu, sig, detail, built)

    def _check(self, case: Case) -> bool:
        from archdsl.semantics.catalog import block_of, entry
        from archdsl.semantics.elaborate import Elaborator
        from archdsl.semantics.topology import TopologyElaborator
        module = self.loader.load_text(case.text, Path(case.folder), FILENAME)
        variants = list(module.variants)
        variant = variants[case.pick % len(variants)] if variants else None
        callee, name, _ = entry(module, variant)
        if block_of(callee).decl.kind == "topology":
            ir = TopologyElaborator(name or "topology").topology(callee, {}, None, name)
            return case.build and self._run_topology(ir)
        graph = Elaborator(name or "network").network(callee, {}, None)
        return case.build and self._small(graph) and self._run_network(graph)

    def _small(self, graph) -> bool:
        """Few weights and FLOPs, and inputs and activations (at the graph's own batch) that fit."""
        import math
        from archdsl.ir.cost import cost
        totals = cost(graph).totals
        batch = max((graph.node(i).shape[0] for i in graph.inputs if graph.node(i).shape), default=1)
        inputs = sum(4 * math.prod(graph.node(i).shape) for i in graph.inputs)
        return (totals.params <= self.BUILD_PARAMS and totals.flops * batch <= self.BUILD_FLOPS
                and max(inputs, totals.activation_bytes * batch) <= self.BUILD_BYTES)

    @staticmethod
    def _run_network(graph) -> bool:
        import torch
        from archdsl.lower.build import build
        model = build(graph, seed=0).eval()
        inputs = [_tensor(graph.node(i).shape, graph.node(i).dtype) for i in graph.inputs]
        with torch.no_grad():
            model(*inputs)
        return True

    def _run_topology(self, ir) -> bool:
        from archdsl.topology.module import TopologyModule
        from archdsl.topology.train import synthetic_pool, train
        if not all(self._small(g) for net in ir.nets.values() for g in net.graphs.values()):
            return False
        topo = TopologyModule(ir, seed=0)
        train(topo, 1, data=synthetic_pool(topo, pool=4, classes=2))
        return True


def _tensor(shape, dtype: str):
    import torch
    dt = getattr(torch, dtype)
    return torch.randn(shape, dtype=dt) if dt.is_floating_point else torch.zeros(shape, dtype=dt)


def hard_limit(timeout: float) -> float:
    return 5 * timeout + 30


def _alarm(signum, frame):
    raise _Timeout()


def _worker(conn, memory_limit: int, build: bool) -> None:
    import os
    import resource
    import threading
    parent = multiprocessing.parent_process()  # a worker never outlives the run that started it
    threading.Thread(target=lambda: (wait([parent.sentinel]), os._exit(1)), daemon=True).start()
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    sys.setrecursionlimit(10_000)
    warnings.simplefilter("ignore")  # torch's warnings about odd but legal models
    runner = _Runner(build)
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        case, timeout = job
        conn.send(runner.run(case, timeout))


class Worker:
    """A process that runs cases; killed and restarted when a case outlives its time limit by far
    in wall time (stuck in native code, where the CPU-time alarm is not delivered)."""

    def __init__(self, memory_limit: int, build: bool):
        self.memory_limit, self.build = memory_limit, build
        self.proc = self.conn = None
        self.started = 0.0
        self.case: Case | None = None
        self.index = -1

    def start(self):
        ctx = multiprocessing.get_context("spawn")  # fork after torch has run threads can hang
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, self.memory_limit, self.build), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(120) or self.conn.recv() != "ready":
            raise RuntimeError("the fuzz worker did not start")

    def submit(self, case: Case, timeout: float):
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.case, self.started = case, time.perf_counter()
        self.conn.send((case, timeout))

    def collect(self) -> Outcome:
        try:
            outcome = self.conn.recv()
        except EOFError:  # the worker died (killed by the kernel, a crash in native code)
            outcome = Outcome("internal", time.perf_counter() - self.started, 0.0, "worker died",
                              f"exit code {self.proc.exitcode}")
            self.stop()
        self.case = None
        return outcome

    def kill(self, timeout: float) -> Outcome:
        outcome = Outcome("timeout", time.perf_counter() - self.started, 0.0, "",
                          f"killed after {hard_limit(timeout):g} s")
        self.stop()
        self.case = None
        return outcome

    def run(self, case: Case, timeout: float) -> Outcome:
        self.submit(case, timeout)
        if self.conn.poll(hard_limit(timeout)):
            return self.collect()
        return self.kill(timeout)

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
        self.proc = None
