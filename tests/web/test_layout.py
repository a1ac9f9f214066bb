"""The page lays out cleanly: no drawn label overlaps another label or a node, everything is inside the drawing
area (the view less its toolbar and legend), arrows do not cross where a layered order avoids it, ``F`` fits the
graph, a resized window is fitted again, and toasts leave by their deadline (issue 15, item 6).

Real ``pmk`` daemons in a sandbox, Debian's Chromium through Playwright; every box is read from the SVG as drawn
(``getBoundingClientRect``). Screenshots land in ``test-artifacts/layout-*.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.web.conftest import ARTIFACTS, api, web_url

SEEDS = ROOT / "seeds"
TRANSFORM = "document.querySelector('#view-states g.zoom-layer').getAttribute('transform')"
VIEWPORT = {"width": 1440, "height": 860}

# Every label drawn in the active view, every node's circle, and the rectangles that are not drawing area.
DRAWN = """() => {
    const view = document.querySelector("svg.view.active");
    const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    const labels = [];
    for (const el of view.querySelectorAll("text.label, text.sublabel, text.lines, text.link-label, g.badge")) {
        const r = el.getBoundingClientRect();
        if (!r.width || !r.height || !el.textContent.trim()) continue;
        const node = el.closest("g.node")?.dataset.id ?? null;
        labels.push({kind: el.getAttribute("class"), text: el.textContent, node, box: box(el)});
    }
    const circles = [...view.querySelectorAll("g.node circle.body")]
        .map((c) => ({node: c.closest("g.node").dataset.id, box: box(c)}));
    const bars = [".toolbar", "#legend"].map((s) => box(document.querySelector(s)));
    const transform = view.querySelector("g.zoom-layer").getAttribute("transform");
    return {view: view.id, svg: box(view), labels, circles, bars, transform};
}"""

# Arrows that cross: each arrow sampled as a polyline, every pair of segments of two arrows tested.
CROSSINGS = """() => {
    const view = document.querySelector("svg.view.active");
    const lines = [...view.querySelectorAll("path.link")].map((p) => {
        const n = p.getTotalLength(), pts = [];
        for (let i = 0; i <= 40; i++) { const q = p.getPointAtLength((n * i) / 40); pts.push([q.x, q.y]); }
        return {id: p.dataset.id, pts};
    });
    const cross = (a, b, c, d) => {
        const o = (p, q, r) => (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]);
        return o(a, b, c) * o(a, b, d) < 0 && o(c, d, a) * o(c, d, b) < 0;
    };
    const found = [];
    for (let i = 0; i < lines.length; i++) for (let j = i + 1; j < lines.length; j++) {
        const A = lines[i].pts, B = lines[j].pts;
        let hit = false;
        for (let s = 0; s < A.length - 1 && !hit; s++) for (let t = 0; t < B.length - 1 && !hit; t++)
            hit = cross(A[s], A[s + 1], B[t], B[t + 1]);
        if (hit) found.push([lines[i].id, lines[j].id]);
    }
    return found;
}"""


def _overlap(a: list[float], b: list[float], slack: float = 0.5) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > slack and min(a[3], b[3]) - max(a[1], b[1]) > slack


def _hits_circle(box: list[float], circle: list[float]) -> bool:
    """Whether a label's rectangle reaches into a circle (given by its bounding square)."""
    cx, cy, r = (circle[0] + circle[2]) / 2, (circle[1] + circle[3]) / 2, (circle[2] - circle[0]) / 2
    nx, ny = min(max(cx, box[0]), box[2]), min(max(cy, box[1]), box[3])
    return (nx - cx) ** 2 + (ny - cy) ** 2 < (r - 0.5) ** 2


def layout_problems(drawn: dict[str, Any]) -> list[str]:
    """What a person would see wrong: labels on labels, labels on nodes, labels outside the drawing area."""
    problems = []
    labels, svg = drawn["labels"], drawn["svg"]
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if _overlap(a["box"], b["box"]):
                problems.append(f"{a['kind']} {a['text']!r} overlaps {b['kind']} {b['text']!r}")
        for c in drawn["circles"]:
            if a["kind"].startswith("badge") and a["node"] == c["node"]:
                continue  # a badge sits on its own node's circle
            if _hits_circle(a["box"], c["box"]):
                problems.append(f"{a['kind']} {a['text']!r} lies on node {c['node']}")
        x0, y0, x1, y1 = a["box"]
        if x0 < svg[0] or y0 < svg[1] or x1 > svg[2] or y1 > svg[3]:
            problems.append(f"{a['kind']} {a['text']!r} is outside the view {a['box']} vs {svg}")
        for bar in drawn["bars"]:
            if _overlap(a["box"], bar):
                problems.append(f"{a['kind']} {a['text']!r} is under the toolbar or legend")
    return problems


def open_page(browser, url: str, view: str = "states"):
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + f"#{view}")
    page.errors = errors
    return page


