"""A fuzzer for hostile and broken specs: every input must end as a result or an `ArchError`.

    python -m archdsl.testing.fuzz --cases 2000 --seconds 60 --seed 0

Each case is a spec text made from (a) a stdlib file, a `specs/` file or a README example with one
to three mutations (token deletion, duplication and swap; a number replaced by an extreme;
an identifier swapped for another; a line deleted, duplicated or spliced in from another file;
a string replaced by a hostile one; a hostile label put on a chain stage), or (b) a snippet:
a small network or topology whose holes are filled with hostile labels (templates, Python
keywords, quotes, module attribute names), string escapes, integers between 2^1024 and 2^4096,
negative and huge dims as spec defaults, extreme initialiser arguments and topology statements.
Case `i` of seed `k` depends on nothing else, so `--show i` prints it again.

Each case is loaded, elaborated and costed (a topology elaborated) in a worker process, under a
per-case time limit; a fraction of the cases that pass are also built and run (a forward pass, or
one training step of a topology) when they are small. A case ends as

- ok: it loaded (and, if built, ran);
- error: an `ArchError`, what a user mistake must give;
- internal: any other exception (a bug in archdsl), grouped by signature (exception type and
  the innermost archdsl function that raised it); each signature is shrunk (lines, then tokens)
  to a small reproducer that still fails with the same signature;
- timeout: still running after `--timeout` seconds of CPU time (a hang, or a blow-up the
  worker's memory limit did not stop).

Cases that take more than `--slow` seconds of CPU time (default 1) are reported as slow, whatever
their end. Times are CPU time, not wall time: on a shared machine the wall clock measures the
other processes too. Workers warm up (load every stdlib module once) before the first case.
The exit status is 1 when there was an internal error or a timeout, else 0.
"""
from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import signal
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable

FILENAME = "fuzz.arch"
TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9_]*(?:\.[0-9]*)?'
                   r'(?:[eE][-+]?[0-9]+)?|->|\*\*|//|==|!=|<=|>=|\.\.\.|\s+|.', re.S)
KEYWORDS = ("in out if elif else for and or not true false none repeat param buffer let variant "
            "import from as reference net state phase log after topology init assert checkpoint "
            "block network").split()
INIT_PATTERNS = ['"*.weight"', '"conv:weight"', '"*"', '"fc.bias"']
PY_NAMES = ("class import def lambda return None True self forward training float int type to cuda "
            "weight bias state_dict _modules _parameters __init__ __class__ graph code").split()


def big_int(rng: random.Random) -> str:
    """An integer between 2^1024 and 2^4096, as a literal or as an expression."""
    k = rng.randint(1024, 4096)
    return rng.choice([str(rng.randrange(2 ** 1024, 2 ** 4096)), f"2 ** {k}", f"10 ** {k // 3}",
                       f"-(2 ** {k})", f"{2 ** 1024} * {2 ** 1024}"])


def hostile_string(rng: random.Random) -> str:
    return rng.choice([r'"\x"', r'"\x4"', r'"\x41"', r'"\N{x}"', r'"\N{LATIN SMALL LETTER A}"',
                       r'"\U0001F600"', r'"\UFFFFFFFF"', r'"\u12"', r'"\ud800"', r'"C:\Users\x"',
                       r'"\0"', r'"\\"', r'"\""', r'"\n"', r'"a\tb"', r'"\777"', '""', '" "',
                       '"a.b"', '"{x}"', '"{"', '"}"', '"{}"', '"*"', '"**"', '"?"', '"[a-"',
                       '"../x"', r'"timm\xception"', '"\' + str(1) + \'"', '"x" * 3',
                       '"' + "a" * rng.choice([100, 10000]) + '"', '"é"', '"\x7f"'])


