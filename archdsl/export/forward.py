"""Each scope's forward: the ops' own `emit` rules run through an Emitter that writes source."""
from __future__ import annotations

import inspect
import operator
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch import nn

from archdsl.errors import ArchError
from archdsl.export.expr import (_FN_SIGS, _INFIX, _METHOD_DEFAULTS, _REQUIRED, _RESERVED, BinOp,
                                 Call, Display, Expr, Index, Lit, Method, Raw, Ref, Stmt, _Val,
                                 _clean, _fn_name, _refs, _squash)
from archdsl.export.scopes import _Retry, _Scope
from archdsl.ir.graph import Node
from archdsl.ops.base import REGISTRY, Emitter

if TYPE_CHECKING:
    from archdsl.export.source import _Writer


class _CodeEmitter(Emitter):
    def __init__(self, writer: "_Writer", scope: _Scope, node: Node):
        self.w, self.scope, self.node = writer, scope, node

    def _conv(self, v, hint: str):
        if isinstance(v, _Val):
            return Ref(v)
        if isinstance(v, (list, tuple)) and any(isinstance(x, _Val) for x in v):
            return Display("[" if isinstance(v, list) else "(", [self._conv(x, hint) for x in v])
        if isinstance(v, (fx.Node, fx.Proxy)):
            raise ArchError("internal: an op passed an fx value to the source writer")
        return Lit(v, hint)

    def _stmt(self, expr: Expr, simple: str | None = None, mods: set | None = None) -> _Val:
        out = _Val("stmt")
        used = set(mods or ()) | {r.path for r in _refs(expr) if r.kind == "attr"}
        local = self.node.id.rpartition(".")[2]
        self.scope.fwd.append(Stmt(expr, [out], base=local, simple=simple, mods=used))
        return out

    def module(self, *args, **kwargs):
        func = Raw(self.w.access(self.node.id, self.scope))
        one = len(args) == 1 and isinstance(args[0], _Val) and not kwargs
        simple = self.node.id if one else None
        return self._stmt(Call(func, [self._conv(a, "arg") for a in args],
                               [(k, self._conv(v, k), _REQUIRED) for k, v in kwargs.items()]),
                          simple, {self.node.id})

    def call(self, fn, *args, **kwargs):
        if fn in _INFIX and len(args) == 2 and not kwargs:
            return self._stmt(BinOp(self._conv(args[0], "scalar"), _INFIX[fn],
                                    self._conv(args[1], "scalar")))
        if fn is operator.getitem and len(args) == 2 and not kwargs:
            return self._stmt(Index(self._conv(args[0], "x"), self._conv(args[1], "index")))
        name = self.w.helpers.function(fn) or _fn_name(fn)
        sig = _FN_SIGS.get(name)
        if sig is None:
            short = name.rpartition(".")[2]
            return self._stmt(Call(Raw(name),
                                   [self._conv(a, f"{short}_arg{i}") for i, a in enumerate(args)],
                                   [(k, self._conv(v, k), _REQUIRED) for k, v in kwargs.items()]))
        pos, kws = [], []
        for i, a in enumerate(args):
            pname, default, squash = sig[i]
            v = self._conv(_squash(a) if squash and not isinstance(a, _Val) else a, pname)
            (pos.append(v) if default is _REQUIRED else kws.append((pname, v, default)))
        spec = {s[0]: s for s in sig}
        for k, a in kwargs.items():
            _, default, squash = spec.get(k, (k, _REQUIRED, False))
            kws.append((k, self._conv(_squash(a) if squash and not isinstance(a, _Val) else a, k),
                        default))
        return self._stmt(Call(Raw(name), pos, kws))

    def method(self, name, *args, **kwargs):
        defaults = _METHOD_DEFAULTS.get(name, {})
        try:
            names = [p for p in inspect.signature(getattr(torch.Tensor, name)).parameters][1:]
        except (AttributeError, TypeError, ValueError):
            names = []
        hints = [names[i] if i < len(names) and not names[i].startswith("*") else f"{name}_arg{i}"
                 for i in range(len(args) - 1)]
        return self._stmt(Call(Method(self._conv(args[0], "x"), name),
                               [self._conv(a, h) for a, h in zip(args[1:], hints)],
                               [(k, self._conv(v, k), defaults.get(k, _REQUIRED))
                                for k, v in kwargs.items()]))




