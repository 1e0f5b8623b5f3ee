"""archdsl's own module classes and functions that the written file needs, copied into it with
what they use."""
from __future__ import annotations

import inspect
import sys
import textwrap
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.errors import ArchError
from archdsl.export.expr import _lit_src
from archdsl.ir.graph import Graph, Node


class _Helpers:
    """Functions and classes of archdsl that the written file needs, copied with what they use
    (other archdsl functions and classes, `math`, constants) in dependency order."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.names: dict[int, str] = {}          # id(object) → its name in the file
        self.objects: dict[str, Any] = {}        # name in the file → object (or a source line)
        self.blocks: list[str] = []              # source snippets, in order
        self.imports: set[str] = set()
        self._active: set[int] = set()

    def shapes(self, node: Node):
        return self.graph.input_shapes(node)

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def class_name(self, T: type, where: str) -> str:
        if getattr(nn, T.__name__, None) is T:
            return f"nn.{T.__name__}"
        if T.__module__.startswith("archdsl."):
            return self.add(T)
        if T.__module__.startswith("torch."):
            obj = torch
            for part in T.__module__.split(".")[1:] + T.__qualname__.split("."):
                obj = getattr(obj, part, None)
            if obj is T:
                return f"{T.__module__}.{T.__qualname__}"
        raise ArchError(f"cannot write the module {T.__module__}.{T.__qualname__} at '{where}' as "
                        f"source", hint="the written file imports only torch")

    def function(self, fn) -> str | None:
        if getattr(fn, "__module__", "").startswith("archdsl.") and \
                (inspect.isfunction(fn) or inspect.isclass(fn)):
            return self.add(fn)
        return None

    def _claim(self, name: str, obj) -> None:
        have = self.objects.get(name)
        if have is not None and have is not obj:
            raise ArchError(f"cannot write the source: two helpers are both called '{name}'",
                            hint="rename one of them in archdsl")
        self.objects[name] = obj

    def add(self, obj) -> str:
        key = id(obj)
        if key in self.names:
            return self.names[key]
        if key in self._active:  # a cycle (mutual recursion): the name is enough
            return obj.__name__
        self._active.add(key)
        try:
            source = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError) as err:
            raise ArchError(f"cannot copy {obj.__qualname__} into the source: {err}") from None
        module = sys.modules[obj.__module__]
        for name in _free_names(source):
            if name == obj.__name__ or name not in module.__dict__:
                continue
            self._dep(name, module.__dict__[name], obj)
        name = obj.__name__
        self._claim(name, obj)
        self.blocks.append(source.rstrip() + "\n")
        self.names[key] = name
        self._active.discard(key)
        return name

    def _dep(self, name: str, value, user) -> None:
        if value is torch or value is nn or value is F:
            if {"torch": torch, "nn": nn, "F": F}.get(name) is not value:
                self.imports.add(f"import {value.__name__} as {name}")
            return
        if inspect.ismodule(value):
            if value.__name__ in ("math", "operator", "functools", "itertools") or \
                    value.__name__.startswith("torch"):
                line = f"import {value.__name__}" if value.__name__ == name else \
                    f"import {value.__name__} as {name}"
                self.imports.add(line)
                return
        elif getattr(value, "__module__", "") and str(value.__module__).startswith("archdsl.") \
                and (inspect.isfunction(value) or inspect.isclass(value)):
            real = self.add(value)
            if real != name:
                self._claim(name, f"{name} = {real}")
                self.blocks.append(f"{name} = {real}\n")
            return
        elif isinstance(value, (bool, int, float, str, tuple, type(None))):
            try:
                text = f"{name} = {_lit_src(value)}\n"
            except ArchError:
                text = None
            if text:
                self._claim(name, text)
                if text not in self.blocks:
                    self.blocks.append(text)
                return
        elif str(getattr(value, "__module__", "") or "").startswith("torch") and \
                hasattr(value, "__qualname__"):
            self.imports.add(f"from {value.__module__} import {value.__qualname__}" +
                             (f" as {name}" if name != value.__qualname__ else ""))
            return
        raise ArchError(f"cannot copy {user.__qualname__} into the written source: it uses "
                        f"'{name}' ({type(value).__name__})",
                        hint="helpers copied into the source may use torch, math, constants and "
                             "other archdsl helpers")


def _free_names(source: str) -> list[str]:
    """Names the code loads (annotations left out: the file has `from __future__ import
    annotations`)."""
    import ast

    seen: dict[str, None] = {}

    class Visitor(ast.NodeVisitor):
        def visit_Name(self, node):
            if isinstance(node.ctx, ast.Load):
                seen.setdefault(node.id)

        def visit_arg(self, node):
            pass  # its annotation

        def visit_AnnAssign(self, node):
            if node.value is not None:
                self.visit(node.value)

        def _function(self, node):
            for d in node.decorator_list:
                self.visit(d)
            for d in (*node.args.defaults, *node.args.kw_defaults):
                if d is not None:
                    self.visit(d)
            for stmt in node.body:
                self.visit(stmt)

        visit_FunctionDef = visit_AsyncFunctionDef = _function

    Visitor().visit(ast.parse(source))
    return list(seen)
