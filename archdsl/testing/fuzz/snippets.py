"""Hostile text for the fuzzer: extreme numbers, odd strings and labels, and the small networks
and topologies whose holes they fill."""
from __future__ import annotations

import random

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