class Holes:
    """Fillers for a snippet's holes: each is hostile (extreme, ill-typed, a Python keyword …)
    with probability `hostile`, else an ordinary value, so most snippets get past their first
    statement and the hostile value meets the later stages too."""

    def __init__(self, rng: random.Random, hostile: float):
        self.rng, self.hostile = rng, hostile

    def _odd(self) -> bool:
        return self.rng.random() < self.hostile

    def number(self) -> str:
        rng = self.rng
        if not self._odd():
            return rng.choice(["1", "2", "4", "8", "16", "0.5", "0.1", "3"])
        if rng.random() < 0.3:
            return big_int(rng)
        return rng.choice(["0", "-1", "-0", "0.0", "-0.5", "1e-308", "1e308", "-1e308", "1e309",
                           "2147483648", "9223372036854775808", "18446744073709551617", "1000000",
                           "100000000", str(10 ** 30), "10 ** 400", "1e308 * 10", "-4", "(-3)", "1.5",
                           "true", "none", '"a"', "[]"])

    def count(self) -> str:
        if not self._odd():
            return self.rng.choice(["1", "2", "3", "n"])
        return self.rng.choice(["0", "-1", "-2", "1.5", "true", "none", '"2"', "10 ** 400", "2 ** 1024",
                                "c", "100000"])

    def string(self) -> str:
        return hostile_string(self.rng) if self._odd() else self.rng.choice(['"a"', '"x.y"', '"timm/a"'])

    def label(self) -> str:
        """A label as written before `:`: a template of an odd value, a Python keyword or a
        module attribute's name when hostile."""
        rng = self.rng
        if not self._odd():
            return rng.choice(["a", "b", "conv", "layer{n}", "blk{n + 1}", "s{n}_x", "head"])
        inner = rng.choice(['""', '"."', '"\'"', r'"\""', '" "', '"a.b"', '"0"', "i", "n", "n - 3",
                            "-1", "1.5", "none", "true", "[1, 2]", "(1, 2)", "10 ** 400", "10 ** 5000",
                            "1e308", '"x" * 100000', r'"\n"', "undefined", "c / 3", '"class"', "2 ** 64"])
        head = rng.choice(["a", "layer", "fc", "x", *PY_NAMES])
        return rng.choice([head, f"{head}{{{inner}}}", f"{head}{{{inner}}}b",
                           f"{head}{{{inner}}}{{{inner}}}", f"{head}_{{{inner}}}"])

    def dims(self) -> str:
        good, bad = ["C", "4", "1", "(c)"], ["0", "-1", "(-2)", "(10 ** 30)", "(2 ** 64)", "(1.5)",
                                             "(none)", "1000000"]
        return ", ".join(self.rng.choice(bad if self._odd() else good) for _ in range(self.rng.randint(0, 3)))

    def init(self) -> str:
        rng, n = self.rng, self.number
        return rng.choice([f'kaiming_normal(nonlinearity="{rng.choice(["gelu", "relu", "leaky_relu", "x"])}")',
                           f'kaiming_normal(mode="{rng.choice(["fan_in", "fan_out", "fan_x"])}", grouped=true)',
                           f"trunc_normal({n()}, {n()}, {n()})", f"normal({n()})", f"constant({n()})",
                           f"uniform({n()}, {n()})", f"orthogonal({n()})", "xavier_normal()", "zeros", "ones",
                           n(), f"kaiming_uniform(a={n()})", f"normal(std={n()}, mean={n()})"])

    def expression(self) -> str:
        n = self.number
        return self.rng.choice([
            f"sqrt({n()})", f"log2({n()})", f"round({n()})", f"int({n()})", f"float({n()})",
            f"{n()} // {n()}", f"{n()} % {n()}", f"{n()} ** {n()}", f"min({n()}, {n()})", f"str({n()})",
            f"make_divisible({n()}, {n()})", f"exp({n()})", f"log_e({n()})", f"ceil({n()})",
            f"floor({n()})", f"sorted([{n()}, {n()}])", f"len(range({n()}))", f"[0] * {n()}",
            f'"a" * {n()}', f"sum(range({self.count()}))", f"prod([{n()}, {n()}])", f"{n()} / {n()}",
            f"abs({n()})", f"bool({n()})", f"{n()} < {n()}", f"{n()} in [{n()}]", f"[{n()}][{n()}]",
            f"({n()}, {n()})[{n()}]", f"{n()} == {n()} ? {n()} : {n()}", f"-{n()}", f"max([{n()}])",
            f"tuple([{n()}])"])

    def statement(self, k: int) -> list[str]:
        """One statement over the tensor `y` ([B, C, H, W] on entry and exit, mostly)."""
        rng, n, lab, s, e = self.rng, self.number, self.label, self.string, self.expression
        return rng.choice([
            lambda: [f"y = y -> {lab()}: conv({rng.choice(['C', 'c', n()])}, 3, pad=1)"],
            lambda: [f"y = y -> {lab()}: [conv(c, 1), {lab()}: bn, relu]", "y = y -> conv(C, 1)"],
            lambda: [f"y = y -> {lab()}: repeat({self.count()}) j {{ conv(C, 3, pad=1) }}"],
            lambda: [f"for i in range({self.count()}) {{", f"  y = y -> {lab()}: relu", "}"],
            lambda: [f"y = y {rng.choice(['*', '+', '-', '/', '**'])} {n()}"],
            lambda: [f"param p{k}: [{self.dims()}] = {n()}", f"y = y * p{k}"],
            lambda: [f"buffer b{k}: [{self.dims()}] = {n()}", f"y = y + b{k}"],
            lambda: [f"init {rng.choice([s(), *INIT_PATTERNS])} = {self.init()}"],
            lambda: [f"assert {e()}, {s()}"],
            lambda: [f"z{k} = {e()}", f"y = y * z{k}"],
            lambda: [f"z{k} = {e()}", f"y = y -> conv(z{k}, 1)"],
            lambda: [f"y = y -> {rng.choice(['dropout', 'drop_path', 'gn', 'pad'])}({n()})"],
            lambda: [f"y = y -> {lab()}: linear({n()})"],
            lambda: [f"y = y -> reshape([{self.dims()}])"],
            lambda: [f"y = y -> mean(dims=[{n()}], keepdim=true)"],
            lambda: [f"y = y -> maxpool({n()}, stride={n()})"],
            lambda: [f"if {e()} {{ y = y -> {lab()}: relu }} else {{ y = y -> {lab()}: gelu }}"],
            lambda: [f"y = cat([y, (y -> {lab()}: conv(c, 1))], dim={n()})", "y = y -> conv(C, 1)"],
            lambda: [f"a{k}, b{k} = y -> chunk({self.count()})", f"y = a{k}"],
            lambda: [f"y = y -> {lab()}: SE(rd_ratio={n()})"],
            lambda: [f"y = y -> interpolate(scale={n()})"],
        ])()


