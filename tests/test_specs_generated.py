"""Random valid specs (`archdsl.testing.strategies`) through the whole compiler, and robustness.

(a) For each generated spec: `check_spec`'s output shapes == the generator's own shape tracking
    == the runtime outputs of the built module; every IR node's inferred shape == the runtime
    value of the fx node it lowered to; parameters and float buffers (names, shapes, totals) ==
    the module's; static `flops` == FlopCounterMode's count of the forward; `load_spec` builds
    the same module.
(b) `fmt(parse(t))` is a fixed point, keeps the AST (spans aside) and every comment, and the
    formatted text elaborates to the same graph (node ids, ops, attributes, inputs, shapes).
(c) Arbitrary text, token soup and mutations of valid specs given to `check_spec` raise
    `ArchError` or succeed — never another exception — and each finishes within 5 s of CPU time.

ARCHDSL_TEST_SCALE=10 multiplies the example counts for a deeper search.
"""
from __future__ import annotations

import os
import re
import signal
import time
from contextlib import contextmanager
from unittest import mock

import torch
import torch.fx as fx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import archdsl
import archdsl.lower.build as lower_build
from archdsl import ArchError
from archdsl.ir.graph import Graph
from archdsl.ops import REGISTRY
from archdsl.syntax import fmt, parse
from archdsl.testing.strategies import GeneratedSpec, spec_cases, specs

SCALE = max(1, int(os.environ.get("ARCHDSL_TEST_SCALE", "1")))
# Per example: 5 s of CPU time (the process's own, so a busy machine does not make it flaky),
# and a wall-clock backstop for anything that would block without computing.
TIME_LIMIT_S = 5.0
WALL_LIMIT_S = 60.0


