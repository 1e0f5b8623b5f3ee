"""The command line: `archdsl compile | check | cost | fmt | list`.

A thin shell over the Python API (`archdsl.api`): every command parses its options, calls
the API and prints what comes back. Errors in a spec are `ArchError`s, printed with their
source location and exit status 1; misuse of the command line exits 2 (click's convention).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

import archdsl
from archdsl.api import check_tree
from archdsl.errors import ArchError, ArchWarning

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

# Keyword names the API functions take themselves; a network parameter with one of these
# names cannot be passed through `**overrides`.
_RESERVED = {"spec", "variant", "input_shape", "source", "dtype", "seed", "max_bytes"}
_DTYPES = ["float32", "float16", "bfloat16", "float64"]
_PROGRESS_DELAY_S = 1.0


# ---- errors ---------------------------------------------------------------------------------

class _Failed(click.ClickException):
    """A user error: printed as is (no 'Error:' prefix, no traceback); exit status 1."""
    exit_code = EXIT_USER

    def show(self, file=None) -> None:
        click.echo(self.message, err=True)


class _Internal(click.ClickException):
    exit_code = EXIT_INTERNAL

    def show(self, file=None) -> None:
        click.echo(self.message, err=True)


@contextmanager
def _errors() -> Iterator[None]:
    """ArchError and file errors → exit 1 with the message; anything else is a bug → exit 3."""
    try:
        yield
    except ArchError as e:
        raise _Failed(e.render()) from None
    except OSError as e:
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        raise _Failed(f"error: {e.strerror or e}{where}") from None
    except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("ARCHDSL_TRACEBACK"):
            raise
        raise _Internal(f"internal error: {type(e).__name__}: {e}\n"
                        "  this is a bug in archdsl, not in your spec; rerun with "
                        "ARCHDSL_TRACEBACK=1 for the traceback and report it") from None


# ---- output helpers ---------------------------------------------------------------------------

def _console(stderr: bool = False):
    from rich.console import Console
    stream = sys.stderr if stderr else sys.stdout
    console = Console(file=stream, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 200   # piped output: do not fold tables to 80 columns
    return console


class _Progress:
    """A transient spinner (with a bar when `total` is known) on stderr.

    It appears only when the work takes longer than a second, and only on a terminal.
    """

    def __init__(self, description: str, total: int | None = None):
        self.description, self.total = description, total
        self._progress = None
        self._lock = threading.Lock()
        self._started = self._done = False

    def __enter__(self) -> "_Progress":
        console = _console(stderr=True)
        if not console.is_terminal:
            return self
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn)
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if self.total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        self._progress = Progress(*columns, console=console, transient=True)
        self._task = self._progress.add_task(self.description, total=self.total)
        self._timer = threading.Timer(_PROGRESS_DELAY_S, self._start)
        self._timer.daemon = True
        self._timer.start()
        return self

    def _start(self) -> None:
        with self._lock:
            if not self._done:
                self._progress.start()
                self._started = True

    def update(self, description: str | None = None, advance: int = 0) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description or self.description,
                                  advance=advance)

    def __exit__(self, *exc) -> None:
        if self._progress is None:
            return
        self._timer.cancel()
        with self._lock:
            self._done = True
            if self._started:
                self._progress.stop()


def _si(n: float, unit: str = "") -> str:
    """12345678 → '12.35 M'."""
    if n == 0:
        return "0" + (f" {unit}" if unit else "")
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}{unit}"
    return f"{n:g}" + (f" {unit}" if unit else "")


def _bytes(n: int) -> str:
    for factor, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= factor:
            return f"{n / factor:.2f} {name}"
    return f"{n} B"


def _shape(shape) -> str:
    if shape and isinstance(shape[0], (list, tuple)):
        return "(" + ", ".join(_shape(s) for s in shape) + ")"
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ---- option parsing ------------------------------------------------------------------------------

def _parse_sets(ctx, param, values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", ctx, param)
        if key in _RESERVED:
            raise click.BadParameter(
                f"a network parameter named '{key}' cannot be set from the command line "
                f"(the API reserves the names {', '.join(sorted(_RESERVED))})", ctx, param)
        if key in out:
            raise click.BadParameter(f"'{key}' is set twice", ctx, param)
        out[key] = archdsl.SpecText(value.strip())
    return out


def _parse_inputs(ctx, param, values: tuple[str, ...]) -> list[tuple[int, ...]] | None:
    shapes = []
    for item in values:
        parts = item.lower().replace(",", "x").split("x")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
        if not shape or any(d <= 0 for d in shape):
            raise click.BadParameter(f"expected positive sizes joined by 'x' (1x3x224x224), "
                                     f"got {item!r}", ctx, param)
        shapes.append(shape)
    return shapes or None


def _spec_options(fn):
    """SPEC and the options every spec command shares."""
    options = [
        click.argument("spec", metavar="SPEC"),
        click.option("--variant", "-v", metavar="NAME",
                     help="Which variant (or network) of the file to build. Default: the file's "
                          "first variant, else its last network."),
        click.option("--set", "-s", "overrides", metavar="NAME=VALUE", multiple=True,
                     callback=_parse_sets,
                     help="Override a network argument; VALUE is written in the spec language "
                          "(--set layers=[2,2,2,2] --set attn=SE). Repeatable."),
        click.option("--input", "-i", "inputs", metavar="SHAPE", multiple=True,
                     callback=_parse_inputs,
                     help="Input shape, e.g. 1x3x224x224 (batch included); repeat it once per "
                          "`in` of the network, in order. Default: the sizes the spec declares."),
        click.option("--dtype", type=click.Choice(_DTYPES), default="float32", show_default=True,
                     help="Element type used for activation memory."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _table_options(fn):
    fn = click.option("--depth", "-d", type=click.IntRange(min=1), metavar="N",
                      help="Sum the rows under each path prefix of N parts "
                           "(1: conv1, layer1, layer2 …; 2: layer1.0 …).")(fn)
    fn = click.option("--json", "as_json", is_flag=True,
                      help="Print the cost report as JSON instead of tables.")(fn)
    return fn


# ---- shared work ---------------------------------------------------------------------------------

def _spec(spec: str) -> dict:
    """SPEC as the API takes it: a path or variant name, or `-` for the text on stdin."""
    if spec == "-":
        return {"spec": "stdin", "source": sys.stdin.read()}
    return {"spec": spec}


def _kind(args: dict, variant) -> str:
    """'network' or 'topology': what SPEC (its variant) declares."""
    return archdsl.spec_kind(args["spec"], variant, source=args.get("source"))


def _load(spec: str, variant, overrides, inputs):
    """('network', IR graph) or ('topology', TopologyIR): parse, elaborate, infer. No torch."""
    args = _spec(spec)
    with _Progress(f"checking {spec}"):
        if _kind(args, variant) == "topology":
            return "topology", archdsl.load_topology(**args, variant=variant, input_shape=inputs,
                                                     **overrides)
        return "network", archdsl.load_graph(**args, variant=variant, input_shape=inputs,
                                             **overrides)


def _groups(report, blocks: dict[str, str], depth: int) -> list[dict]:
    """Rows of the report summed under each path prefix of `depth` parts."""
    groups: dict[str, dict] = {}
    for n in report.nodes:
        key = ".".join(n.path.split(".")[:depth])
        g = groups.setdefault(key, {"path": key, "op": n.op, "shape": n.shape, "nodes": 0,
                                     "params": 0, "buffers": 0, "flops": 0, "other_flops": 0,
                                     "activation_bytes": 0, "receptive_field": 1, "stride": 1})
        g["nodes"] += 1
        g["shape"] = n.shape   # the last node's output: the group's output in topological order
        for k in ("params", "buffers", "flops", "other_flops", "activation_bytes"):
            g[k] += getattr(n, k)
        # the group's receptive field: the largest of its nodes' (with that node's stride)
        g["receptive_field"], g["stride"] = max((g["receptive_field"], g["stride"]),
                                                (n.receptive_field, n.stride))
    for key, g in groups.items():
        if key in blocks:
            g["op"] = blocks[key]
        elif g["nodes"] > 1:
            level = key.count(".") + 1
            inner = [t for p, t in blocks.items() if p.startswith(key + ".") and p.count(".") == level]
            if inner:
                kinds = sorted(set(inner), key=inner.index)
                g["op"] = ", ".join(f"{inner.count(t)}× {t}" for t in kinds)
            else:
                g["op"] = f"{g['nodes']} nodes"
        g["macs"] = g["flops"] // 2
    return list(groups.values())


def _summary_table(report, groups: list[dict] | None):
    from rich.table import Table
    from rich.text import Text
    table = Table(header_style="bold")
    table.add_column("path", no_wrap=True)
    table.add_column("op" if groups is None else "op / block")
    table.add_column("output shape", no_wrap=True)
    table.add_column("params", justify="right")
    table.add_column("FLOPs", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("activations", justify="right")
    table.add_column("rf", justify="right", no_wrap=True)
    rows = groups if groups is not None else [
        {"path": n.path, "op": n.op, "shape": n.shape, "params": n.params, "flops": n.flops,
         "macs": n.macs, "activation_bytes": n.activation_bytes,
         "receptive_field": n.receptive_field, "stride": n.stride}
        for n in report.nodes]
    for r in rows:
        table.add_row(Text(r["path"]), Text(r["op"]), Text(_shape(r["shape"])),
                      Text(_si(r["params"]) if r["params"] else "-"),
                      Text(_si(r["flops"]) if r["flops"] else "-"),
                      Text(_si(r["macs"]) if r["macs"] else "-"),
                      Text(_bytes(r["activation_bytes"]) if r["activation_bytes"] else "-"),
                      Text(_rf(r["receptive_field"], r["stride"])))
    return table


def _rf(field: int, stride: int) -> str:
    """Receptive field and cumulative stride, '35 /8'; '-' where neither grew past 1."""
    return "-" if field <= 1 and stride <= 1 else f"{field} /{stride}"


def _totals_text(report, dtype: str, extra: list[tuple[str, str, str]] = ()) -> str:
    """The header (variant, reference, input → output shapes) and the totals, aligned."""
    t = report.totals
    head = report.variant or report.name
    if report.variant and report.name != report.variant:
        head += f" ({report.name})"
    if report.references:
        head += "  reference " + ", ".join(report.references)
    io = ", ".join(f"{k} {_shape(v)}" for k, v in report.input_shapes.items()) + " → " + \
        ", ".join(f"{k} {_shape(v)}" for k, v in report.output_shapes.items())
    rows = [
        ("params", f"{t.params:,}", _si(t.params), "parameter elements"),
        ("buffers", f"{t.buffers:,}", _si(t.buffers), "buffer elements (e.g. batch-norm running stats)"),
        ("weights", f"{t.param_bytes + t.buffer_bytes:,}", _bytes(t.param_bytes + t.buffer_bytes),
         f"bytes of the params and buffers, {dtype}"),
        ("FLOPs", f"{t.flops:,}", _si(t.flops), "2 per multiply-add, the ops FlopCounterMode counts"),
        ("MACs", f"{t.macs:,}", _si(t.macs), "FLOPs / 2: what most papers call FLOPs"),
        ("other FLOPs", f"{t.other_flops:,}", _si(t.other_flops),
         "elementwise, norm, pooling, softmax … (not in FLOPs)"),
        ("activations", f"{t.activation_bytes:,}", _bytes(t.activation_bytes),
         f"bytes of every node's output at batch {report.batch}, {dtype}"),
    ]
    w = [max(len(r[k]) for r in rows) for k in range(3)]
    lines = [head, io, ""]
    lines += [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {d}".rstrip() for a, b, c, d in rows]
    lines += [f"{name:<{w[0]}}  {value}: {note}" for name, value, note in extra]
    return "\n".join(lines)


def _emit_json(data: dict) -> None:
    click.echo(json.dumps(data, indent=2))


# ---- commands ---------------------------------------------------------------------------------------

_MAIN_HELP = """Compile .arch neural-network specs to a checked graph with costs and a torch module.

