"""Self-supervised losses of SwAV, InstDisc / CMC, InvaSpread and CPC. Each returns a scalar;
its function and formula live in archdsl/nn/ssl_losses.py.

flops: the matmuls FlopCounterMode counts in each implementation (stated per op);
other_flops: the elementwise work, a few operations per element touched (stated per op).
"""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, register


def _losses():
    from archdsl.nn import ssl_losses
    return ssl_losses


def _positive(name: str, **values) -> None:
    for key, v in values.items():
        if v <= 0:
            raise ShapeError(f"{name}: {key} must be positive, got {v}")


class SwavAttrs(Attrs):
    n_views: int
    n_assign: int = 2
    temperature: float = 0.1
    epsilon: float = 0.05
    iters: int = 3


@register
class SwavLoss(Op):
    """SwAV swapped prediction with Sinkhorn codes. inputs: scores [V·B, K] (V = n_views crops
    stacked, the n_assign crops that get codes first) → scalar.
    flops: 0 (no matmul). other_flops: per assigned crop B·K·(3 + 4·iters) (exp, scalings) +
    3·B·K per predicting crop; plus 3·V·B·K for the log-softmaxes."""
    name = "swav_loss"
    Attrs = SwavAttrs
    n_inputs = 1

    def infer(self, a, ins):
        s = ins[0]
        if len(s) != 2:
            raise ShapeError(f"swav_loss expects scores [V·B, K], got {list(s)}")
        if a.n_views < 2 or s[0] % a.n_views:
            raise ShapeError(f"swav_loss needs n_views ≥ 2 dividing the {s[0]} rows, got n_views={a.n_views}",
                             hint="stack the prototype scores of every crop along dim 0")
        if not 1 <= a.n_assign <= a.n_views:
            raise ShapeError(f"swav_loss: n_assign must be in [1, n_views], got {a.n_assign}")
        if a.iters < 0:
            raise ShapeError(f"swav_loss: iters must be ≥ 0, got {a.iters}")
        _positive(self.name, temperature=a.temperature, epsilon=a.epsilon)
        return ()

    def other_flops(self, a, ins, out):
        n, k = ins[0]
        b = n // a.n_views
        return a.n_assign * b * k * (3 + 4 * a.iters + 3 * (a.n_views - 1)) + 3 * n * k

    def emit(self, a, ins, fx, args):
        return fx.call(_losses().swav_loss, args[0], a.n_views, a.n_assign, a.temperature, a.epsilon, a.iters)


class NceAttrs(Attrs):
    negatives: int = 4096
    temperature: float = 0.07


@register
class NceBank(Op):
    """Memory-bank NCE (InstDisc, CMC). inputs: f [B, D], idx [B] (int64 slots), bank [N, D],
    z [] (the normaliser state), and optionally the slots to score [B, K + 1] (nce_draw's: CMC's
    two views share one draw) → scalar. flops: 2·B·(K + 1)·D (the bmm of B rows against K + 1
    bank slots each). other_flops: 8·B·(K + 1) (exp, scale, the NCE logs)."""
    name = "nce_bank"
    Attrs = NceAttrs
    positional = ("negatives", "temperature")
    n_inputs = None

    def infer(self, a, ins):
        if len(ins) not in (4, 5):
            raise ShapeError(f"nce_bank takes features, indices, bank, Z and optionally the drawn slots; "
                             f"got {len(ins)} tensors")
        f, idx, bank, z = ins[:4]
        if len(f) != 2 or tuple(idx) != (f[0],) or len(bank) != 2 or bank[1] != f[1] or tuple(z) != ():
            raise ShapeError(f"nce_bank expects features [B, D], indices [B], bank [N, D] and a scalar Z; "
                             f"got {list(f)}, {list(idx)}, {list(bank)}, {list(z)}")
        _positive(self.name, negatives=a.negatives, temperature=a.temperature)
        if len(ins) == 5 and tuple(ins[4]) != (f[0], a.negatives + 1):
            raise ShapeError(f"nce_bank: the drawn slots must be [B, negatives + 1] = "
                             f"{[f[0], a.negatives + 1]}, got {list(ins[4])}",
                             hint="draw them with nce_draw(index, n_images, negatives)")
        return ()

    def flops(self, a, ins, out):
        (b, d) = ins[0]
        return 2 * b * (a.negatives + 1) * d

    def other_flops(self, a, ins, out):
        return 8 * ins[0][0] * (a.negatives + 1)

    def emit(self, a, ins, fx, args):
        return fx.call(_losses().nce_bank, *args[:4], a.negatives, a.temperature, *args[4:])


