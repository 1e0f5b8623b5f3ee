"""Elaboration: bind arguments, run the block bodies, unroll repeats → an IR graph.

Shapes are inferred as each node is created, so shape variables (`C` in `in x: [B, C, H, W]`)
and conditions on them (`if Cin != planes * 4`) are known while the spec runs.

The Elaborator joins three concerns, one module each: semantics/evaluate.py (the expression
interpreter), semantics/statements.py (block instances and statements) and semantics/calls.py
(ops and blocks applied to tensors, node building, attribute checking).
"""
from __future__ import annotations

from archdsl.ir.graph import Graph
from archdsl.semantics.calls import Calls
from archdsl.semantics.evaluate import Evaluator
from archdsl.semantics.memo import InstanceMemo
from archdsl.semantics.statements import Frame, Statements


class Elaborator(Statements, Calls, Evaluator):
    REUSE_INSTANCES = True   # copy repeated block instances (semantics/memo.py) instead of re-running them

    def __init__(self, name: str, input_shapes: list[tuple[int, ...]] | None = None):
        super().__init__()
        from archdsl.ops import REGISTRY
        self.ops = REGISTRY
        self.graph = Graph(name=name)
        self.input_shapes = input_shapes
        self.counters: dict[str, int] = {}
        self.stack: list[Frame] = []
        self.used: set[str] = set()
        self.containers: set[str] = set()   # proper prefixes of node paths: modules that hold others
        self.memo: InstanceMemo | None = None   # networks reuse repeated block instances

    def nodes_made(self) -> int:
        return len(self.graph)
