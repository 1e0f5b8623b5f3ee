"""Files → modules: imports against the spec's folder and the stdlib, the prelude, variants."""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from pathlib import Path

from archdsl.errors import ArchError, Span, did_you_mean, register_source
from archdsl.ops import REGISTRY
from archdsl.semantics.builtins import BUILTINS
from archdsl.semantics.values import BlockRef, Builtin, Env, ModuleEnv, Namespace, OpRef, Partial, describe
from archdsl.syntax import ast as A
from archdsl.syntax.cache import parse_cached
from archdsl.syntax.parser import parse

MAX_FILE_BYTES = 2_000_000


def stdlib_dir() -> Path:
    """The stdlib: beside the package in a source checkout, inside it when installed."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "stdlib", here / "_stdlib"):
        if (candidate / "prelude.arch").is_file():
            return candidate
    raise RuntimeError("archdsl's stdlib is missing from this installation")


def base_names() -> dict:
    names: dict = {name: OpRef(name, op) for name, op in REGISTRY.items()}
    names.update({name: Builtin(name, fn) for name, fn in BUILTINS.items()})
    from archdsl.semantics.topology import TOPOLOGY_BUILTINS
    names.update({name: Builtin(name, fn) for name, fn in TOPOLOGY_BUILTINS.items()})
    return names


@dataclass
class _Parsed:
    mtime: float
    ast: A.Module


_PARSE_CACHE: dict[str, _Parsed] = {}


def parse_file(path: Path) -> A.Module:
    key = str(path)
    stat = path.stat()
    cached = _PARSE_CACHE.get(key)
    if cached is not None and cached.mtime == stat.st_mtime:
        return cached.ast
    name = _display(path)
    if stat.st_size > MAX_FILE_BYTES:
        raise ArchError(f"{name} is larger than {MAX_FILE_BYTES} bytes", Span(name, 1, 1, 1, 1))
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(name, data, err) from None
    ast = parse_cached(text, name)
    _PARSE_CACHE[key] = _Parsed(stat.st_mtime, ast)
    return ast


def _not_utf8(name: str, data: bytes, err: UnicodeDecodeError) -> ArchError:
    """Point at the first byte that is not UTF-8, quoting its line with the bad bytes replaced."""
    before = data[:err.start]
    line = before.count(b"\n") + 1
    col = len(before[before.rfind(b"\n") + 1:].decode("utf-8", errors="replace")) + 1
    register_source(name, data.decode("utf-8", errors="replace"))
    return ArchError(f"{name} is not UTF-8 text", Span(name, line, col, line, col + 1),
                     found=f"byte 0x{data[err.start]:02x}", hint="save the file as UTF-8")


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


class Loader:
    """Loads modules once each; detects import cycles; never reads outside its search path."""

    def __init__(self, extra_paths: list[Path] = ()):
        self.stdlib = stdlib_dir()
        self.extra = [Path(p).resolve() for p in extra_paths]
        self.modules: dict[Path, ModuleEnv] = {}
        self.loading: list[tuple[Path, Span | None]] = []
        self.base = base_names()
        self.prelude: dict = dict(self.base)
        prelude_env = self._load(self.stdlib / "prelude.arch", "prelude", with_prelude=False)
        self.prelude.update({k: v for k, v in prelude_env.globals.items()})

    # ---- public
    def load_file(self, path: Path) -> ModuleEnv:
        path = Path(path).resolve()
        if not path.is_file():
            raise ArchError(f"no such spec file: {path}", hint="give a path to a .arch file or a "
                            "stdlib variant name (see `archdsl list`)")
        return self._load(path, path.stem, with_prelude=True)

    def load_text(self, text: str, folder: Path, name: str = "<source>") -> ModuleEnv:
        """A spec given as text; its imports resolve against `folder` (then the stdlib)."""
        path = Path(folder).resolve() / name
        env = ModuleEnv(name, str(path), parse(text, name))
        self._define(env, path, with_prelude=True)
        return env

    def resolve_module(self, dotted: list[str], importer: Path, span: Span) -> Path:
        rel = Path(*dotted).with_suffix(".arch")
        roots = [importer.parent, *self.extra, self.stdlib]
        outside = None
        for root in roots:
            candidate = (root / rel).resolve()
            if candidate.is_file():
                if candidate.is_relative_to(root.resolve()):
                    return candidate
                outside = outside or (root / rel)
        name = ".".join(dotted)
        if outside is not None:  # a symlink that leads out of the search path is never followed
            raise ArchError(f"module '{name}' ({outside}) leads outside the folders modules are "
                            f"loaded from", span,
                            hint="copy the file into the spec's folder rather than linking to it")
        known = sorted({".".join(p.relative_to(self.stdlib).with_suffix("").parts)
                        for p in self.stdlib.rglob("*.arch")})
        local = sorted({p.stem for p in importer.parent.glob("*.arch")} - {importer.stem})
        raise ArchError(f"no module '{name}'", span,
                        hint=did_you_mean(name, known + local) or
                        f"modules are looked up in {importer.parent} and the stdlib")

    # ---- internals
    def _load(self, path: Path, name: str, with_prelude: bool, span: Span | None = None) -> ModuleEnv:
        if path in self.modules:
            return self.modules[path]
        if any(p == path for p, _ in self.loading):
            cycle = " → ".join(p.stem for p, _ in self.loading) + f" → {path.stem}"
            raise ArchError(f"import cycle: {cycle}", span, hint="move the shared blocks into a "
                            "module that both import")
        self.loading.append((path, span))
        try:
            ast = parse_file(path)
            env = ModuleEnv(name, str(path), ast)
            self._define(env, path, with_prelude)
        finally:
            self.loading.pop()
        self.modules[path] = env
        return env

    def _define(self, env: ModuleEnv, path: Path, with_prelude: bool):
        prelude = self.prelude if with_prelude else self.base
        defined: dict[str, A.Node] = {}

        def bind(name: str, value, node: A.Node):
            if name in defined:
                raise ArchError(f"'{name}' is defined twice in {path.name}", node.span,
                                notes=[("first defined here", defined[name].span)])
            defined[name] = node
            env.globals[name] = value

        for item in env.ast.items:  # blocks first, so order of declaration never matters
            if isinstance(item, A.BlockDef):
                bind(item.name, BlockRef(item, env), item)
        for item in env.ast.items:
            if isinstance(item, A.Import):
                dep = self._load(self.resolve_module(item.module, path, item.module_span or item.span), ".".join(item.module),
                                 with_prelude, item.span)
                bind(item.alias or item.module[-1], Namespace(".".join(item.module), _exports(dep)), item)
            elif isinstance(item, A.FromImport):
                dep = self._load(self.resolve_module(item.module, path, item.module_span or item.span), ".".join(item.module),
                                 with_prelude, item.span)
                exports = _exports(dep)
                for n in item.names:
                    if n not in exports:
                        raise ArchError(f"module '{'.'.join(item.module)}' has no '{n}'", _name_span(item, n),
                                        hint=did_you_mean(n, exports))
                    bind(n, exports[n], item)
        from archdsl.semantics.elaborate import Elaborator
        from archdsl.semantics.checkpoint import check_rules
        env.prelude = prelude
        evaluator = Elaborator(env.name)
        scope = Env(env, None, prelude)
        for item in env.ast.items:
            if isinstance(item, A.Let):
                bind(item.name, evaluator.eval(item.value, scope), item)
            elif isinstance(item, A.Variant):
                value = evaluator.eval(item.value, scope)
                callee = value.callee if isinstance(value, Partial) else value
                if not isinstance(callee, BlockRef):
                    raise ArchError(f"variant '{item.name}' must be a network", item.value.span,
                                    expected="a network, or a network called with arguments",
                                    found=describe(value), hint=f"`variant {item.name} = Net(width=2)`")
                bind(item.name, value, item)
                env.variants[item.name] = item
            elif isinstance(item, A.Checkpoint):
                if item.source in env.checkpoints:
                    raise ArchError(f"two checkpoint blocks for '{item.source}' in {path.name}", item.span,
                                    notes=[("first declared here", env.checkpoints[item.source].span)])
                env.checkpoints[item.source] = item
        for item in env.checkpoints.values():  # after every `let`: rules may use any of them
            check_rules(item, env)
        for item in env.ast.items:
            if isinstance(item, A.BlockDef):
                _check_shadowing(item, {**prelude, **env.globals})


_DATA_TYPES = {"int", "float", "bool", "str", "list", "tuple"}


def _check_shadowing(block: A.BlockDef, visible: dict) -> None:
    """A data parameter (`drop_path: float`) named like an op or block that the body calls makes
    the call reach the number instead: refuse it where the parameter is declared."""
    called = _block_calls(block)
    for prm in block.params:
        if prm.type is None or prm.type.name not in _DATA_TYPES:
            continue
        if prm.name in called and prm.name in visible:
            what = describe(visible[prm.name])
            raise ArchError(f"parameter '{prm.name}' of {block.name} hides {what}, "
                            f"which the body calls", prm.span, found=f"{prm.name}: {prm.type.name}",
                            hint=f"rename the parameter (e.g. '{prm.name}_rate' or 'dpr')")


_CALLS: dict[int, tuple[weakref.ref, set[str]]] = {}


def _block_calls(block: A.BlockDef) -> set[str]:
    """`_called_names` of a block's body, remembered per parsed block (the parse cache hands the
    same AST to every load of a file, and every load checks every block of it)."""
    known = _CALLS.get(id(block))
    if known is None or known[0]() is not block:
        if len(_CALLS) > 4096:   # blocks of specs given as text are parsed anew each time
            _CALLS.clear()
        known = _CALLS[id(block)] = (weakref.ref(block), _called_names(block.body))
    return known[1]


def _called_names(node) -> set[str]:
    """Names the statements call: `f(...)` and bare chain stages (`-> relu`)."""
    out: set[str] = set()
    if isinstance(node, list | tuple):
        for item in node:
            out |= _called_names(item)
        return out
    if not isinstance(node, A.Node):
        return out
    if isinstance(node, A.Call) and isinstance(node.func, A.Name):
        out.add(node.func.id)
    if isinstance(node, A.Chain):
        out |= {s.value.id for s in node.stages if isinstance(s.value, A.Name)}
    for field in type(node).model_fields:
        out |= _called_names(getattr(node, field))
    return out


def _exports(env: ModuleEnv) -> dict:
    return dict(env.globals)


def _name_span(item: A.FromImport, name: str) -> Span:
    spans = dict(zip(item.names, item.name_spans))
    return spans.get(name, item.span)