def network_snippet(rng: random.Random) -> str:
    """A small network: an input whose default sizes may be hostile, then statements of which
    one gets hostile holes, then an output."""
    calm, wild = Holes(rng, 0.0), Holes(rng, 0.7)
    head = rng.choice(["B", "B = 2", "B = 2", f"B = {rng.choice(['-1', '0', '10 ** 30', '(2 ** 64)'])}"])
    c = rng.choice(["-4", "0", "1", "(10 ** 30)", "(2 ** 1024)", "(-1)", "(c)", "(1.5)", "(none)", "(true)",
                    '("a")'] if rng.random() < 0.15 else ["4"])
    hw = rng.choice(["1", "-8", "0", "(10 ** 9)", "(2 ** 63)"] if rng.random() < 0.15 else ["8"])
    lines = [f"in x: [{head}, C = {c}, H = {hw}, W = 8]", "y = x"]
    count = rng.randint(1, 4)
    odd = rng.randrange(count)
    for k in range(count):
        lines += (wild if k == odd else calm).statement(k)
    lines.append(rng.choice(["out y", "out y", f"out y -> mean(dims=[2, 3]) -> {wild.label()}: linear({wild.number()})",
                             "out a = y\nout a = y", "out y\nout y", "out y -> flatten -> head: linear(3)"]))
    body = "\n  ".join(part for line in lines for part in line.splitlines())
    extra = rng.choice(["", "", f"variant v = N(c={wild.number()})", f"variant w = N() reference {wild.string()}",
                        f"let K = {wild.expression()}",
                        f"checkpoint {wild.string()} {{\n  {wild.string()} -> {wild.string()}\n}}"])
    return f"network N(c: int = 8, n: int = 2) {{\n  {body}\n}}\n\nvariant fuzz = N()\n{extra}\n"


