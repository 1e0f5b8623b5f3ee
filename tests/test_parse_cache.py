"""The disk cache of parsed files (archdsl/syntax/cache.py)."""
from __future__ import annotations

import pytest

import archdsl
from archdsl import ArchError
from archdsl.syntax import cache
from archdsl.syntax.parser import parse

TEXT = "# a net\nnetwork N(w: int = 4) {\n  in x: [B, 3]\n  out x -> fc: linear(w)\n}\nvariant n = N()\n"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHDSL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ARCHDSL_CACHE", raising=False)
    return tmp_path


def test_a_cached_parse_equals_the_parse_and_is_stored_once(cache_dir):
    first = cache.parse_cached(TEXT, "n.arch")
    entries = list(cache_dir.glob("*.pickle"))
    assert first == parse(TEXT, "n.arch") and len(entries) == 1
    stamp = entries[0].stat().st_mtime_ns
    assert cache.parse_cached(TEXT, "n.arch") == first
    assert entries[0].stat().st_mtime_ns == stamp  # read, not rewritten
    cache.parse_cached(TEXT + "\n", "n.arch")      # other text: another entry
    cache.parse_cached(TEXT, "m.arch")             # other name (spans carry it): another entry
    assert len(list(cache_dir.glob("*.pickle"))) == 3


def test_a_corrupt_entry_is_parsed_again(cache_dir):
    cache.parse_cached(TEXT, "n.arch")
    (entry,) = cache_dir.glob("*.pickle")
    entry.write_bytes(b"not a pickle")
    assert cache.parse_cached(TEXT, "n.arch") == parse(TEXT, "n.arch")


def test_off_writes_nothing(cache_dir, monkeypatch):
    monkeypatch.setenv("ARCHDSL_CACHE", "off")
    cache.parse_cached(TEXT, "n.arch")
    assert not list(cache_dir.glob("*"))


def test_errors_from_a_cached_file_still_quote_its_source(cache_dir, tmp_path, monkeypatch):
    from archdsl import errors
    from archdsl.semantics import loader
    spec = tmp_path / "src" / "bad.arch"
    spec.parent.mkdir()
    spec.write_text("network N() {\n  in x: [B, 3]\n  out x -> linear(0)\n}\n")
    for _ in range(2):
        with pytest.raises(ArchError) as e:
            archdsl.check_spec(spec)
        assert "3 |   out x -> linear(0)" in str(e.value)
        # the next load finds neither the in-process parse nor the registered text
        monkeypatch.setattr(loader, "_PARSE_CACHE", {})
        monkeypatch.setattr(errors, "_SOURCES", {})
    assert any(f.stat().st_size for f in cache_dir.glob("*.pickle"))
