"""What a label may be: a module path relative to its scope, so part of a `state_dict` key."""
from __future__ import annotations

import re

from archdsl.errors import ArchError, Span

MAX_LABEL_CHARS = 128
_COMPONENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


def check_label(text: str, span: Span | None) -> str:
    """`text` if each of its dotted parts is a path component (`convs.0` is timm's ModuleList
    naming); an empty part (`head.`), a quote or a space is an error at the label."""
    if len(text) > MAX_LABEL_CHARS:
        raise ArchError(f"a label longer than {MAX_LABEL_CHARS} characters", span,
                        hint="a label names one module: keep it short")
    for part in text.split("."):
        check_label_component(part, text, span)
    return text


def check_label_component(part: str, label: str, span: Span | None) -> None:
    if not _COMPONENT.fullmatch(part):
        what = "has an empty part" if not part else \
            f"has the part {part!r}" if "." in label else "is not a name"
        raise ArchError(f"label {label!r} {what}", span,
                        hint="a label is a module path: names (letters, digits, _) or indices "
                             "joined by '.'; a template such as `layer{i + 1}:` must give one too")