def topology_snippet(rng: random.Random) -> str:
    """A topology of two tiny networks; its net, state, phase and after statements get holes."""
    h = Holes(rng, 0.4)
    n = h.number
    net = rng.choice(["Tiny()", f"Tiny(c={n()})", f"ema(a, {n()})", f"ema(a, 0.99, schedule={h.string()})",
                      "frozen(a)", "frozen(Tiny())", "a", "relu", "Tiny", '"nets/resnet.arch"',
                      f"ema(a, 0.9, total_steps={n()})", "ema(b, 0.9)", "frozen(relu)"])
    state = rng.choice([f"state q: [{h.dims()}] = {n()}", 'state q: [4, 8] = "normal_l2"',
                        f"state q: [4, {n()}] = {h.string()}", "state q: [] = 0 as int64",
                        f"state q: [4] = {n()} as {rng.choice(['int64', 'float16', 'x', 'bool'])}", ""])
    update = rng.choice(["a", "a", "b", "a, b", "", "x", "q", "a, a", "relu"])
    loss = rng.choice(["mean(z * z, dims=[0, 1])", "mean(z, dims=[0, 1])", "z", "0", n(),
                       "info_nce(z, z, q, 0.1)", "neg_cosine(z, z -> b)", f"mean(z, dims=[0, 1]) * {n()}",
                       'gan_loss((x -> a), kind="d_nonsat")', "mean(z -> stop_grad, dims=[0, 1])"])
    after = rng.choice(["", "", "after enqueue(q, q, z)", "after store(q, z)",
                        f"after center_update(q, z, momentum={n()})", "after x", f"after {n()}"])
    times = rng.choice(["", "", f", times={h.count()}"])
    return (f"block Tiny(c: int = 4) {{\n  in x: [B, C, H, W]\n  out x -> conv1: conv(c, 3, pad=1) "
            f"-> mean(dims=[2, 3]) -> fc: linear(c)\n}}\n\n"
            f"topology T(m: float = 0.99) {{\n  in x: [B = 2, 3, H = 8, W = 8]\n  net a = Tiny()\n"
            f"  net b = {net}\n  {state}\n  phase train(update=[{update}]{times}) {{\n"
            f"    z = x -> {rng.choice(['a', 'b', 'a -> relu', 'shuffle_bn(b)'])}\n    loss = {loss}\n"
            f"    log v = {rng.choice(['mean(z, dims=[0, 1])', h.expression(), 'z'])}\n    {after}\n  }}\n}}\n\n"
            f"variant t = T()\n")


@dataclass(frozen=True)
class Case:
    text: str
    folder: str          # the folder its imports resolve against (the mutated file's own)
    origin: str          # where it came from, for the report
    pick: int = 0        # which of the file's variants is checked (by index, modulo their count)
    build: bool = False  # also build and run it when it passes and is small


