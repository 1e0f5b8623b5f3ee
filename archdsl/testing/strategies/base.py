"""The generator's state and the small draws every part of it uses."""
from __future__ import annotations

from typing import Optional

from hypothesis import strategies as st

from archdsl.testing.strategies.model import COMMENT_CHARS, Block, Ctx, Expr, Stage, binop, lit, var


class Base:
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
        return "# " + self.draw(st.text(COMMENT_CHARS, max_size=24)).strip()

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
