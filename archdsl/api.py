"""The Python API: load_spec, load_graph, check_spec, catalog. The CLI is a thin shell over it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Mapping

from archdsl.errors import ArchError
from archdsl.ir.cost import CostReport, cost
from archdsl.ir.graph import Graph
from archdsl.ir.topology import SpecRef, TopologyIR
from archdsl.semantics.elaborate import Elaborator
from archdsl.semantics.signature import Signature, signature
from archdsl.semantics.topology import TopologyElaborator
from archdsl.semantics.catalog import (CatalogEntry, VariantInfo, block_of, catalog, entry,  # noqa: F401
                                      is_path, open_module, open_variant, resolve, variant_index)
from archdsl.semantics.loader import Loader, stdlib_dir
from archdsl.semantics.values import Env, ModuleEnv, Partial
from archdsl.syntax.parser import parse_expr

Shape = tuple[int, ...]


def load_graph(spec: str | Path | None = None, variant: str | None = None, *,
               input_shape: Shape | list[Shape] | None = None, source: str | None = None,
               **overrides: Any) -> Graph:
    """Parse, resolve and elaborate a spec into a typed IR graph (no torch involved)."""
    return _network(_resolve(spec, variant, source, overrides), spec, variant, input_shape, source,
                    overrides)


def _network(resolved, spec, variant, input_shape, source, overrides: dict) -> Graph:
    """load_graph's graph from what `_resolve` gave."""
    module, callee, var_name, refs, values = resolved
    if _is_topology(callee):
        raise ArchError(f"'{var_name or block_of(callee).name}' is a topology, not a network",
                        hint="build it with load_spec (a TopologyModule) or inspect load_topology")
    elab = Elaborator(var_name or callee.name, _input_shapes(input_shape))
    graph = elab.network(callee, values, None)
    graph.variant, graph.references = var_name, refs
    graph.spec_modules = _checkpoint_modules(module, callee)
    # the same network at another input size (exports check which sizes may vary with it)
    graph.resize = partial(load_graph, spec, variant, source=source, **overrides)
    return graph


def load_weights(model, state_dict, source: str | None = None):
    """Load a state_dict saved by another implementation into a network or topology built by
    `load_spec`, strictly: `load_weights(model, sd, source="torchvision/convnext_tiny")` renames its
    keys by the `checkpoint "torchvision/convnext_tiny"` block, or else the `checkpoint "torchvision"`
    block, of the variant's spec file or else the network's. A state_dict already in the spec's
    naming (no `source`, the spec's `reference`, or a source without a block whose keys are exactly
    the model's) loads as is. A topology loads a whole training checkpoint (`load_weights(moco, sd,
    source="moco_v2")`): every network and twin weight, and the state it holds (a queue); state
    it does not hold (a GAN's image pool) and the step counter keep their values."""
    from archdsl.semantics.checkpoint import KeyMap, remap
    graph = getattr(model, "arch_graph", None) or getattr(model, "ir", None)
    if not hasattr(graph, "spec_modules"):
        raise ArchError("load_weights takes a network or topology built by archdsl.load_spec",
                        found=type(model).__name__)
    current = model.state_dict()
    family = (source or "").split("/", 1)[0]
    found = [(m, m.checkpoints.get(name)) for name in (source, family) for m in graph.spec_modules
             if source and m.checkpoints.get(name) is not None]
    module, decl = found[0] if found else (graph.spec_modules[-1], None)
    keep = _kept_by_topology(current, state_dict) if graph is getattr(model, "ir", None) else set()
    expected = {k: tuple(v.shape) for k, v in current.items() if k not in keep}
    if source is None or source in (graph.references or []) or (decl is None and set(state_dict) == set(expected)):
        # the spec's own naming (its reference's, or a same-named library's): loads as is
        renamed = _as_is(state_dict, expected, source)
    elif decl is None:
        known = sorted({c for m in graph.spec_modules for c in m.checkpoints}
                       | {r.split("/", 1)[0] for r in graph.references or []})
        files = " or ".join(Path(m.path).name for m in graph.spec_modules)
        raise ArchError(f"{files} declares no `checkpoint \"{family}\"` mapping",
                        hint=f"known sources: {', '.join(known)}" if known else
                        f"add a `checkpoint \"{family}\" {{ ... }}` block of key renames to the spec")
    else:
        keymap = KeyMap(decl, module)
        names = {keymap.rename(k)[0] for k in state_dict}
        if keep:  # the state the checkpoint holds, in the topology's names, is not kept
            keep -= names
            expected = {k: tuple(v.shape) for k, v in current.items() if k not in keep}
        derived = _derived_buffers(expected, names)
        renamed = remap(state_dict, keymap, {k: s for k, s in expected.items() if k not in derived})
        renamed = {**renamed, **_derive(model, derived, renamed, current)}
    model.load_state_dict({**renamed, **{k: current[k] for k in keep}}, strict=True)
    return model