def examples(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ---------------------------------------------------------------------------------------------
# helpers

class _RecordingOp:
    """Wraps an op so that `build` reports which fx node each IR node lowered to."""

    def __init__(self, op, seen: dict):
        self._op, self._seen = op, seen

    def __getattr__(self, name):
        return getattr(self._op, name)

    def emit(self, a, ins, fx_, args):
        value = self._op.emit(a, ins, fx_, args)
        self._seen[fx_.path] = value
        return value


def build_recording(graph: Graph):
    """build(graph), plus IR node id → the fx node holding its value."""
    seen: dict = {}
    proxies = {k: _RecordingOp(op, seen) for k, op in REGISTRY.items()}
    with mock.patch.object(lower_build, "REGISTRY", proxies):
        module = lower_build.build(graph, seed=0)
    for n in module.graph.nodes:
        if n.op in ("placeholder", "get_attr"):
            seen[n.target] = n
    return module, seen


class _Recorder(fx.Interpreter):
    def __init__(self, module):
        super().__init__(module, garbage_collect_values=False)
        self.values: dict = {}

    def run_node(self, n):
        value = super().run_node(n)
        self.values[n] = value
        return value


def runtime_shape(v):
    if isinstance(v, (tuple, list)):
        return tuple(tuple(t.shape) for t in v)
    return tuple(v.shape)


def graph_signature(g: Graph) -> list:
    return [(n.id, n.op, n.attrs, tuple(n.inputs), n.shape, n.block, n.block_type)
            for n in g.nodes()]


def strip_spans(value):
    """An AST dump without source positions (what fmt may legitimately change)."""
    if isinstance(value, dict):
        return {k: strip_spans(v) for k, v in value.items()
                if k not in ("line", "col") and not k.endswith(("span", "spans"))}
    if isinstance(value, list):
        return [strip_spans(v) for v in value]
    return value


class Hang(BaseException):
    """Raised by the alarm: a BaseException so no `except Exception` in archdsl swallows it."""


@contextmanager
def time_limit(cpu_seconds: float, wall_seconds: float):
    """Raise Hang after `cpu_seconds` of this process's CPU time or `wall_seconds` of wall time."""
    def on_cpu(signum, frame):
        raise Hang(f"did not finish within {cpu_seconds} s of CPU time")

    def on_wall(signum, frame):
        raise Hang(f"did not finish within {wall_seconds} s")
    previous = signal.signal(signal.SIGPROF, on_cpu), signal.signal(signal.SIGALRM, on_wall)
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    signal.setitimer(signal.ITIMER_REAL, wall_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, previous[0])
        signal.signal(signal.SIGALRM, previous[1])


# ---------------------------------------------------------------------------------------------
# (a) static rules == torch, on whole generated networks

@examples(20)
@given(case=spec_cases())
def test_generated_specs_agree_with_torch(case: GeneratedSpec):
    report = archdsl.check_spec(source=case.text)
    # the generator's own shape tracking is an independent oracle for the shape rules
    assert {k: tuple(v) for k, v in report.output_shapes.items()} == case.outputs
    assert tuple(report.input_shapes["x"]) == case.input_shape

    graph = archdsl.load_graph(source=case.text)
    module, lowered = build_recording(graph)
    module.eval()
    x = torch.randn(*case.input_shape, generator=torch.Generator().manual_seed(0))

    # per node: the inferred shape == the runtime value of the fx node it lowered to
    rec = _Recorder(module)
    with torch.no_grad():
        rec.run(x)
    for node in graph.nodes():
        assert node.id in lowered, f"node {node.id} ({node.op}) has no value in the fx graph"
        value = rec.values[lowered[node.id]]
        assert runtime_shape(value) == node.shape, \
            f"{node.id} ({node.op}): inferred {node.shape}, runtime {runtime_shape(value)}"

    # outputs, and flops == FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        y = module(x)
    outs = {"out": y} if graph.single_output else y
    assert {k: tuple(v.shape) for k, v in outs.items()} == case.outputs
    assert report.totals.flops == counter.get_total_flops()
    assert report.totals.macs * 2 == report.totals.flops

    # parameters and buffers: each node's at its path, with the static shapes
    want_params, want_buffers = {}, {}
    for n in graph.nodes():
        if n.kind == "param":
            want_params[n.id] = n.shape
        elif n.kind == "buffer":
            want_buffers[n.id] = n.shape
        elif n.op in REGISTRY:
            ins = graph.input_shapes(n)
            want_params.update({f"{n.id}.{k}": tuple(s) for k, s in REGISTRY[n.op].params(n.attrs, ins).items()})
            want_buffers.update({f"{n.id}.{k}": tuple(s) for k, s in REGISTRY[n.op].buffers(n.attrs, ins).items()})
    got_params = {k: tuple(p.shape) for k, p in module.named_parameters()}
    assert got_params == want_params
    state = module.state_dict()
    got_buffers = {k: tuple(v.shape) for k, v in state.items()
                   if k not in got_params and v.is_floating_point()}
    assert got_buffers == want_buffers
    assert report.totals.params == sum(p.numel() for p in module.parameters())
    assert report.totals.buffers == sum(state[k].numel() for k in got_buffers)

    # the public entry point builds the same module
    public = archdsl.load_spec(source=case.text, seed=0)
    assert {k: tuple(v.shape) for k, v in public.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in state.items()}
    public.eval()
    with torch.no_grad():
        y2 = public(x)
    outs2 = {"out": y2} if graph.single_output else y2
    assert {k: tuple(v.shape) for k, v in outs2.items()} == case.outputs


# ---------------------------------------------------------------------------------------------
# (b) the printer

@examples(40)
@given(text=specs())
def test_fmt_is_a_fixed_point_and_keeps_the_meaning(text: str):
    once = fmt(parse(text))
    twice = fmt(parse(once))
    assert twice == once
    original, formatted = parse(text), parse(once)
    assert strip_spans(formatted.model_dump())["items"] == strip_spans(original.model_dump())["items"]
    assert [c.text for c in formatted.comments] == [c.text for c in original.comments]
    assert graph_signature(archdsl.load_graph(source=once)) == graph_signature(archdsl.load_graph(source=text))


# ---------------------------------------------------------------------------------------------
# (c) robustness

# Crashes found by these tests in code this suite may not change (archdsl/semantics, syntax) can
# be listed here as (exception type, message fragment), each with a deterministic reproducer
# test below, while a fix is pending: a crash matching an entry is tolerated by the fuzzers; any
# other non-ArchError exception fails them. Empty: no crash is known.
KNOWN_CRASHES: list[tuple[type, str]] = []


def check_robust(text: str) -> None:
    start = time.process_time()
    try:
        with time_limit(TIME_LIMIT_S, WALL_LIMIT_S):
            archdsl.check_spec(source=text)
    except ArchError:
        pass
    except Exception as err:
        if not any(isinstance(err, t) and msg in str(err) for t, msg in KNOWN_CRASHES):
            raise
    elapsed = time.process_time() - start
    assert elapsed < TIME_LIMIT_S, f"check_spec took {elapsed:.1f} s of CPU time"


TOKENS = ["network", "block", "in", "out", "let", "variant", "import", "from", "as", "if", "elif",
          "else", "for", "repeat", "param", "buffer", "reference", "true", "false", "none", "and",
          "or", "not", "N", "x", "y", "B", "C", "H", "W", "i", "j", "conv", "bn", "relu", "linear",
          "mean", "cat", "chunk", "split", "SE", "Mlp", "range", "len", "0", "1", "2", "3", "64",
          "-1", "0.5", "1e-3", '"same"', "(", ")", "[", "]", "{", "}", ",", ":", "=", "->", "+",
          "-", "*", "/", "//", "%", "**", "?", ".", "==", "<", "\n", "#"]
_MUTATION_CHARS = "{}[]()<>-:=,.#\"'0123456789 \n\t_+*/%?!abcxyzBCHW\\é\x00"
_TOKEN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9_.eE]*|->|\*\*|//|==|!=|<=|>=|\S")
# Numbers for mutations. Not 100000: `range(100000)` or `repeat(100000)` of a few nodes is a valid
# or nearly valid spec that takes seconds to elaborate (the node limit is 200,000), which is
# slowness by design, not a hang.
_BIG = ["0", "-1", "7", "64", "1000", "10 ** 30", "2 ** 4097", "1e308", "-0.0", "3.5"]
_SNIPPETS = ["-> relu", "-> [relu, bn]", ".shape", ".ndim", "[0]", "[-1]", "(x)", " + 1", " * x",
             " -> x", "-> repeat(2) { relu }", "-> repeat(2) j { conv(j + 1, 3) }", "-> Blk0(4)",
             "-> SE()", "-> Mlp()", ", dim=5", ", 3", " ? 1 : 2", "range(3)", "[i for i in range(2)]",
             "none", '"s"', "true", "x.shape[1]", "out x\n", "in y: [B, C]\n", "param q: [2]\n",
             "-> split(2)", "-> chunk(3)", "-> cat", "[x, x]", "-> x.shape", "(1, 2)", "label: ",
             "n{i}: ", "{", "}", "-> act", "(act=gelu)", "-> linear(0)", "-> conv(-3, 3)"]