class _Forwards:
    """The writer's part that writes the forwards."""


    def _forwards(self) -> None:
        for s in self._postorder(self.root_scope):
            s.fwd, s.chains = [], set()
            self._forward(s)

    def _forward(self, s: _Scope) -> None:
        import networkx as nx
        vals: dict[str, _Val] = {}
        ins = s.inputs if s.path else list(self.graph.inputs)
        s.args = [_Val("arg") for _ in ins]
        vals.update(zip(ins, s.args))
        item_of: dict[str, Any] = {}
        for n in s.own:
            if n.kind in ("param", "buffer"):
                vals[n.id] = _Val("attr", self.access(n.id, s), n.id)
            elif n.kind != "input":
                item_of[n.id] = n
        for c in s.children:
            for i in c.members:
                item_of[i] = c
        dag = nx.DiGraph()
        items = {id(x): x for x in item_of.values()}
        dag.add_nodes_from(items)
        for key, x in items.items():
            deps = x.inputs if isinstance(x, Node) else x.inputs
            for i in deps:
                if i in item_of and item_of[i] is not x:
                    dag.add_edge(id(item_of[i]), key)
        order_key = {k: (self.index[x.id] if isinstance(x, Node) else x.first)
                     for k, x in items.items()}
        try:
            order = list(nx.lexicographical_topological_sort(dag, key=order_key.__getitem__))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(dag)
            for u, _ in cycle:
                if isinstance(items[u], _Scope):
                    raise _Retry(items[u].path)
            raise ArchError("internal: the graph has a cycle")
        for key in order:
            x = items[key]
            if isinstance(x, Node):
                op = REGISTRY.get(x.op)
                if op is None:
                    raise ArchError(f"cannot write node '{x.id}' ({x.title}) as standalone source",
                                    hint="only networks are written as source, not topologies")
                em = _CodeEmitter(self, s, x)
                out = op.emit(x.attrs, self.graph.input_shapes(x), em, [vals[i] for i in x.inputs])
                if not isinstance(out, _Val):
                    raise ArchError(f"internal: op '{x.op}' returned {type(out).__name__} "
                                    f"from emit")
                vals[x.id] = out
                if x.is_multi and out.kind == "stmt" and s.fwd and s.fwd[-1].targets == [out]:
                    s.fwd[-1].arity = len(x.shape)
            else:
                outs = [_Val("stmt") for _ in x.outputs]
                local = x.path.rpartition(".")[2]
                call = Call(Raw(self.access(x.path, s)), [Ref(vals[i]) for i in x.inputs], [])
                simple = x.path if len(x.inputs) == 1 and len(x.outputs) == 1 else None
                s.fwd.append(Stmt(call, outs, base=local, simple=simple, mods={x.path}))
                vals.update(zip(x.outputs, outs))
        if s.path:
            rets = [Ref(vals[i]) for i in s.outputs]
            s.ret = rets[0] if len(rets) == 1 else Display("(", rets) if rets else None
        elif self.graph.single_output:
            s.ret = Ref(vals[next(iter(self.graph.outputs.values()))])
        else:
            s.ret = Display("{", [(k, Ref(vals[i])) for k, i in self.graph.outputs.items()])
        self._collapse_chains(s)
        self._unpack(s)
        self._name(s, ins)

    def _subtree_paths(self, s: _Scope) -> list[str]:
        """Container paths in `s`'s module subtree, outside its child classes, deepest first."""
        out = []
        skip = [c.path for c in s.children]
        for p, m in self.mods.items():
            if p == s.path or (s.path and not p.startswith(s.path + ".")):
                continue
            if any(p == c or p.startswith(c + ".") for c in skip) or type(m) is not nn.Module:
                continue
            out.append(p)
        return sorted(out, key=lambda p: -p.count("."))

    def _uses(self, stmts: list, ret) -> dict:
        uses: dict[int, list] = {}
        for i, st in enumerate(stmts):
            for v in _refs(st.expr):
                uses.setdefault(id(v), []).append(i)
        if ret is not None:
            for v in _refs(ret):
                uses.setdefault(id(v), []).append(len(stmts))
        return uses

    def _chain(self, stmts: list, ret, path: str, first_arg=None):
        """The statements applying the children of container `path` as a chain, or None."""
        m = self.mods[path]
        if not self.list_like(m) or m._parameters or m._buffers:
            return None
        n = len(m._modules)
        kids = [f"{path}.{i}" if path else str(i) for i in range(n)]
        picked = []
        for k in kids:
            touching = [j for j, st in enumerate(stmts)
                        if any(u == k or u.startswith(k + ".") for u in st.mods)]
            if len(touching) != 1 or stmts[touching[0]].simple != k:
                return None
            picked.append(touching[0])
        uses = self._uses(stmts, ret)
        for a, b in zip(picked, picked[1:]):
            out = stmts[a].targets[0]
            arg = _refs(stmts[b].expr)
            if len(arg) != 1 or arg[0] is not out or uses.get(id(out)) != [b]:
                return None
        if first_arg is not None and _refs(stmts[picked[0]].expr) != [first_arg]:
            return None
        return picked

    def _collapse_chains(self, s: _Scope) -> None:
        for p in self._subtree_paths(s):
            picked = self._chain(s.fwd, s.ret, p)
            if picked is None:
                continue
            first, last = s.fwd[picked[0]], s.fwd[picked[-1]]
            merged = Stmt(Call(Raw(self.access(p, s)), [Ref(_refs(first.expr)[0])], []),
                          last.targets, base=p.rpartition(".")[2], simple=p, mods={p})
            drop = set(picked[:-1])
            s.fwd = [merged if j == picked[-1] else st
                     for j, st in enumerate(s.fwd) if j not in drop]
            s.chains.add(p)
        # a block class on nn.Sequential whose forward is the chain of all its children
        if s.path and s.base == "nn.Sequential" and len(s.args) == 1 and isinstance(s.ret, Ref):
            picked = self._chain(s.fwd, s.ret, s.path, s.args[0])
            if picked is not None and len(picked) == len(s.fwd) and \
                    s.fwd[picked[-1]].targets[0] is s.ret.val:
                s.inherits_forward = True

    def _unpack(self, s: _Scope) -> None:
        """`a, b = torch.split(...)` for a tuple only ever indexed by constants."""
        uses: dict[int, list] = {}
        for j, st in enumerate(s.fwd):
            for v in _refs(st.expr):
                uses.setdefault(id(v), []).append(j)
        for v in _refs(s.ret) if s.ret is not None else []:
            uses.setdefault(id(v), []).append(-1)
        drop = set()
        for st in s.fwd:
            if not st.arity:
                continue
            t = st.targets[0]
            idx = {}
            for j in uses.get(id(t), []):
                e = s.fwd[j].expr if j >= 0 else None
                if not (isinstance(e, Index) and isinstance(e.base, Ref) and e.base.val is t
                        and isinstance(e.key, Lit) and type(e.key.value) is int
                        and -st.arity <= e.key.value < st.arity):
                    break
                k = e.key.value % st.arity
                if k in idx:
                    break
                idx[k] = j
            else:
                if not idx:
                    continue
                targets = []
                for k in range(st.arity):
                    if k in idx:
                        targets.append(s.fwd[idx[k]].targets[0])
                    else:
                        targets.append(_Val("stmt", name="_"))
                st.targets = targets
                st.arity = 0
                drop |= set(idx.values())
        if drop:
            s.fwd = [st for j, st in enumerate(s.fwd) if j not in drop]

    def _name(self, s: _Scope, ins: list) -> None:
        """Variable names: a statement reuses the name of an operand it consumes last
        (`x = self.conv1(x)`), otherwise takes a fresh one ("out", then the node's name)."""
        if s.path:
            names = ["x", "y", "z"][:len(s.args)] if len(s.args) <= 3 else \
                [f"x{i}" for i in range(len(s.args))]
        else:
            names = []
            for i in ins:
                base = _clean(i, "x")
                clash = base in _RESERVED or base in names
                names.append(f"{base}_{len(names)}" if clash else base)
        uses = self._uses(s.fwd, s.ret)
        last = {k: max(v) for k, v in uses.items()}
        holder: dict[str, _Val] = {}

        def free(name: str, i: int) -> bool:
            v = holder.get(name)
            return v is None or last.get(id(v), -1) <= i

        def fresh(bases: list[str], i: int) -> str:
            for b in bases:
                b = _clean(b, "out")
                if b in _RESERVED:
                    b = f"{b}_"
                if free(b, i):
                    return b
            b = _clean(bases[-1], "out")
            k = 1
            while not free(f"{b}_{k}", i) or f"{b}_{k}" in _RESERVED:
                k += 1
            return f"{b}_{k}"

        for v, name in zip(s.args, names):
            v.name = name
            holder[name] = v
        for i, st in enumerate(s.fwd):
            ops = [v for v in _refs(st.expr) if v.kind != "attr"]
            dying = [v for v in ops if last.get(id(v)) == i]
            if len(st.targets) == 1 and dying:
                st.targets[0].name = dying[0].name
                holder[dying[0].name] = st.targets[0]
                continue
            for k, t in enumerate(st.targets):
                if t.name == "_":
                    continue
                t.name = fresh(["out", st.base] if len(st.targets) == 1 else [f"{st.base}_{k}"], i)
                holder[t.name] = t
            # a multi-target statement's names must differ from each other
            if len(st.targets) > 1:
                seen = set()
                for t in (t for t in st.targets if t.name != "_"):
                    while t.name in seen:
                        t.name += "_"
                    seen.add(t.name)
                    holder[t.name] = t
