"""The after-step updates a topology may declare (`after enqueue(queue, ptr, k)`) and its
state initialisers, as data: what each takes and how its shapes are checked. Running them is
archdsl/topology/updates.py's."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

STATE_INITS = ("zeros", "ones", "normal", "normal_l2", "uniform", "uniform_bank")


@dataclass(frozen=True)
class UpdateSpec:
    n_states: int
    n_tensors: int
    usage: str
    options: tuple[str, ...] = ()
    check: Callable = field(default=lambda states, tensors, options: None)
    n_nets: int = 0           # networks taken by position (their name lands in options["net"])
    at_build: bool = False    # also applied once when the TopologyModule is built


def _check_enqueue(states, tensors, options):
    (queue, ptr), (keys,) = states, tensors
    if len(queue) != 2 or ptr != () or len(keys) != 2 or keys[1] != queue[0]:
        return f"queue must be [D, K], ptr a scalar and keys [N, D]; got {list(queue)}, {list(ptr)}, {list(keys)}"
    if queue[1] % keys[0]:
        return (f"the queue length K = {queue[1]} is not a multiple of the batch {keys[0]}: a partial "
                f"batch would wrap around the queue")
    return None


def _check_center(states, tensors, options):
    (center,), (out,) = states, tensors
    if len(center) != 2 or center[0] != 1 or len(out) != 2 or out[1] != center[1]:
        return f"center must be [1, K] and the teacher output [N, K]; got {list(center)}, {list(out)}"
    return None


def _check_bank(states, tensors, options):
    (bank,), (idx, feats) = states, tensors
    if len(bank) != 2 or len(idx) != 1 or tuple(feats) != (idx[0], bank[1]):
        return f"bank must be [N, D], indices [B] and features [B, D]; got {list(bank)}, {list(idx)}, {list(feats)}"
    return None


def _check_clamp(states, tensors, options):
    bounds = [options.get(k) for k in ("min", "max")]
    if all(b is None for b in bounds) or any(b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)))
                                             for b in bounds):
        return "clamp needs a number `min=`, `max=` or both"
    if None not in bounds and bounds[0] > bounds[1]:
        return f"clamp: min {bounds[0]} is above max {bounds[1]}"
    return None


def _check_same_shape(states, tensors, options):
    if tuple(states[0]) != tuple(tensors[0]):
        return f"state {list(states[0])} and tensor {list(tensors[0])} differ in shape"
    return None


ACTIONS: dict[str, UpdateSpec] = {
    "enqueue": UpdateSpec(2, 1, "enqueue(queue, ptr, keys): queue [D, K], ptr [] int64, keys [N, D]",
                          check=_check_enqueue),
    "center_update": UpdateSpec(1, 1, "center_update(center, teacher_out, momentum=0.9)",
                                ("momentum",), _check_center),
    "bank_update": UpdateSpec(1, 2, "bank_update(bank, indices, features, momentum=0.5)",
                              ("momentum",), _check_bank),
    # SwAV's prototypes: L2-normalised when built and after every step (the reference normalises
    # them at the start of every iteration; the two orders give the same weights at every forward)
    "l2_normalize_param": UpdateSpec(0, 0, 'l2_normalize_param(net, weight="prototypes.weight", dim=1)',
                                     ("weight", "dim"), n_nets=1, at_build=True),
    # CLIP (open_clip training/train.py): the stored logit_scale clamped to [0, ln 100] after every
    # optimizer step; a clamp in the forward would stop its gradient once it passed ln 100
    "clamp": UpdateSpec(1, 0, "clamp(state, min=0, max=4.605): the state (or topology parameter) clamped in place",
                        ("min", "max"), _check_clamp),
    # a value carried from one phase to the next (Meta Pseudo Labels): written as soon as another
    # phase starts — i.e. after this phase's optimizer step — or at after_step(), whichever is first
    "store": UpdateSpec(1, 1, "store(state, tensor): the state takes the tensor's value (same shape)",
                        check=_check_same_shape),
    # as store, but a later phase of the same round reads the tensor itself, autograd graph and all:
    # a GAN's G runs once per iteration, its output detached for the D-step and trained through
    # in the G-step (pix2pix_model.py, dcgan/main.py) — one dropout draw, one BN statistics update
    "carry": UpdateSpec(1, 1, "carry(state, tensor): a later phase of the round reads the tensor, "
                              "with its gradient path (same shape)", check=_check_same_shape),
}
