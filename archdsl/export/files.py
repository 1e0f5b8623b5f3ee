"""Export a compiled model: standalone PyTorch source, torch.export, ONNX, safetensors weights.

    model = archdsl.load_spec("resnet18", seed=0)
    export(model, "resnet18.py")            # source importing only torch (weights not included)
    export(model, "resnet18.pt2")           # torch.export program, eval mode, weights included
    export(model, "resnet18.onnx")          # ONNX (pip install 'archdsl[onnx]')
    export(model, "resnet18.safetensors")   # the state_dict (pip install 'archdsl[safetensors]')

`.pt2` and `.onnx` trace the model in eval mode (batch norm uses its running statistics) on an
example input: `example_input`, or random tensors of the graph's input shapes and dtypes. By
default (`dynamic="auto"`) their batch size and spatial sizes are dynamic where the network allows
it: an axis may vary when the network elaborated with that axis at another size is the same
program (the same generated code, module settings and weight shapes), and torch.export agrees.
An axis that cannot vary (a ViT's position embedding fixes the image size, a `reshape` with a
number fixes the batch) stays at the example's size, and an `ExportNote` warning says why.
"""
from __future__ import annotations

import importlib.util
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from archdsl.errors import ArchError
from archdsl.ir.graph import Graph

__all__ = ["export", "export_all", "check_path", "Exported", "ExportNote", "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".py", ".pt2", ".onnx", ".safetensors")
_ONNX_SINGLE_FILE_LIMIT = 1 << 30   # weights above this go to an external `.onnx.data` file


class ExportNote(UserWarning):
    """Something an export could not do as asked for, and what it did instead (e.g. an input size
    that had to stay fixed)."""


@dataclass
class Exported:
    """One written file: its path, the axes that stay dynamic (by name: `batch`, `height`, …) and
    the notes about it (also given as `ExportNote` warnings by `export`)."""
    path: Path
    dynamic: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def export(model_or_graph: Any, path: str | Path, example_input: Any = None, *,
           class_name: str | None = None, dynamic: str = "auto", seed: int | None = None,
           dtype: str | None = None) -> Path:
    """Write `model_or_graph` to `path`, in the format its suffix names (`SUPPORTED_SUFFIXES`).

    model_or_graph: a model from `load_spec` (its weights are exported), or an IR `Graph` from
        `load_graph` (built with `seed` first; `.py` needs no weights). `.pt2`, `.onnx` and
        `.safetensors` also take any other `nn.Module` (`.pt2` / `.onnx` then need `example_input`).
    example_input: a tensor or a tuple of tensors for tracing `.pt2` / `.onnx`.
    class_name: the top-level class of a `.py` file (default: after the variant).
    dynamic: which input sizes of `.pt2` / `.onnx` may vary: "auto" (the batch, and the spatial
        sizes and sequence lengths, each where the network allows it), "batch" (the batch only;
        an error if the network fixes it), "none".
    dtype: the element type of the weights of `.safetensors` (default: the model's).
    Returns the path written. What could not be done as asked is an `ExportNote` warning.
    """
    result = export_all(model_or_graph, [path], example_input, class_name=class_name,
                        dynamic=dynamic, seed=seed, dtype=dtype)[0]
    for note in result.notes:
        warnings.warn(f"{result.path.name}: {note}", ExportNote, stacklevel=2)
    return result.path


def export_all(model_or_graph: Any, paths: list[str | Path], example_input: Any = None, *,
               class_name: str | None = None, dynamic: str = "auto", seed: int | None = None,
               dtype: str | None = None) -> list[Exported]:
    """`export` to every path of `paths` from one model (a graph is built once, with `seed`);
    returns what was written, with the dynamic axes and notes of each file."""
    if dynamic not in DYNAMIC_MODES:
        raise ArchError(f"unknown dynamic mode '{dynamic}'",
                        hint=f"one of {', '.join(DYNAMIC_MODES)}")
    paths = [check_path(p) for p in paths]
    needs_model = any(p.suffix.lower() != ".py" for p in paths)
    obj = _model_of(model_or_graph, seed) if needs_model else model_or_graph
    options = _Options(example_input, class_name, dynamic, dtype)
    return [_WRITERS[p.suffix.lower()](obj, p, options) for p in paths]


DYNAMIC_MODES = ("auto", "batch", "none")


@dataclass
class _Options:
    example_input: Any
    class_name: str | None
    dynamic: str
    dtype: str | None


def check_path(path: str | Path) -> Path:
    """`path` as a Path, or an ArchError when its suffix or folder cannot be written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITERS:
        raise ArchError(f"cannot export to '{path.name}': unknown file type '{suffix or '(none)'}'",
                        hint=f"use one of: {', '.join(SUPPORTED_SUFFIXES)}")
    if path.parent and not path.parent.exists():
        raise ArchError(f"cannot export to '{path}': the folder '{path.parent}' does not exist")
    return path


# ---------------------------------------------------------------------------------------------

def _graph_of(obj) -> Graph | None:
    if isinstance(obj, Graph):
        return obj
    graph = getattr(obj, "arch_graph", None)
    return graph if isinstance(graph, Graph) else None


def _model_of(obj, seed: int | None) -> nn.Module:
    if isinstance(obj, Graph):
        from archdsl.lower.build import build
        model = build(obj, seed=seed)
        model.arch_graph = obj
        return model
    if isinstance(obj, nn.Module):
        return obj
    raise ArchError(f"cannot export a {type(obj).__name__}",
                    hint="pass a model from `archdsl.load_spec` or a graph from "
                         "`archdsl.load_graph`")


# ---------------------------------------------------------------------------------------------
# dynamic axes

@dataclass
class _Axis:
    """An input size that may vary: its name and where it is, (input index, dim) pairs."""
    name: str
    places: list[tuple[int, int]]
    size: int


_SPATIAL = {3: ("length",), 4: ("height", "width"), 5: ("depth", "height", "width")}


def _candidate_axes(shapes: list[tuple], dtypes: list[torch.dtype],
                    names: list[str]) -> list[_Axis]:
    """The batch (dim 0 of every input, when all agree), then per input the spatial dims of a
    [B, C, …] float input and the length of a [B, L] integer input (token ids)."""
    batched = [i for i, s in enumerate(shapes) if s]
    axes = []
    if batched and len({shapes[i][0] for i in batched}) == 1:
        axes.append(_Axis("batch", [(i, 0) for i in batched], shapes[batched[0]][0]))
    found = []
    for i, (shape, dtype) in enumerate(zip(shapes, dtypes)):
        if dtype.is_floating_point and len(shape) in _SPATIAL:
            found += [(i, 2 + k, n) for k, n in enumerate(_SPATIAL[len(shape)])]
        elif not dtype.is_floating_point and len(shape) == 2:
            found.append((i, 1, "length"))
    for i, d, n in found:
        shared = sum(1 for _, _, m in found if m == n) > 1
        axes.append(_Axis(f"{names[i]}_{n}" if shared else n, [(i, d)], shapes[i][d]))
    return axes


def _fingerprint(graph: Graph) -> tuple:
    """What the lowered program is, apart from its sizes: the generated code, each module's
    type and settings, the weight shapes."""
    from archdsl.lower.build import build
    with torch.device("meta"):
        model = build(graph)
    plain = (int, float, str, bool, tuple, list)
    settings = [(name, type(m).__qualname__, m.extra_repr(),
                 sorted((k, repr(v)) for k, v in vars(m).items()
                        if not k.startswith("_") and isinstance(v, plain)))
                for name, m in model.named_modules()]
    weights = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    return model.code, settings, weights


def _resized(shapes: list[tuple], axes: list[_Axis]) -> list[tuple]:
    out = [list(s) for s in shapes]
    for axis in axes:
        for i, d in axis.places:
            out[i][d] = axis.size + 1 if axis.name == "batch" else 2 * axis.size
    return [tuple(s) for s in out]


def _why_fixed(graph: Graph, base: tuple, shapes: list[tuple], axes: list[_Axis]) -> str | None:
    """None when the network is the same program with `axes` at other sizes, else the reason."""
    try:
        other = _fingerprint(graph.resize(input_shape=_resized(shapes, axes)))
    except ArchError as err:
        return f"the spec does not elaborate at another size ({err.message})"
    code, settings, weights = other
    if weights != base[2]:
        key = next((a for a, b in zip(weights, base[2]) if a != b), None)
        return f"weight shapes depend on it ({key[0] if key else 'their number'})"
    if settings != base[1]:
        name = next((a[0] for a, b in zip(settings, base[1]) if a != b), "")
        return f"module '{name}' is set up for this size" if name else "its modules depend on it"
    if code != base[0]:
        line = next((a for a, b in zip(_statements(base[0]), _statements(code)) if a != b), "")
        line = line if len(line) <= 80 else line[:77] + "..."
        return f"the generated code holds a size computed from it (`{line}`)"
    return None


def _op_fixing_sizes(graph: Graph) -> str | None:
    from archdsl.ops import REGISTRY
    return next((REGISTRY[n.op].fixes_exported_size for n in graph.nodes()
                 if n.kind == "op" and REGISTRY[n.op].fixes_exported_size), None)


def _statements(code: str) -> list[str]:
    return [t.strip() for line in code.splitlines() for t in line.split(";") if t.strip()]


def _allowed_axes(model: nn.Module, shapes: list[tuple], dtypes, mode: str,
                  notes: list[str]) -> list[_Axis]:
    """The axes the network allows to vary (for `mode`), with notes about those that stay fixed."""
    graph = _graph_of(model)
    names = list(graph.inputs) if graph is not None else [f"input{i}" for i in range(len(shapes))]
    axes = _candidate_axes(shapes, dtypes, names)
    if mode == "batch":
        axes = [a for a in axes if a.name == "batch"]
        if not axes:
            raise ArchError("the inputs have no common batch dimension to make dynamic")
    if mode == "none" or not axes:
        return []
    if graph is None or getattr(graph, "resize", None) is None:
        if mode == "auto" and len(axes) > 1:
            notes.append("spatial sizes fixed: only a network from `load_spec` can be checked "
                         "at other sizes")
        return [a for a in axes if a.name == "batch"]
    spatial_reason = _op_fixing_sizes(graph)
    if spatial_reason and any(a.name != "batch" for a in axes):
        notes.append(f"spatial sizes fixed: {spatial_reason}")
        axes = [a for a in axes if a.name == "batch"]
        if not axes:
            return []
    base = _fingerprint(graph)
    if _why_fixed(graph, base, shapes, axes) is None:
        return axes
    allowed, fixed = [], {}
    for axis in axes:
        reason = _why_fixed(graph, base, shapes, [axis])
        if reason is None:
            allowed.append(axis)
        elif mode == "batch":
            raise ArchError(f"cannot export with a dynamic batch size: {reason}",
                            hint="export with dynamic=\"none\" (a fixed batch size)")
        else:  # one note per input: "height, width fixed at 224x224: …"
            fixed.setdefault(-1 if axis.name == "batch" else axis.places[0][0], []).append(
                (axis, reason))
    for group in fixed.values():
        names = ", ".join(a.name for a, _ in group)
        notes.append(f"{names} fixed at {'x'.join(str(a.size) for a, _ in group)}: {group[0][1]}")
    if len(allowed) > 1 and _why_fixed(graph, base, shapes, allowed) is not None:
        notes.append("only the batch is dynamic: the sizes that may vary one at a time "
                     "do not vary together")
        allowed = [a for a in allowed if a.name == "batch"]
    return allowed


def _example(model: nn.Module, example_input, axes_room: bool) -> tuple:
    """The tracing input: `example_input`, or seeded random tensors of the graph's input shapes
    and dtypes (integers 0 or 1: valid token ids and labels); with `axes_room`, a batch of 1
    becomes 2 (torch.export specialises sizes 0 and 1)."""
    if example_input is not None:
        if isinstance(example_input, torch.Tensor):
            return (example_input,)
        if isinstance(example_input, (tuple, list)) and all(isinstance(t, torch.Tensor)
                                                            for t in example_input):
            return tuple(example_input)
        raise ArchError(f"example_input must be a tensor or a tuple of tensors, got "
                        f"{type(example_input).__name__}")
    graph = _graph_of(model)
    if graph is None:
        raise ArchError("exporting a model that archdsl did not compile needs an example input",
                        hint="pass example_input=torch.randn(...)")
    gen = torch.Generator().manual_seed(0)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    out = []
    for i in graph.inputs:
        node = graph.node(i)
        shape, dtype = tuple(node.shape), getattr(torch, node.dtype)
        if axes_room and shape and shape[0] == 1:
            shape = (2, *shape[1:])
        t = torch.randn(shape, generator=gen, dtype=dtype) if dtype.is_floating_point else \
            torch.randint(0, 2, shape, generator=gen).to(dtype)
        out.append(t.to(device))
    return tuple(out)


def _traced(model: nn.Module, options: _Options, notes: list[str], trace: Callable):
    """Run `trace(args, axes)` with the axes the network allows, falling back to the batch only,
    then to fixed sizes, when torch cannot trace them (each fallback noted)."""
    graph = _graph_of(model)
    probe = _example(model, options.example_input, False)
    if options.example_input is None and graph is not None:
        shapes = [tuple(graph.node(i).shape) for i in graph.inputs]
    else:
        shapes = [tuple(t.shape) for t in probe]
    axes = _allowed_axes(model, shapes, [t.dtype for t in probe], options.dynamic, notes)
    batch = [a for a in axes if a.name == "batch"]
    tries = [axes] + ([batch] if batch and len(axes) > 1 else []) + ([[]] if axes else [])
    if options.dynamic == "batch":
        tries = tries[:1]
    with _eval_mode(model):
        for k, attempt in enumerate(tries):
            batch_room = any(a.name == "batch" for a in attempt)
            args = _example(model, options.example_input, batch_room)
            try:
                return trace(args, attempt), attempt
            except ArchError as err:
                if k == len(tries) - 1:
                    raise
                fixed = [a.name for a in attempt if a not in tries[k + 1]]
                notes.append(f"{', '.join(fixed)} fixed: torch could not trace "
                             f"{'it' if len(fixed) == 1 else 'them'} as dynamic "
                             f"({err.message})")


def _dims_of(args: tuple, axes: list[_Axis], dim: Callable) -> tuple:
    """dynamic_shapes for torch.export / torch.onnx.export: `dim(axis)` at every axis' place."""
    spec = [{} for _ in args]
    for axis in axes:
        for i, d in axis.places:
            spec[i][d] = dim(axis)
    return tuple(spec)


@contextmanager
def _eval_mode(model: nn.Module):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# ---------------------------------------------------------------------------------------------
# writers: (model or graph, path, options) → Exported

def _write_py(obj, path: Path, options: _Options) -> Exported:
    from archdsl.export.source import emit_python
    if _graph_of(obj) is None:
        raise ArchError("exporting PyTorch source needs a model compiled by archdsl or its graph",
                        hint="pass `archdsl.load_spec(...)` or `archdsl.load_graph(...)`")
    path.write_text(emit_python(obj, class_name=options.class_name))
    return Exported(path)


def _float32_note(options: _Options) -> list[str]:
    if options.dtype in (None, "float32"):
        return []
    return [f"traced in float32 (the dtype {options.dtype} applies to .safetensors weights)"]


def _write_pt2(model, path: Path, options: _Options) -> Exported:
    notes = _float32_note(options)

    def trace(args, axes):
        dims = _dims_of(args, axes, lambda a: torch.export.Dim.DYNAMIC) if axes else None
        try:
            return torch.export.export(model, args, dynamic_shapes=dims)
        except Exception as err:  # torch reports tracing failures with many exception types
            raise ArchError(f"torch.export could not trace the model: {_first_line(err)}") from err

    program, axes = _traced(model, options, notes, trace)
    for node in program.graph.nodes:  # provenance that holds Python object ids
        node.meta.pop("from_node", None)
    torch.export.save(program, str(path))
    _fix_serialization_id(path)
    return Exported(path, [a.name for a in axes], notes)


_ZIP_CENTRAL = b"PK\x01\x02"
_ZIP_DESCRIPTOR = b"PK\x07\x08"


def _fix_serialization_id(path: Path) -> None:
    """torch writes a random `.data/serialization_id` into every archive; replace it (in place,
    with its CRCs) by digits derived from the other records' CRCs, so that the same program
    gives the same bytes."""
    import hashlib
    import struct
    import zipfile
    with zipfile.ZipFile(path) as z:
        infos, central = z.infolist(), z.start_dir
    info = next((i for i in infos if i.filename.endswith(".data/serialization_id")), None)
    if info is None or info.compress_type != zipfile.ZIP_STORED:
        return
    digest = hashlib.sha256(b"".join(struct.pack("<I", i.CRC) + i.filename.encode()
                                     for i in infos if i is not info)).hexdigest()
    new = str(int(digest, 16)).rjust(info.file_size, "0")[-info.file_size:].encode()
    crc = struct.pack("<I", zipfile.crc32(new))
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        f.write(new)
        if info.flag_bits & 0x8:  # the CRC follows the data, in a data descriptor
            signed = f.read(4) == _ZIP_DESCRIPTOR
            f.seek(start + len(new) + (4 if signed else 0))
        else:
            f.seek(info.header_offset + 14)
        f.write(crc)
        f.seek(central)
        directory = f.read()
        at, name = 0, info.filename.encode()
        while (at := directory.find(_ZIP_CENTRAL, at)) >= 0:
            n = struct.unpack("<H", directory[at + 28:at + 30])[0]
            if directory[at + 46:at + 46 + n] == name:
                f.seek(central + at + 16)
                f.write(crc)
                return
            at += 4


def _write_onnx(model, path: Path, options: _Options) -> Exported:
    if importlib.util.find_spec("onnx") is None:
        raise ArchError("exporting ONNX needs the `onnx` package",
                        hint="pip install 'archdsl[onnx]'")
    notes = _float32_note(options)
    graph = _graph_of(model)
    names = {}
    if graph is not None:
        names = {"input_names": list(graph.inputs), "output_names": list(graph.outputs)}
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    # the dynamo exporter (torch's default) needs onnxscript; without it use the TorchScript one
    dynamo = importlib.util.find_spec("onnxscript") is not None

    def trace(args, axes):
        kwargs: dict[str, Any] = dict(dynamo=dynamo, **names)
        if dynamo:  # named axes become the ONNX graph's dim names
            kwargs.update(external_data=size > _ONNX_SINGLE_FILE_LIMIT, verbose=False,
                          dynamic_shapes=_dims_of(args, axes, lambda a: a.name) if axes else None)
        elif axes:
            inputs = names.get("input_names") or [f"input{i}" for i in range(len(args))]
            kwargs["input_names"] = inputs
            kwargs["dynamic_axes"] = {inputs[i]: spec for i, spec in
                                      enumerate(_dims_of(args, axes, lambda a: a.name)) if spec}
        with _quiet_onnx():
            try:
                torch.onnx.export(model, args, str(path), **kwargs)
            except Exception as err:
                raise ArchError(f"torch.onnx.export failed: {_first_line(err)}") from err

    _, axes = _traced(model, options, notes, trace)
    import onnx
    onnx.checker.check_model(str(path))
    return Exported(path, [a.name for a in axes], notes)


@contextmanager
def _quiet_onnx():
    """torch's ONNX exporter logs a warning per torchvision op it cannot register and warns about
    its own use of deprecated pytree APIs; neither concerns the user."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=".*LeafSpec.*")
            yield
    finally:
        logger.setLevel(level)


def _write_safetensors(model, path: Path, options: _Options) -> Exported:
    try:
        from safetensors.torch import save
    except ImportError:
        raise ArchError("exporting safetensors needs the `safetensors` package",
                        hint="pip install 'archdsl[safetensors]'") from None
    dtype = getattr(torch, options.dtype) if options.dtype else None
    tensors, seen = {}, set()
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        if v.untyped_storage().data_ptr() in seen:  # a tied weight: safetensors stores copies
            v = v.clone()
        seen.add(v.untyped_storage().data_ptr())
        tensors[k] = v.contiguous()
    meta = {"format": "pt"}
    graph = _graph_of(model)
    if graph is not None:
        meta["archdsl.network"] = graph.name
        if graph.variant:
            meta["archdsl.variant"] = graph.variant
    blob = save(tensors, metadata=meta)
    with open(path, "wb") as f:
        _write_sorted_header(f, blob)
    return Exported(path)


def _write_sorted_header(f, blob: bytes) -> None:
    """safetensors writes its header's metadata in a random order: write the header with sorted
    keys (then the data as it is), so that the same weights give the same bytes."""
    import json
    import struct
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.dumps(json.loads(blob[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data stays 8-byte aligned
    f.write(struct.pack("<Q", len(header)) + header)
    f.write(memoryview(blob)[8 + n:])


_WRITERS: dict[str, Callable] = {".py": _write_py, ".pt2": _write_pt2, ".onnx": _write_onnx,
                                 ".safetensors": _write_safetensors}
