"""Elaborate each distinct block instance once.

A block instance is decided by its block, its arguments, the shapes (and dtypes and aliasing) of
its inputs, its nesting depth and, if it reads them, the global repeat counters when it starts:
nothing else of the caller is visible to a block body. An instance whose key was seen before is not run again: its
nodes are a `Repeat` of the first instance's (ir/graph.py: a path, the new inputs and the first
instance's nodes, not copied), its nested block instances and init rules are copied under the new
path, and the counters and the step count advance as the first instance advanced them. Expanded,
the graph is the one that elaborating every instance gives (a test checks it for every stdlib
family): deep stacks of identical blocks (a ResNet's stages) elaborate and cost in time
proportional to their distinct blocks, plus a few path names per repeated node.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from archdsl.ir.graph import BlockInstance, Body, Renamer
from archdsl.ir.inits import InitRule, InitSpec
from archdsl.semantics.values import BlockRef, Labeled, OpRef, Outputs, Partial, Tensor


@dataclass
class _Instance:
    body: Body                      # its path, inputs, nodes and repeats
    blocks: list[BlockInstance]     # its own entry first, then the nested instances
    inits: list[InitRule]
    result: Any                     # its Tensor or Outputs
    counters: tuple | None          # the global counters before it, if it used them (else None)
    counters_after: dict[str, int]
    steps: int                      # evaluation work it took


class _NotFrozen(Exception):
    """A value that cannot be part of a key (a tensor, an environment): the instance is not memoised."""


class InstanceMemo:
    def __init__(self):
        self.done: dict[tuple, _Instance] = {}
        self.hits = 0

    def key(self, elab, block: BlockRef, args: list, kwargs: dict, inputs) -> tuple | None:
        if inputs is None:
            return None
        try:
            frozen = (_freeze(tuple(args)), _freeze(tuple(sorted(kwargs.items()))))
        except _NotFrozen:
            return None
        ids = [t.node for t in inputs]
        aliasing = tuple(ids.index(i) for i in ids)
        shapes = tuple((t.shape, elab.graph.node(t.node).dtype) for t in inputs)
        return id(block.decl), id(block.module), frozen, shapes, aliasing, len(elab.stack)

    @staticmethod
    def mark(elab) -> tuple:
        return elab.graph.mark(), len(elab.graph.blocks), len(elab.graph.inits), elab.budget.steps, \
            tuple(sorted(elab.counters.items()))

    def record(self, key, mark, elab, prefix: str, inputs, result) -> None:
        n0, b0, i0, s0, counters = mark
        graph = elab.graph
        nodes, repeats = graph.since(n0)
        inside = prefix + "."
        ids = {t.node for t in inputs}
        read = [i for n in nodes for i in n.inputs] + [i for r in repeats for i in r.inputs]
        if any(not (i.startswith(inside) or i in ids) for i in read):
            return  # reads a tensor that is not an input: not a function of the key
        body = Body(prefix, tuple(t.node for t in inputs), nodes,
                    {r.prefix: replace(r, at=r.at - n0[0]) for r in repeats})
        blocks = list(islice(reversed(graph.blocks.values()), len(graph.blocks) - b0))[::-1]
        # reading a counter increments it: an instance that left them unchanged did not use them
        used = counters != tuple(sorted(elab.counters.items()))
        self.done[key] = _Instance(body, blocks, graph.inits[i0:],
                                   result, counters if used else None, dict(elab.counters), elab.budget.steps - s0)

    def replay(self, key, elab, prefix: str, inputs, span):
        """The result of instantiating at `prefix`, copied from the first instance, or None."""
        first = self.done.get(key)
        if first is None or (first.counters is not None and first.counters != tuple(sorted(elab.counters.items()))):
            return None
        self.hits += 1
        body = first.body
        rename = Renamer(body.prefix, prefix, dict(zip(body.inputs, (t.node for t in inputs))))
        elab.tick(span, first.steps)
        graph = elab.graph
        for k, b in enumerate(first.blocks):
            copy = BlockInstance(rename(b.path), b.type, span if k == 0 else b.span)
            graph.blocks[copy.path] = copy
            elab.used.add(copy.path)
        if body.size:
            elab.budget.check_nodes(len(graph) + body.size - 1, span)
            ids, groups = body.names()
            elab.used.update(prefix + i for i in ids)
            parts = prefix.split(".")
            elab.containers.update(prefix + g for g in groups)
            elab.containers.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
            graph.add_repeat(prefix, body, (t.node for t in inputs))
        graph.inits.extend(replace(r, prefix=rename(r.prefix)) for r in first.inits)
        if first.counters is not None:
            elab.counters.clear()
            elab.counters.update(first.counters_after)
        if isinstance(first.result, Outputs):
            return Outputs(first.result.names, tuple(Tensor(rename(t.node), t.shape) for t in first.result.values))
        return Tensor(rename(first.result.node), first.result.shape)


def _freeze(v):
    """A hashable stand-in for an argument value, telling apart what `==` would not (1, 1.0, true)."""
    if isinstance(v, (bool, int, float, str, type(None))):
        return type(v).__name__, v
    if isinstance(v, (list, tuple)):
        return type(v).__name__, tuple(_freeze(x) for x in v)
    if isinstance(v, BlockRef):
        return "block", id(v.decl), id(v.module)
    if isinstance(v, OpRef):
        return "op", v.name
    if isinstance(v, Partial):
        return "partial", _freeze(v.callee), _freeze(tuple(v.args)), _freeze(tuple(v.kwargs))
    if isinstance(v, Labeled):
        return "labeled", v.label, _freeze(v.value)
    if isinstance(v, InitSpec):
        return "init", v
    raise _NotFrozen