class Corpus:
    """The texts mutations start from: the stdlib, `specs/` and the README's examples."""

    def __init__(self):
        from archdsl.ops import REGISTRY
        from archdsl.semantics.builtins import BUILTINS
        from archdsl.semantics.loader import stdlib_dir
        root = stdlib_dir()
        self.root = str(root)
        self.files: list[tuple[str, str, str]] = []   # (origin, text, folder)
        for path in sorted(root.rglob("*.arch")):
            self.files.append((path.relative_to(root).as_posix(), path.read_text(), str(path.parent)))
        repo = root.parent
        for path in sorted((repo / "specs").glob("*.arch")) if (repo / "specs").is_dir() else []:
            self.files.append((f"specs/{path.name}", path.read_text(), str(path.parent)))
        readme = repo / "README.md"
        if readme.is_file():
            for i, block in enumerate(re.findall(r"```arch\n(.*?)```", readme.read_text(), re.S)):
                self.files.append((f"README#{i}", block, str(repo)))
        words = {t for _, text, _ in self.files for t in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)}
        self.names = sorted(words | set(REGISTRY) | set(BUILTINS) | set(KEYWORDS))
        self.lines = [line for _, text, _ in self.files for line in text.splitlines() if line.strip()]


def _token_positions(tokens: list[str], kind: str) -> list[int]:
    test = {"any": lambda t: not t.isspace(),
            "number": lambda t: t[0].isdigit(),
            "name": lambda t: t[0].isalpha() or t[0] == "_",
            "string": lambda t: t[0] == '"'}[kind]
    return [i for i, t in enumerate(tokens) if test(t)]


def mutate(text: str, rng: random.Random, corpus: Corpus) -> tuple[str, str]:
    """One random mutation of a spec's text → (new text, its name)."""
    kind = rng.choice(["delete", "duplicate", "swap", "number", "name", "splice", "line", "string", "label"])
    if kind in ("splice", "line"):
        lines = text.splitlines()
        i = rng.randrange(len(lines) + 1)
        if kind == "splice":
            lines.insert(i, rng.choice(corpus.lines))
        elif lines:
            j = min(len(lines), i + rng.randint(1, 3))
            op = rng.choice(["delete", "duplicate", "swap"])
            if op == "delete":
                del lines[i:j]
            elif op == "duplicate":
                lines[i:i] = lines[i:j]
            else:
                k = rng.randrange(len(lines))
                lines[i % len(lines)], lines[k] = lines[k], lines[i % len(lines)]
        return "\n".join(lines) + "\n", kind
    tokens = TOKEN.findall(text)
    where = {"number": "number", "name": "name", "string": "string"}.get(kind, "any")
    spots = _token_positions(tokens, where)
    if not spots:
        return text, "none"
    i = rng.choice(spots)
    if kind == "delete":
        tokens[i] = ""
    elif kind == "duplicate":
        tokens[i] = tokens[i] + " " + tokens[i]
    elif kind == "swap":
        j = rng.choice(spots)
        tokens[i], tokens[j] = tokens[j], tokens[i]
    elif kind == "number":
        tokens[i] = Holes(rng, 1.0).number()
    elif kind == "name":
        tokens[i] = rng.choice(corpus.names)
    elif kind == "string":
        tokens[i] = hostile_string(rng)
    else:  # a hostile label in front of an arrow's stage
        arrows = [k for k in range(len(tokens)) if tokens[k] == "->"]
        if not arrows:
            return text, "none"
        tokens[rng.choice(arrows)] = f"-> {Holes(rng, 1.0).label()}: "
    return "".join(tokens), kind


def make_case(seed: int, index: int, corpus: Corpus, build_fraction: float, snippets: float = 0.45) -> Case:
    """Case `index` of `seed`: the same in every run over the same stdlib. A fraction `snippets`
    of the cases are snippets, the others mutated files."""
    rng = random.Random(f"{seed}:{index}")
    build = rng.random() < build_fraction
    if rng.random() < snippets:
        snippet = network_snippet(rng) if rng.random() < 0.75 else topology_snippet(rng)
        origin = "snippet:" + ("network" if snippet.startswith("network") else "topology")
        if rng.random() < 0.2:
            snippet, how = mutate(snippet, rng, corpus)
            origin += f"+{how}"
        return Case(snippet, corpus.root, origin, 0, build)
    name, text, folder = rng.choice(corpus.files)
    hows = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        text, how = mutate(text, rng, corpus)
        hows.append(how)
    return Case(text, folder, f"{name}:{'+'.join(hows)}", rng.randrange(64), build)