_SN = ".parametrizations.weight"


def _derived_buffers(expected: dict, names: set) -> set[str]:
    """Buffers torch's modules keep that another implementation's checkpoint need not hold: a
    BatchNorm's num_batches_tracked, and a spectral norm's v where the file holds its u."""
    return {k for k in expected if k not in names and (
        k.endswith(".num_batches_tracked") or (k.endswith(f"{_SN}.0._v") and k[:-2] + "_u" in names))}


def _derive(model, derived: set[str], renamed: dict, current: dict) -> dict:
    """Values for _derived_buffers: num_batches_tracked keeps the model's; a spectral norm's (u, v)
    become one power iteration from the file's u — what an implementation that stores only u
    computes in every forward, eval included (BigGAN-PyTorch's layers.SN), and what torch's
    parametrization reads as they are in eval."""
    import torch
    import torch.nn.functional as F
    out = {}
    for key in derived:
        if key.endswith(".num_batches_tracked"):
            out[key] = current[key]
            continue
        path = key[:-len(f"{_SN}.0._v")]
        sn = model.get_submodule(path).parametrizations.weight[0]
        w = renamed[f"{path}{_SN}.original"].movedim(sn.dim, 0).flatten(1)
        with torch.no_grad():
            v = F.normalize(w.t().mv(renamed[f"{path}{_SN}.0._u"]), dim=0, eps=sn.eps)
            out[f"{path}{_SN}.0._u"] = F.normalize(w.mv(v), dim=0, eps=sn.eps)
        out[key] = v
    return out


def _kept_by_topology(current: dict, state_dict: Mapping) -> set[str]:
    """A topology's keys a checkpoint may leave out: its step counter and its state."""
    return {k for k in current if k == "steps" or (k.startswith("state.") and k not in state_dict)}


def _as_is(state_dict: Mapping, expected: dict, source: str | None) -> Mapping:
    from archdsl.semantics.checkpoint import check_fit
    check_fit(state_dict, {}, expected, f"the '{source}' checkpoint" if source else "the checkpoint",
              fix="give the checkpoint's source (source=...) if the spec declares its naming")
    return state_dict


# keys under which training scripts commonly save the model's state_dict (torch.save({...}))
_NESTED_STATE = ("state_dict", "model", "module")


