"""The op library: importing this package registers every op family."""
from archdsl.ops import (activation, conv, elementwise, linear, norm, pool,  # noqa: F401
                         regularization, shuffle, tensor)
from archdsl.ops.base import REGISTRY, Op, ShapeError

__all__ = ["REGISTRY", "Op", "ShapeError"]
