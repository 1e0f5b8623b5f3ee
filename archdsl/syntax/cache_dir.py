"""Where archdsl keeps what it can recompute: parsed files, the parser tables, the stdlib index."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path | None:
    """$ARCHDSL_CACHE_DIR, else $XDG_CACHE_HOME/archdsl/ast, else ~/.cache/archdsl/ast; None when
    ARCHDSL_CACHE=off."""
    if os.environ.get("ARCHDSL_CACHE", "").lower() in ("off", "0", "no", "false"):
        return None
    if os.environ.get("ARCHDSL_CACHE_DIR"):
        return Path(os.environ["ARCHDSL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archdsl" / "ast"