SPEC is a path to a .arch file, the name of a stdlib variant (see `archdsl list`)
or `-` for a spec on stdin, e.g. `archdsl compile resnet50` or
`archdsl cost my_net.arch --variant tiny`.

\b
Exit status: 0 success; 1 an error in a spec or a missing file (printed with its
location); 2 wrong use of the command line; 3 an internal error (a bug in archdsl).
"""


@click.group("archdsl", help=_MAIN_HELP, context_settings={"help_option_names": ["-h", "--help"],
                                                "max_content_width": 100})
@click.version_option(archdsl.__version__, "--version", prog_name="archdsl")
def main() -> None:
    warnings.showwarning = _show_warning


_python_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A spec's warnings read like its errors: `warning: …` with the source quoted."""
    if issubclass(category, ArchWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def _network_data(graph, dtype: str, depth: int | None, nodes: bool = True) -> tuple[Any, dict]:
    """(cost report, its JSON form with `groups` when --depth is given)."""
    from archdsl.ir.cost import cost
    report = cost(graph, dtype)
    data = report.to_dict()
    if not nodes:
        del data["nodes"]
    if depth:
        data["groups"] = _groups(report, _block_types(graph), depth)
    return report, data


def _print_network(report, data: dict, dtype: str, table: bool, extra=()) -> None:
    if table:
        _console().print(_summary_table(report, data.get("groups")))
        click.echo()
    click.echo(_totals_text(report, dtype, extra))


def _topology_data(ir, dtype: str) -> dict:
    """A topology's networks (with the cost of each call shape), state and phases."""
    from archdsl.topology.recipe import describe as describe_optimizer
    from archdsl.topology.schedule import LRSchedule
    from archdsl.ir.cost import cost
    nets = {}
    for name, decl in ir.nets.items():
        calls = []
        for graph in decl.graphs.values():
            report = cost(graph, dtype)
            calls.append({"inputs": report.input_shapes, "outputs": report.output_shapes,
                          "totals": dataclasses.asdict(report.totals)})
        block = getattr(decl.callee, "callee", decl.callee)   # a Partial's block, or the block
        network = getattr(block, "name", None) or (decl.first_graph.name if decl.graphs else "")
        nets[name] = {"network": network,
                      "twin": dataclasses.asdict(decl.twin) if decl.twin else None,
                      "calls": calls}
    phases = {}
    for name, ph in ir.phases.items():
        g = ph.graph
        phases[name] = {"inputs": {i: list(g.node(i).shape) for i in g.inputs},
                        "update": list(ph.update), "loss": ph.loss, "logs": list(ph.logs),
                        "after": [a.kind for a in ph.actions], "times": ph.repeat,
                        "optimizer": dataclasses.asdict(ph.optimizer) if ph.optimizer else None,
                        "optimizer_text": describe_optimizer(ph.optimizer) if ph.optimizer else None}
    return {"kind": "topology", "name": ir.name, "variant": ir.variant,
            "references": list(ir.references), "nets": nets,
            "states": {n: {"shape": list(st.shape), "dtype": st.dtype,
                           "init": st.init.describe() if isinstance(st.init, LRSchedule) else st.init}
                       for n, st in ir.states.items()},
            "phases": phases}


def _print_topology(data: dict, extra: list[str] = ()) -> None:
    from rich.table import Table
    from rich.text import Text
    head = data["variant"] or data["name"]
    if data["variant"] and data["name"] != data["variant"]:
        head += f" ({data['name']})"
    click.echo(f"{head}: a topology of {len(data['nets'])} network(s)")
    table = Table(header_style="bold")
    for col, just in (("net", "left"), ("trained", "left"), ("input → output", "left"),
                      ("params", "right"), ("MACs / call", "right")):
        table.add_column(col, justify=just)
    trained = {n for p in data["phases"].values() for n in p["update"]}
    for name, net in data["nets"].items():
        twin = net["twin"]
        how = (f"ema of {twin['source']} (m={twin['momentum']:g}, {twin['schedule']})" if twin
               else ("by phase " + ", ".join(p for p, ph in data["phases"].items() if name in ph["update"])
                     if name in trained else "frozen"))
        for k, call in enumerate(net["calls"]):
            io = ", ".join(_shape(v) for v in call["inputs"].values()) + " → " + \
                ", ".join(_shape(v) for v in call["outputs"].values())
            t = call["totals"]
            label = f"{name} ({net['network']})" if net["network"] != name else name
            table.add_row(Text(label if k == 0 else ""), Text(how if k == 0 else ""), Text(io),
                          Text(_si(t["params"]) if k == 0 else ""), Text(_si(t["macs"])))
    _console().print(table)
    for name, st in data["states"].items():
        click.echo(f"state  {name} {_shape(st['shape'])} {st['dtype']}, initially {st['init']}")
    for name, ph in data["phases"].items():
        ins = ", ".join(f"{k} {_shape(v)}" for k, v in ph["inputs"].items())
        text = f"phase  {name}({ins}): updates {', '.join(ph['update']) or 'nothing'}, loss {ph['loss']}"
        if ph["logs"]:
            text += f", logs {', '.join(ph['logs'])}"
        if ph["after"]:
            text += f", after the step: {', '.join(ph['after'])}"
        if ph["times"] != 1:
            text += f", {ph['times']} times per round"
        click.echo(text)
        if ph["optimizer_text"]:
            click.echo(f"       optimizer {ph['optimizer_text']}")
    for line in extra:
        click.echo(line)
    click.echo("MACs = FLOPs / 2 (what most papers call FLOPs), per call of each network")


_NODE_TABLE = """Prints one row per node (path, op, output shape, params, FLOPs), or per path
prefix with --depth, then the totals: params, buffers, FLOPs, MACs, other FLOPs and
activation memory. For a topology (SSL, GAN …): its networks with the params and MACs
of each call, its state and its phases."""


@main.command("compile", help=f"""Check, cost and build SPEC into a torch module.

A network becomes a torch.fx GraphModule, a topology a TopologyModule.

{_NODE_TABLE}""")
@_spec_options
@_table_options
@click.option("--deploy", is_flag=True,
              help="Build the inference form: BatchNorm folded into convs, RepVGG/ACNet/DiracNet "
                   "branches fused into one conv (eval mode).")
@click.option("--output", "-o", "outputs", metavar="FILE", multiple=True,
              help="Also write the model: .py (standalone PyTorch source), .pt2 (torch.export), "
                   ".onnx, or .safetensors (the initialised weights, in --dtype). Repeatable: "
                   "every file is written from the one model built.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initial weights: the same seed gives the same weights and files.")
@click.option("--dynamic", type=click.Choice(["auto", "batch", "none"]), default="auto",
              show_default=True,
              help="Which input sizes of .pt2 / .onnx may vary: the batch and spatial sizes where "
                   "the network allows (auto), the batch only, or none.")
@click.option("--max-bytes", "max_bytes", metavar="SIZE", default=None,
              help="Refuse to build when the parameters and buffers need more (64G, 512M; 0: no "
                   "limit). Default: $ARCHDSL_MAX_BYTES, else the memory available.")
@click.option("--weights", "-w", "weights", metavar="FILE", default=None,
              help="Load a checkpoint (.safetensors, or a torch file read with weights_only=True) "
                   "into the model before printing or exporting, strictly.")
@click.option("--source", "weights_source", metavar="S", default=None,
              help="Whose naming the --weights file uses (torchvision/resnet50, timm, moco_v2 …): "
                   "the spec's `checkpoint` block of that name renames its keys. Default: the spec's own.")
def compile_cmd(spec, variant, overrides, inputs, dtype, as_json, depth, deploy, outputs, seed,
                dynamic, max_bytes, weights, weights_source):
    if weights_source and not weights:
        raise click.UsageError("--source names the naming of a --weights file; give --weights")
    with _errors():
        if outputs:  # a wrong file name fails before the build
            from archdsl.export import check_path
            for output in outputs:
                check_path(output)
        with _Progress(f"compiling {spec}"):
            start = time.perf_counter()
            module = archdsl.load_spec(**_spec(spec), variant=variant, input_shape=inputs,
                                       deploy=deploy and not weights, seed=seed, max_bytes=max_bytes,
                                       **overrides)
            seconds = time.perf_counter() - start
        if weights:
            with _Progress(f"loading {weights}"):
                archdsl.load_weights(module, archdsl.read_weights(weights), source=weights_source)
            if deploy:  # folded from the loaded weights
                from archdsl.lower.deploy import deploy as to_deploy
                module = to_deploy(module)
            click.echo(f"loaded {weights}", err=True)
        if outputs:
            _write_exports(module, outputs, dtype, dynamic, as_json)
        info = {
            "class": type(module).__name__,
            "build_seconds": round(seconds, 4),
            "params": sum(p.numel() for p in module.parameters()),
            "buffers": sum(b.numel() for b in module.buffers()),
            "submodules": sum(1 for _ in module.modules()) - 1,
        }
        graph = getattr(module, "arch_graph", None)
        if graph is None:   # a TopologyModule
            info["params"] = sum(p.numel() for p in torch_parameters(module))
            info["trainable_params"] = sum(p.numel() for p in module.parameters())
            info["phases"] = list(module.phases)
            data = dict(_topology_data(module.ir, dtype), module=info)
            if as_json:
                return _emit_json(data)
            return _print_topology(data, [
                f"module {info['class']}: {info['params']:,} parameters ({info['trainable_params']:,} "
                f"trained by gradients), {info['submodules']} submodules, built in {seconds:.2f} s"])
        info["fx_nodes"] = len(module.graph.nodes)
        report, data = _network_data(graph, dtype, depth)
        data["module"] = info
        if as_json:
            return _emit_json(data)
        _print_network(report, data, dtype, table=True, extra=[
            ("module", info["class"], f"torch.fx GraphModule, {info['submodules']} submodules, "
                                      f"{info['fx_nodes']} fx nodes, built in {seconds:.2f} s")])
        if info["params"] != report.totals.params:
            click.echo(f"warning: the built module has {info['params']:,} parameters but the "
                       f"cost report counts {report.totals.params:,} (a bug in archdsl)", err=True)


def _write_exports(module, outputs, dtype: str, dynamic: str, as_json: bool) -> None:
    """Write every -o file from the one model; say what was written and what is dynamic."""
    from archdsl.export import export_all
    with _Progress(f"writing {', '.join(outputs)}"):
        written = export_all(module, list(outputs), dtype=dtype, dynamic=dynamic)
    for w in written:
        how = f" (dynamic: {', '.join(w.dynamic)})" if w.dynamic else ""
        click.echo(f"wrote {w.path}{how}", err=as_json)
        for note in w.notes:
            click.echo(f"note: {w.path.name}: {note}", err=True)


def torch_parameters(module):
    """Every parameter of a module, including frozen ones (EMA twins)."""
    return (p for _, p in module.named_parameters(remove_duplicate=True))


@main.command("check")
@_spec_options
@click.option("--json", "as_json", is_flag=True, help="Print the totals as JSON.")
def check_cmd(spec, variant, overrides, inputs, dtype, as_json):
    """Check SPEC: parse it, elaborate it and infer every shape (no torch involved).

    Prints OK with the input/output shapes and totals (for a topology: its networks,
    state and phases), or the first error. SPEC `stdlib` or a folder checks every .arch
    file under it and every variant they declare (in parallel), and lists every error.
    """
    if spec == "stdlib" or Path(spec).is_dir():
        return _check_tree(None if spec == "stdlib" and not Path(spec).is_dir() else spec, as_json)
    with _errors():
        kind, ir = _load(spec, variant, overrides, inputs)
        if kind == "topology":
            data = _topology_data(ir, dtype)
        else:
            report, data = _network_data(ir, dtype, None, nodes=False)
        if as_json:
            return _emit_json(dict(ok=True, **data))
        _console().print("[bold green]OK[/]")
        if kind == "topology":
            _print_topology(data)
        else:
            _print_network(report, data, dtype, table=False)


def _check_tree(root, as_json: bool) -> None:
    start = time.perf_counter()
    with _Progress(f"checking {root or 'the stdlib'}"):
        results = check_tree(root)
    seconds = time.perf_counter() - start
    failed = [r for r in results if r.error]
    if as_json:
        _emit_json({"ok": not failed, "seconds": round(seconds, 3), "variants": [
            {"file": r.file, "variant": r.variant, "kind": r.kind, "references": r.references,
             **({"error": r.error} if r.error else {"params": r.params, "flops": r.flops, "macs": r.macs})}
            for r in results]})
    else:
        for r in failed:
            click.echo(f"{r.file} {r.variant}: " + r.error, err=True)
        files = len({r.file for r in results})
        topologies = sum(r.kind == "topology" for r in results if r.variant)
        _console().print(("[bold green]OK[/] " if not failed else f"[bold red]{len(failed)} failed[/] ")
                         + f"{files} files, {sum(bool(r.variant) for r in results)} variants "
                         + f"({topologies} topologies) checked in {seconds:.1f} s")
    if failed:
        sys.exit(EXIT_USER)


@main.command("cost", help=f"""Cost SPEC from shapes alone (no weights are allocated, no torch).

{_NODE_TABLE}""")
@_spec_options
@_table_options
def cost_cmd(spec, variant, overrides, inputs, dtype, as_json, depth):
    with _errors():
        kind, ir = _load(spec, variant, overrides, inputs)
        if kind == "topology":
            data = _topology_data(ir, dtype)
            return _emit_json(data) if as_json else _print_topology(data)
        report, data = _network_data(ir, dtype, depth)
        if as_json:
            return _emit_json(data)
        _print_network(report, data, dtype, table=True)


def _block_types(graph) -> dict[str, str]:
    return {path: b.type for path, b in graph.blocks.items()}


@main.command("fmt")
@click.argument("files", nargs=-1, required=True, metavar="FILES...")
@click.option("--check", is_flag=True,
              help="Change nothing; list the files that would change and exit 1 if there are any.")
def fmt_cmd(files, check):
    """Rewrite .arch FILES in the canonical layout, in place (comments are kept).

    A folder stands for every .arch file under it; `-` reads stdin and writes stdout.
    """
    from archdsl.syntax import fmt, parse
    changed, unchanged, failed = [], 0, False
    for path in _arch_files(files):
        try:
            with _errors():
                if path == "-":
                    text = sys.stdin.read()
                    click.echo(fmt(parse(text, "<stdin>")), nl=False)
                    continue
                text = Path(path).read_text(encoding="utf-8")
                new = fmt(parse(text, str(path)))
                parse(new, str(path))   # never write something that does not parse
                if new == text:
                    unchanged += 1
                    continue
                changed.append(path)
                if check:
                    click.echo(f"would reformat {path}")
                else:
                    Path(path).write_text(new, encoding="utf-8")
                    click.echo(f"reformatted {path}")
        except _Failed as e:
            e.show()
            failed = True
    if "-" not in files or len(files) > 1:
        verb = "would be reformatted" if check else "reformatted"
        click.echo(f"{len(changed)} file(s) {verb}, {unchanged} unchanged"
                   + (", some could not be parsed" if failed else ""), err=True)
    if failed or (check and changed):
        sys.exit(EXIT_USER)


def _arch_files(items) -> Iterator[str]:
    for item in items:
        if item != "-" and Path(item).is_dir():
            found = sorted(Path(item).rglob("*.arch"))
            if not found:
                click.echo(f"warning: no .arch files under {item}", err=True)
            yield from (str(p) for p in found)
        else:
            yield item


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@click.option("--costs/--no-costs", default=True, show_default=True,
              help="Check every variant and show its params and MACs (slower).")
def list_cmd(as_json, costs):
    """List the stdlib: families, their files, variants, references and status.

    Status says how a network variant is proven right by the test suite: `reference`
    (state_dict keys and shapes, params, FLOPs and outputs equal the reference
    implementation named in the spec) or `paper figure` (params, and MACs where given,
    equal the paper's table, cited in the spec). With --costs (the default) every
    variant is checked and its params and MACs (= FLOPs / 2, what most papers call
    FLOPs) at the spec's default input size are shown; `archdsl check NAME` shows
    those of a topology's networks.
    """
    with _errors():
        entries = archdsl.catalog()
        facts: dict[tuple[str, str], dict] = {}
        errors: list[str] = []
        if costs:
            with _Progress("checking variants"):
                for r in check_tree():
                    if r.error:
                        facts[r.file, r.variant] = {"error": r.error}
                        errors.append(r.error)
                    elif r.kind == "network":
                        facts[r.file, r.variant] = {"params": r.params, "flops": r.flops, "macs": r.macs}
        if as_json:
            _emit_json({"families": [
                {"name": e.name, "kind": e.kind, "file": e.file, "paper": e.paper,
                 "variants": [dict({"name": v.name, "references": v.references,
                                    "status": _status(e, v)}, **facts.get((e.file, v.name), {}))
                              for v in e.variants]}
                for e in entries]})
        else:
            _print_catalog(entries, facts, costs)
        for text in errors:
            click.echo(text, err=True)
        if errors:
            sys.exit(EXIT_USER)


def _status(entry, variant) -> str:
    if entry.kind == "topology":
        return "topology"
    return "reference" if variant.references else "paper figure"


def _print_catalog(entries, facts, costs: bool) -> None:
    from rich.table import Table
    from rich.text import Text
    table = Table(header_style="bold")
    for name in ("family", "file", "variant", "reference", "status"):
        table.add_column(name)
    if costs:
        table.add_column("params", justify="right")
        table.add_column("MACs", justify="right")
    for e in entries:
        family = e.name + (" (topology)" if e.kind == "topology" else "")
        for k, v in enumerate(e.variants):
            row = [Text(family if k == 0 else ""), Text(e.file if k == 0 else ""), Text(v.name),
                   Text(", ".join(v.references)), Text(_status(e, v))]
            if costs:
                f = facts.get((e.file, v.name), {})
                if not f:
                    row += [Text("-"), Text("-")]
                elif "error" in f:
                    row += [Text("error", style="red"), Text("")]
                else:
                    row += [Text(_si(f["params"])), Text(_si(f["macs"]))]
            table.add_row(*row)
        table.add_section()
    console = _console()
    console.print(table)
    n = sum(len(e.variants) for e in entries)
    console.print(f"{len(entries)} families, {n} variants"
                  + ("; MACs = FLOPs / 2 (what most papers call FLOPs) at the default input size"
                     if costs else "")
                  + ("; `archdsl check NAME` shows a topology's networks and costs"
                     if any(e.kind == "topology" for e in entries) else ""))


# ---- viz -------------------------------------------------------------------------------------------

@main.command("viz")
@_spec_options
@click.option("--output", "-o", "output", metavar="FILE", default=None,
              help="Where to write: .svg, .png, .pdf or .dot. Default: <variant>.svg here.")
@click.option("--depth", "-d", type=click.IntRange(min=1), metavar="N",
              help="Collapse block instances whose path has N or more parts into one node.")
@click.option("--expand", "-e", multiple=True, metavar="PATH",
              help="Keep this block (or network of a topology) open. Repeatable.")
@click.option("--color", type=click.Choice(["flops", "params"]), default=None,
              help="Fill nodes by their share of FLOPs or params (networks).")
def viz_cmd(spec, variant, overrides, inputs, dtype, output, depth, expand, color):
    """Render SPEC's graph with graphviz: block clusters, shapes on edges, costs on nodes.

    Without the `dot` program the DOT text is written instead, with how to install graphviz.
    """
    from archdsl.viz import render
    with _errors():
        kind, ir = _load(spec, variant, overrides, inputs)
        name = getattr(ir, "variant", None) or ir.name
        path = Path(output) if output else Path(f"{name}.svg")
        options = {"depth": depth, "expand": list(expand)}
        if color is not None:
            options["color"] = color
        with _Progress(f"rendering {spec}"):
            result = render(ir, path, **options)
        if result.dot_available:
            click.echo(result.message or f"wrote {result.path}")
        else:  # DOT written instead of a picture: say so, and how to get graphviz
            click.echo(result.message, err=True)


# ---- train -----------------------------------------------------------------------------------------

@main.command("train")
@_spec_options
@click.option("--synthetic", is_flag=True, required=True,
              help="Train on a pool of random inputs shaped like the topology's (the only data "
                   "source of this command: it is for trying a topology, not for real runs).")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Rounds of the topology's phases (each followed by after_step()).")
@click.option("--lr", type=float, default=None,
              help="Learning rate of --optimizer (default 1e-3); giving it replaces the recipe.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default=None,
              help="Replace the topology's declared recipe (its phases' `optimizer=`, used by "
                   "default) with Adam (betas 0.5, 0.999) or SGD (momentum 0.9); the default for "
                   "topologies that declare none is adam.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--classes", type=click.IntRange(min=1), default=10, show_default=True,
              help="Integer inputs (labels, indices) are drawn from range(CLASSES): keep it within "
                   "what the spec accepts (its num_classes, vocabulary, memory-bank size).")
@click.option("--json", "as_json", is_flag=True, help="Print every step's losses as JSON lines.")
def train_cmd(spec, variant, overrides, inputs, dtype, synthetic, steps, lr, optimizer, seed, classes,
              as_json):
    """Train a topology for a few steps on synthetic data, showing its losses.

    Example: archdsl train moco_v2 --synthetic --steps 10 --set backbone=resnet18 --set img=64
    --input 8x3x64x64 --input 8x3x64x64
    """
    from archdsl.topology.train import check_batch, synthetic_pool, train
    with _errors():
        args = _spec(spec)
        if _kind(args, variant) != "topology":
            raise archdsl.ArchError(
                f"'{spec}' is a network; `archdsl train` runs topologies",
                hint=f"train a classifier with the supervised topology: `archdsl train "
                     f"bag_of_tricks_resnet50 --synthetic --set backbone={spec} --set num_classes=10 "
                     f"--set img=64 --input 8x3x64x64 --input 8`; `archdsl list` shows every topology")
        with _Progress(f"building {spec}"):
            topo = archdsl.load_spec(**args, variant=variant, input_shape=inputs, seed=seed, **overrides)
        check_batch(topo.ir)  # before the progress bar: a batch too small for the loss
        data = synthetic_pool(topo, classes=classes, seed=seed)
        if as_json:
            with _integer_inputs_hint(classes):
                train(topo, steps, lr=lr, optimizer=optimizer, seed=seed, data=data,
                      on_step=lambda e: click.echo(json.dumps({"step": e.step, "losses": e.losses,
                                                               "logs": e.logs})))
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                      console=_console(stderr=True), transient=False) as bar:
            task = bar.add_task(f"training {spec}", total=steps, losses="")

            def show(entry):
                text = "  ".join(f"{k} {v:.4f}" for k, v in entry.losses.items())
                bar.update(task, advance=1, losses=text)
            with _integer_inputs_hint(classes):
                history = train(topo, steps, lr=lr, optimizer=optimizer, seed=seed, data=data, on_step=show)
        first, last = history[0].losses, history[-1].losses
        for phase in first:
            click.echo(f"{phase}: loss {first[phase]:.4f} → {last[phase]:.4f}")


