"""Statements: chains, residuals, gates, concatenation, chunking, token mixing, params, `if` and
`for`, and statement bodies."""
from __future__ import annotations

from archdsl.testing.strategies.base import Base
from archdsl.testing.strategies.model import (ACTIVATIONS, MAX_CHANNELS, Ctx, Expr, State, Stmt, assign_stmt,
                                              fits, lit, run_stages)


class Statements(Base):
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
            return assign_stmt(f"{dst} = relu({chain})", dst, src, stages)
        return assign_stmt(f"{dst} = {chain}", dst, src, stages)

    def stmt_functional(self, state, ctx):
        src = self.pick(self.tensors(state))
        m = self.stage(state[src], ctx)
        if m.call is None:
            return None
        callee, args = m.call
        dst = self.target(state, src, ctx)
        return assign_stmt(f"{dst} = {callee}({src}{', ' + args if args else ''})", dst, src, [m])

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
            return {**st_, dst: out} if fits(out) else None
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

