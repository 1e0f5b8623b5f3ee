"""The AST: pydantic models, every node carrying the source span it came from."""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict

from archdsl.errors import Span


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, defer_build=True)
    span: Span


# ---- expressions ---------------------------------------------------------------------

class Expr(Node):
    paren: bool = False   # written in parentheses: the printer keeps them


class Name(Expr):
    id: str


class Const(Expr):
    value: Union[bool, int, float, str, None]
    text: str  # as written, so the printer keeps `1e-6` rather than `1e-06`


class TupleLit(Expr):
    items: list[Expr]


class Label(Node):
    """`conv1:` or a template `layer{i + 1}:`; parts alternate text and expressions."""
    parts: list[Union[str, Expr]]


class Stage(Node):
    label: Optional[Label] = None
    value: Expr


class ListLit(Expr):
    items: list[Stage]


class ListComp(Expr):
    item: Expr
    var: str
    iter: Expr
    cond: Optional[Expr] = None


class Arg(Node):
    name: Optional[str] = None
    value: Expr


class Call(Expr):
    func: Expr
    args: list[Arg]


class Index(Expr):
    value: Expr
    index: Expr


class Attr(Expr):
    value: Expr
    name: str


class BinOp(Expr):
    op: str
    left: Expr
    right: Expr


class Compare(Expr):
    first: Expr
    rest: list[tuple[str, Expr]]


class BoolOp(Expr):
    op: Literal["and", "or"]
    values: list[Expr]


class Unary(Expr):
    op: Literal["not", "-", "+"]
    operand: Expr


class Ternary(Expr):
    cond: Expr
    then: Expr
    orelse: Expr


class Chain(Expr):
    head: Expr
    stages: list[Stage]


class Repeat(Expr):
    count: Expr
    index: Optional[str] = None
    counter: Optional[str] = None
    body: Chain


# ---- statements -----------------------------------------------------------------------

class Stmt(Node):
    pass


class Dim(Node):
    name: Optional[str] = None     # a shape variable, bound from the input
    value: Optional[Expr] = None   # a literal or expression (or a default for a named dim)
    rest: bool = False             # `...`: any number of leading/middle dims


class InStmt(Stmt):
    name: str
    dims: list[Dim]
    dtype: str = "float32"          # `in labels: [B] as int64`
    dtype_span: Optional[Span] = None


class OutStmt(Stmt):
    name: Optional[str] = None
    value: Expr


class Assign(Stmt):
    name: str
    value: Expr


class Unpack(Stmt):
    """`a, b = x -> chunk(2)`: binds each part of a multi-output value (or list) to a name."""
    names: list[str]
    value: Expr


class TensorDecl(Stmt):
    """`param gamma: [C] = 1e-6` or `buffer index: [N]`."""
    kind: Literal["param", "buffer"]
    name: str
    shape: list[Expr]
    init: Optional[Expr] = None


class If(Stmt):
    branches: list[tuple[Expr, list[Stmt]]]
    orelse: list[Stmt] = []


class For(Stmt):
    var: str
    iter: Expr
    body: list[Stmt]


class AssertStmt(Stmt):
    """`assert cond, "message"`: a spec's own check of its arguments."""
    cond: Expr
    message: Optional[Expr] = None


class InitStmt(Stmt):
    """`init "conv*.weight" = kaiming_normal(mode="fan_out")`: how matching parameters and
    buffers under this block start (later rules win)."""
    pattern: str
    value: Expr


class NetStmt(Stmt):
    """`net query = encoder(num_classes=128)` — a network instance of a topology."""
    name: str
    value: Expr


class StateStmt(Stmt):
    """`state queue: [128, 65536] = "normal_l2"` — a buffer a topology updates between steps."""
    name: str
    shape: list[Expr]
    init: Optional[Expr] = None
    dtype: str = "float32"


class PhaseStmt(Stmt):
    """`phase train(update=[query]) { … loss = … }` — one optimisation step's graph."""
    name: str
    args: list["Arg"] = []
    body: list[Stmt]


class LogStmt(Stmt):
    name: str
    value: Expr


class AfterStmt(Stmt):
    """`after enqueue(queue, k)` — an update run by `after_step()`, outside autograd."""
    call: Expr


# ---- declarations -----------------------------------------------------------------------

class TypeExpr(Node):
    name: str
    args: list["TypeExpr"] = []
    optional: bool = False
    choices: list[str] = []   # name "str" with choices: one of these strings


class Param(Node):
    name: str
    type: Optional[TypeExpr] = None
    default: Optional[Expr] = None


class Import(Node):
    module: list[str]
    alias: Optional[str] = None
    module_span: Optional[Span] = None


class FromImport(Node):
    module: list[str]
    names: list[str]
    module_span: Optional[Span] = None
    name_spans: list[Span] = []


class BlockDef(Node):
    kind: Literal["block", "network", "topology"]
    name: str
    params: list[Param]
    body: list[Stmt]


class Variant(Node):
    name: str
    value: Expr
    references: list[str] = []


class Let(Node):
    name: str
    value: Expr


class KeyRule(Node):
    """One rename of a `checkpoint` block: a source key pattern whose `{name}` placeholders match one
    key component each (digits bind ints), a target template of `{expr}` parts, an optional reshape
    and condition."""
    source: str
    target: Optional[Label]          # none: the key is dropped
    reshape: Optional[list[Expr]] = None
    cond: Optional[Expr] = None


class Checkpoint(Node):
    source: str
    rules: list[KeyRule] = []


class Comment(BaseModel):
    line: int
    col: int
    text: str


class Module(Node):
    items: list[Union[Import, FromImport, BlockDef, Variant, Let, Checkpoint]]
    comments: list[Comment] = []
