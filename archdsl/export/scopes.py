"""Scopes: the root and every block instance written as a class instance, found in the module
tree."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from archdsl.errors import ArchError
from archdsl.export.expr import Expr, _attrs, _clean, _ident, _str


# ---------------------------------------------------------------------------------------------
# scopes: the root and every block instance written as a class instance

class _Retry(Exception):
    def __init__(self, path: str):
        self.path = path


@dataclass(eq=False)
class _Scope:
    path: str
    type: str
    parent: "_Scope | None" = None
    children: list = field(default_factory=list)
    own: list = field(default_factory=list)      # IR nodes computed in this class's forward
    members: set = field(default_factory=set)    # ids of every node inside (children's too)
    inputs: list = field(default_factory=list)   # external node ids the forward takes
    outputs: list = field(default_factory=list)  # node ids it returns
    first: int = 0                               # index of its first node
    height: int = 0
    args: list = field(default_factory=list)     # _Vals of the forward's arguments
    fwd: list = field(default_factory=list)      # forward Stmts
    ret: Expr | None = None
    chains: set = field(default_factory=set)     # container paths applied as a chain
    inherits_forward: bool = False               # a chain over all of its own children
    base: str = "nn.Module"
    init: list = field(default_factory=list)     # __init__ Stmts (after super().__init__)
    super_args: list = field(default_factory=list)
    cls: "_Class | None" = None


@dataclass(eq=False)
class _Class:
    name: str
    type: str
    instances: list
    lits: list = field(default_factory=list)      # per instance: [Lit, ...] in canonical order
    params: list = field(default_factory=list)    # argument names, in order
    stored: list = field(default_factory=list)    # arguments the forward reads as self.<name>
    values: dict = field(default_factory=dict)    # instance path → {argument: value}
    binding: dict = field(default_factory=dict)   # id(Lit) of 1st instance → ("c", v) / ("p", arg)
    n_init: int = 0                               # how many of the Lits are in __init__




class _Scopes:
    """The writer's part that reads the module tree and finds the scopes."""


    def is_leaf(self, path: str) -> bool:
        return type(self.mods[path]) is not nn.Module

    @staticmethod
    def list_like(m: nn.Module) -> bool:
        return bool(m._modules) and list(m._modules) == [str(i) for i in range(len(m._modules))]

    def kind(self, path: str) -> str:
        """How the module at `path` is written: "class" / "seqclass" (a block class, on
        nn.Module or nn.Sequential), "list" (Sequential / ModuleList), "dict" (ModuleDict),
        "holder" (the `_holder` helper) or "leaf"."""
        if path in self.scopes:
            return self.scopes[path].base == "nn.Sequential" and "seqclass" or "class"
        if self.is_leaf(path):
            return "leaf"
        m = self.mods[path]
        own = bool(m._parameters) or bool(m._buffers)
        if self.list_like(m) and not own:
            return "list"
        if not own and not any(k in _attrs(nn.ModuleDict) for k in m._modules):
            return "dict"
        return "holder"

    def access(self, path: str, scope: _Scope) -> str:
        """Source reaching the module / parameter at `path` from `self` of `scope`'s class."""
        rel = path[len(scope.path) + 1:] if scope.path else path
        expr, cur = "self", scope.path
        for part in rel.split("."):
            child = f"{cur}.{part}" if cur else part
            if cur != scope.path:
                kind = self.kind(cur)
            else:
                kind = "seqclass" if scope.base == "nn.Sequential" else "class"
            is_module = child in self.mods
            if kind in ("list", "seqclass") and is_module:
                expr = f"{expr}[{part}]"
            elif _ident(part):
                expr = f"{expr}.{part}"
            elif kind == "dict" and is_module:
                expr = f"{expr}[{_str(part)}]"
            else:
                expr = f"getattr({expr}, {_str(part)})"
            cur = child
        return expr

    # ---- scopes

    def find_scopes(self) -> None:
        cands = {p for p in self.graph.blocks
                 if p and p in self.mods and type(self.mods[p]) is nn.Module}
        while True:
            bad = self._check(cands)
            if not bad:
                try:
                    self._build_scopes(cands)
                    self._forwards()
                    return
                except _Retry as r:
                    bad = {r.path}
            cands -= bad

    @staticmethod
    def _innermost(path: str, cands: set) -> str:
        while path:
            if path in cands:
                return path
            path = path.rpartition(".")[0]
        return ""

    def _members(self, path: str) -> set:
        return {n.id for n in self.nodes if n.block == path or n.block.startswith(path + ".")}

    def _check(self, cands: set) -> set:
        bad = set()
        for n in self.nodes:
            s = self._innermost(n.block, cands)
            owns = n.id in self.mods or n.kind in ("param", "buffer")
            if s and owns and not n.id.startswith(s + "."):
                bad.add(s)
        g = self.graph.g
        for s in cands - bad:
            members = self._members(s)
            frontier = {v for u in members for v in g.successors(u) if v not in members}
            seen, stack = set(frontier), list(frontier)
            while stack:
                for v in g.successors(stack.pop()):
                    if v in members:
                        bad.add(s)
                        stack = []
                        break
                    if v not in seen:
                        seen.add(v)
                        stack.append(v)
        return bad

    def _build_scopes(self, cands: set) -> None:
        root_type = self._root_name()
        self.root_scope = _Scope("", root_type)
        self.scopes: dict[str, _Scope] = {}
        for p in sorted(cands, key=lambda p: (p.count("."), p)):
            parent = self._innermost(p.rpartition(".")[0], cands)
            s = _Scope(p, self.graph.blocks[p].type)
            s.parent = self.scopes[parent] if parent else self.root_scope
            s.parent.children.append(s)
            self.scopes[p] = s
        outs = set(self.graph.outputs.values())
        g = self.graph.g
        for n in self.nodes:
            sp = self._innermost(n.block, cands)
            (self.scopes[sp] if sp else self.root_scope).own.append(n)
        for s in self.scopes.values():
            s.members = self._members(s.path)
            s.first = min((self.index[i] for i in s.members), default=0)
            for n in self.nodes:
                if n.id not in s.members:
                    continue
                for i in n.inputs:
                    if i not in s.members and i not in s.inputs:
                        s.inputs.append(i)
                if n.id in outs or any(v not in s.members for v in g.successors(n.id)):
                    s.outputs.append(n.id)
        self.root_scope.members = set(self.index)
        for s in self._postorder(self.root_scope):
            s.height = 1 + max((c.height for c in s.children), default=-1)
            s.children.sort(key=lambda c: c.first)
            m = self.mods[s.path]
            if self.list_like(m) and not any(k in _attrs(nn.Sequential) for k in
                                             (*m._parameters, *m._buffers)):
                s.base = "nn.Sequential"

    def _postorder(self, s: _Scope):
        for c in s.children:
            yield from self._postorder(c)
        yield s

    def _root_name(self) -> str:
        if self.class_name:
            if not _ident(self.class_name):
                raise ArchError(f"class name '{self.class_name}' is not a Python identifier")
            return self.class_name
        from archdsl.lower.build import _class_name
        return _clean(_class_name(self.graph), "Model")
