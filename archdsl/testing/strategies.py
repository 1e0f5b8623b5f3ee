"""Hypothesis strategies for small, random, VALID `.arch` specs.

`specs()` draws spec text; `spec_cases()` draws a `GeneratedSpec` carrying the text together with
the input shape and the output shapes the generator expects. Every spec is valid by construction:
the generator tracks the shape of every tensor while it writes the text, with its own shape
formulas (independent of `archdsl.ops`), so a spec that archdsl rejects, or whose shapes differ
from the generator's, points at a bug on one side or the other.

A spec has one `network` with an input `in x: [B, C, H, W]` (sizes given in several spellings),
then a random program over 4-d tensors:

- chains `v = x -> stage -> stage` with conv (random out / kernel / stride / dilation / padding,
  groups that divide), bn / gn / ln2d, activations, max / avg pools (ceil mode, padding),
  adaptive pools, dropout, drop path, channel shuffle, transposes, layer scale, `SE()` from the
  prelude, labelled stages `name: op(...)`, bracketed sequences `[conv(..), bn]` (with labelled
  members), `repeat(n) j { ... }` bodies and calls of generated `block`s;
- residual adds, products, gates broadcast from `[B, C, 1, 1]`, `cat` along channels,
  `chunk` / `split` with indexing or unpacking (`a, b = x -> chunk(2)`), chains as arguments
  (`relu(x -> conv(..))`), scalar arithmetic, `param` / `buffer` declarations,
  token mixing through rank 3 (`flatten -> transpose -> ln -> linear -> reshape`), patchify;
- `if` / `elif` / `else` on shape variables and parameters (comparisons, `in`, `not in`), `for` loops with templated labels
  (`layer{i}:`), `let` constants, network parameters and variants that override them, imports,
  comments;
- a head `out y -> mean(dims=[2, 3]) -> head: linear(k)`, sometimes as named outputs.

Integer arguments are written as literals or as expressions over the names in scope (network
parameters, `let` constants, input dims, loop and repeat indices, block parameters), so the same
text is re-evaluated with other values inside loops, repeats and block instances; the generator
re-simulates each such use and shortens loops or drops calls that would be invalid.

    from hypothesis import given
    from archdsl.testing.strategies import spec_cases

    @given(spec_cases())
    def test_compiles(case):
        archdsl.check_spec(source=case.text)
"""
from __future__ import annotations

import operator
import string
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from hypothesis import strategies as st

__all__ = ["GeneratedSpec", "spec_cases", "specs", "MAX_CHANNELS", "MAX_SPATIAL"]

Shape = tuple[int, int, int]    # (C, H, W) of a [B, C, H, W] tensor; the batch is the spec's B
Env = Mapping[str, Any]
State = dict                    # tensor variable → Shape, or a tuple of Shapes (chunk / split)

MAX_CHANNELS = 32
MAX_SPATIAL = 24
ACTIVATIONS = ["relu", "relu6", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "gelu",
               "identity"]
_COMMENT_CHARS = string.ascii_letters + string.digits + " -_.,:()[]{}=+*/'\"#"


@dataclass(frozen=True)
class GeneratedSpec:
    """A generated spec and what the generator expects of it."""
    text: str
    input_shape: tuple[int, int, int, int]      # (B, C, H, W) that check_spec will use
    outputs: dict[str, tuple[int, ...]]         # output name → shape ("out" when unnamed)


# ---------------------------------------------------------------------------------------------
# expressions: spec text plus its value in an environment

_BINOPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv,
           "%": operator.mod}


@dataclass(frozen=True)
class Expr:
    text: str
    fn: Callable[[Env], Any]
    atomic: bool = True

    def __call__(self, env: Env):
        return self.fn(env)

    def wrapped(self) -> str:
        return self.text if self.atomic else f"({self.text})"


def lit(v) -> Expr:
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif v is None:
        text = "none"
    elif isinstance(v, str):
        text = '"' + v + '"'
    elif isinstance(v, tuple):
        text = "(" + ", ".join(lit(x).text for x in v) + ")"
    elif isinstance(v, list):
        text = "[" + ", ".join(lit(x).text for x in v) + "]"
    else:
        text = repr(v)
    return Expr(text, lambda env: v, atomic=not text.startswith("-"))


def var(name: str) -> Expr:
    return Expr(name, lambda env: env[name])


def binop(a: Expr, op: str, b: Expr) -> Expr:
    fn = _BINOPS[op]
    return Expr(f"{a.wrapped()} {op} {b.wrapped()}", lambda env: fn(a(env), b(env)), atomic=False)


# ---------------------------------------------------------------------------------------------
# shape formulas (the generator's own, as torch documents them)