@contextmanager
def _integer_inputs_hint(classes: int):
    """An index out of range while training on synthetic data is the data's fault, not a bug."""
    try:
        yield
    except IndexError as e:
        raise archdsl.ArchError(f"a training step failed: {e}",
                                hint=f"integer inputs are drawn from range({classes}); pass --classes N "
                                     f"no larger than the spec's class count") from None


@main.command("args")
@click.argument("spec", metavar="SPEC")
@click.option("--variant", "-v", metavar="NAME", help="Which variant (or network) of the file.")
@click.option("--json", "as_json", is_flag=True, help="Print the arguments as JSON.")
def args_cmd(spec, variant, as_json):
    """Print a network's or topology's arguments: type, default, what the variant sets, docs.

    Example: archdsl args convnext_tiny
    """
    with _errors():
        args = _spec(spec)
        sig = archdsl.spec_args(args["spec"], variant, source=args.get("source"))
    if as_json:
        _emit_json(sig.to_dict())
        return
    click.echo(_signature_text(sig))


def _signature_text(sig) -> str:
    import textwrap
    where = f"{sig.file}:{sig.line}"
    head = f"{sig.kind} {sig.name} ({where})" + (f", as variant {sig.variant}" if sig.variant else "")
    out = [head]
    if sig.doc:
        out += textwrap.wrap(sig.doc, 96, initial_indent="  ", subsequent_indent="  ")
    out.append("")
    for a in sig.arguments:
        line = f"  {a.name}" + (f": {a.type}" if a.type else "")
        shown = a.value if a.value is not None else a.default
        line += f" = {shown}" if shown is not None else ""
        if a.value is not None:
            line += f"    ({sig.variant}; " + (f"default {a.default})" if a.default else "required)")
        elif a.default is None:
            line += "    (required)"
        out.append(line)
        out += textwrap.wrap(a.doc, 96, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="archdsl")
