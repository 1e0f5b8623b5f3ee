"""The command line: `archdsl compile | check | cost | fmt | list`.

A thin shell over the Python API (`archdsl.api`): every command parses its options, calls
the API and prints what `archdsl.report` makes of it. Errors in a spec are `ArchError`s, printed
with their location and exit status 1; misuse of the command line exits 2 (click's convention).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

import archdsl
from archdsl import report
from archdsl.api import check_tree
from archdsl.errors import ArchError, ArchWarning
from archdsl.semantics.loader import stdlib_dir

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

# Keyword names the API functions take themselves; a network parameter with one of these
# names cannot be passed through `**overrides`.
_RESERVED = {"spec", "variant", "input_shape", "source", "dtype", "seed", "max_bytes"}
_DTYPES = ["float32", "float16", "bfloat16", "float64"]


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


@dataclasses.dataclass
class _Table:
    """How to print a cost report: `fmt` (table, md, csv, json) and `depth`, the path depth
    rows are summed at (None: one row per node)."""
    fmt: str
    depth: int | None


def _parse_depth(ctx, param, value: str | None) -> int | str | None:
    if value is None or value == "all":
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise click.BadParameter(f"expected a positive integer or 'all', got {value!r}", ctx, param)


def _table_options(fn):
    """--depth, --full, --format and --json, handed to the command as one `table: _Table`."""
    @functools.wraps(fn)
    def wrapper(*args, depth, full, fmt, as_json, **kwargs):
        fmt = "json" if as_json else fmt
        if full or depth == "all":
            depth = None
        elif depth is None and fmt != "json":   # JSON lists every node unless asked to sum
            depth = 1
        return fn(*args, table=_Table(fmt, depth), **kwargs)

    for option in reversed([
        click.option("--depth", "-d", metavar="N|all", callback=_parse_depth,
                     help="Sum the rows under each path prefix of N parts (1, the default: conv1, "
                          "layer1, layer2 …; 2: layer1.0 …); `all`: one row per node."),
        click.option("--full", is_flag=True, help="One row per node (--depth all)."),
        click.option("--format", "-f", "fmt", type=click.Choice(report.FORMATS), default="table",
                     show_default=True,
                     help="table (fitted to the terminal), md (Markdown), csv (the rows, exact "
                          "numbers) or json."),
        click.option("--json", "as_json", is_flag=True, help="--format json: the cost report."),
    ]):
        wrapper = option(wrapper)
    return wrapper


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
    with report.Spinner(f"checking {spec}"):
        if _kind(args, variant) == "topology":
            return "topology", archdsl.load_topology(**args, variant=variant, input_shape=inputs,
                                                     **overrides)
        return "network", archdsl.load_graph(**args, variant=variant, input_shape=inputs,
                                             **overrides)


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


_NODE_TABLE = """Prints one row per top-level part of the network (path, op or block, output shape,
params, MACs, FLOPs, activations, receptive field) — per path prefix of N parts with
--depth N, per node with --depth all — then the totals: params (trainable and frozen),
buffers, FLOPs, MACs, other FLOPs, param bytes and activation memory. A table wider than
the terminal leaves out its least needed columns and says so; --format md or csv print
everything. For a topology (SSL, GAN …): its networks with the params and MACs of each
call, its state and its phases."""


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
@click.option("--device", default=None, metavar="DEVICE",
              help="Where the weights are created: cpu (default), cuda, cuda:1, … or meta "
                   "(allocates nothing: the module's structure only).")
@click.option("--max-bytes", "max_bytes", metavar="SIZE", default=None,
              help="Refuse to build when the parameters and buffers need more (64G, 512M; 0: no "
                   "limit). Default: $ARCHDSL_MAX_BYTES, else the memory available.")
@click.option("--weights", "-w", "weights", metavar="FILE", default=None,
              help="Load a checkpoint (.safetensors, or a torch file read with weights_only=True) "
                   "into the model before printing or exporting, strictly.")
@click.option("--source", "weights_source", metavar="S", default=None,
              help="Whose naming the --weights file uses (torchvision/resnet50, timm, moco_v2 …): "
                   "the spec's `checkpoint` block of that name renames its keys. Default: the spec's own.")
def compile_cmd(spec, variant, overrides, inputs, dtype, table, deploy, outputs, seed, dynamic,
                device, max_bytes, weights, weights_source):
    if weights_source and not weights:
        raise click.UsageError("--source names the naming of a --weights file; give --weights")
    with _errors():
        if outputs:  # a wrong file name fails before the build
            from archdsl.export import check_path
            for output in outputs:
                check_path(output)
        with report.Spinner(f"compiling {spec}"):
            start = time.perf_counter()
            module = archdsl.load_spec(**_spec(spec), variant=variant, input_shape=inputs,
                                       deploy=deploy and not weights, seed=seed, device=device,
                                       max_bytes=max_bytes,
                                       **overrides)
            seconds = time.perf_counter() - start
        if weights:
            with report.Spinner(f"loading {weights}"):
                archdsl.load_weights(module, archdsl.read_weights(weights), source=weights_source)
            if deploy:  # folded from the loaded weights
                from archdsl.lower.deploy import deploy as to_deploy
                module = to_deploy(module)
            click.echo(f"loaded {weights}", err=True)
        if outputs:
            _write_exports(module, outputs, dtype, dynamic, table.fmt != "table")
        text, warning = report.compiled_output(module, seconds, dtype, table.fmt, table.depth)
        click.echo(text)
        if warning:
            click.echo(warning, err=True)


def _write_exports(module, outputs, dtype: str, dynamic: str, as_json: bool) -> None:
    """Write every -o file from the one model; say what was written and what is dynamic."""
    from archdsl.export import export_all
    with report.Spinner(f"writing {', '.join(outputs)}"):
        written = export_all(module, list(outputs), dtype=dtype, dynamic=dynamic)
    for w in written:
        how = f" (dynamic: {', '.join(w.dynamic)})" if w.dynamic else ""
        click.echo(f"wrote {w.path}{how}", err=as_json)
        for note in w.notes:
            click.echo(f"note: {w.path.name}: {note}", err=True)


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
        data, text = report.check_result(*_load(spec, variant, overrides, inputs), dtype)
        if as_json:
            return _emit_json(dict(ok=True, **data))
        report.console().print("[bold green]OK[/]")
        click.echo(text)


def _check_tree(root, as_json: bool) -> None:
    start = time.perf_counter()
    with report.Spinner(f"checking {root or 'the stdlib'}"):
        results = check_tree(root)
    seconds = time.perf_counter() - start
    failed = [r for r in results if r.error]
    if as_json:
        _emit_json(report.check_data(results, seconds))
    else:
        for r in failed:
            click.echo(f"{r.file} {r.variant}: " + r.error, err=True)
        report.console().print(report.check_summary(results, seconds))
    if failed:
        sys.exit(EXIT_USER)


@main.command("cost", help=f"""Cost SPEC from shapes alone (no weights are allocated, no torch).

