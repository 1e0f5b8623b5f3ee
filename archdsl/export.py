"""Export a compiled model: standalone PyTorch source, torch.export, ONNX, safetensors weights.

    model = archdsl.load_spec("resnet18", seed=0)
    export(model, "resnet18.py")            # source importing only torch (weights not included)
    export(model, "resnet18.pt2")           # torch.export program, eval mode, weights included
    export(model, "resnet18.onnx")          # ONNX (pip install 'archdsl[onnx]')
    export(model, "resnet18.safetensors")   # the state_dict (pip install 'archdsl[safetensors]')

`.pt2` and `.onnx` trace the model in eval mode (batch norm uses its running statistics) on an
example input: `example_input`, or random tensors of the graph's input shapes.
"""
from __future__ import annotations

import importlib.util
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from archdsl.errors import ArchError
from archdsl.ir.graph import Graph

__all__ = ["export", "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".py", ".pt2", ".onnx", ".safetensors")
_ONNX_SINGLE_FILE_LIMIT = 1 << 30   # weights above this go to an external `.onnx.data` file


def export(model_or_graph: Any, path: str | Path, example_input: Any = None, *,
           class_name: str | None = None, dynamic_batch: bool = False,
           seed: int | None = None) -> Path:
    """Write `model_or_graph` to `path`, in the format its suffix names (`SUPPORTED_SUFFIXES`).

    model_or_graph: a model from `load_spec` (its weights are exported), or an IR `Graph` from
        `load_graph` (built with `seed` first; `.py` needs no weights). `.pt2`, `.onnx` and
        `.safetensors` also take any other `nn.Module` (`.pt2` / `.onnx` then need `example_input`).
    example_input: a tensor or a tuple of tensors for tracing `.pt2` / `.onnx`.
    class_name: the top-level class of a `.py` file (default: after the variant).
    dynamic_batch: `.pt2` / `.onnx` accept any batch size (dim 0 of every input); fails for
        specs that fix the batch size, e.g. in a `reshape`.
    Returns the path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    writer = _WRITERS.get(suffix)
    if writer is None:
        raise ArchError(f"cannot export to '{path.name}': unknown file type '{suffix or '(none)'}'",
                        hint=f"use one of: {', '.join(SUPPORTED_SUFFIXES)}")
    if path.parent and not path.parent.exists():
        raise ArchError(f"cannot export to '{path}': the folder '{path.parent}' does not exist")
    writer(model_or_graph, path, example_input=example_input, class_name=class_name,
           dynamic_batch=dynamic_batch, seed=seed)
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


def _example(model: nn.Module, example_input, dynamic_batch: bool) -> tuple:
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
    shapes = [tuple(graph.node(i).shape) for i in graph.inputs]
    if dynamic_batch:  # a batch of 1 would be specialised by torch.export
        shapes = [(max(2, s[0]), *s[1:]) if s else s for s in shapes]
    return tuple(torch.randn(s, generator=gen).to(device) for s in shapes)


def _dynamic_shapes(args: tuple, dynamic_batch: bool):
    if not dynamic_batch:
        return None
    batch = torch.export.Dim("batch")
    return tuple({0: batch} if a.ndim else {} for a in args)


@contextmanager
def _eval_mode(model: nn.Module):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _export_program(model: nn.Module, args: tuple, dynamic_batch: bool):
    try:
        return torch.export.export(model, args, dynamic_shapes=_dynamic_shapes(args, dynamic_batch))
    except Exception as err:  # torch reports tracing failures with many exception types
        if dynamic_batch:
            raise ArchError(f"torch.export could not trace the model with a dynamic batch size: "
                            f"{_first_line(err)}",
                            hint="the spec probably fixes the batch size (e.g. `reshape([B, …])` "
                                 "with a number); export without dynamic_batch") from err
        raise ArchError(f"torch.export could not trace the model: {_first_line(err)}") from err


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# ---------------------------------------------------------------------------------------------
# writers

def _write_py(obj, path: Path, *, class_name, **_):
    from archdsl.lower.emit import emit_python
    if _graph_of(obj) is None:
        raise ArchError("exporting PyTorch source needs a model compiled by archdsl or its graph",
                        hint="pass `archdsl.load_spec(...)` or `archdsl.load_graph(...)`")
    path.write_text(emit_python(obj, class_name=class_name))


def _write_pt2(obj, path: Path, *, example_input, dynamic_batch, seed, **_):
    model = _model_of(obj, seed)
    args = _example(model, example_input, dynamic_batch)
    with _eval_mode(model):
        program = _export_program(model, args, dynamic_batch)
    torch.export.save(program, str(path))


def _write_onnx(obj, path: Path, *, example_input, dynamic_batch, seed, **_):
    if importlib.util.find_spec("onnx") is None:
        raise ArchError("exporting ONNX needs the `onnx` package",
                        hint="pip install 'archdsl[onnx]'")
    model = _model_of(obj, seed)
    args = _example(model, example_input, dynamic_batch)
    graph = _graph_of(model)
    names = {}
    if graph is not None:
        names = {"input_names": list(graph.inputs), "output_names": list(graph.outputs)}
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    # the dynamo exporter (torch's default) needs onnxscript; without it use the TorchScript one
    dynamo = importlib.util.find_spec("onnxscript") is not None
    kwargs: dict[str, Any] = dict(dynamo=dynamo, **names)
    if dynamo:
        kwargs.update(external_data=size > _ONNX_SINGLE_FILE_LIMIT, verbose=False,
                      dynamic_shapes=_dynamic_shapes(args, dynamic_batch))
    elif dynamic_batch:
        kwargs["dynamic_axes"] = {n: {0: "batch"} for n in names.get("input_names", [])}
    with _eval_mode(model), _quiet_onnx():
        try:
            torch.onnx.export(model, args, str(path), **kwargs)
        except Exception as err:
            hint = ("the spec probably fixes the batch size; export without dynamic_batch"
                    if dynamic_batch else None)
            raise ArchError(f"torch.onnx.export failed: {_first_line(err)}", hint=hint) from err
    import onnx
    onnx.checker.check_model(str(path))


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


def _write_safetensors(obj, path: Path, *, seed, **_):
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise ArchError("exporting safetensors needs the `safetensors` package",
                        hint="pip install 'archdsl[safetensors]'") from None
    model = _model_of(obj, seed)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "pt"}
    graph = _graph_of(model)
    if graph is not None:
        meta["archdsl.network"] = graph.name
        if graph.variant:
            meta["archdsl.variant"] = graph.variant
    save_file(tensors, str(path), metadata=meta)


_WRITERS: dict[str, Callable] = {".py": _write_py, ".pt2": _write_pt2, ".onnx": _write_onnx,
                                 ".safetensors": _write_safetensors}
