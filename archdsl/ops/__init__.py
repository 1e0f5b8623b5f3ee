"""The op library: importing this package registers every op family."""
from archdsl.ops import (activation, conv, elementwise, linear, norm, pool, regularization,
                         shuffle, tensor, reparam, loss, conv_special, tokens, spatial,
                         norm_gan, scaled, generative, sequence, attention, reduce)  # noqa: F401
from archdsl.ops.base import REGISTRY, Op, ShapeError

__all__ = ["REGISTRY", "Op", "ShapeError"]