def conv_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def pool_size(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _ok(shape) -> bool:
    c, h, w = shape
    return 0 < c <= MAX_CHANNELS and 0 < h <= MAX_SPATIAL and 0 < w <= MAX_SPATIAL


# ---------------------------------------------------------------------------------------------
# stages (what follows `->`) and statements

@dataclass(frozen=True)
class Stage:
    text: str
    apply: Callable[[Shape, Env], Optional[Shape]]
    call: Optional[tuple[str, str]] = None   # (callee, argument text): allows `op(x, args)`
    # An unlabelled sequence puts its members `0, 1, …` in the enclosing scope, so two of them
    # in one scope (or one in a loop) collide: a sequence in a chain always gets a label.
    needs_label: bool = False

    def labelled(self, label: Optional[str]) -> "Stage":
        return self if label is None else Stage(f"{label}: {self.text}", self.apply)


def run_stages(stages: list[Stage], shape: Shape, env: Env) -> Optional[Shape]:
    for s in stages:
        shape = s.apply(shape, env)
        if shape is None or not _ok(shape):
            return None
    return shape


@dataclass
class Stmt:
    lines: list[str]
    apply: Callable[[State, Env], Optional[State]]


@dataclass
class Ctx:
    ints: dict[str, int]                 # integer names in scope → value now
    loops: tuple[str, ...] = ()          # indices of the enclosing `for`s (labels use them all)
    in_block: bool = False               # inside a block definition
    act: Optional[str] = None            # the block's callable parameter, if any
    depth: int = 0                       # nesting of sequences / repeats / compound statements

    def child(self, **kw) -> "Ctx":
        return Ctx(**{**self.__dict__, "ints": dict(self.ints), **kw})


@dataclass
class Block:
    name: str
    params: list[str]
    text: str
    simulate: Callable[[Shape, Env], Optional[Shape]]
    has_act: bool


# ---------------------------------------------------------------------------------------------
# the generator

class _Gen:
    def __init__(self, draw):
        self.draw = draw
        self.counter = 0
        self.blocks: list[Block] = []
        self.import_se: Optional[str] = None     # namespace alias if `import blocks.se as …`

    # -- small helpers
    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def coin(self, percent: int = 50) -> bool:
        return self.draw(st.integers(0, 99)) < percent

    def num(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def comment(self) -> str:
        return "# " + self.draw(st.text(_COMMENT_CHARS, max_size=24)).strip()

    def label(self, ctx: Ctx) -> str:
        """A fresh node label; inside `for` loops a template over every index (`l3x{i}x{i1}`),
        injective so each iteration names its node differently."""
        if not ctx.loops:
            return self.fresh("n")
        first, *rest = ctx.loops
        parts = [self.pick([f"{{{first}}}", f"{{{first} + 1}}", f"{{{first} * 2}}"])]
        parts += [f"{{{v}}}" for v in rest]
        return self.fresh("l") + "".join("x" + p for p in parts)

    def maybe_label(self, ctx: Ctx, stage: Stage, percent: int = 30) -> Optional[str]:
        return self.label(ctx) if stage.needs_label or self.coin(percent) else None

    def int_expr(self, ctx: Ctx, values: list[int]) -> Expr:
        """An expression whose value now is one of `values`: a literal or built from names."""
        target = self.pick(values)
        options = [lit(target)]
        for n, v in sorted(ctx.ints.items()):
            if n == "B" or isinstance(v, bool) or not isinstance(v, int):
                continue
            if v == target:
                options.append(var(n))
            if v > 0 and target % v == 0 and 1 < target // v <= 4:
                options.append(binop(var(n), "*", lit(target // v)))
            if v > 1 and v % target == 0 and 1 < v // target <= 4:
                options.append(binop(var(n), "//", lit(v // target)))
            if 0 < target - v <= 4:
                options.append(binop(var(n), "+", lit(target - v)))
        return self.pick(options)

    def call_text(self, name: str, positional: tuple[str, ...], given: dict[str, str]) -> str:
        """`name(args)`: a random prefix of `positional` by position, the rest by keyword
        (`out=` too, although `out` is also a statement keyword)."""
        lead = 0
        while lead < len(positional) and positional[lead] in given:
            lead += 1
        n_pos = self.num(0, lead)
        pos = [given[k] for k in positional[:n_pos]]
        rest = [k for k in given if k not in positional[:n_pos]]
        rest = list(self.draw(st.permutations(rest))) if rest else []
        args = pos + [f"{k}={given[k]}" for k in rest]
        return f"{name}({', '.join(args)})"

    # -- stages ---------------------------------------------------------------------------------

    def stage(self, shape: Shape, ctx: Ctx, preserve: bool = False) -> Stage:
        """One stage valid at `shape` now. preserve: keep the shape (for residual branches)."""
        kinds = ["conv", "conv", "conv", "norm", "norm", "act", "act", "reg", "se"]
        if not preserve:
            kinds += ["pool", "pool", "adaptive", "swap"]
        kinds += ["shuffle", "scale"]
        if ctx.act:
            kinds += ["block_act", "block_act"]
        if ctx.depth < 2:
            kinds += ["seq", "repeat"]
            if not ctx.in_block:
                kinds += ["block", "block"]
        for _ in range(4):
            kind = self.pick(kinds)
            st_ = getattr(self, "stage_" + kind)(shape, ctx, preserve)
            if st_ is not None:
                out = st_.apply(shape, ctx.ints)
                assert out is not None, (kind, st_.text, shape)
                if _ok(out) and (not preserve or out == shape):
                    return st_
        return self.stage_act(shape, ctx, preserve)

    def stage_conv(self, shape, ctx, preserve=False, out: Optional[Expr] = None,
                   stride: Optional[Expr] = None) -> Optional[Stage]:
        c, h, w = shape
        if out is None:
            values = [c] if preserve else sorted({c, 2 * c, max(1, c // 2), 4, 6, 8, 12, 16} - {0})
            out = self.int_expr(ctx, [v for v in values if v <= MAX_CHANNELS])
        o = out(ctx.ints)
        mode = self.pick(["auto", "auto", "same", "int"] if not preserve else ["auto", "same"])
        if stride is None:
            stride = lit(1) if preserve or mode == "same" or self.coin(70) else lit(2)
        k = self.pick([1, 3, 3, 5, (1, 3), (3, 1)] + ([2, 4] if mode == "int" else []))
        d = 2 if self.coin(15) else 1
        given: dict[str, str] = {"out": out.text, "kernel": lit(k).text}
        if stride.text != "1" or self.coin(20):
            given["stride"] = stride.text
        pad = None
        if mode == "same":
            given["pad"] = '"same"'
        elif mode == "int":
            pad = self.pick([0, 1, 2, (0, 1), (1, 0)])
            given["pad"] = lit(pad).text
        elif self.coin(15):
            given["pad"] = '"auto"'
        if d != 1:
            given["dilation"] = str(d)
        # groups that divide both channel counts; depthwise (groups = channels) when out == in
        divisors = sorted({g for g in range(2, 5) if c % g == 0 and o % g == 0}
                          | ({c} if c == o and c > 1 else set()))
        groups: Optional[Expr] = None
        if divisors and self.coin(30):
            g = self.pick(divisors)
            groups = self.int_expr(ctx, [g])
            given["groups"] = groups.text
        if self.coin(30):
            given["bias"] = self.pick(["true", "false"])
        kk, dd = _pair(k), d

        def apply(shape, env, out=out, stride=stride, groups=groups, pad=pad, mode=mode):
            c, h, w = shape
            o, s = out(env), stride(env)
            g = groups(env) if groups is not None else 1
            if not (isinstance(o, int) and 0 < o <= MAX_CHANNELS and s > 0 and g > 0) or c % g or o % g:
                return None
            sizes = []
            for n, kx, px in zip((h, w), kk, _pair(pad) if pad is not None else (None, None)):
                if mode == "same":
                    if s != 1 or (dd * (kx - 1)) % 2:
                        return None
                    px = dd * (kx - 1) // 2
                elif mode == "auto":
                    px = ((s - 1) + dd * (kx - 1)) // 2
                sizes.append(conv_size(n, kx, s, px, dd))
            if min(sizes) <= 0:
                return None
            return (o, sizes[0], sizes[1])

        if apply(shape, ctx.ints) is None:
            return None
        text = self.call_text("conv", ("out", "kernel", "stride", "pad"), given)
        return Stage(text, apply, call=("conv", text[len("conv("):-1]))

    def stage_norm(self, shape, ctx, preserve=False):
        c, h, w = shape
        gs = sorted({g for g in (1, 2, 4, c) if c % g == 0 and (c // g) * h * w > 1})
        kind = self.pick(["bn", "batch_norm", "bn_eps", "ln2d"] + (["gn"] if gs else []))
        if kind == "gn":
            g = self.pick(gs)
            gexpr = self.int_expr(ctx, [g])
            text = self.pick([f"gn({gexpr.text})", f"group_norm(groups={gexpr.text})",
                              f"gn({gexpr.text}, eps=1e-6)"])

            def apply(shape, env, gexpr=gexpr):
                g = gexpr(env)
                c, h, w = shape
                # torch refuses a single value per group (with batch 1): never generate one
                return shape if g > 0 and c % g == 0 and (c // g) * h * w > 1 else None
            return Stage(text, apply)
        text = {"bn": self.pick(["bn", "bn()"]), "batch_norm": "batch_norm",
                "bn_eps": self.pick(["bn(1e-3)", "bn(eps=0.001, momentum=0.01)", "bn(affine=false)"]),
                "ln2d": self.pick(["ln2d", "layer_norm2d(eps=1e-6)", "ln2d(affine=false)"])}[kind]
        return Stage(text, lambda shape, env: shape, call=None if "(" in text else (text, ""))

    def stage_act(self, shape, ctx, preserve=False):
        name = self.pick(ACTIVATIONS + ["gelu_tanh", "leaky"])
        if name == "gelu_tanh":
            text = self.pick(['gelu("tanh")', 'gelu(approximate="tanh")'])
            return Stage(text, lambda shape, env: shape, call=("gelu", '"tanh"'))
        if name == "leaky":
            slope = self.pick(["0.2", "0.01", "1e-1"])
            return Stage(f"leaky_relu({slope})", lambda shape, env: shape, call=("leaky_relu", slope))
        return Stage(name, lambda shape, env: shape, call=(name, ""))

    def stage_block_act(self, shape, ctx, preserve=False):
        return Stage(ctx.act, lambda shape, env: shape)

    def stage_reg(self, shape, ctx, preserve=False):
        text = self.pick(["dropout(0.1)", "dropout(p=0.5)", "drop_path(0.05)", "drop_path(p=0.2)",
                          "dropout", "identity"])
        return Stage(text, lambda shape, env: shape)

    def stage_se(self, shape, ctx, preserve=False):
        callee = f"{self.import_se}.SE" if self.import_se and self.coin() else "SE"
        args = self.pick(["", "rd_ratio=0.25", "act=silu", "gate=hardsigmoid", "rd_divisor=4"])
        return Stage(f"{callee}({args})", lambda shape, env: shape)

    def stage_shuffle(self, shape, ctx, preserve=False):
        gs = [g for g in (2, 3, 4) if shape[0] % g == 0]
        if not gs:
            return None
        g = self.pick(gs)

        def apply(shape, env, g=g):
            return shape if shape[0] % g == 0 else None
        return Stage(self.pick([f"channel_shuffle({g})", f"channel_shuffle(groups={g})"]), apply)

    def stage_scale(self, shape, ctx, preserve=False):
        text = self.pick(["layer_scale(1e-5)", "layer_scale(init=0.1)", "mul(scalar=0.5)",
                          "add(scalar=1.0)", "sub(scalar=2, reverse=true)"])
        return Stage(text, lambda shape, env: shape)

    def stage_swap(self, shape, ctx, preserve=False):
        text = self.pick(["transpose(2, 3)", "transpose(-1, -2)", "permute([0, 1, 3, 2])",
                          "transpose(dim0=3, dim1=2)"])
        return Stage(text, lambda shape, env: (shape[0], shape[2], shape[1]))

    def stage_pool(self, shape, ctx, preserve=False):
        c, h, w = shape
        name = self.pick(["maxpool", "avgpool"])
        k = self.pick([1, 2, 2, 3, 3, (2, 3), (3, 1)])
        kk = _pair(k)
        stride = self.pick([None, 1, 2, 2, (2, 1)])
        pad = self.pick([0, 0] + ([1] if min(kk) >= 2 else []) + ([(kk[0] // 2, 0)]))
        d = 2 if name == "maxpool" and self.coin(15) else 1
        ceil = self.coin(30)
        given = {"kernel": lit(k).text}
        if stride is not None:
            given["stride"] = lit(stride).text
        if pad != 0 or self.coin(20):
            given["pad"] = lit(pad).text
        if d != 1:
            given["dilation"] = str(d)
        if ceil or self.coin(10):
            given["ceil"] = "true" if ceil else "false"
        cip = None
        if name == "avgpool" and self.coin(30):
            cip = self.coin()
            given["count_include_pad"] = "true" if cip else "false"
        ss, pp = _pair(stride if stride is not None else k), _pair(pad)

        def apply(shape, env):
            c, h, w = shape
            ho = pool_size(h, kk[0], ss[0], pp[0], d, ceil)
            wo = pool_size(w, kk[1], ss[1], pp[1], d, ceil)
            return (c, ho, wo) if ho > 0 and wo > 0 else None
        if apply(shape, ctx.ints) is None:
            return None
        return Stage(self.call_text(name, ("kernel", "stride", "pad"), given), apply)

    def stage_adaptive(self, shape, ctx, preserve=False):
        size = self.pick([1, 2, 3, (2, 1), (1, 3)])
        name = self.pick(["adaptive_avgpool", "adaptive_maxpool"])
        text = self.pick([f"{name}({lit(size).text})", f"{name}(size={lit(size).text})"]
                         + ([name] if size == 1 else []))
        so = _pair(size)
        return Stage(text, lambda shape, env: (shape[0], so[0], so[1]))

    def stage_seq(self, shape, ctx, preserve=False):
        inner = ctx.child(depth=ctx.depth + 1)
        members, texts, s = [], [], shape
        for _ in range(self.num(1, 3)):
            m = self.stage(s, inner, preserve)
            s = m.apply(s, inner.ints)
            # a member's label is local to the sequence: no loop template needed
            label = self.fresh("m") if self.coin(30) else None
            members.append(m)
            texts.append(m.labelled(label).text)

        def apply(shape, env, members=tuple(members)):
            return run_stages(list(members), shape, env)
        return Stage("[" + ", ".join(texts) + "]", apply, needs_label=True)

    def stage_repeat(self, shape, ctx, preserve=False):
        index = self.pick([None, "j", "j"])
        counter = self.pick([None, None, "t"]) if index else None
        # labels inside a repeat live in the repeat's per-instance scope: no loop template
        inner = ctx.child(depth=ctx.depth + 1, loops=())
        if index:
            inner.ints[index] = 0
        # the counter (`t`) counts instances across the whole network: declared, never used
        stages, s = [], shape
        for k in range(self.num(1, 3)):
            if index and k == 0 and not preserve and self.coin(40):
                # the index in an argument: downsample in the first instance only
                stride = Expr(f"{index} == 0 ? 2 : 1", lambda env, i=index: 2 if env[i] == 0 else 1,
                              atomic=False)
                m = self.stage_conv(s, inner, out=None, stride=stride) or self.stage(s, inner, preserve)
            else:
                m = self.stage(s, inner, preserve)
            s = m.apply(s, inner.ints)
            stages.append(m if k == 0 else m.labelled(self.fresh("r") if self.coin(25) else None))

        def simulate(shape, env, n):
            for j in range(n):
                env2 = {**env, **({index: j} if index else {})}
                shape = run_stages(stages, shape, env2)
                if shape is None:
                    return None
            return shape
        n = self.num(1, 3)
        while n > 1 and (simulate(shape, ctx.ints, n) is None
                         or preserve and simulate(shape, ctx.ints, n) != shape):
            n -= 1
        if preserve and simulate(shape, ctx.ints, n) != shape:
            return None
        names = ", ".join(x for x in (index, counter) if x)
        body = " -> ".join(m.text for m in stages)
        text = f"repeat({n}) {names + ' ' if names else ''}{{ {body} }}"
        return Stage(text, lambda shape, env, n=n: simulate(shape, env, n))

    # -- blocks

    def stage_block(self, shape, ctx, preserve=False):
        c = shape[0]
        block = self.pick(self.blocks) if self.blocks and self.coin(60) else None
        if block is None and len(self.blocks) >= 2:
            block = self.pick(self.blocks)
        planes = self.int_expr(ctx, [c] if preserve else [v for v in {c, 2 * c, 8, 4} if v <= MAX_CHANNELS])
        stride = lit(1) if preserve else lit(self.pick([1, 1, 2]))
        if block is None:
            block = self.new_block(shape, planes(ctx.ints), stride(ctx.ints))
        given = {"planes": planes.text}
        if stride.text != "1" or self.coin(30):
            given["stride"] = stride.text
        if block.has_act and self.coin(40):
            given["act"] = self.pick(["gelu", "silu", "relu6", "hardswish", "leaky_relu(0.1)",
                                      'gelu("tanh")', "identity"])
        text = self.call_text(block.name, ("planes", "stride"), given)

        def apply(shape, env, planes=planes, stride=stride, block=block):
            return block.simulate(shape, {"planes": planes(env), "stride": stride(env)})
        if apply(shape, ctx.ints) is None:
            return None
        return Stage(text, apply, call=(block.name, text[len(block.name) + 1:-1]))

    def new_block(self, shape: Shape, planes: int, stride: int) -> Block:
        name = f"Blk{len(self.blocks)}"
        cin, hn, wn = self.pick([("Cin", "H", "W"), ("C", "H", "W"), ("C", "Hh", "Ww")])
        act = self.pick([None, "act"])
        params = ["planes: int", "stride: int = 1"]
        if act:
            params.append(self.pick(["act = relu", "act: op = relu", "act: callable = relu"]))
        c, h, w = shape
        ctx = Ctx(ints={"planes": planes, "stride": stride, cin: c, hn: h, wn: w}, in_block=True,
                  act=act, depth=1)
        first = self.stage_conv(shape, ctx, out=var("planes"), stride=var("stride"))
        if first is None:  # e.g. a kernel too large for the prototype input
            first = Stage("conv(planes, 1, stride=stride)", _conv1x1_apply)
        stages = [first]
        s = first.apply(shape, ctx.ints)
        for _ in range(self.num(0, 3)):
            m = self.stage(s, ctx, preserve=self.coin(70))
            s = m.apply(s, ctx.ints)
            stages.append(m.labelled(self.fresh("b") if m.needs_label or self.coin(30) else None))
        proj = self.pick(["downsample: [conv(planes, 1, stride=stride, bias=false), bn]",
                          "proj: [conv(planes, 1, stride=stride), bn]",
                          "conv(planes, kernel=1, stride=stride)"])
        residual = self.coin(65) and s == _shortcut(shape, planes, stride)
        lines = [f"block {name}({', '.join(params)}) {{", f"  in x: [B, {cin}, {hn}, {wn}]"]
        if self.coin(20):
            lines.append("  " + self.comment())
        lines.append(f"  y = x -> {' -> '.join(m.text for m in stages)}")
        if residual:
            lines += ["  sc = x", f"  if stride != 1 or {cin} != planes {{", f"    sc = x -> {proj}", "  }"]
            out = f"{act}(y + sc)" if act and self.coin(60) else self.pick(["y + sc", "relu(y + sc)"])
            lines.append(f"  out {out}")
        else:
            lines.append("  out y")
        lines.append("}")

        def simulate(shape, args, stages=tuple(stages), residual=residual):
            c, h, w = shape
            env = {**args, cin: c, hn: h, wn: w}
            y = run_stages(list(stages), shape, env)
            if y is None:
                return None
            if residual and y != _shortcut(shape, args["planes"], args["stride"]):
                return None
            return y
        block = Block(name, params, "\n".join(lines), simulate, act is not None)
        self.blocks.append(block)
        return block

    # -- statements -----------------------------------------------------------------------------

    def stmt(self, state: State, ctx: Ctx) -> Stmt:
        kinds = ["chain", "chain", "chain", "functional", "residual", "residual", "gate", "cat",
                 "scalar", "chunk", "tokens", "patchify"]
        if ctx.depth < 2:
            kinds += ["if", "for"]
        if not ctx.loops:
            kinds += ["param"]   # a param / buffer in a loop would be declared twice
        for _ in range(6):
            kind = self.pick(kinds)
            s = getattr(self, "stmt_" + kind)(state, ctx)
            if s is not None:
                new = s.apply(dict(state), ctx.ints)
                assert new is not None, (kind, s.lines, state)
                return s
        return self.stmt_chain(state, ctx)

    def tensors(self, state: State) -> list[str]:
        return sorted(k for k, v in state.items() if isinstance(v[0], int))

    def target(self, state: State, src: str, ctx: Ctx) -> str:
        if ctx.loops or self.coin(30):
            return src                      # reassign (loop-carried in a `for`)
        return self.fresh("v")

    def stmt_chain(self, state, ctx):
        src = self.pick(self.tensors(state))
        stages, s = [], state[src]
        for _ in range(self.num(1, 4)):
            m = self.stage(s, ctx)
            s = m.apply(s, ctx.ints)
            stages.append(m.labelled(self.maybe_label(ctx, m)))
        dst = self.target(state, src, ctx)
        chain = f"{src} -> " + " -> ".join(m.text for m in stages)
        if self.coin(20):   # a chain as an op's argument; relu keeps the shape
            return _assign_stmt(f"{dst} = relu({chain})", dst, src, stages)
        return _assign_stmt(f"{dst} = {chain}", dst, src, stages)

    def stmt_functional(self, state, ctx):
        src = self.pick(self.tensors(state))
        m = self.stage(state[src], ctx)
        if m.call is None:
            return None
        callee, args = m.call
        dst = self.target(state, src, ctx)
        return _assign_stmt(f"{dst} = {callee}({src}{', ' + args if args else ''})", dst, src, [m])

    def stmt_residual(self, state, ctx):
        names = self.tensors(state)
        src = self.pick(names)
        same = [n for n in names if n != src and state[n] == state[src]]
        op = self.pick(["+", "+", "-", "*"])
        dst = self.target(state, src, ctx)
        if same and self.coin(40):
            other = self.pick(same)
            expr = self.pick([f"{src} {op} {other}", f"relu({src} {op} {other})",
                              f"({src} {op} {other}) / 2"])

            def apply(st_, env):
                if st_.get(src) is None or st_.get(other) != st_[src]:
                    return None
                return {**st_, dst: st_[src]}
            return Stmt([f"{dst} = {expr}"], apply)
        branch, s = [], state[src]
        for _ in range(self.num(1, 3)):
            m = self.stage(s, ctx, preserve=True)
            s = m.apply(s, ctx.ints)
            branch.append(m.labelled(self.maybe_label(ctx, m, 20)))
        body = " -> ".join(m.text for m in branch)
        expr = self.pick([f"{src} {op} ({src} -> {body})", f"({src} -> {body}) {op} {src}",
                          f"relu({src} + ({src} -> {body}))"])

        def apply(st_, env):
            x = st_.get(src)
            if x is None or run_stages(branch, x, env) != x:
                return None
            return {**st_, dst: x}
        return Stmt([f"{dst} = {expr}"], apply)

    def stmt_gate(self, state, ctx):
        src = self.pick(self.tensors(state))
        c = state[src][0]
        gate = self.pick(["mean(dims=[2, 3], keepdim=true) -> sigmoid",
                          "adaptive_avgpool(1) -> conv(C1, 1) -> hardsigmoid",
                          "global_avgpool(keepdim=true) -> sigmoid",
                          "global_maxpool(true) -> tanh"]).replace("C1", str(c))
        dst = self.target(state, src, ctx)
        conv_c = "conv(" in gate

        def apply(st_, env):
            x = st_.get(src)
            if x is None or conv_c and x[0] != c:
                return None
            return {**st_, dst: x}
        return Stmt([f"{dst} = {src} * ({src} -> {gate})"], apply)

    def stmt_cat(self, state, ctx):
        names = self.tensors(state)
        src = self.pick(names)
        h, w = state[src][1:]
        partners = [n for n in names if state[n][1:] == (h, w)]
        parts = [src] + [self.pick(partners) for _ in range(self.num(1, 2))]
        joined = ", ".join(parts)
        text = self.pick([f"cat([{joined}])", f"[{joined}] -> cat", f"cat([{joined}], dim=1)",
                          f"cat({joined})", f"[{joined}] -> {self.label(ctx)}: cat(1)"])
        dst = self.target(state, src, ctx)

        def apply(st_, env):
            shapes = [st_.get(p) for p in parts]
            if any(s is None or s[1:] != shapes[0][1:] for s in shapes):
                return None
            out = (sum(s[0] for s in shapes), *shapes[0][1:])
            return {**st_, dst: out} if _ok(out) else None
        if apply(state, ctx.ints) is None:
            return None
        return Stmt([f"{dst} = {text}"], apply)

    def stmt_scalar(self, state, ctx):
        src = self.pick(self.tensors(state))
        dst = self.target(state, src, ctx)
        expr = self.pick([f"{src} * 0.5", f"2 * {src}", f"{src} / 2", f"1 - {src}", f"-{src}",
                          f"{src} + 1", f"+{src}", f"{src} * 2 - 1", f"{src} / 4.0 + {src}",
                           f"{src} ** 2", f"2 ** {src}"])
        return Stmt([f"{dst} = {expr}"],
                    lambda st_, env: {**st_, dst: st_[src]} if src in st_ else None)

    def stmt_chunk(self, state, ctx):
        src = self.pick(self.tensors(state))
        c, h, w = state[src]
        if c < 2:
            return None
        parts = self.fresh("p")
        if c % 2 == 0 and self.coin():
            how = self.pick([f"{src} -> chunk(2)", f"chunk({src}, 2)", f"{src} -> chunk(chunks=2, dim=1)",
                             f"{src} -> split({c // 2})"])
            sizes = [c // 2, c // 2]
        else:
            a = self.num(1, c - 1)
            sizes = [a, c - a]
            how = self.pick([f"{src} -> split([{a}, {c - a}])", f"{src} -> split(sizes=[{a}, {c - a}], dim=1)"])
        dst = self.target(state, src, ctx)
        k = self.pick([0, 1, -1])
        uses = [f"{dst} = cat([{parts}[1], {parts}[0]])", f"{dst} = {parts}[{k}] -> relu",
                f"{dst} = {parts}[{k}]"]
        if sizes[0] == sizes[1]:
            uses.append(f"{dst} = {parts}[0] * {parts}[1]")
        use = self.pick(uses)
        if self.coin(40):   # the same through unpacking: `first, second = …`
            first, second = self.fresh("u"), self.fresh("u")
            head = f"{first}, {second} = {how}"
            use = (use.replace(f"{parts}[1]", second).replace(f"{parts}[0]", first)
                   .replace(f"{parts}[-1]", second))
            return Stmt([head, use], self._chunk_apply(src, c, sizes, use, dst, k,
                                                       parts_names=(first, second)))

        return Stmt([f"{parts} = {how}", use], self._chunk_apply(src, c, sizes, use, dst, k, parts))

    @staticmethod
    def _chunk_apply(src, c, sizes, use, dst, k, parts=None, parts_names=()):
        def apply(st_, env):
            x = st_.get(src)
            if x is None or x[0] != c:
                return None
            pieces = tuple((s, x[1], x[2]) for s in sizes)
            new = {**st_, parts: pieces} if parts else {**st_, **dict(zip(parts_names, pieces))}
            if "cat(" in use or " * " in use:
                new[dst] = (c if "cat(" in use else sizes[0], x[1], x[2])
            else:
                new[dst] = pieces[k]
            return new
        return apply

    def stmt_tokens(self, state, ctx):
        src = self.pick(self.tensors(state))
        c, h, w = state[src]
        c2 = self.pick(sorted({c, 8, 2 * c} - {0}))
        if c2 > MAX_CHANNELS:
            return None
        norm = self.pick(["ln", "layer_norm(eps=1e-6)", "ln(affine=false)", "ln(bias=false)"])
        dst = self.target(state, src, ctx)
        text = (f"{dst} = {src} -> flatten(2) -> transpose(1, 2) -> {norm} -> linear({c2}) "
                f"-> {self.pick(ACTIVATIONS)} -> transpose(1, 2) -> reshape([-1, {c2}, {h}, {w}])")

        def apply(st_, env):
            return {**st_, dst: (c2, h, w)} if st_.get(src) == (c, h, w) else None
        return Stmt([text], apply)

    def stmt_patchify(self, state, ctx):
        src = self.pick(self.tensors(state))
        c, h, w = state[src]
        ps = [p for p in (2, 3) if h % p == 0 and w % p == 0 and p * p * c <= MAX_CHANNELS]
        if not ps:
            return None
        p = self.pick(ps)
        dst = self.target(state, src, ctx)
        text = (f"{dst} = {src} -> patchify({p}) -> transpose(1, 2) "
                f"-> reshape([-1, {p * p * c}, {h // p}, {w // p}])")

        def apply(st_, env):
            return {**st_, dst: (p * p * c, h // p, w // p)} if st_.get(src) == (c, h, w) else None
        return Stmt([text], apply)

    def stmt_param(self, state, ctx):
        src = self.pick(self.tensors(state))
        c = state[src][0]
        kind = self.pick(["param", "buffer"])
        name = self.fresh("g" if kind == "param" else "k")
        init = self.pick(["", " = 1.0", " = 0", " = 0.5"])
        dst = self.target(state, src, ctx)
        op = "*" if kind == "param" else self.pick(["-", "+"])
        lines = [f"{kind} {name}: [1, {c}, 1, 1]{init}", f"{dst} = {src} {op} {name}"]

        def apply(st_, env):
            return {**st_, dst: st_[src]} if st_.get(src, (0,))[0] == c else None
        return Stmt(lines, apply)

    def stmt_if(self, state, ctx):
        names = [n for n, v in ctx.ints.items() if n != "B" and isinstance(v, int)]
        if not names:
            return None
        conds = []
        for _ in range(self.num(1, 2)):
            n = self.pick(names)
            v = ctx.ints[n]
            conds.append(self.pick([
                Expr(f"{n} >= {v}", lambda env, n=n, v=v: env[n] >= v),
                Expr(f"{n} > {v}", lambda env, n=n, v=v: env[n] > v),
                Expr(f"{n} % 2 == 0", lambda env, n=n: env[n] % 2 == 0),
                Expr(f"{n} != {v + 1}", lambda env, n=n, v=v: env[n] != v + 1),
                Expr(f"not {n} < 3", lambda env, n=n: not env[n] < 3),
                Expr(f"{n} in [{v}, {v + 2}]", lambda env, n=n, v=v: env[n] in [v, v + 2]),
                Expr(f"{n} not in [{v + 1}]", lambda env, n=n, v=v: env[n] not in [v + 1]),
                Expr(f"{n} * 2 <= {2 * v + 1} and {n} > 0", lambda env, n=n, v=v: env[n] * 2 <= 2 * v + 1 and env[n] > 0),
            ]))
        inner = ctx.child(depth=ctx.depth + 1)
        branches = []
        for cond in conds:
            branches.append((cond, self.body(state, inner)))
        orelse = self.body(state, inner) if self.coin(60) else None
        lines = []
        for k, (cond, body) in enumerate(branches):
            lines.append(("if " if k == 0 else "} elif ") + cond.text + " {")
            lines += ["  " + ln for ln in body.lines]
        if orelse is not None:
            lines.append("} else {")
            lines += ["  " + ln for ln in orelse.lines]
        lines.append("}")

        def apply(st_, env):
            for cond, body in branches:
                if cond(env):
                    return body.apply(dict(st_), env)
            return orelse.apply(dict(st_), env) if orelse is not None else st_
        return Stmt(lines, apply)

    def stmt_for(self, state, ctx):
        idx = "i" if not ctx.loops else f"i{len(ctx.loops)}"
        iters = self.pick([("range", 2), ("range", 3), ("list", [1, 2]), ("list", [2, 0, 1]),
                           ("comp", 3)])
        if iters[0] == "range":
            values, it = list(range(iters[1])), f"range({iters[1]})"
        elif iters[0] == "list":
            values, it = iters[1], lit(iters[1]).text
        else:
            values, it = [k * 2 for k in range(iters[1])], f"[k * 2 for k in range({iters[1]})]"
        inner = ctx.child(depth=ctx.depth + 1, loops=ctx.loops + (idx,))
        inner.ints[idx] = values[0]
        body = self.body(state, inner)

        def run(st_, env, values):
            for v in values:
                st_ = body.apply(dict(st_), {**env, idx: v})
                if st_ is None:
                    return None
            return st_
        while len(values) > 1 and run(state, ctx.ints, values) is None:
            values = values[:-1]
        if run(state, ctx.ints, values) is None:
            return None
        if iters[0] == "range" or len(values) < len(iters[1] if iters[0] == "list" else range(iters[1])):
            it = f"range({len(values)})" if values == list(range(len(values))) else lit(values).text
        lines = [f"for {idx} in {it} {{"] + ["  " + ln for ln in body.lines] + ["}"]
        return Stmt(lines, lambda st_, env, values=tuple(values): run(st_, env, values))

    def body(self, state: State, ctx: Ctx) -> Stmt:
        """One or two statements run in sequence (the body of an `if` branch or `for`)."""
        stmts, cur = [], dict(state)
        for _ in range(self.num(1, 2)):
            s = self.stmt(cur, ctx)
            cur = s.apply(dict(cur), ctx.ints)
            stmts.append(s)

        def apply(st_, env):
            for s in stmts:
                st_ = s.apply(dict(st_), env)
                if st_ is None:
                    return None
            return st_
        return Stmt([ln for s in stmts for ln in s.lines], apply)

    # -- the whole file -------------------------------------------------------------------------

    def spec(self) -> GeneratedSpec:
        draw = self.draw
        header: list[str] = []
        if self.coin(30):
            header.append(self.comment())
        if self.coin(15):
            self.import_se = "semod"
            header.append(self.pick(["import blocks.se as semod"]))
        if self.coin(10):
            header.append("from blocks.se import SE")
        ints: dict[str, int] = {}
        lets = []
        for name in draw(st.lists(st.sampled_from(["K", "WIDTH", "BASE"]), unique=True, max_size=2)):
            v = self.num(2, 8)
            ints[name] = v
            lets.append(f"let {name} = {v}")

        params, defaults, overrides = [], {}, {}
        for name in draw(st.lists(st.sampled_from(["width", "depth", "C"]), unique=True, max_size=3)):
            d = self.num(2, 8) if name != "C" else self.num(1, 4)
            defaults[name] = d
            ints[name] = d
        classes = self.num(1, 12)
        classes_name = self.pick([None, "num_classes", "classes"])
        if classes_name:
            defaults[classes_name] = classes
        variant = self.coin(35)
        if variant:
            for name in defaults:
                if self.coin(50):
                    v = self.num(1, 4) if name == "C" else self.num(1, 12) if name == classes_name else self.num(2, 8)
                    overrides[name] = v
                    if name == classes_name:
                        classes = v
                    else:
                        ints[name] = v
        for name, d in defaults.items():
            params.append(self.pick([f"{name}: int = {d}", f"{name} = {d}"]))

        # the input: several spellings of [B, C, H, W]
        b, h, w = self.num(1, 3), self.num(5, 16), self.num(5, 16)
        c = ints["C"] if "C" in ints else self.num(1, 4)
        cdim = "C" if "C" in ints else self.pick([f"C = {c}", str(c), f"({c - 1} + 1)" if c > 1 else str(c)])
        bdim = self.pick(["B", f"B = {b}"]) if b != 1 else self.pick(["B", "B = 1", "N"])
        if bdim in ("B", "N"):
            b = 1
        in_line = f"in x: [{bdim}, {cdim}, H = {h}, W = {w}]"
        ints.update({"H": h, "W": w})
        if "C" not in ints and cdim.startswith("C"):
            ints["C"] = c

        ctx = Ctx(ints=ints)
        state: State = {"x": (c, h, w)}
        body: list[str] = []
        for _ in range(self.num(1, 5)):
            if self.coin(15):
                body.append(self.comment())
            s = self.stmt(state, ctx)
            state = s.apply(dict(state), ctx.ints)
            lines = list(s.lines)
            if self.coin(10) and "{" not in lines[-1] and "}" not in lines[-1]:
                lines[-1] += "  " + self.comment()
            body += lines

        last = self.pick(self.tensors(state))
        lc, lh, lw = state[last]
        k = classes
        k_text = classes_name or str(k)
        head = self.pick([f"mean(dims=[2, 3]) -> head: linear({k_text})",
                          f"mean([2, 3]) -> head: linear({k_text})",
                          f"global_avgpool -> fc: linear({k_text}, bias=false)",
                          f"adaptive_avgpool(1) -> flatten -> head: linear(out={k_text}, bias=true)"])
        outputs: dict[str, tuple[int, ...]]
        if self.coin(25):
            feats = self.pick(self.tensors(state))
            fshape = state[feats]
            body.append(f"out feats = {feats}")
            body.append(f"out logits = {last} -> {head}")
            outputs = {"feats": (b, *fshape), "logits": (b, k)}
        else:
            body.append(f"out {last} -> {head}")
            outputs = {"out": (b, k)}

        net = self.pick(["Net", "TinyNet", "Model"])
        lines = header + [""] + [blk.text + "\n" for blk in self.blocks] + lets + [""]
        lines.append(f"network {net}({', '.join(params)}) {{")
        lines.append("  " + in_line)
        lines += ["  " + ln for ln in body]
        lines.append("}")
        if variant:
            args = ", ".join(f"{k_}={v}" for k_, v in overrides.items())
            lines.append("")
            lines.append(f"variant tiny = {net}({args})")
            if self.coin(30):
                lines.append(f'variant other = {net}() reference "generated"')
        return GeneratedSpec("\n".join(lines) + "\n", (b, c, h, w), outputs)


def _shortcut(shape: Shape, planes: int, stride: int) -> Optional[Shape]:
    c, h, w = shape
    if stride == 1 and c == planes:
        return shape
    p = (stride - 1) // 2
    return (planes, conv_size(h, 1, stride, p, 1), conv_size(w, 1, stride, p, 1))


def _conv1x1_apply(shape: Shape, env: Env) -> Optional[Shape]:
    return _shortcut(shape, env["planes"], env["stride"]) if env["planes"] > 0 else None


def _assign_stmt(text: str, dst: str, src: str, stages: list[Stage]) -> Stmt:
    def apply(st_, env):
        x = st_.get(src)
        if x is None or not isinstance(x[0], int):
            return None
        out = run_stages(stages, x, env)
        return None if out is None else {**st_, dst: out}
    return Stmt([text], apply)


@st.composite
def spec_cases(draw) -> GeneratedSpec:
    """A random valid spec with its input shape and expected output shapes."""
    return _Gen(draw).spec()


def specs() -> st.SearchStrategy[str]:
    """The text of a random valid spec."""
    return spec_cases().map(lambda c: c.text)
