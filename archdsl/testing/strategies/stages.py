"""Stages (what follows `->`), one generator per op family: conv, norms, activations, pools,
sequences, repeats and calls of generated blocks."""
from __future__ import annotations

from typing import Optional

from archdsl.testing.strategies.base import Base
from archdsl.testing.strategies.model import (ACTIVATIONS, MAX_CHANNELS, Block, Ctx, Expr, Shape, Stage,
                                              conv1x1_apply, conv_size, fits, lit, pair, pool_size,
                                              run_stages, shortcut, var)


class Stages(Base):
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
                if fits(out) and (not preserve or out == shape):
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
        kk, dd = pair(k), d

        def apply(shape, env, out=out, stride=stride, groups=groups, pad=pad, mode=mode):
            c, h, w = shape
            o, s = out(env), stride(env)
            g = groups(env) if groups is not None else 1
            if not (isinstance(o, int) and 0 < o <= MAX_CHANNELS and s > 0 and g > 0) or c % g or o % g:
                return None
            sizes = []
            for n, kx, px in zip((h, w), kk, pair(pad) if pad is not None else (None, None)):
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
        kk = pair(k)
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
        ss, pp = pair(stride if stride is not None else k), pair(pad)

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
        so = pair(size)
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
            first = Stage("conv(planes, 1, stride=stride)", conv1x1_apply)
        stages = [first]
        s = first.apply(shape, ctx.ints)
        for _ in range(self.num(0, 3)):
            m = self.stage(s, ctx, preserve=self.coin(70))
            s = m.apply(s, ctx.ints)
            stages.append(m.labelled(self.fresh("b") if m.needs_label or self.coin(30) else None))
        proj = self.pick(["downsample: [conv(planes, 1, stride=stride, bias=false), bn]",
                          "proj: [conv(planes, 1, stride=stride), bn]",
                          "conv(planes, kernel=1, stride=stride)"])
        residual = self.coin(65) and s == shortcut(shape, planes, stride)
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
            if residual and y != shortcut(shape, args["planes"], args["stride"]):
                return None
            return y
        block = Block(name, params, "\n".join(lines), simulate, act is not None)
        self.blocks.append(block)
        return block
