"""The whole generated file: header, imports, `let`s, blocks, the network and its variants."""
from __future__ import annotations

from hypothesis import strategies as st

from archdsl.testing.strategies.model import Ctx, GeneratedSpec, State
from archdsl.testing.strategies.stages import Stages
from archdsl.testing.strategies.statements import Statements


class Generator(Stages, Statements):
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
