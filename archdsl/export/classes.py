"""Class generalisation: each scope's constructor and __init__, and one class for the instances
that differ only in constants (those become its arguments)."""
from __future__ import annotations


from torch import nn

from archdsl.errors import ArchError
from archdsl.export.ctor import _ctor
from archdsl.export.expr import (_CHANNELISH, _REQUIRED, _RESERVED, Call, ClassRef, Display, Expr,
                                 Lit, Raw, Repeat, Star, Stmt, _attrs, _clean, _ident, _lit_src,
                                 _str, _visit)
from archdsl.export.inits import _full
from archdsl.export.scopes import _Class, _Scope


class _Classes:
    """The writer's part that writes __init__s and merges instances into classes."""


    def module_expr(self, path: str, s: _Scope) -> Expr:
        """An expression constructing the module at `path` (inside scope `s`)."""
        prefix = _clean(path[len(s.path) + 1:] if s.path else path, "m")
        if path in self.scopes:
            c = self.scopes[path]
            vals = c.cls.values[path]
            return Call(ClassRef(c.cls), [], [(k, Lit(vals[k], k, prefix, 2), _REQUIRED)
                                              for k in c.cls.params])
        m = self.mods[path]
        if self.is_leaf(path):
            return _ctor(m, self.by_id.get(path), prefix, self.helpers)
        kind = self.kind(path)
        kids = [(k, self.module_expr(f"{path}.{k}", s)) for k in m._modules]
        if kind == "list":
            items = self._runs([e for _, e in kids], prefix)
            if path in s.chains:
                return Call(Raw("nn.Sequential"), items, [])
            if len(items) == 1 and isinstance(items[0], Star):
                return Call(Raw("nn.ModuleList"), [items[0].inner], [])
            return Call(Raw("nn.ModuleList"), [Display("[", items)], [])
        if kind == "dict":
            return Call(Raw("nn.ModuleDict"), [Display("{", kids)], [])
        self.need_holder = True
        params = [(k, self._param_expr(f"{path}.{k}", k)) for k in m._parameters]
        buffers = [(k, self._buffer_expr(f"{path}.{k}", k)) for k in m._buffers]
        kw = []
        if params:
            kw.append(("parameters", Display("{", params), _REQUIRED))
        if buffers:
            kw.append(("buffers", Display("{", buffers), _REQUIRED))
        return Call(Raw("_holder"), [Display("{", kids)], kw)

    @staticmethod
    def _runs(exprs: list, prefix: str) -> list:
        """The items of a numbered sequence, runs of identical modules written as
        `*[Block(...) for _ in range(n)]` (all of them from two on, a part from three on)."""
        keys = []
        for e in exprs:
            lits: list = []
            keys.append((_visit(e, lits), tuple(_lit_src(x.value) for x in lits)))
        out, i = [], 0
        while i < len(exprs):
            j = i
            while j + 1 < len(exprs) and keys[j + 1] == keys[i]:
                j += 1
            n = j - i + 1
            if n >= 3 or n == len(exprs) >= 2:
                out.append(Star(Repeat(exprs[i], Lit(n, "depth", prefix, 2))))
            else:
                out.extend(exprs[i:j + 1])
            i = j + 1
        return out

    def _param_expr(self, path: str, name: str) -> Expr:
        node = self.by_id.get(path)
        if node is None or node.kind != "param":
            raise ArchError(f"internal: no param node for the parameter '{path}'")
        value = _full(node.shape, node.attrs["init"], _clean(name, "p"))
        return Call(Raw("nn.Parameter"), [value], [])

    def _buffer_expr(self, path: str, name: str) -> Expr:
        node = self.by_id.get(path)
        if node is None or node.kind != "buffer":
            raise ArchError(f"internal: no buffer node for the buffer '{path}'")
        return _full(node.shape, node.attrs["init"], _clean(name, "b"))

    def _init(self, s: _Scope) -> None:
        m = self.mods[s.path]
        s.init, s.super_args = [], []
        for k in m._parameters:
            e = self._param_expr(f"{s.path}.{k}" if s.path else k, k)
            s.init.append(Stmt(e, target=f"self.{k}") if _ident(k) else
                          Stmt(Call(Raw("self.register_parameter"), [Raw(_str(k)), e], [])))
        for k in m._buffers:
            e = self._buffer_expr(f"{s.path}.{k}" if s.path else k, k)
            s.init.append(Stmt(Call(Raw("self.register_buffer"), [Raw(_str(k)), e], [])))
        kids = [(k, self.module_expr(f"{s.path}.{k}" if s.path else k, s)) for k in m._modules]
        if s.base == "nn.Sequential":
            s.super_args = self._runs([e for _, e in kids], "self")
            return
        for k, e in kids:
            s.init.append(Stmt(e, target=f"self.{k}") if _ident(k) else
                          Stmt(Call(Raw("self.add_module"), [Raw(_str(k)), e], [])))

    def _key(self, s: _Scope) -> tuple:
        lits: list = []
        key = (s.type, s.base, s.inherits_forward,
               tuple(_visit(a, lits) for a in s.super_args),
               tuple((st.target, _visit(st.expr, lits)) for st in s.init),
               tuple(v.name for v in s.args))
        n_init = len(lits)
        if not s.inherits_forward:
            key += (tuple((tuple(t.name for t in st.targets), _visit(st.expr, lits))
                          for st in s.fwd),
                    _visit(s.ret, lits) if s.ret is not None else None)
        return key, lits, n_init

    def classes(self) -> list[_Class]:
        by_height: dict[int, list[_Scope]] = {}
        for s in self._postorder(self.root_scope):
            by_height.setdefault(s.height, []).append(s)
        out: list[_Class] = []
        for h in sorted(by_height):
            groups: dict[tuple, _Class] = {}
            keyed = []
            for s in sorted(by_height[h], key=lambda s: s.first):
                self._init(s)
                key, lits, n_init = self._key(s)
                cls = groups.get(key)
                if cls is None:
                    cls = groups[key] = _Class("", s.type, [])
                    cls.n_init = n_init
                    out.append(cls)
                cls.instances.append(s)
                cls.lits.append(lits)
                s.cls = cls
                keyed.append(s)
            for cls in groups.values():
                self._generalise(cls)
        self._name_classes(out)
        return out

    def _io_dims(self, s: _Scope) -> tuple:
        """The candidate channel counts (dim 1 and the last dim) of a block's first input and
        first output."""
        def dim(ids):
            if not ids:
                return ()
            shape = self.graph.node(ids[0]).shape
            if not shape or isinstance(shape[0], tuple) or len(shape) < 2:
                return ()
            return (shape[1], shape[-1])
        return dim(s.inputs), dim(s.outputs)

    def _generalise(self, cls: _Class) -> None:
        """Constants equal in every instance stay literal; the others become arguments (one per
        distinct column of values). A channel count equal to the block's input (output) channels
        in every instance is `in_channels` (`out_channels`, or `channels` when both); another
        channel count is `mid_channels`; other arguments are named after their uses."""
        first = cls.lits[0]
        columns = [tuple(_lit_src(lits[j].value) for lits in cls.lits) for j in range(len(first))]
        groups: dict[tuple, list[int]] = {}
        for j, col in enumerate(columns):
            if len(set(col)) > 1:
                groups.setdefault(col, []).append(j)
        s0 = cls.instances[0]
        m = self.mods[s0.path]
        taken = set(_RESERVED) | set(m._modules) | set(m._parameters) | set(m._buffers) | {"_"}
        dims = [self._io_dims(s) for s in cls.instances]

        def cols(side: int) -> set:
            if not all(d[side] for d in dims):
                return set()
            return {tuple(_lit_src(d[side][k]) for d in dims) for k in (0, 1)}
        in_cols, out_cols = cols(0), cols(1)

        def options(col, js) -> list[str]:
            hints = [first[j].hint for j in js]
            channel = [h for h in hints if _CHANNELISH.search(h)]
            opts = []
            if channel:
                unit = "features" if any(h.endswith("features") for h in channel) and \
                    not any(h.endswith("channels") for h in channel) else "channels"
                if col in in_cols and col in out_cols:
                    opts.append(unit)
                elif col in in_cols:
                    opts.append(f"in_{unit}")
                elif col in out_cols:
                    opts.append(f"out_{unit}")
                else:
                    opts.append("hidden_features" if unit == "features" else "mid_channels")
            best = max(js, key=lambda j: (first[j].prio, -j))
            lit = first[best]
            return opts + [_clean(lit.hint, "arg"), _clean(f"{lit.prefix}_{lit.hint}", "arg")]

        ordered = sorted(groups.items(), key=lambda kv: kv[1][0])
        # the block's own channel counts claim their names first
        ordered.sort(key=lambda kv: kv[0] not in in_cols | out_cols)
        names: dict[tuple, str] = {}
        for col, js in ordered:
            stored = any(j >= cls.n_init for j in js)
            opts = options(col, js)
            name = next((o for o in opts if o not in taken and
                         not (stored and o in _attrs(nn.Sequential))), None)
            if name is None:
                base, k = opts[0], 2
                while f"{base}_{k}" in taken:
                    k += 1
                name = f"{base}_{k}"
            taken.add(name)
            names[col] = name
        for col, js in sorted(groups.items(), key=lambda kv: kv[1][0]):
            cls.params.append(names[col])
            if any(j >= cls.n_init for j in js):
                cls.stored.append(names[col])
        for j, col in enumerate(columns):
            cls.binding[id(first[j])] = ("p", names[col]) if col in names else ("c", first[j].value)
        for s, lits in zip(cls.instances, cls.lits):
            cls.values[s.path] = {}
            for col, name in names.items():
                j = groups[col][0]
                cls.values[s.path][name] = lits[j].value

    def _name_classes(self, classes: list[_Class]) -> None:
        used = set(self.helpers.objects) | {"_holder", self.root_scope.type} | _RESERVED
        count: dict[str, int] = {}
        for cls in sorted(classes, key=lambda c: c.instances[0].first):
            if cls.instances[0] is self.root_scope:
                cls.name = self.root_scope.type
                continue
            base = _clean(cls.type, "Block")
            if base[0].islower():
                base = base[0].upper() + base[1:]
            k = count.get(base, 0)
            while True:
                k += 1
                name = base if k == 1 else f"{base}_{k}"
                if name not in used:
                    break
            count[base] = k
            used.add(name)
            cls.name = name
