"""The deploy pass: a trained network → its inference-time form (structural re-parameterisation).

In eval mode a BatchNorm is an affine map per channel, and a sum of convolutions that read the
same input with aligned windows is one convolution. `deploy` uses both:

1. identities at inference go: `identity`, `dropout`, `drop_path` nodes;
2. every `dirac_conv` becomes a plain `conv` holding its effective weight diag(a)·δ + diag(b)·W_norm;
3. every BatchNorm whose input is a conv with no other consumer is folded into that conv
   (W ← W·γ/σ, b ← (b - μ)·γ/σ + β with σ = sqrt(var + eps)); the conv keeps its path and gains
   a bias;
4. every sum of branches (a tree of `add` nodes) whose leaves all read one input X — convs, a
   BatchNorm of X (RepVGG's identity branch) or X itself — becomes one conv: each kernel is
   zero-padded into the largest one at its aligned position (a 1x1 at the centre of a 3x3,
   a 3x1 / 1x3 in the middle column / row), an identity is a Dirac kernel (per group), the
   biases add. The fused conv sits at `<block>.reparam_conv`, where <block> is the common path of
   the branches (timm's name for RepVGG's deploy-form conv, so `stages.0.1.reparam_conv` as
   timm's `reparameterize()`); the branch convs, BNs and adds are gone.

Steps 3-4 repeat until nothing changes (a fused sum followed by a BN folds again).

The transform is planned on the IR (`deploy_graph`, no torch: its static costs are the deployed
network's), and `deploy` lowers the deployed IR with the ordinary lowering and fills its weights
from the trained module, so the result is a GraphModule like any other: straight-line code,
`arch_graph` attached. It is an eval-mode transform: outputs equal the trained module's in eval().
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from archdsl.ir.graph import Graph, Node
from archdsl.ops.base import pair
from archdsl.ops.conv import ConvAttrs, conv_padding

if TYPE_CHECKING:  # pragma: no cover
    import torch.fx

INFERENCE_IDENTITIES = ("identity", "dropout", "drop_path")


# ------------------------------------------------------------------------------------------------
# the plan (IR only)

@dataclass
class Term:
    """One branch of a fused sum: a conv at `path`, a BatchNorm of X at `path` (kind "bn"), or X
    itself (kind "ident"); placed at kernel offset `at` inside the fused kernel."""
    kind: str                      # "conv" | "bn" | "ident"
    path: str | None
    kernel: tuple[int, int]
    at: tuple[int, int]


@dataclass
class Step:
    """One weight computation, in order: ("dirac", path), ("fold", conv, bn) or
    ("merge", path, terms) (the fused conv's out channels, groups and kernel in `info`)."""
    kind: str
    path: str
    source: str | None = None
    terms: list[Term] = field(default_factory=list)
    info: dict = field(default_factory=dict)


class _Work:
    """A mutable copy of the IR: nodes by id in topological order, consumers on demand."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: dict[str, Node] = {n.id: dataclasses.replace(n, inputs=list(n.inputs))
                                       for n in graph.nodes()}
        self.order: list[str] = list(self.nodes)
        self.outputs = dict(graph.outputs)

    def users(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in self.order}
        for i in self.order:
            for src in self.nodes[i].inputs:
                out[src].append(i)
        return out

    def shape(self, node_id: str):
        return self.nodes[node_id].shape

    def redirect(self, old: str, new: str) -> None:
        """Every use of `old` (as an input or an output) becomes a use of `new`."""
        for i in self.order:
            n = self.nodes[i]
            if old in n.inputs:
                n.inputs = [new if x == old else x for x in n.inputs]
        self.outputs = {k: (new if v == old else v) for k, v in self.outputs.items()}

    def remove(self, node_id: str) -> None:
        del self.nodes[node_id]
        self.order.remove(node_id)

    def is_output(self, node_id: str) -> bool:
        return node_id in self.outputs.values()

    def to_graph(self) -> Graph:
        g = self.graph
        new = dataclasses.replace(g, g=nx.MultiDiGraph(), inputs=list(g.inputs),
                                  outputs=dict(self.outputs), blocks=dict(g.blocks),
                                  references=list(g.references))
        known = {f.name for f in dataclasses.fields(Graph)}
        for k, v in vars(g).items():   # attributes beyond the fields (a test's int_high) travel too
            if k not in known:
                setattr(new, k, v)
        for i in self.order:
            new.add(self.nodes[i])
        return new


def plan(graph: Graph) -> tuple[Graph, list[Step]]:
    """The deployed IR graph and the weight steps that turn trained weights into its weights."""
    w = _Work(graph)
    steps: list[Step] = []
    _drop_identities(w)
    _dirac_to_conv(w, steps)
    while _fold_bns(w, steps) | _merge_sums(w, steps):
        pass
    new = w.to_graph()
    if getattr(graph, "resize", None) is not None:
        new.resize = _deployed_resize(graph)
    return new, steps


def deploy_graph(graph: Graph) -> Graph:
    """The inference-time IR of `graph` (no torch): `cost(deploy_graph(g))` is the deployed
    network's params and FLOPs."""
    return plan(graph)[0]


def _deployed_resize(graph: Graph):
    """`resize` of a deployed graph: the deployed form of the network at another input size."""
    return lambda input_shape: deploy_graph(graph.resize(input_shape=input_shape))


def _drop_identities(w: _Work) -> None:
    for i in list(w.order):
        n = w.nodes[i]
        if n.op in INFERENCE_IDENTITIES and len(n.inputs) == 1:
            w.redirect(i, n.inputs[0])
            w.remove(i)


def _dirac_to_conv(w: _Work, steps: list[Step]) -> None:
    for i in w.order:
        n = w.nodes[i]
        if n.op == "dirac_conv":
            w.nodes[i] = dataclasses.replace(n, op="conv", attrs=n.attrs.conv())
            steps.append(Step("dirac", i))


def _fold_bns(w: _Work, steps: list[Step]) -> bool:
    changed = False
    users = w.users()
    for i in list(w.order):
        bn = w.nodes.get(i)
        if bn is None or bn.op != "batch_norm" or len(bn.shape) != 4:
            continue
        src = bn.inputs[0]
        conv = w.nodes[src]
        if conv.op != "conv" or users[src] != [i] or w.is_output(src):
            continue
        w.nodes[src] = dataclasses.replace(conv, attrs=conv.attrs.model_copy(update={"bias": True}))
        w.redirect(i, src)
        w.remove(i)
        users = w.users()
        steps.append(Step("fold", src, source=i))
        changed = True
    return changed


def _is_tensor_add(n: Node) -> bool:
    return n.op == "add" and len(n.inputs) == 2 and n.attrs.scalar is None


def _merge_sums(w: _Work, steps: list[Step]) -> bool:
    changed = False
    for i in list(w.order):
        root = w.nodes.get(i)
        if root is None or not _is_tensor_add(root) or len(root.shape) != 4:
            continue
        users = w.users()
        if _inner_add(w, i, users):
            continue  # its root handles it
        changed |= _merge_tree(w, i, users, steps)
    return changed


def _inner_add(w: _Work, node_id: str, users) -> bool:
    """An add whose only consumer is another add of the same sum."""
    return (_is_tensor_add(w.nodes[node_id]) and len(users[node_id]) == 1
            and _is_tensor_add(w.nodes[users[node_id][0]]) and not w.is_output(node_id))


def _merge_tree(w: _Work, i: str, users, steps: list[Step]) -> bool:
    """Fuse the sum rooted at add `i`; when its branches do not all fuse, try its sub-sums."""
    adds, leaves = _sum_tree(w, i, users)
    fused = _fuse(w, leaves, adds, users)
    if fused is None:
        return any(_merge_tree(w, src, users, steps) for src in w.nodes[i].inputs
                   if _inner_add(w, src, users))
    root = w.nodes[i]
    attrs, terms, info = fused
    prefix = _common_prefix([t.path for t in terms if t.path is not None])
    path = _free_path(w, f"{prefix}.reparam_conv" if prefix else "reparam_conv")
    node = Node(path, "conv", attrs, [info.pop("input")], root.shape, root.span, root.block,
                root.block_type, root.dtype)
    w.nodes[path] = node
    w.order.insert(w.order.index(i), path)
    w.redirect(i, path)
    for gone in adds + [t.path for t in terms if t.path is not None]:
        w.remove(gone)
    steps.append(Step("merge", path, terms=terms, info=info))
    return True


def _sum_tree(w: _Work, root: str, users) -> tuple[list[str], list[str]]:
    """The add nodes of the tree under `root` (inner adds have one consumer) and its leaves."""
    adds, leaves = [root], []

    def walk(node_id: str):
        for src in w.nodes[node_id].inputs:
            if _inner_add(w, src, users):
                adds.append(src)
                walk(src)
            else:
                leaves.append(src)
    walk(root)
    return adds, leaves


def _fuse(w: _Work, leaves: list[str], adds: list[str], users):
    """The fused conv's attrs and the branch terms, or None when the branches do not fuse."""
    out_shape = w.shape(adds[0])
    branches = []   # (kind, path, input, k, s, p, d, groups)
    for leaf in leaves:
        n = w.nodes[leaf]
        private = (len(users[leaf]) == 1 and users[leaf][0] in adds and leaves.count(leaf) == 1
                   and not w.is_output(leaf))
        if n.op == "conv" and private:
            a: ConvAttrs = n.attrs
            branches.append(("conv", leaf, n.inputs[0], pair(a.kernel), pair(a.stride),
                             conv_padding(a), pair(a.dilation), a.groups))
        elif n.op == "batch_norm" and private and len(n.shape) == 4:
            branches.append(("bn", leaf, n.inputs[0], (1, 1), (1, 1), (0, 0), (1, 1), None))
        else:
            branches.append(("ident", None, leaf, (1, 1), (1, 1), (0, 0), (1, 1), None))
    if len(branches) < 2 or not any(b[0] == "conv" for b in branches):
        return None
    x = branches[0][2]
    if any(b[2] != x for b in branches):
        return None
    in_shape = w.shape(x)
    if len(in_shape) != 4 or isinstance(in_shape[0], tuple):
        return None
    for kind, path, *_ in branches:
        if w.shape(path if kind != "ident" else x) != out_shape:
            return None   # a broadcasting sum is not one conv
    strides = {b[4] for b in branches}
    groups = {b[7] for b in branches if b[7] is not None}
    if len(strides) != 1 or len(groups) != 1:
        return None
    stride, g = strides.pop(), groups.pop()
    cout, cin = out_shape[1], in_shape[1]
    if any(b[0] != "conv" for b in branches) and cout != cin:
        return None
    kernel, pad, dil, ats = [0, 0], [0, 0], [1, 1], [[0, 0] for _ in branches]
    for dim in range(2):
        ks = [b[3][dim] for b in branches]
        big = max(ks)
        dils = {b[6][dim] for b, k in zip(branches, ks) if k > 1}
        if len(dils) > 1:
            return None
        d = dils.pop() if dils else 1
        ref = next(b for b, k in zip(branches, ks) if k == big)
        p = ref[5][dim]
        for j, b in enumerate(branches):
            diff = p - b[5][dim]
            if diff < 0 or diff % d or diff // d + b[3][dim] > big:
                return None
            ats[j][dim] = diff // d
        kernel[dim], pad[dim], dil[dim] = big, p, d
    has_bias = any(b[0] == "bn" or (b[0] == "conv" and w.nodes[b[1]].attrs.bias) for b in branches)
    attrs = ConvAttrs(out=cout, kernel=_one(kernel), stride=_one(list(stride)), pad=_one(pad),
                      dilation=_one(dil), groups=g, bias=has_bias)
    terms = [Term(b[0], b[1], b[3], tuple(at)) for b, at in zip(branches, ats)]
    return attrs, terms, {"input": x, "out": cout, "cin": cin, "groups": g, "kernel": tuple(kernel)}


def _one(v: list[int]):
    return v[0] if v[0] == v[1] else tuple(v)


def _common_prefix(paths: list[str]) -> str:
    parents = [p.split(".")[:-1] for p in paths]
    if not parents:
        return ""
    out = []
    for parts in zip(*parents):
        if len(set(parts)) != 1:
            break
        out.append(parts[0])
    return ".".join(out)


def _free_path(w: _Work, path: str) -> str:
    taken = set(w.nodes) | {p for n in w.nodes for p in _prefixes(n)}
    if path not in taken:
        return path
    k = 1
    while f"{path}_{k}" in taken:
        k += 1
    return f"{path}_{k}"


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


# ------------------------------------------------------------------------------------------------
# the weights (torch)

def deploy(model: "torch.fx.GraphModule") -> "torch.fx.GraphModule":
    """The inference-time form of an archdsl-compiled module (`load_spec(...)`): a new
    GraphModule, in eval mode, on the model's device and dtype, whose outputs equal the model's
    outputs in eval mode. The model itself is not changed."""
    import torch

    from archdsl.lower.build import build

    graph = getattr(model, "arch_graph", None)
    if graph is None:
        raise TypeError("deploy needs a module compiled by archdsl (load_spec): it reads "
                        "model.arch_graph")
    new_graph, steps = plan(graph)
    fused = _run_steps(model, steps)
    old = model.state_dict()
    ref = next((t for t in old.values() if t.is_floating_point()), None)
    with torch.random.fork_rng(devices=[]):
        new = build(new_graph, seed=0)
    state = {}
    for key, tensor in new.state_dict().items():
        owner, leaf = key.rsplit(".", 1) if "." in key else ("", key)
        if owner in fused and leaf in fused[owner]:
            state[key] = fused[owner][leaf]
        else:
            state[key] = old[key]
    if ref is not None:
        new = new.to(dtype=ref.dtype)
    new.load_state_dict(state, strict=True)
    if ref is not None:
        new = new.to(device=ref.device)
    new.arch_graph = new_graph
    return new.eval()


def _run_steps(model, steps: list[Step]) -> dict[str, dict[str, Any]]:
    """Execute the weight steps in float64 on the CPU; → path → {"weight": W[, "bias": b]}."""
    import torch

    store: dict[str, dict[str, Any]] = {}

    def t64(t):
        return t.detach().to(device="cpu", dtype=torch.float64)

    def conv_wb(path: str):
        if path in store:
            return store[path]["weight"], store[path].get("bias")
        m = model.get_submodule(path)
        return t64(m.weight), (t64(m.bias) if m.bias is not None else None)

    def bn_scale_shift(path: str):
        bn = model.get_submodule(path)
        std = (t64(bn.running_var) + bn.eps).sqrt()
        gamma = t64(bn.weight) if bn.weight is not None else torch.ones_like(std)
        beta = t64(bn.bias) if bn.bias is not None else torch.zeros_like(std)
        scale = gamma / std
        return scale, beta - t64(bn.running_mean) * scale

    with torch.no_grad():
        for st in steps:
            if st.kind == "dirac":
                m = model.get_submodule(st.path)
                w = t64(m.weight)
                wn = torch.nn.functional.normalize(w.flatten(1), dim=1).view_as(w)
                weight = t64(m.alpha).view(-1, 1, 1, 1) * t64(m.delta) + t64(m.beta).view(-1, 1, 1, 1) * wn
                store[st.path] = {"weight": weight, "bias": t64(m.bias) if m.bias is not None else None}
            elif st.kind == "fold":
                weight, bias = conv_wb(st.path)
                scale, shift = bn_scale_shift(st.source)
                bias = shift if bias is None else bias * scale + shift
                store[st.path] = {"weight": weight * scale.view(-1, 1, 1, 1), "bias": bias}
            else:
                info = st.info
                kh, kw = info["kernel"]
                out, cpg = info["out"], info["cin"] // info["groups"]
                weight = torch.zeros(out, cpg, kh, kw, dtype=torch.float64)
                bias = torch.zeros(out, dtype=torch.float64)
                any_bias = False
                for t in st.terms:
                    (ah, aw), (th, tw) = t.at, t.kernel
                    if t.kind == "conv":
                        wt, bt = conv_wb(t.path)
                        weight[:, :, ah:ah + th, aw:aw + tw] += wt
                        if bt is not None:
                            bias += bt
                            any_bias = True
                        continue
                    scale = torch.ones(out, dtype=torch.float64)   # the identity, per group
                    if t.kind == "bn":
                        scale, shift = bn_scale_shift(t.path)
                        bias += shift
                        any_bias = True
                    weight[torch.arange(out), torch.arange(out) % cpg, ah, aw] += scale
                store[st.path] = {"weight": weight, "bias": bias if any_bias else None}
    return {p: {k: v for k, v in wb.items() if v is not None} for p, wb in store.items()}
