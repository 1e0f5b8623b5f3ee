"""The fuzzer's cases: the corpus of spec texts, their mutations, and case `i` of a seed."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from archdsl.testing.fuzz.snippets import Holes, hostile_string, network_snippet, topology_snippet

TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9_]*(?:\.[0-9]*)?'
                   r'(?:[eE][-+]?[0-9]+)?|->|\*\*|//|==|!=|<=|>=|\.\.\.|\s+|.', re.S)
KEYWORDS = ("in out if elif else for and or not true false none repeat param buffer let variant "
            "import from as reference net state phase log after topology init assert checkpoint "
            "block network").split()


@dataclass(frozen=True)
class Case:
    text: str
    folder: str          # the folder its imports resolve against (the mutated file's own)
    origin: str          # where it came from, for the report
    pick: int = 0        # which of the file's variants is checked (by index, modulo their count)
    build: bool = False  # also build and run it when it passes and is small


class Corpus:
    """The texts mutations start from: the stdlib, `specs/` and the README's examples."""

    def __init__(self):
        from archdsl.ops import REGISTRY
        from archdsl.semantics.builtins import BUILTINS
        from archdsl.semantics.loader import stdlib_dir
        root = stdlib_dir()
        self.root = str(root)
        self.files: list[tuple[str, str, str]] = []   # (origin, text, folder)
        for path in sorted(root.rglob("*.arch")):
            self.files.append((path.relative_to(root).as_posix(), path.read_text(), str(path.parent)))
        repo = root.parent
        for path in sorted((repo / "specs").glob("*.arch")) if (repo / "specs").is_dir() else []:
            self.files.append((f"specs/{path.name}", path.read_text(), str(path.parent)))
        readme = repo / "README.md"
        if readme.is_file():
            for i, block in enumerate(re.findall(r"```arch\n(.*?)```", readme.read_text(), re.S)):
                self.files.append((f"README#{i}", block, str(repo)))
        words = {t for _, text, _ in self.files for t in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)}
        self.names = sorted(words | set(REGISTRY) | set(BUILTINS) | set(KEYWORDS))
        self.lines = [line for _, text, _ in self.files for line in text.splitlines() if line.strip()]


def _token_positions(tokens: list[str], kind: str) -> list[int]:
    test = {"any": lambda t: not t.isspace(),
            "number": lambda t: t[0].isdigit(),
            "name": lambda t: t[0].isalpha() or t[0] == "_",
            "string": lambda t: t[0] == '"'}[kind]
    return [i for i, t in enumerate(tokens) if test(t)]


def mutate(text: str, rng: random.Random, corpus: Corpus) -> tuple[str, str]:
    """One random mutation of a spec's text → (new text, its name)."""
    kind = rng.choice(["delete", "duplicate", "swap", "number", "name", "splice", "line", "string", "label"])
    if kind in ("splice", "line"):
        lines = text.splitlines()
        i = rng.randrange(len(lines) + 1)
        if kind == "splice":
            lines.insert(i, rng.choice(corpus.lines))
        elif lines:
            j = min(len(lines), i + rng.randint(1, 3))
            op = rng.choice(["delete", "duplicate", "swap"])
            if op == "delete":
                del lines[i:j]
            elif op == "duplicate":
                lines[i:i] = lines[i:j]
            else:
                k = rng.randrange(len(lines))
                lines[i % len(lines)], lines[k] = lines[k], lines[i % len(lines)]
        return "\n".join(lines) + "\n", kind
    tokens = TOKEN.findall(text)
    where = {"number": "number", "name": "name", "string": "string"}.get(kind, "any")
    spots = _token_positions(tokens, where)
    if not spots:
        return text, "none"
    i = rng.choice(spots)
    if kind == "delete":
        tokens[i] = ""
    elif kind == "duplicate":
        tokens[i] = tokens[i] + " " + tokens[i]
    elif kind == "swap":
        j = rng.choice(spots)
        tokens[i], tokens[j] = tokens[j], tokens[i]
    elif kind == "number":
        tokens[i] = Holes(rng, 1.0).number()
    elif kind == "name":
        tokens[i] = rng.choice(corpus.names)
    elif kind == "string":
        tokens[i] = hostile_string(rng)
    else:  # a hostile label in front of an arrow's stage
        arrows = [k for k in range(len(tokens)) if tokens[k] == "->"]
        if not arrows:
            return text, "none"
        tokens[rng.choice(arrows)] = f"-> {Holes(rng, 1.0).label()}: "
    return "".join(tokens), kind


def make_case(seed: int, index: int, corpus: Corpus, build_fraction: float, snippets: float = 0.45) -> Case:
    """Case `index` of `seed`: the same in every run over the same stdlib. A fraction `snippets`
    of the cases are snippets, the others mutated files."""
    rng = random.Random(f"{seed}:{index}")
    build = rng.random() < build_fraction
    if rng.random() < snippets:
        snippet = network_snippet(rng) if rng.random() < 0.75 else topology_snippet(rng)
        origin = "snippet:" + ("network" if snippet.startswith("network") else "topology")
        if rng.random() < 0.2:
            snippet, how = mutate(snippet, rng, corpus)
            origin += f"+{how}"
        return Case(snippet, corpus.root, origin, 0, build)
    name, text, folder = rng.choice(corpus.files)
    hows = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        text, how = mutate(text, rng, corpus)
        hows.append(how)
    return Case(text, folder, f"{name}:{'+'.join(hows)}", rng.randrange(64), build)