# ---- running one case (in a worker process) ------------------------------------------------

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


def _hard_limit(timeout: float) -> float:
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
                          f"killed after {_hard_limit(timeout):g} s")
        self.stop()
        self.case = None
        return outcome

    def run(self, case: Case, timeout: float) -> Outcome:
        self.submit(case, timeout)
        if self.conn.poll(_hard_limit(timeout)):
            return self.collect()
        return self.kill(timeout)

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
        self.proc = None


# ---- shrinking ------------------------------------------------------------------------------

def shrink(case: Case, sig: str, worker: Worker, timeout: float, budget_s: float = 30.0) -> Case:
    """The smallest text found (whole lines, then single tokens removed) with the same signature."""
    deadline = time.perf_counter() + budget_s

    def same(text: str) -> bool:
        if time.perf_counter() > deadline:
            return False
        out = worker.run(replace(case, text=text), timeout)
        return out.kind == "internal" and out.signature == sig

    lines = _ddmin(case.text.splitlines(), lambda ls: same("\n".join(ls) + "\n"), deadline)
    tokens = _ddmin(_units("\n".join(lines) + "\n"), lambda ts: same("".join(ts)), deadline)
    return replace(case, text="".join(tokens))


def _units(text: str) -> list[str]:
    """Tokens, each with the whitespace after it (so removing one never glues two together)."""
    units: list[str] = []
    for tok in TOKEN.findall(text):
        if tok.isspace() and units:
            units[-1] += tok
        else:
            units.append(tok)
    return units


def _ddmin(items: list[str], keeps: Callable[[list[str]], bool], deadline: float) -> list[str]:
    """Delta debugging: drop ever smaller chunks while `keeps(rest)` holds."""
    chunk = max(1, len(items) // 2)
    while chunk >= 1 and time.perf_counter() < deadline:
        i, changed = 0, False
        while i < len(items) and time.perf_counter() < deadline:
            rest = items[:i] + items[i + chunk:]
            if rest and keeps(rest):
                items, changed = rest, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return items


# ---- the run --------------------------------------------------------------------------------

@dataclass
class Report:
    seed: int
    cases: int = 0
    seconds: float = 0.0      # wall clock
    cpu: float = 0.0          # the workers' CPU time in cases
    kinds: Counter = field(default_factory=Counter)
    built: int = 0
    slow: list[tuple[float, int, str, str]] = field(default_factory=list)    # (s, index, origin, kind)
    internal: dict[str, list[tuple[int, Case, Outcome]]] = field(default_factory=dict)
    timeouts: list[tuple[int, Case]] = field(default_factory=list)
    shrunk: dict[str, Case] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.internal or self.timeouts)


def fuzz(cases: int, seconds: float = float("inf"), seed: int = 0, *, build_fraction: float = 0.25,
         snippets: float = 0.45,
         timeout: float = 10.0, slow: float = 1.0, jobs: int = 1, memory_limit: int = 4 << 30,
         shrink_budget: float = 30.0, progress=None) -> Report:
    """Run cases 0..cases-1 of `seed` (or as many as `seconds` allows) and classify each."""
    corpus = Corpus()
    report = Report(seed)
    workers = [Worker(memory_limit, build_fraction > 0) for _ in range(max(1, jobs))]
    start = time.perf_counter()
    index = 0
    try:
        while True:
            out_of_time = time.perf_counter() - start > seconds
            for w in workers:
                if w.case is None and index < cases and not out_of_time:
                    w.submit(make_case(seed, index, corpus, build_fraction, snippets), timeout)
                    w.index = index
                    index += 1
            busy = [w for w in workers if w.case is not None]
            if not busy:
                break
            ready = wait([w.conn for w in busy], timeout=1.0)
            for w in busy:
                if w.conn in ready:
                    case, outcome = w.case, w.collect()
                elif time.perf_counter() - w.started > _hard_limit(timeout):
                    case, outcome = w.case, w.kill(timeout)
                else:
                    continue
                _record(report, w.index, case, outcome, slow)
                first = outcome.kind == "internal" and len(report.internal[outcome.signature]) == 1
                if progress and (first or report.cases % 500 == 0):
                    progress(report, time.perf_counter() - start,
                             f"new: {outcome.signature} in case {w.index} ({case.origin})" if first else "")
        report.seconds = time.perf_counter() - start
        for sig, hits in report.internal.items():
            _, case, _ = min(hits, key=lambda h: len(h[1].text))
            report.shrunk[sig] = shrink(case, sig, workers[0], timeout, shrink_budget)
    finally:
        for w in workers:
            w.stop()
    return report