@st.composite
def mutated_specs(draw):
    """A valid spec with 1-3 random edits: characters, tokens, numbers, lines, truncation."""
    text = draw(specs())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["del_char", "del_range", "ins_char", "rep_char", "del_tok",
                                     "dup_tok", "rep_tok", "swap_tok", "number", "rep_name",
                                     "snippet", "snippet", "swap_lines", "del_line", "dup_line",
                                     "truncate"]))
        if not text:
            break
        n = len(text)
        i = draw(st.integers(0, n - 1))
        if kind == "del_char":
            text = text[:i] + text[i + 1:]
        elif kind == "del_range":
            text = text[:i] + text[i + draw(st.integers(1, 12)):]
        elif kind == "ins_char":
            text = text[:i] + draw(st.sampled_from(_MUTATION_CHARS)) + text[i:]
        elif kind == "rep_char":
            text = text[:i] + draw(st.sampled_from(_MUTATION_CHARS)) + text[i + 1:]
        elif kind == "snippet":  # a fragment of the language where a token starts
            starts = [t.start() for t in _TOKEN_RE.finditer(text)] or [0]
            j = starts[draw(st.integers(0, len(starts) - 1))]
            text = text[:j] + draw(st.sampled_from(_SNIPPETS)) + text[j:]
        elif kind in ("del_tok", "dup_tok", "rep_tok", "swap_tok", "number", "rep_name"):
            toks = list(_TOKEN_RE.finditer(text))
            if kind == "number":
                toks = [t for t in toks if t.group()[0].isdigit()] or toks
            names = [t.group() for t in toks if t.group()[0].isalpha() or t.group()[0] == "_"]
            if kind == "rep_name":  # another name of the same spec: more likely to resolve
                toks = [t for t in toks if t.group() in names] or toks
            t = toks[draw(st.integers(0, len(toks) - 1))]
            a, b = t.span()
            if kind == "del_tok":
                text = text[:a] + text[b:]
            elif kind == "dup_tok":
                text = text[:b] + " " + t.group() + text[b:]
            elif kind == "rep_tok":
                text = text[:a] + draw(st.sampled_from(TOKENS)) + text[b:]
            elif kind == "rep_name":
                text = text[:a] + draw(st.sampled_from(names or TOKENS)) + text[b:]
            elif kind == "number":
                text = text[:a] + draw(st.sampled_from(_BIG)) + text[b:]
            else:
                u = toks[draw(st.integers(0, len(toks) - 1))]
                (a, b), (c, d) = sorted([t.span(), u.span()])
                if b <= c:
                    text = text[:a] + text[c:d] + text[b:c] + text[a:b] + text[d:]
        else:
            lines = text.split("\n")
            k = draw(st.integers(0, len(lines) - 1))
            if kind == "swap_lines":
                m = draw(st.integers(0, len(lines) - 1))
                lines[k], lines[m] = lines[m], lines[k]
            elif kind == "del_line":
                del lines[k]
            elif kind == "dup_line":
                lines.insert(k, lines[k])
            text = "\n".join(lines)
            if kind == "truncate":
                text = text[:i]
    return text