def read_weights(path: str | Path) -> dict:
    """A state_dict from a file: safetensors, or a torch file opened with weights_only=True (a
    bare state_dict, or one under "state_dict", "model" or "module")."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise ArchError(f"no such weights file: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            data = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError:
        raise ArchError("reading safetensors needs the `safetensors` package",
                        hint="pip install 'archdsl[safetensors]'") from None
    except Exception as e:  # noqa: BLE001 - torch and safetensors raise many kinds
        raise ArchError(f"cannot read weights from {path}: {str(e).splitlines()[0]}",
                        hint="give a .safetensors file or a torch.save'd state_dict of tensors") from None
    if isinstance(data, dict) and not _all_tensors(data):
        data = next((data[k] for k in _NESTED_STATE if isinstance(data.get(k), dict)), data)
    if not isinstance(data, dict) or not _all_tensors(data):
        raise ArchError(f"{path} holds no state_dict (a mapping of names to tensors)",
                        found=type(data).__name__ if not isinstance(data, dict) else
                        "keys " + ", ".join(list(map(str, data))[:5]))
    return data


def _all_tensors(data: dict) -> bool:
    import torch
    return bool(data) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items())


def load_topology(spec: str | Path | None = None, variant: str | None = None, *,
                  input_shape: Shape | list[Shape] | None = None, source: str | None = None,
                  **overrides: Any) -> TopologyIR:
    """Elaborate a `topology` spec: its networks, twins, state and phase graphs (no torch)."""
    module, callee, var_name, refs, values = _resolve(spec, variant, source, overrides)
    if not _is_topology(callee):
        raise ArchError(f"'{var_name or block_of(callee).name}' is a network, not a topology",
                        hint="load it with load_graph or load_spec")
    ir = TopologyElaborator(var_name or block_of(callee).name, _input_shapes(input_shape)).topology(
        callee, values, None, var_name)
    ir.references = refs
    ir.spec_modules = _checkpoint_modules(module, callee)
    ir.spec = SpecRef(None if spec is None else str(spec), variant, source, dict(overrides))
    return ir


def reload_topology(ref: SpecRef, input_shape: list[Shape] | None = None, **overrides: Any) -> TopologyIR:
    """The topology `ref` names, elaborated again with some arguments changed (progressive growth)."""
    return load_topology(ref.spec, ref.variant, input_shape=input_shape, source=ref.source,
                         **{**ref.overrides, **overrides})


def spec_kind(spec: str | Path | None = None, variant: str | None = None, *,
              source: str | None = None) -> str:
    """'network' or 'topology': what the spec (its chosen variant) declares."""
    _, callee, _, _, _ = _resolve(spec, variant, source, {})
    return "topology" if _is_topology(callee) else "network"


def spec_args(spec: str | Path | None = None, variant: str | None = None, *,
              source: str | None = None) -> Signature:
    """The arguments of the spec's network or topology: type, default, the value its variant
    gives, and the docs written as comments (above the declaration, and beside or above each
    parameter). `spec` may also name a stdlib family (`convnext`, `ConvNeXt`)."""
    if source is None and variant is None and not is_path(spec) and spec not in variant_index():
        spec, variant = _family(spec)
    _, callee, var_name, _, _ = _resolve(spec, variant, source, {})
    return signature(callee, var_name if isinstance(callee, Partial) else None)


def _family(name: str) -> tuple[str, str | None]:
    """A stdlib family by its network's name or its file's (`ConvNeXt`, `convnext`): (path,
    network); anything else is left for open_module to report."""
    for e in catalog():
        if name.lower() in (e.name.lower(), Path(e.file).stem):
            return str(stdlib_dir() / e.file), e.name
    return name, None


def _resolve(spec, variant, source, overrides):
    r = resolve(spec, variant, source)
    values = {k: _override_value(v, r.module) for k, v in overrides.items()}
    return r.module, r.callee, r.variant, r.references, values


def _checkpoint_modules(module: ModuleEnv, callee) -> list[ModuleEnv]:
    """Where a built model's `checkpoint` mappings live: the variant's file, then the network's."""
    return list({id(m): m for m in (module, block_of(callee).module)}.values())


def _is_topology(callee) -> bool:
    return block_of(callee).decl.kind == "topology"


def check_spec(spec: str | Path | None = None, variant: str | None = None, *,
               input_shape: Shape | list[Shape] | None = None, dtype: str = "float32",
               source: str | None = None, deploy: bool = False, **overrides: Any) -> CostReport:
    """Per-node shapes and costs, and totals, computed from shapes alone."""
    graph = load_graph(spec, variant, input_shape=input_shape, source=source, **overrides)
    if deploy:
        from archdsl.lower.deploy import deploy_graph
        graph = deploy_graph(graph)
    return cost(graph, dtype)


def load_spec(spec: str | Path | None = None, variant: str | None = None, *,
              input_shape: Shape | list[Shape] | None = None, seed: int | None = None,
              source: str | None = None, deploy: bool = False, device=None,
              max_bytes: int | str | None = None, **overrides: Any):
    """Compile a spec (a path or a stdlib variant name) to a `torch.fx.GraphModule`, or a
    topology spec to a `TopologyModule`. `deploy=True` returns the inference form: BatchNorm
    folded into convs and re-parameterised branches (RepVGG, ACNet, DiracNet) fused, in eval mode.
    `device` (default: torch's default device) is where the weights are created; "meta" allocates
    none (shapes only, e.g. to inspect a model too large for memory). A module whose parameters
    and buffers need more than `max_bytes` (default: $ARCHDSL_MAX_BYTES, else the memory
    available) is refused with an ArchError before anything is allocated (not checked on "meta")."""
    from archdsl.lower.build import build
    from archdsl.lower.size_guard import check_fits
    device = _device(device)
    limit = 0 if device.type == "meta" else max_bytes   # 0: no limit
    resolved = _resolve(spec, variant, source, overrides)
    callee = resolved[1]
    if _is_topology(callee):
        import torch

        from archdsl.topology.module import TopologyModule
        ir = load_topology(spec, variant, input_shape=input_shape, source=source, **overrides)
        check_fits((d.first_graph for d in ir.nets.values() if d.graphs), limit)
        with torch.device(device):
            return TopologyModule(ir, seed=seed, reload=reload_topology)
    graph = _network(resolved, spec, variant, input_shape, source, overrides)
    check_fits([graph], limit)
    module = build(graph, seed=seed, device=device)
    module.arch_graph = graph
    if deploy:
        from archdsl.lower.deploy import deploy as to_deploy
        module = to_deploy(module)
    return module


