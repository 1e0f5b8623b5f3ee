"""Initialisers a spec can name: `init "*.weight" = kaiming_normal(mode="fan_out")` rules and
`param gamma: [C] = trunc_normal(0.02)` values. Pure data here; applied in archdsl/lower/init.py."""
from __future__ import annotations

import math
from dataclasses import dataclass

FLOAT32_MAX = 3.4028234663852886e38
# torch.nn.init.calculate_gain's names: any other is refused here, not by torch at build time
NONLINEARITIES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


@dataclass(frozen=True)
class InitSpec:
    kind: str
    args: tuple = ()          # ((name, value), ...)

    def get(self, name: str, default=None):
        return dict(self.args).get(name, default)


def _spec(kind: str, **kwargs) -> InitSpec:
    return InitSpec(kind, tuple(sorted(kwargs.items())))


def f32(name: str, value) -> float:
    """A number the float32 tensors it fills can hold (torch refuses 1e308 at build time)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, not {value!r}")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large for a float") from None
    if math.isfinite(v) and abs(v) > FLOAT32_MAX:
        raise ValueError(f"{name} {v:g} does not fit a float32 tensor (at most {FLOAT32_MAX:.4g})")
    return v


def _check_mode(mode: str) -> None:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError("mode is 'fan_in' or 'fan_out'")


def _check_nonlinearity(nonlinearity: str) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity {nonlinearity!r} has no gain; one of {', '.join(NONLINEARITIES)}")



def _finite(name: str, value) -> float:
    """A bound torch's samplers take: finite (they refuse infinity at build time)."""
    v = f32(name, value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v

def zeros() -> InitSpec:
    return _spec("constant", value=0.0)


def ones() -> InitSpec:
    return _spec("constant", value=1.0)


def constant(value: float) -> InitSpec:
    return _spec("constant", value=f32("value", value))


def normal(std: float = 1.0, mean: float = 0.0) -> InitSpec:
    if f32("std", std) < 0:
        raise ValueError(f"std must not be negative, got {std}")
    return _spec("normal", std=float(std), mean=f32("mean", mean))


def trunc_normal(std: float = 0.02, a: float = -2.0, b: float = 2.0) -> InitSpec:
    """N(0, std²) truncated to [a, b] (absolute bounds, as timm's trunc_normal_)."""
    if f32("std", std) <= 0:
        raise ValueError(f"std must be positive, got {std}")
    if _finite("a", a) >= _finite("b", b):
        raise ValueError(f"the bounds need a < b, got a = {a}, b = {b}")
    return _spec("trunc_normal", std=float(std), a=float(a), b=float(b))


def uniform(a: float = 0.0, b: float = 1.0) -> InitSpec:
    if _finite("a", a) > _finite("b", b):
        raise ValueError(f"the bounds need a <= b, got a = {a}, b = {b}")
    return _spec("uniform", a=float(a), b=float(b))


def kaiming_normal(mode: str = "fan_in", nonlinearity: str = "relu", grouped: bool = False) -> InitSpec:
    """N(0, gain² / fan). grouped=true counts a grouped conv's fan-out per group, out / groups ·
    kh · kw (TensorFlow's and timm's EfficientNet / MobileNet / RegNet init: a depthwise 3x3 conv
    gets std sqrt(2 / 9)); torch counts out · kh · kw whatever the groups."""
    _check_mode(mode)
    _check_nonlinearity(nonlinearity)
    if grouped and mode != "fan_out":
        raise ValueError("grouped=true changes only the fan-out: use it with mode='fan_out'")
    return _spec("kaiming_normal", mode=mode, nonlinearity=nonlinearity, grouped=bool(grouped))


def kaiming_uniform(mode: str = "fan_in", nonlinearity: str = "leaky_relu", a: float = 0.0) -> InitSpec:
    _check_mode(mode)
    _check_nonlinearity(nonlinearity)
    return _spec("kaiming_uniform", mode=mode, nonlinearity=nonlinearity, a=f32("a", a))


def xavier_uniform(gain: float = 1.0) -> InitSpec:
    return _spec("xavier_uniform", gain=f32("gain", gain))


def xavier_normal(gain: float = 1.0) -> InitSpec:
    return _spec("xavier_normal", gain=f32("gain", gain))


def orthogonal(gain: float = 1.0) -> InitSpec:
    """A (semi-)orthogonal matrix of the tensor flattened to [dim 0, rest] (Saxe et al. 2014;
    torch's orthogonal_), times `gain`: BigGAN's init of every conv, linear and embedding."""
    return _spec("orthogonal", gain=f32("gain", gain))


INITIALISERS = {f.__name__: f for f in (zeros, ones, constant, normal, trunc_normal, uniform,
                                        kaiming_normal, kaiming_uniform, xavier_uniform, xavier_normal,
                                        orthogonal)}


@dataclass(frozen=True)
class InitRule:
    """Parameters and buffers under `prefix` whose relative key matches `pattern` (fnmatch)."""
    prefix: str
    pattern: str
    init: InitSpec
    span: object = None
