"""The interactive HTML view (archdsl/viz/html.py): what it holds, and how it behaves in a real
headless Chromium (driven through chromedriver's WebDriver protocol): the boxes it draws are the
rows of `archdsl cost --depth`, a click opens a block, hovering shows shapes and costs, and a
screenshot shows block boxes where the page says they are."""
from __future__ import annotations

import base64
import json
import re

import pytest
from click.testing import CliRunner

import archdsl
from archdsl.cli import main
from archdsl.report import network_data
from archdsl.viz.dot import BLOCK_FILL, INPUT_FILL, human
from archdsl.viz.html import page_data, to_html
from webdriver import Browser


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_page_groups_are_the_cost_rows_and_the_page_is_self_contained():
    g = archdsl.load_graph("resnet18")
    data = page_data(g, depth=1)
    groups = {x["id"]: x for x in data["groups"]}
    for row in network_data(g, "float32", 1)[1]["groups"]:
        if row["path"] in groups:
            assert groups[row["path"]]["type"] == row["op"]
            assert groups[row["path"]]["params"] == human(row["params"])
    assert groups["layer1"]["type"] == "2× BasicBlock" and groups["layer1.0"]["type"] == "BasicBlock"
    assert len(data["nodes"]) == len(g) and len(data["edges"]) == len(g.edges())
    page = to_html(g, depth=1)
    assert not re.search(r"""(src|href)\s*=|<link|@import|url\((?!#)|fetch\(|XMLHttpRequest""", page)
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"] * 2  # namespaces
    payload = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)[1]
    assert json.loads(payload)["name"] == "resnet18"


def test_viz_html_needs_no_graphviz_and_svg_without_it_fails(tmp_path, monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    result = _cli("viz", "resnet18", "-o", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    result = _cli("viz", "resnet18", "-o", tmp_path / "r.svg")
    assert result.exit_code == 1
    assert "graphviz" in result.output and "-o " in result.output and "r.html" in result.output
    assert not (tmp_path / "r.svg").exists() and (tmp_path / "r.dot").exists()
    result = _cli("viz", "moco_v2", "-o", tmp_path / "m.html")
    assert result.exit_code == 1 and "network" in result.output


# Pixel colours of the screenshot at given page points, decoded by the browser itself.
_PIXELS = """
const [png, points] = arguments;
return new Promise(resolve => {
  const img = new Image();
  img.onload = () => {
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    resolve(points.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3))));
  };
  img.src = "data:image/png;base64," + png;
});
"""
# Each drawn box: its id, kind and a point inside its border, left of its text.
_BOXES = """
return [...document.querySelectorAll("g.item")].map(g => {
  const r = g.querySelector("rect").getBoundingClientRect();
  return {id: g.dataset.id, kind: g.classList[1], x: Math.round(r.left + 4), y: Math.round(r.top + r.height / 2),
          inside: r.left >= 0 && r.top >= 40 && r.right <= innerWidth && r.bottom <= innerHeight};
});
"""


def _rgb(hex_colour: str) -> list[int]:
    return [int(hex_colour[k:k + 2], 16) for k in (1, 3, 5)]


def _close(a, b, tol=6) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def _check_screenshot(browser, boxes) -> int:
    """Every box in view has its fill colour in the screenshot; returns how many were seen."""
    shown = [b for b in boxes if b["inside"]]
    png = base64.b64encode(browser.screenshot()).decode()
    colours = browser.run(_PIXELS, png, [[b["x"], b["y"]] for b in shown])
    want = {"group": _rgb(BLOCK_FILL), "input": _rgb(INPUT_FILL), "node": [255, 255, 255]}
    for b, colour in zip(shown, colours):
        if b["kind"] in want:
            assert _close(colour, want[b["kind"]]), (b, colour)
    return len(shown)


@pytest.fixture(scope="module")
def browser():
    b = Browser.start()
    if b is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    yield b
    b.close()


def test_the_page_in_a_headless_browser(browser, tmp_path):
    out = tmp_path / "resnet18.html"
    assert _cli("viz", "resnet18", "--depth", "1", "-o", out).exit_code == 0
    browser.open(out.as_uri())
    rows = [r["path"] for r in network_data(archdsl.load_graph("resnet18"), "float32", 1)[1]["groups"]]
    boxes = browser.run(_BOXES)
    assert [b["id"] for b in boxes] == rows               # the boxes of `cost --depth 1`
    assert {b["id"]: b["kind"] for b in boxes}["layer1"] == "group"
    assert _check_screenshot(browser, boxes) >= 5

    # a click opens layer1: its two blocks appear inside a frame
    browser.click(browser.find('g.item.group[data-id="layer1"]'))
    boxes = browser.run(_BOXES)
    ids = [b["id"] for b in boxes]
    assert "layer1" not in ids and {"layer1.0", "layer1.1"} <= set(ids)
    assert len(ids) == len(rows) + 1
    assert browser.run('return document.querySelector(\'g.frame[data-id="layer1"]\') !== null')
    _check_screenshot(browser, boxes)

    # hovering a block shows its type, output shape and costs
    browser.hover(browser.find('g.item[data-id="layer1.0"]'))
    tip = browser.run('const t = document.getElementById("tip"); '
                      'return [getComputedStyle(t).display, t.textContent];')
    report = archdsl.check_spec("resnet18")
    params = sum(n.params for n in report.nodes if n.path.startswith("layer1.0."))
    assert tip[0] == "block"
    assert "BasicBlock" in tip[1] and "1×64×56×56" in tip[1] and f"params {human(params)}" in tip[1]

    # the frame's title closes it again; "open all" shows every node
    browser.click(browser.find('g.frame[data-id="layer1"] text'))
    assert [b["id"] for b in browser.run(_BOXES)] == rows
    browser.click(browser.find("#open-all"))
    assert len(browser.run(_BOXES)) == len(report.nodes)


def test_viz_default_depth_left_right_and_jpg(tmp_path, monkeypatch):
    from archdsl.viz.view import build_view, readable_depth
    g = archdsl.load_graph("resnet50")
    assert readable_depth(g) == 2                    # layer1.0 …: 15 boxes; depth 3 draws more than 40
    assert len(build_view(g, 2).items) <= 40 < len(build_view(g, 3).items)
    assert readable_depth(archdsl.load_graph(source="network N() {\n in x: [B, 4]\n out x -> linear(2)\n}")) is None
    result = _cli("viz", "resnet50", "-o", tmp_path / "r.dot")
    assert result.exit_code == 0
    from archdsl.viz import to_dot
    assert (tmp_path / "r.dot").read_text() == to_dot(g, depth=2)
    assert _cli("viz", "resnet50", "--left-right", "-o", tmp_path / "lr.dot").exit_code == 0
    assert "rankdir=LR" in (tmp_path / "lr.dot").read_text()
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    result = _cli("viz", "resnet18", "-o", tmp_path / "r.jpg")
    assert result.exit_code == 1 and "dot -Tjpg" in result.output


@pytest.mark.skipif(__import__("shutil").which("dot") is None, reason="graphviz's dot is not installed")
def test_viz_renders_jpeg_with_graphviz(tmp_path):
    result = _cli("viz", "resnet18", "--left-right", "-o", tmp_path / "r.jpg")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.jpg").read_bytes()[:3] == b"\xff\xd8\xff"     # a JPEG
