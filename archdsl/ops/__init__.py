"""The op library: importing this package registers every op family."""
from archdsl.ops import (activation, conv, elementwise, linear, norm, pool, regularization,
                         shuffle, tensor, reparam, loss, conv_special, tokens, spatial,
                         norm_gan, scaled, generative, sequence, attention, reduce)  # noqa: F401
from archdsl.ops import augment  # noqa: F401,E402
from archdsl.ops import text  # noqa: F401,E402
from archdsl.ops import history_pool  # noqa: F401,E402
from archdsl.ops import style_mix  # noqa: F401,E402
from archdsl.ops import ssl_losses  # noqa: F401,E402
from archdsl.ops import clip_text  # noqa: F401,E402
from archdsl.ops import mim  # noqa: F401,E402
from archdsl.ops import mask_partition  # noqa: F401,E402
from archdsl.ops import detection  # noqa: F401,E402
from archdsl.ops import ham  # noqa: F401,E402
from archdsl.ops import biggan  # noqa: F401,E402
from archdsl.ops import vq_ema  # noqa: F401,E402
from archdsl.ops import views  # noqa: F401,E402
from archdsl.ops.base import REGISTRY, Op, ShapeError

__all__ = ["REGISTRY", "Op", "ShapeError"]
