"""What a spec may name: module-path components (labels, params, buffers, nets, states) and
inputs. Every such name ends up as an attribute of a torch module and in the source that
torch.fx generates for the forward, so it must be a plain identifier (or a repeat index), not a
Python keyword, and not an attribute every torch module already has. Pure Python: no torch."""
from __future__ import annotations

import keyword
import re

from archdsl.errors import ArchError, Span

MAX_NAME = 128

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"[0-9]+")

# Public attributes of every torch.nn.Module (methods and state). A child named like one of them
# cannot be registered (`float:`) or would shadow it; names starting with '_' are torch's own
# (`_modules`, `_parameters`, …) and refused as a class. tests/test_security.py checks this list
# against the installed torch.
MODULE_ATTRS = frozenset("""
    T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda
    double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
    get_submodule half ipu load_state_dict modules mtia named_buffers named_children
    named_modules named_parameters parameters register_backward_hook register_buffer
    register_forward_hook register_forward_pre_hook register_full_backward_hook
    register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter
    register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state
    set_submodule share_memory state_dict to to_empty train training type xpu zero_grad
""".split())

# Public attributes that a torch.fx.GraphModule (the built network's root) adds to those.
ROOT_ATTRS = frozenset("""
    code graph meta print_readable recompile to_folder add_submodule delete_submodule
    delete_all_unused_submodules shape_env
""".split())


def name_problem(text: str, *, index_ok: bool = True, root: bool = False) -> str | None:
    """Why `text` cannot be one component of a module path (None when it can)."""
    if not text:
        return "is empty"
    if len(text) > MAX_NAME:
        return f"is {len(text)} characters long (at most {MAX_NAME})"
    if index_ok and _INDEX.fullmatch(text):
        return None
    if not _IDENTIFIER.fullmatch(text):
        return "is not an identifier (letters, digits and '_', not starting with a digit)"
    if keyword.iskeyword(text):
        return "is a Python keyword"
    if text.startswith("_"):
        return "starts with '_' (reserved for torch's own module attributes)"
    if text in MODULE_ATTRS or (root and text in ROOT_ATTRS):
        return "is the name of an attribute that every torch module already has"
    return None


def path_problem(path: str, root: bool = True) -> str | None:
    """Why a dotted module path cannot be used (None when every component can); `root`: the path
    starts at the built network's root, whose own attributes its first part may not shadow."""
    if len(path) > 8 * MAX_NAME:
        return f"is {len(path)} characters long (at most {8 * MAX_NAME})"
    for i, part in enumerate(path.split(".")):
        problem = name_problem(part, root=root and i == 0)
        if problem:
            return f"part {i + 1} ('{shown(part)}') {problem}"
    return None


def _shorten(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "…"


def shown(text: str) -> str:
    """A name quoted for an error message, cut short and with control characters escaped."""
    return repr(_shorten(text))[1:-1]


def check_name(name: str, what: str, span: Span | None, root: bool = False) -> None:
    """An input, parameter, buffer, network or state name becomes a torch attribute name."""
    problem = name_problem(name, index_ok=False, root=root)
    if problem:
        raise ArchError(f"{what} name '{shown(name)}' {problem}", span,
                        hint="it becomes an attribute of the built torch module: choose another name")
