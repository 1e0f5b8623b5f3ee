"""IR graph → standalone PyTorch source: `emit_python(graph)`.

The written file imports only torch. It rebuilds the module tree of `archdsl.lower.build`
exactly (the same parameter and buffer names, shapes and order), so the compiled model's
`state_dict()` loads into it strictly, and its `forward` runs the same straight-line code: it is
generated from the ops' own `emit` rules (through an Emitter that writes source instead of fx
nodes), so it computes what the fx graph computes, op for op.

How it reads:
- Each block instance that owns modules becomes an instance of a class named after its block
  type (`class Bottleneck(nn.Module)`). Instances whose code differs only in constants share one
  class; the constants that vary become constructor arguments (`Bottleneck(in_channels=256,
  mid_channels=64, out_channels=256, stride=1)`; a channel count equal to the block's input /
  output channels in every instance is `in_channels` / `out_channels`, or `channels` when both;
  another is `mid_channels`; other arguments are named after their first use). A constant of the
  forward that varies is kept as an attribute (`self.sizes`). Instances that differ in structure
  (one has a `downsample`, another not) get classes of their own (`BasicBlock`, `BasicBlock_2`).
- Numbered sequences are `nn.Sequential` when applied as a chain (`x = self.layer1(x)`), else
  `nn.ModuleList` (`self.stem[0](x)`); runs of identical blocks are written
  `*[Block(...) for _ in range(n)]`. A block class whose children are 0..n-1 applied as a chain
  subclasses nn.Sequential and needs no forward. Other holders are `nn.ModuleDict`s, or, when
  they also hold parameters, a small `_holder(...)` helper written into the file.
- torch.nn modules are written with their constructor arguments (defaults left out); any other
  module is written as the call of its op's constructor recipe (`Op.build`), and archdsl's own
  module classes and helper functions are copied into the file with what they use (other
  archdsl helpers, math, constants). `spectral_norm` / `weight_norm` parametrizations are
  written as such.
- Variables reuse the name of the value a statement consumes last (`x = self.conv1(x)`), else
  take `out` or the node's name; tuples only indexed by constants are unpacked
  (`split_0, split_1 = torch.split(...)`).

- The spec's `init` rules become the root class's `init_weights()` (its __init__ ends with it),
  one loop per run of rules: over the modules of one type, the keys with one suffix, or the keys
  listed, whichever selects exactly the tensors the rules select in the compiled model; so a
  fresh instance starts with `load_spec`'s statistics.
- `python file.py` runs a self-test: inputs of the declared shapes and dtypes, output shapes
  checked.

`emit_python` checks its output once: it runs the file and instantiates the class on the meta
device, comparing the state_dict keys, shapes and order with the compiled model's.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from archdsl.errors import ArchError
from archdsl.export.classes import _Classes
from archdsl.export.expr import WIDTH, Call, Display, _Printer, Raw, _lit_src
from archdsl.export.forward import _Forwards
from archdsl.export.helpers import _Helpers
from archdsl.export.inits import _Inits
from archdsl.export.scopes import _Class, _Scopes
from archdsl.ir.graph import Graph

__all__ = ["emit_python"]


class _Writer(_Scopes, _Forwards, _Classes, _Inits):
    def __init__(self, graph: Graph, root: nn.Module, class_name: str | None):
        self.graph, self.root = graph, root
        self.mods = dict(root.named_modules(remove_duplicate=False))
        self.nodes = list(graph.nodes())
        self.index = {n.id: i for i, n in enumerate(self.nodes)}
        self.by_id = {n.id: n for n in self.nodes}
        self.class_name = class_name
        self.helpers = _Helpers(graph)
        self.need_holder = False


    # ---- the file

    def source(self) -> str:
        self.find_scopes()
        classes = self.classes()
        self.init_lines = self._init_method()
        root_cls = self.root_scope.cls
        out = [self._header(root_cls.name)]
        if self.helpers:
            out.append("from __future__ import annotations\n")
        out += sorted({"import torch", "import torch.nn.functional as F", "from torch import nn",
                       *self.helpers.imports}, key=lambda l: (l.startswith("from"), l))
        out.append("")
        if self.helpers:
            text, prev_simple = "", False
            for b in self.helpers.blocks:
                simple = not b.startswith(("class ", "def ", "@"))
                if text:
                    text += "\n" if simple and prev_simple else "\n\n"
                text += b
                prev_simple = simple
            out += ["", text]
        if self.need_holder:
            out += ["", _HOLDER]
        for cls in self._file_order(classes):
            out += ["", self._class_source(cls)]
        out += ["", self._main(root_cls.name)]
        text = "\n".join(out)
        return re.sub(r"\n{4,}", "\n\n\n", text).rstrip() + "\n"

    def _file_order(self, classes: list[_Class]) -> list[_Class]:
        """Classes in order of first use, each after the classes it instantiates."""
        done: list[_Class] = []

        def visit(cls: _Class):
            if cls in done:
                return
            children = {c.cls for c in cls.instances[0].children}
            for child in sorted(children, key=lambda c: c.instances[0].first):
                visit(child)
            done.append(cls)
        for cls in sorted(classes, key=lambda c: c.instances[0].first):
            visit(cls)
        return done

    def _title(self) -> str:
        g = self.graph
        net = next((n.block_type for n in self.nodes if not n.block and n.block_type), g.name)
        return f"{net}, variant {g.variant}" if g.variant and g.variant != net else net

    def _header(self, name: str) -> str:
        g = self.graph
        title = self._title()
        title = f"{name}: {title}" if title != name else name
        lines = [f'"""{title}, as standalone PyTorch source written by archdsl.', "",
                 "It imports only torch. Parameter and buffer names are those of the compiled",
                 "model, so its weights load strictly: `model.load_state_dict(state_dict)`.", ""]
        for i in g.inputs:
            lines.append(f"Input  {i}: {list(g.node(i).shape)}")
        for k, i in g.outputs.items():
            lines.append(f"Output {k}: {list(g.node(i).shape)}")
        return "\n".join(lines) + '\n"""'

    def _class_source(self, cls: _Class) -> str:
        s = cls.instances[0]
        init_p, fwd_p = _Printer(cls.binding, False), _Printer(cls.binding, True)
        lines = [f"class {cls.name}({s.base}):"]
        paths = [c.path for c in cls.instances]
        k = len(paths)
        while k > 1 and len(", ".join(paths[:k])) + len(s.type) + 30 > WIDTH:
            k -= 1
        where = ", ".join(paths[:k]) + (f", … ({len(paths)} in all)" if k < len(paths) else "")
        doc = f"{s.type} at {where}" if s.path else self._title()
        lines.append(f'    """{doc}."""')
        lines.append("")
        sig = ", ".join(["self", *cls.params])
        head = f"    def __init__({sig}):"
        if len(head) > WIDTH:
            args = "".join(f"        {p},\n" for p in ["self", *cls.params])
            head = f"    def __init__(\n{args}    ):"
        lines.append(head)
        if s.super_args:
            fake = Call(Raw("super().__init__"), s.super_args, [])
            lines.append("        " + init_p.block(fake, 8, 0))
        else:
            lines.append("        super().__init__()")
        for p in cls.stored:
            lines.append(f"        self.{p} = {p}")
        for st in s.init:
            if st.target:
                lead = len(st.target) + 3
                lines.append(f"        {st.target} = {init_p.block(st.expr, 8, lead)}")
            else:
                lines.append("        " + init_p.block(st.expr, 8, 0))
        root = s is self.root_scope and self.init_lines
        if root:
            lines.append("        self.init_weights()")
        if not s.inherits_forward:
            lines.append("")
            lines.append(f"    def forward({', '.join(['self', *(v.name for v in s.args)])}):")
            for st in s.fwd:
                targets = ", ".join(t.name for t in st.targets)
                text = fwd_p.block(st.expr, 8, len(targets) + 3 if targets else 0)
                lines.append(f"        {targets} = {text}" if targets else f"        {text}")
            if isinstance(s.ret, Display) and s.ret.kind == "(" and len(s.ret.items) > 1:
                lines.append(f"        return {', '.join(fwd_p.inline(r) for r in s.ret.items)}")
            elif s.ret is not None:
                lines.append(f"        return {fwd_p.block(s.ret, 8, 7)}")
        if root:
            lines += ["", *self.init_lines]
        return "\n".join(lines) + "\n"

    def _main(self, name: str) -> str:
        """A self-test: inputs of the declared shapes and dtypes (token ids and labels 0 or 1),
        checked against the declared output shapes."""
        args = []
        for i in self.graph.inputs:
            node = self.graph.node(i)
            shape = _lit_src(tuple(node.shape))[1:-1].rstrip(",")
            dtype = getattr(torch, node.dtype)
            if dtype.is_floating_point:
                extra = "" if dtype == torch.float32 else f", dtype={dtype}"
                args.append(f"torch.randn({shape}{extra})" if shape else f"torch.randn((){extra})")
            else:
                args.append(f"torch.randint(0, 2, ({shape}{',' if ',' not in shape else ''}), "
                            f"dtype={dtype})" if shape else f"torch.zeros((), dtype={dtype})")
        outs = {k: self.graph.node(i).shape for k, i in self.graph.outputs.items()}
        plain = all(not (s and isinstance(s[0], tuple)) for s in outs.values())
        if self.graph.single_output:
            show = "tuple(out.shape)"
            want = _lit_src(tuple(next(iter(outs.values()))))
        else:
            show = "{k: tuple(v.shape) for k, v in out.items()}"
            want = _lit_src({k: tuple(v) for k, v in outs.items()})
        check = f"    assert {show} == {want}, {show}\n" if plain else ""
        call = f"        out = model({', '.join(args)})\n"
        if len(call) > WIDTH:
            call = "        out = model(\n" + "".join(f"            {a},\n" for a in args) + \
                "        )\n"
        return (f'if __name__ == "__main__":  # a self-test on random inputs\n'
                f"    model = {name}().eval()\n"
                f"    with torch.no_grad():\n"
                f"{call}"
                f"{check}"
                f"    print({show})\n")