def _record(report: Report, index: int, case: Case, outcome: Outcome, slow: float) -> None:
    report.cases += 1
    report.cpu += outcome.cpu
    report.kinds[outcome.kind] += 1
    report.built += outcome.built
    if outcome.cpu > slow:
        report.slow.append((round(outcome.cpu, 2), index, case.origin, outcome.kind))
    if outcome.kind == "internal":
        report.internal.setdefault(outcome.signature, []).append((index, case, outcome))
    elif outcome.kind == "timeout":
        report.timeouts.append((index, case))


def render(report: Report, slow: float) -> str:
    k = report.kinds
    lines = [f"fuzz: seed {report.seed}, {report.cases} cases in {report.seconds:.1f} s "
             f"({report.cpu:.1f} s of CPU in the cases): "
             f"{k['ok']} ok ({report.built} built and run), {k['error']} ArchError, "
             f"{k['internal']} internal error, {k['timeout']} timeout, {len(report.slow)} slow (> {slow:g} s of CPU)"]
    for sig, hits in sorted(report.internal.items(), key=lambda kv: -len(kv[1])):
        index, case, outcome = hits[0]
        small = report.shrunk.get(sig, case)
        lines += ["", f"internal error: {sig}  ({len(hits)} cases, first: case {index}, {case.origin})",
                  "  " + outcome.detail.splitlines()[0],
                  f"  reproducer ({len(small.text)} chars; imports resolve in {small.folder}):",
                  *("    | " + line for line in small.text.rstrip("\n").splitlines())]
    for index, case in report.timeouts[:20]:
        lines.append(f"timeout: case {index} ({case.origin})")
    for seconds, index, origin, kind in sorted(report.slow, reverse=True)[:20]:
        lines.append(f"slow: {seconds:.2f} s of CPU  case {index} ({origin}) → {kind}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m archdsl.testing.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=1000, help="how many cases (at most)")
    p.add_argument("--seconds", type=float, default=float("inf"), help="stop starting cases after this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-fraction", type=float, default=0.25,
                   help="the fraction of cases also built and run when they pass and are small")
    p.add_argument("--snippets", type=float, default=0.45,
                   help="the fraction of cases that are snippets (the others mutate files)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-case limit, seconds of CPU")
    p.add_argument("--slow", type=float, default=1.0, help="report cases slower than this, seconds")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--memory-gb", type=float, default=4.0, help="address-space limit of each worker")
    p.add_argument("--show", type=int, metavar="I", help="print case I of the seed and exit")
    args = p.parse_args(argv)
    if args.show is not None:
        case = make_case(args.seed, args.show, Corpus(), args.build_fraction, args.snippets)
        print(f"# case {args.show} of seed {args.seed}: {case.origin} (imports resolve in {case.folder})")
        print(case.text)
        return 0
    report = fuzz(args.cases, args.seconds, args.seed, build_fraction=args.build_fraction, snippets=args.snippets,
                  timeout=args.timeout, slow=args.slow, jobs=args.jobs,
                  memory_limit=int(args.memory_gb * (1 << 30)),
                  progress=lambda r, s, news: print(f"  {r.cases} cases, {s:.0f} s: {dict(r.kinds)} {news}",
                                                    file=sys.stderr, flush=True))
    print(render(report, args.slow))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