def settled(page, view: str) -> None:
    """Until the view's latest layout is drawn in place and fitted (polled; the page says when)."""
    page.wait_for_function(
        f"window.pumpkin.views.{view}.laidOut > 0 && window.pumpkin.views.{view}.settled", timeout=30_000
    )


def check_view(page, view: str, shot: str) -> dict[str, Any]:
    """Show ``view``, wait for its layout, save a screenshot, and assert the layout is clean."""
    page.keyboard.press({"states": "1", "seeds": "2", "hosts": "3"}[view])
    settled(page, view)
    drawn = page.evaluate(DRAWN)
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"))
    assert drawn["view"] == f"view-{view}"
    assert drawn["labels"], "no label drawn"
    problems = layout_problems(drawn)
    assert not problems, f"{shot}: " + "; ".join(problems[:10])
    return drawn


def used_share(drawn: dict[str, Any]) -> tuple[float, float]:
    """How much of the drawing area's width and height the drawn labels and nodes span."""
    boxes = [x["box"] for x in drawn["labels"]] + [c["box"] for c in drawn["circles"]]
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    svg, (bar, legend) = drawn["svg"], drawn["bars"]
    return (x1 - x0) / (svg[2] - svg[0]), (y1 - y0) / (legend[1] - bar[3])


def test_the_hello_world_lays_out_cleanly_and_one_host_says_what_it_has(pmk, browser):
    p = pmk("--endpoint.type", "zmq.IPC", "--http.port", "0")
    p.wait_for("Greeting: Hello World")
    page = open_page(browser, web_url(p))
    page.wait_for_selector('#view-states g.node[data-id="default:String:GREETING"]', timeout=15_000)
    drawn = check_view(page, "states", "layout-hello-states")
    assert page.evaluate(CROSSINGS) == []
    # A chain of four states fills the view's width (fitted, up to the largest zoom a fit allows).
    width, _ = used_share(drawn)
    assert width > 0.7, f"the hello world spans {width:.0%} of the view's width"
    check_view(page, "seeds", "layout-hello-seeds")
    assert page.evaluate(CROSSINGS) == []

    drawn = check_view(page, "hosts", "layout-hello-hosts")
    texts = [x["text"] for x in drawn["labels"]]
    lines = next(x["text"] for x in drawn["labels"] if x["kind"] == "lines")
    for seed_ in ("inject", "greet", "extract"):
        assert seed_ in lines, texts
    assert "No other host seen yet" in lines and "Several hosts" in lines
    assert page.errors == []


def test_the_live_example_lays_out_cleanly_and_f_and_resizing_fit_it(pmk, browser):
    p = pmk("--http.port", "0", "--taskdir", str(SEEDS / "helloworld"), "--taskdir", str(SEEDS / "live"))
    p.wait_for("Greeting: Hello World")
    page = open_page(browser, web_url(p))
    page.wait_for_selector('#view-states g.node[data-id="default:String:CHECKED"]', timeout=15_000)
    # The failing seed's label carries its failure count (the "Strin⚠k" of the issue: it used to overlap).
    page.wait_for_function(
        "[...document.querySelectorAll('#view-states text.link-label')].some((t) => t.textContent.includes('⚠'))",
        timeout=30_000,
    )
    drawn = check_view(page, "states", "layout-live-states")
    assert page.evaluate(CROSSINGS) == []
    fitted = drawn["transform"]
    check_view(page, "seeds", "layout-live-seeds")
    assert page.evaluate(CROSSINGS) == []

    # Zoomed out by the wheel, then F: the view is fitted again (the transform changes back), labels clean.
    check_view(page, "states", "layout-live-states-again")
    page.mouse.move(700, 450)
    for _ in range(4):
        page.mouse.wheel(0, 400)
    page.wait_for_function(f"{TRANSFORM} !== {json.dumps(fitted)}")
    zoomed = page.evaluate(TRANSFORM)
    assert zoomed != fitted
    page.keyboard.press("f")
    page.wait_for_function(f"{TRANSFORM} !== {json.dumps(zoomed)}")
    settled(page, "states")
    after = page.evaluate(DRAWN)
    assert after["transform"] == fitted
    assert not layout_problems(after)

    # A smaller window: fitted again, everything inside it.
    page.set_viewport_size({"width": 1000, "height": 640})
    page.wait_for_function(f"{TRANSFORM} !== {json.dumps(fitted)}")
    drawn = check_view(page, "states", "layout-live-states-small")
    assert drawn["svg"][2] - drawn["svg"][0] < 1000
    assert page.errors == []