@examples(60)
@given(text=st.text(max_size=300))
def test_arbitrary_text_is_an_arch_error_or_a_spec(text):
    check_robust(text)


@examples(60)
@given(text=st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join))
def test_token_soup_is_an_arch_error_or_a_spec(text):
    check_robust(text)


@examples(80)
@given(text=mutated_specs())
def test_mutated_specs_are_an_arch_error_or_a_spec(text):
    check_robust(text)


_PATHOLOGICAL = {
    # unbounded recursion of a block
    "recursion": "block A(n: int) {{\n  in x: [B, C]\n  y = x\n  if n > 0 {{\n    y = x -> A(n - 1)\n  }}\n"
                 "  out y\n}}\nnetwork N() {{\n  in x: [B, 4]\n  out x -> A({n})\n}}\n",
    # deep expression nesting, several forms
    "neg": "let a = {neg}1\nnetwork N() {{\n  in x: [B, 4]\n  out x\n}}\n",
    "parens": "let a = {open}1{close}\nnetwork N() {{\n  in x: [B, 4]\n  out x\n}}\n",
    "lists": "let a = {lopen}{lclose}\nnetwork N() {{\n  in x: [B, 4]\n  out x\n}}\n",
    "chain": "network N() {{\n  in x: [B, 4]\n  out x{chain}\n}}\n",
    # big counts: a repeat, a comprehension, nested loops
    "repeat": "network N() {{\n  in x: [B, 4]\n  out x -> repeat({n}) {{ relu }}\n}}\n",
    "comprehension": "let L = [i * i for i in range({n})]\nnetwork N() {{\n  in x: [B, 4]\n  out x\n}}\n",
    "loops": "network N() {{\n  in x: [B, 4]\n  for i in range({n}) {{\n    for j in range({n}) {{\n"
             "      for k in range({n}) {{\n        y = x\n      }}\n    }}\n  }}\n  out x\n}}\n",
}


@examples(15)
@given(kind=st.sampled_from(sorted(_PATHOLOGICAL)),
       n=st.one_of(st.integers(0, 70), st.sampled_from([200, 1000, 5000, 10 ** 6, 10 ** 30])))
def test_pathological_specs_are_bounded(kind, n):
    """Recursion, nesting and counts far beyond the limits: an ArchError (or a spec), quickly."""
    depth = min(n, 5000)  # nesting written out in the text
    text = _PATHOLOGICAL[kind].format(n=n, neg="-" * depth, open="(1 + " * depth, close=")" * depth,
                                      lopen="[" * depth, lclose="]" * depth, chain=" -> relu" * depth)
    check_robust(text)


# ---------------------------------------------------------------------------------------------
# regressions found by the generator

def test_partial_op_called_on_a_tensor():
    """`act = leaky_relu(0.2)` passed to a block that calls `act(x)` (was an AttributeError:
    the partial op was instantiated as a block)."""
    src = """
block Blk(act = relu) {
  in x: [B, C]
  out act(x)
}
network N() {
  in x: [B, 4]
  out x -> Blk(act=leaky_relu(0.2))
}
"""
    report = archdsl.check_spec(source=src)
    assert report.output_shapes == {"out": [1, 4]}
    assert [n.op for n in report.nodes] == ["input", "leaky_relu"]
