"""A non-editable install carries the stdlib and the example specs inside the package."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_installed_package_finds_its_stdlib(tmp_path: Path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(ROOT)],
                   check=True, cwd=tmp_path, capture_output=True)
    assert (target / "archdsl" / "_stdlib" / "prelude.arch").is_file()
    source_modules = {p.relative_to(ROOT) for p in (ROOT / "archdsl").rglob("*.py")}
    installed = {p.relative_to(target) for p in (target / "archdsl").rglob("*.py")}
    assert source_modules <= installed, f"not packaged: {sorted(map(str, source_modules - installed))}"
    assert (target / "archdsl" / "_specs" / "convnext.arch").is_file()
    probe = ("import archdsl, archdsl.semantics.loader as l; "
             "print(l.stdlib_dir()); print(archdsl.check_spec('resnet50').totals.params)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", probe], check=True, cwd=tmp_path, env=env,
                         capture_output=True, text=True).stdout.split()
    assert out[0].startswith(str(target))
    assert out[1] == "25557032"