def test_a_failure_toast_leaves_by_its_deadline_while_the_seed_keeps_failing(pmk, browser):
    """The live example's check seed fails every 2.6 s: its toast folds the repeats and still leaves on time."""
    p = pmk("--http.port", "0", "--taskdir", str(SEEDS / "live"))
    page = open_page(browser, web_url(p))
    toast = page.locator(".toast:not(.info)", has_text="check").first
    toast.wait_for(timeout=30_000)
    deadline_ms = int(toast.get_attribute("data-deadline") or 0)
    shown_ms = page.evaluate("Date.now()")
    assert 8_000 <= deadline_ms - shown_ms <= 13_000  # errors stay about 12 s
    # Repeats fold into it with a count instead of stacking up or keeping it alive.
    page.wait_for_function(
        "[...document.querySelectorAll('.toast .count')].some((c) => /×[2-9]/.test(c.textContent))", timeout=15_000
    )
    assert page.locator(".toast:not(.info)").count() == 1
    page.wait_for_function(
        "!document.querySelector('.toast:not(.info)')", timeout=deadline_ms - page.evaluate("Date.now()") + 2_000
    )
    gone_ms = page.evaluate("Date.now()")
    assert gone_ms <= deadline_ms + 1_500, f"left {gone_ms - deadline_ms} ms after its deadline"
    assert p.stderr_has("multiple of 169")  # and the seed did keep failing meanwhile
    assert page.errors == []


BOOM = """
from pumpkin import seed

@seed(consumes="Int:BOOM", emits="Int:AFTER")
def boom(n):
    raise ValueError(f"boom {n}")
"""


def test_an_error_toast_has_a_close_button(pmk, browser, tmp_path, sandbox):
    (tmp_path / "boom").mkdir()
    (tmp_path / "boom" / "boom.py").write_text(BOOM)
    p = pmk(
        "--endpoint.type", "zmq.IPC", "--http.port", "0", "--http.token", "s3cret", "--taskdir", str(tmp_path / "boom")
    )
    url = web_url(p)
    page = open_page(browser, url)
    page.wait_for_function("window.pumpkin.page.stats !== null", timeout=15_000)
    status, _ = api(sandbox, url + "api/v1/inject", "POST", {"state": "Int:BOOM", "data": 1}, token="s3cret")
    assert status == 201
    toast = page.locator(".toast:not(.info)", has_text="boom")
    toast.wait_for(timeout=15_000)
    started = time.monotonic()
    toast.locator("button.close").click()
    toast.wait_for(state="detached", timeout=2_000)
    assert time.monotonic() - started < 2.0
    assert page.errors == []


def _thirty_states(folder: Path) -> None:
    """30 states: five flows of six steps, each step also feeding the next flow's following step."""
    flows = ["ORDER", "PAYMENT", "STOCK", "PARCEL", "RECEIPT"]
    steps = ["NEW", "CHECKED", "PRICED", "PACKED", "SENT", "DONE"]
    lines = ["from pumpkin import Seed", ""]

    def seed_(name: str, consumes: str | None, emits: str | None) -> None:
        lines.extend([f"class S_{name}(Seed):", f"    name = {name!r}"])
        if consumes:
            lines.append(f"    consumes = 'Text:{consumes}'")
        if emits:
            lines.append(f"    emits = 'Text:{emits}'")
        if consumes:
            lines.extend(["    def run(self, x):", "        return x" if emits else "        pass", ""])
        else:
            lines.extend(["    every_s = 2.0", "    def run(self):", "        return 'x'", ""])

    for i, flow in enumerate(flows):
        seed_(f"new_{flow.lower()}", None, f"{flow}_{steps[0]}")
        for j in range(len(steps) - 1):
            seed_(f"{steps[j + 1].lower()}_{flow.lower()}", f"{flow}_{steps[j]}", f"{flow}_{steps[j + 1]}")
            if i + 1 < len(flows):
                seed_(
                    f"{flow.lower()}_to_{flows[i + 1].lower()}_{j}",
                    f"{flow}_{steps[j]}",
                    f"{flows[i + 1]}_{steps[j + 1]}",
                )
        seed_(f"archive_{flow.lower()}", f"{flow}_{steps[-1]}", None)
    folder.mkdir()
    (folder / "thirty.py").write_text("\n".join(lines))


def test_a_30_state_automaton_lays_out_cleanly(pmk, browser, tmp_path):
    _thirty_states(tmp_path / "thirty")
    p = pmk("--endpoint.type", "zmq.IPC", "--http.port", "0", "--taskdir", str(tmp_path / "thirty"))
    page = open_page(browser, web_url(p, 60))
    page.wait_for_function("document.querySelectorAll('#view-states g.node').length >= 32", timeout=60_000)
    drawn = check_view(page, "states", "layout-30-states")
    states = [x for x in drawn["labels"] if x["kind"] == "label"]
    assert len(states) == 32  # the 30 states, in and out
    assert len([x for x in drawn["labels"] if x["kind"] == "link-label"]) == 55
    crossings = page.evaluate(CROSSINGS)
    assert crossings == [], crossings[:5]
    share = used_share(drawn)
    check_view(page, "seeds", "layout-30-seeds")
    layout_ms = page.evaluate("window.pumpkin.views.states.layoutMs")
    result = {
        "states_view_width_share": round(share[0], 2),
        "states_view_height_share": round(share[1], 2),
        "layout_ms": round(layout_ms, 1),
    }
    (ARTIFACTS / "layout-30.json").write_text(json.dumps(result, indent=2) + "\n")
    print("30 states:", result)
    assert max(share) > 0.9, share  # fitted: it fills the drawing area one way or the other
    assert page.errors == []