class NceDrawAttrs(Attrs):
    n: int
    negatives: int = 4096


@register
class NceDraw(Op):
    """The slots memory-bank NCE scores against, drawn uniformly: inputs: idx [B] (int64, each
    sample's own slot, put first) → [B, negatives + 1] int64 slots among `n`. flops: 0;
    other_flops: 0 (a draw)."""
    name = "nce_draw"
    Attrs = NceDrawAttrs
    positional = ("n", "negatives")

    def infer(self, a, ins):
        if len(ins[0]) != 1:
            raise ShapeError(f"nce_draw expects indices [B], got {list(ins[0])}")
        _positive(self.name, n=a.n, negatives=a.negatives)
        return (ins[0][0], a.negatives + 1)

    def emit(self, a, ins, fx, args):
        return fx.call(_losses().nce_draw, args[0], a.n, a.negatives)


class SpreadAttrs(Attrs):
    temperature: float = 0.1


@register
class InvaSpread(Op):
    """InvaSpread's in-batch instance loss. inputs: x [2N, D] (N images' features, then their
    augmentations') → scalar. flops: 2·(2N)²·D (all similarities). other_flops: 2·(2N)·D
    (positives) + 8·(2N)² (exp, mask, probabilities, logs)."""
    name = "inva_spread"
    min_batch = 4   # 2N rows: N ≥ 2 images
    Attrs = SpreadAttrs
    positional = ("temperature",)
    n_inputs = 1

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 2 or x[0] < 2 or x[0] % 2:
            raise ShapeError(f"inva_spread expects [2N, D] (originals then augmentations), got {list(x)}")
        _positive(self.name, temperature=a.temperature)
        return ()

    def flops(self, a, ins, out):
        n2, d = ins[0]
        return 2 * n2 * n2 * d

    def other_flops(self, a, ins, out):
        n2, d = ins[0]
        return 2 * n2 * d + 8 * n2 * n2

    def emit(self, a, ins, fx, args):
        return fx.call(_losses().inva_spread, args[0], a.temperature)


class CpcAttrs(Attrs):
    steps: int = 12
    cdck2: bool = False


@register
class CpcNce(Op):
    """CPC InfoNCE over future latents. inputs: z [B, T, D] latents, pred [B, T, steps·D] (W_k c_t
    for k = 1..steps) → scalar; needs T > steps. flops: Σ_k 2·(T − k)·B²·D (one bmm per step).
    other_flops: Σ_k 4·(T − k)·B² (softmax cross-entropy). `cdck2=true`: the public CDCK2 code's
    form (one t per batch, normalised over the predictions): flops 2·steps·B²·D, other_flops
    4·steps·B²."""
    name = "cpc_nce"
    min_batch = 2
    Attrs = CpcAttrs
    positional = ("steps",)
    n_inputs = 2

    def infer(self, a, ins):
        z, p = ins
        if len(z) != 3 or len(p) != 3 or tuple(p[:2]) != tuple(z[:2]) or p[2] != a.steps * z[2]:
            raise ShapeError(f"cpc_nce expects z [B, T, D] and predictions [B, T, steps·D] "
                             f"(steps={a.steps}); got {list(z)} and {list(p)}")
        if not 1 <= a.steps < z[1]:
            raise ShapeError(f"cpc_nce: 1 ≤ steps < T needed, got steps={a.steps} and T={z[1]}")
        return ()

    @staticmethod
    def _positions(a, t: int) -> int:
        """The (t, k) pairs scored: every t < T − k, or one t per batch (cdck2)."""
        return a.steps if a.cdck2 else sum(t - k for k in range(1, a.steps + 1))

    def flops(self, a, ins, out):
        b, t, d = ins[0]
        return 2 * self._positions(a, t) * b * b * d

    def other_flops(self, a, ins, out):
        b, t, _ = ins[0]
        return 4 * self._positions(a, t) * b * b

    def emit(self, a, ins, fx, args):
        return fx.call(_losses().cpc_nce, args[0], args[1], a.steps, a.cdck2)
