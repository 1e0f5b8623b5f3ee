"""The stdlib catalog: which file declares which variant, and `resolve()`, what a spec argument
names. Below the API: the elaborator asks it for stdlib variants by name, never the API.

The index is built once from the parsed stdlib and kept beside the parse cache, keyed by a hash
of every stdlib file's name and content, so a fresh process finds a variant (or says "did you
mean") without parsing 99 files, and any edit to the stdlib rebuilds it.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from archdsl.errors import ArchError, did_you_mean
from archdsl.ir.names import shown
from archdsl.semantics.loader import Loader, parse_file, stdlib_dir
from archdsl.semantics.values import BlockRef, ModuleEnv, Partial
from archdsl.syntax import ast as A
from archdsl.syntax.cache_dir import cache_dir


@dataclass
class VariantInfo:
    name: str
    references: list[str]
    network: str = ""    # the network (or topology) the variant builds


@dataclass
class CatalogEntry:
    name: str            # the family: the network (or topology) declared in the file ("ResNet")
    kind: str            # "network" or "topology"
    file: str            # path relative to the stdlib ("nets/resnet.arch")
    paper: str           # the paper the file's header cites: its first sentence
    variants: list[VariantInfo] = field(default_factory=list)


@dataclass
class Resolved:
    """What a spec argument names: the module, the network or topology to build, its variant
    name (None for a bare network) and the references that variant declares."""
    module: ModuleEnv
    callee: BlockRef | Partial
    variant: str | None
    references: list[str]
    loader: Loader

    @property
    def block(self) -> BlockRef:
        return block_of(self.callee)

    @property
    def kind(self) -> str:
        return self.block.decl.kind  # "network", "topology" (or "block")


def block_of(callee) -> BlockRef:
    return callee.callee if isinstance(callee, Partial) else callee


# ---- the index ---------------------------------------------------------------------------------

def catalog() -> list[CatalogEntry]:
    """Every stdlib family (one per file that declares variants) with its variants."""
    return [CatalogEntry(**{**e, "variants": [VariantInfo(**v) for v in e["variants"]]})
            for e in _index()]


@lru_cache(maxsize=1)
def variant_index() -> dict[str, str]:
    """Stdlib variant name → its file, relative to the stdlib."""
    return {v["name"]: e["file"] for e in _index() for v in e["variants"]}


@lru_cache(maxsize=1)
def _index() -> list[dict]:
    root = stdlib_dir()
    files = sorted(root.rglob("*.arch"))
    digest = _fingerprint(root, files)
    stored = _read(digest)
    if stored is not None:
        return stored
    entries = [e for e in (_entry_of(root, f) for f in files) if e is not None]
    _write(digest, entries)
    return entries


def _fingerprint(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256(b"catalog-2")
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def _entry_of(root: Path, path: Path) -> dict | None:
    ast = parse_file(path)
    variants = [it for it in ast.items if isinstance(it, A.Variant)]
    if not variants:
        return None  # a library of blocks (and networks) that other files build variants from
    nets = [it for it in ast.items if isinstance(it, A.BlockDef) and it.kind in ("network", "topology")]
    nets = [it for it in nets if it.kind == "topology"] or nets  # a topology file lists as that
    entry = CatalogEntry(nets[0].name if nets else path.stem, nets[0].kind if nets else "network",
                         path.relative_to(root).as_posix(), _paper(ast.comments),
                         _variant_infos(variants))
    return asdict(entry)


def _variant_infos(variants: list[A.Variant]) -> list[VariantInfo]:
    """Each variant with the network it calls (through a variant of the same file it calls)."""
    networks: dict[str, str] = {}
    for v in variants:
        func = v.value.func if isinstance(v.value, A.Call) else v.value
        name = func.id if isinstance(func, A.Name) else getattr(func, "name", "")
        networks[v.name] = networks.get(name, name)
    return [VariantInfo(v.name, list(v.references), networks[v.name]) for v in variants]


def _paper(comments: list[A.Comment]) -> str:
    """The header comment's first sentence: its lines joined up to where the first
    parenthesis (the authors and venue) closes, else up to the first full stop."""
    lines = []
    for c in comments:
        if c.line != len(lines) + 1:
            break
        lines.append(c.text.lstrip("#").strip())
    text = " ".join(lines)
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == ")" and depth == 0:
            return text[:i + 1]
        if ch == "." and depth == 0 and text[i + 1:i + 2] in (" ", ""):
            return text[:i]
    return text


def _store_path(digest: str) -> Path | None:
    root = cache_dir()
    return None if root is None else root / f"catalog-{digest}.json"


def _read(digest: str) -> list[dict] | None:
    path = _store_path(digest)
    try:
        data = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, list) else None


def _write(digest: str, entries: list[dict]) -> None:
    path = _store_path(digest)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(entries, f)
        os.replace(f.name, path)
    except OSError:
        pass


# ---- resolving what a spec names ---------------------------------------------------------------

def is_path(spec: str | Path) -> bool:
    return isinstance(spec, Path) or spec.endswith(".arch") or "/" in spec or Path(spec).is_file()


def open_module(spec: str | Path, loader: Loader | None = None) -> tuple[ModuleEnv, str | None, Loader]:
    """A spec path, or a stdlib variant name → (module, the variant it names or None, loader)."""
    loader = loader or Loader()
    if is_path(spec):
        return loader.load_file(Path(spec)), None, loader
    return open_variant(spec, loader, what="spec file or stdlib variant")


def open_variant(name: str, loader: Loader | None = None, *, what: str = "stdlib variant"
                 ) -> tuple[ModuleEnv, str, Loader]:
    """A stdlib variant by name, never a path: what a spec's own strings may name
    (`net f = "resnet50"`), so that a spec cannot make archdsl read a file of its choosing."""
    loader = loader or Loader()
    index = variant_index()
    if name not in index:
        raise ArchError(f"no {what} named '{shown(name)}'",
                        hint=did_you_mean(name, index) or "see `archdsl list` for every variant")
    return loader.load_file(stdlib_dir() / index[name]), name, loader


def stdlib_value(name: str):
    """The value of a stdlib variant (`resnet50`), or None when no variant has that name."""
    if name not in variant_index():
        return None
    module, named, _ = open_variant(name)
    return module.globals[named]


def entry(module: ModuleEnv, variant: str | None) -> tuple[BlockRef | Partial, str | None, list[str]]:
    """Which network to build: the named variant or network, else the file's first variant."""
    variants = module.variants
    if variant is None:
        if variants:
            variant = next(iter(variants))
        else:
            nets = [it for it in module.ast.items
                    if isinstance(it, A.BlockDef) and it.kind in ("network", "topology")]
            if not nets:
                raise ArchError(f"{module.ast.span.file} declares no network and no variant",
                                module.ast.span, hint="add `network Name(...) { ... }` or a `variant`")
            return module.globals[nets[-1].name], None, []
    if variant in variants:
        return module.globals[variant], variant, list(variants[variant].references)
    value = module.globals.get(variant)
    if isinstance(value, (BlockRef, Partial)):
        return value, variant, []
    raise ArchError(f"'{variant}' is not a variant of {Path(module.path).name}",
                    hint=did_you_mean(variant, list(variants)) or
                    f"variants: {', '.join(variants) or '(none)'}")


def resolve(spec: str | Path | None, variant: str | None = None, source: str | None = None,
            folder: Path | None = None) -> Resolved:
    """What `spec` (a path, a stdlib variant name, or `source` text) and `variant` name."""
    if source is not None:
        loader = Loader()
        module = loader.load_text(source, folder or Path.cwd(), f"<{spec or 'source'}>")
        named = None
    elif spec is None:
        raise ArchError("no spec given", hint="pass a .arch path or a stdlib variant name")
    else:
        module, named, loader = open_module(spec)
    callee, var_name, refs = entry(module, variant or named)
    return Resolved(module, callee, var_name, refs, loader)