{_NODE_TABLE}""")
@_spec_options
@_table_options
def cost_cmd(spec, variant, overrides, inputs, dtype, table):
    with _errors():
        kind, ir = _load(spec, variant, overrides, inputs)
        if kind == "topology":
            click.echo(report.topology_output(report.topology_data(ir, dtype), table.fmt))
        else:
            click.echo(report.network_output(ir, dtype, table.fmt, table.depth)[1])


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
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@click.option("--costs/--no-costs", default=False, show_default=True,
              help="Check the listed variants and show their params and MACs (slower).")
@click.option("--wide", is_flag=True, help="Also show each family's paper.")
def list_cmd(patterns, as_json, costs, wide):
    """List the stdlib's variants: the network they build, their file, and how each is proven.

    PATTERN is a glob on variant names, as in timm.list_models: `archdsl list 'resnet*'`
    (several patterns: any of them). "proven by" names the reference implementation whose
    state_dict keys and shapes, params, FLOPs and outputs the variant equals, or `paper
    figure` (params, and MACs where given, equal the paper's table, cited in the spec). With
    --costs every listed variant is checked and its params and MACs (= FLOPs / 2, what most
    papers call FLOPs) at the spec's default input size are shown; `archdsl check NAME`
    shows those of a topology's networks.
    """
    with _errors():
        entries = report.matching(archdsl.catalog(), patterns)
        if patterns and not entries:
            raise ArchError(f"no stdlib variant matches {' '.join(patterns)}",
                            hint="patterns are globs on variant names: 'resnet*', '*_tiny'")
        facts: dict[tuple[str, str], dict] = {}
        errors: list[str] = []
        if costs:
            with report.Spinner("checking variants"):
                facts, errors = report.catalog_facts(
                    entries, lambda file: check_tree(stdlib_dir() / file, jobs=1))
        if as_json:
            _emit_json(report.catalog_data(entries, facts))
        else:
            click.echo(report.catalog_text(entries, facts, costs, wide, width=report.terminal_width()))
        for text in errors:
            click.echo(text, err=True)
        if errors:
            sys.exit(EXIT_USER)


# ---- viz -------------------------------------------------------------------------------------------

@main.command("viz")
@_spec_options
@click.option("--output", "-o", "output", metavar="FILE", default=None,
              help="Where to write: .svg, .png, .jpg, .pdf or .dot (with graphviz), or .html (an "
                   "interactive page: zoom, open and close blocks, hover for shapes and costs; "
                   "no graphviz needed). Default: <variant>.svg here.")
@click.option("--depth", "-d", metavar="N|all", callback=_parse_depth,
              help="Draw everything under one path prefix of N parts as one box, as `cost --depth "
                   "N` sums rows; `all` opens everything. Default: the deepest depth that draws "
                   "at most 40 boxes (a topology: each network as one box).")
@click.option("--expand", "-e", multiple=True, metavar="PATH",
              help="Keep this block (or network of a topology) open. Repeatable.")
@click.option("--color", type=click.Choice(["flops", "params"]), default=None,
              help="Fill nodes by their share of FLOPs or params (networks).")
@click.option("--left-right", "--lr", "left_right", is_flag=True,
              help="Lay the network out left to right (default: top to bottom).")
def viz_cmd(spec, variant, overrides, inputs, dtype, output, depth, expand, color, left_right):
    """Draw SPEC's graph: block clusters, shapes on edges, costs on nodes.

    Pictures are rendered by graphviz's `dot`; without it, the DOT text is written next to
    the picture, the message says how to install graphviz, and the exit status is 1.
    """
    from archdsl.viz import render
    from archdsl.viz.view import readable_depth
    with _errors():
        kind, ir = _load(spec, variant, overrides, inputs)
        name = getattr(ir, "variant", None) or ir.name
        path = Path(output) if output else Path(f"{name}.svg")
        if depth == "all":
            depth = None
        elif depth is None and kind == "network":
            depth = readable_depth(ir)
        options = {"depth": depth, "expand": list(expand), "rankdir": "LR" if left_right else "TB"}
        if color is not None:
            options["color"] = color
        with report.Spinner(f"rendering {spec}"):
            result = render(ir, path, **options)
        if result.path != path:   # no graphviz: the DOT text instead of the picture
            raise _Failed(f"error: {result.message}\n  or draw an interactive page, which needs no "
                          f"graphviz: -o {path.with_suffix('.html')}")
        click.echo(result.message)


# ---- train -----------------------------------------------------------------------------------------

@main.command("train")
@_spec_options
@click.option("--synthetic", is_flag=True,
              help="Train on a pool of random inputs shaped like the topology's (for trying a topology).")
@click.option("--data", "data_dir", metavar="FOLDER", type=click.Path(file_okay=False),
              help="Train on an image folder, FOLDER/<class>/*.png|jpg (torchvision's ImageFolder): images "
                   "decoded with Pillow, resized and centre-cropped to the image input's size, in [0, 1]; "
                   "a topology with a `views` argument gets views=true (it makes its own views).")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Rounds of the topology's phases (each followed by after_step()); with --resume, the "
                   "total including the rounds already done.")
@click.option("--lr", type=float, default=None,
              help="Learning rate of --optimizer (default 1e-3); giving it replaces the recipe.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default=None,
              help="Replace the topology's declared recipe (its phases' `optimizer=`, used by "
                   "default) with Adam (betas 0.5, 0.999) or SGD (momentum 0.9); the default for "
                   "topologies that declare none is adam.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--classes", type=click.IntRange(min=1), default=10, show_default=True,
              help="With --synthetic, integer inputs (labels, indices) are drawn from range(CLASSES): keep "
                   "it within what the spec accepts (its num_classes, vocabulary, memory-bank size).")
@click.option("--checkpoint", "checkpoint", metavar="PATH", type=click.Path(dir_okay=False),
              default="checkpoint.pt", show_default=True,
              help="Where --checkpoint-every writes the training state (replaced each time).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, metavar="N",
              help="Save the whole training state (networks, optimizers, schedules' step, EMA twins, "
                   "queues, data position, RNG) every N rounds.")
@click.option("--resume", metavar="PATH", type=click.Path(exists=True, dir_okay=False),
              help="Continue exactly from a checkpoint of this command (same spec, arguments and inputs).")
@click.option("--metrics", "--log", "log_path", metavar="PATH", type=click.Path(dir_okay=False),
              help="Append one CSV row per round: losses, logged values, learning rates (under "
                   "torchrun write --metrics: torchrun takes --log for its own --log-dir).")
@click.option("--json", "as_json", is_flag=True, help="Print every step's losses as JSON lines.")
def train_cmd(spec, variant, overrides, inputs, dtype, synthetic, data_dir, steps, lr, optimizer, seed,
              classes, checkpoint, checkpoint_every, resume, log_path, as_json):
    """Train a topology on synthetic data or an image folder, showing its losses.

    Example: archdsl train moco_v2 --synthetic --steps 10 --set backbone=resnet18 --set img=64
    --input 8x3x64x64 --input 8x3x64x64

    Example: archdsl train simclr_v1 --data images/ --set backbone=resnet18 --set img=64
    --input 32x3x73x73 --checkpoint-every 100 --metrics metrics.csv

    Under `torchrun --nproc-per-node N -m archdsl train …` every process trains its share of each
    batch (DDP, gloo); rank 0 prints, logs and writes the checkpoints.
    """
    from archdsl.topology.data import DataError
    if synthetic == bool(data_dir):
        raise click.UsageError("give one data source: --synthetic or --data FOLDER")
    with _errors(), _distributed() as (rank, world):
        args = _spec(spec)
        if _kind(args, variant) != "topology":
            raise archdsl.ArchError(
                f"'{spec}' is a network; `archdsl train` runs topologies",
                hint=f"train a classifier with the supervised topology: `archdsl train "
                     f"bag_of_tricks_resnet50 --synthetic --set backbone={spec} --set num_classes=10 "
                     f"--set img=64 --input 8x3x64x64 --input 8`; `archdsl list` shows every topology")
        if data_dir and "views" not in overrides and _takes_views(args, variant):
            overrides = {**overrides, "views": archdsl.SpecText("true")}
        with report.Spinner(f"building {spec}"):
            topo = archdsl.load_spec(**args, variant=variant, input_shape=inputs, seed=seed, **overrides)
        try:
            _train(topo, spec, data_dir, rank, world, dict(
                steps=steps, lr=lr, optimizer=optimizer, seed=seed, checkpoint=checkpoint,
                checkpoint_every=checkpoint_every, resume=resume, log=log_path), classes, as_json)
        except DataError as e:
            raise _Failed(f"error: {e}") from None
        except ValueError as e:
            if not str(e).startswith("--resume"):
                raise
            raise _Failed(f"error: {e}") from None


def _takes_views(args: dict, variant) -> bool:
    sig = archdsl.spec_args(args["spec"], variant, source=args.get("source"))
    return any(a.name == "views" for a in sig.arguments)


@contextmanager
def _distributed():
    """(rank, world): under torchrun (WORLD_SIZE > 1), a gloo process group for the command."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1
        return
    import torch.distributed as torch_dist
    torch_dist.init_process_group("gloo")
    try:
        yield torch_dist.get_rank(), world
        torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()


def _train(topo, spec: str, data_dir, rank: int, world: int, options: dict, classes: int, as_json: bool):
    from archdsl.topology.data import ImageFolderSource
    from archdsl.topology.train import check_batch, input_specs, synthetic_pool, train
    seed = options["seed"]
    if data_dir:
        options["source"] = ImageFolderSource(data_dir, input_specs(topo), seed=seed, rank=rank, world=world)
    else:
        options["data"] = synthetic_pool(topo, classes=classes, seed=seed)
    check_batch(topo.ir)  # before the progress bar: a batch too small for the loss
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        options["model"] = DDP(topo, find_unused_parameters=len(topo.phases) > 1)
    if as_json or rank != 0:
        def show(e):
            if rank == 0:
                click.echo(json.dumps({"step": e.step, "losses": e.losses, "logs": e.logs}))
        with _integer_inputs_hint(classes):
            train(topo, on_step=show, **options)
        return
    with report.training_bar(f"training {spec}", options["steps"]) as show, _integer_inputs_hint(classes):
        history = train(topo, on_step=show, **options)
    if history:
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
    click.echo(report.signature_text(sig))


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="archdsl")