def _device(device):
    """A torch.device, or an ArchError for a device that does not exist here."""
    import torch
    if device is None:
        return torch.get_default_device()
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ArchError(f"unknown device {device!r}", hint="e.g. 'cpu', 'cuda', 'cuda:1' or 'meta'",
                        found=str(e).splitlines()[0]) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArchError(f"device '{device}' is not available on this machine",
                        hint="build on 'cpu' (or 'meta' for shapes only)")
    return device


@dataclass
class VariantCheck:
    """One variant checked by `check_tree` (variant "" when its file does not load)."""
    file: str
    variant: str
    kind: str = "network"
    references: list[str] = field(default_factory=list)
    params: int = 0
    flops: int = 0
    macs: int = 0
    error: str | None = None


def check_tree(root: str | Path | None = None, jobs: int | None = None) -> list[VariantCheck]:
    """Load every .arch file under `root` (default: the stdlib) and elaborate every variant:
    shapes and costs from shapes alone, no weights allocated. Errors are collected, not raised.
    Files are checked in `jobs` processes (default: one per CPU)."""
    root = Path(root) if root is not None else stdlib_dir()
    files = sorted(root.rglob("*.arch")) if root.is_dir() else [root]
    by_size = sorted(files, key=lambda f: -f.stat().st_size)  # the largest first: balanced workers
    base = root if root.is_dir() else root.parent
    jobs = min(jobs or os.cpu_count() or 1, len(files))
    if jobs <= 1:
        loader = Loader()  # shared: each file is parsed and resolved once
        return [r for f in files for r in _check_file(f, base, loader)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        done = dict(zip(by_size, pool.map(_check_file, by_size, [base] * len(files))))
    return [r for f in files for r in done[f]]


def _check_file(path: Path, base: Path, loader: Loader | None = None) -> list[VariantCheck]:
    name = path.relative_to(base).as_posix()
    try:
        module = (loader or _worker_loader()).load_file(path)
    except ArchError as e:
        return [VariantCheck(name, "", error=e.render())]
    return [_check_variant(module, name, variant) for variant in module.variants]


@lru_cache(maxsize=1)
def _worker_loader() -> Loader:
    return Loader()


def _check_variant(module: ModuleEnv, file: str, variant: str) -> VariantCheck:
    callee, _, refs = entry(module, variant)
    result = VariantCheck(file, variant, "topology" if _is_topology(callee) else "network", refs)
    try:
        if result.kind == "topology":
            TopologyElaborator(variant).topology(callee, {}, None, variant)
        else:
            totals = cost(Elaborator(variant).network(callee, {}, None)).totals
            result.params, result.flops, result.macs = totals.params, totals.flops, totals.macs
    except ArchError as e:
        result.error = e.render()
    return result


def _input_shapes(input_shape) -> list[Shape] | None:
    if input_shape is None:
        return None
    if input_shape and isinstance(input_shape[0], int):
        return [tuple(input_shape)]
    return [tuple(s) for s in input_shape]


def _override_value(value, module: ModuleEnv):
    """`--set k=v` values arrive as text and are evaluated as spec expressions."""
    if not isinstance(value, SpecText):
        return value
    expr = parse_expr(value.text, "<--set>")
    elab = Elaborator(module.name)
    return elab.eval(expr, Env(module, None, module.prelude))


class SpecText(str):
    """A value written in the spec language (from the command line)."""

    @property
    def text(self) -> str:
        return str(self)