_HOLDER = '''def _holder(modules, parameters=None, buffers=None):
    """A plain nn.Module holding modules, parameters and buffers under the given names."""
    holder = nn.Module()
    for name, value in (parameters or {}).items():
        holder.register_parameter(name, value)
    for name, value in (buffers or {}).items():
        holder.register_buffer(name, value)
    for name, value in modules.items():
        holder.add_module(name, value)
    return holder
'''




# ---------------------------------------------------------------------------------------------

def _graph_and_tree(obj) -> tuple[Graph, nn.Module]:
    if isinstance(obj, Graph):
        from archdsl.lower.build import build
        with torch.device("meta"):
            return obj, build(obj)
    graph = getattr(obj, "arch_graph", None)
    if isinstance(obj, nn.Module) and isinstance(graph, Graph):
        return graph, obj
    raise ArchError(f"emit_python needs an IR graph or a model from `archdsl.load_spec`, got "
                    f"{type(obj).__name__}", hint="pass `load_graph(...)` or `load_spec(...)`")


def emit_python(graph, class_name: str | None = None, *, verify: bool = True) -> str:
    """Standalone PyTorch source (imports only torch) for `graph` (an IR `Graph`, or a model
    from `load_spec`): a class per block type and a top-level class named `class_name`
    (default: after the variant, as the compiled GraphModule). Its state_dict keys, shapes and
    order are the compiled model's. `verify` executes the source once on the meta device to
    check that."""
    graph, tree = _graph_and_tree(graph)
    text = _Writer(graph, tree, class_name).source()
    if verify:
        _verify(text, graph, tree, class_name)
    return text


def _root_class(text: str) -> str:
    return re.search(r"^    model = (\w+)\(\)\.eval\(\)$", text, re.M).group(1)


def _verify(text: str, graph: Graph, tree: nn.Module, class_name: str | None) -> None:
    ns: dict = {"__name__": "archdsl_emitted"}
    exec(compile(text, "<emitted>", "exec"), ns)
    with torch.device("meta"):
        model = ns[_root_class(text)]()
    want = [(k, tuple(v.shape)) for k, v in tree.state_dict().items()]
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    if want != got:
        missing = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        raise ArchError(f"internal: the written source does not rebuild '{graph.name}' "
                        f"(missing {missing}, unexpected {extra}, or a different order)")
