"""The lesson on a projector, in a real browser: the columns a lesson needs fit at 1280x720 and 1920x1080,
/architecture opens the page, picking a preset loads it, and a `fast` run's live chart gains a point a second.

The server is `streamlit run app.py` on 127.0.0.1 over a synthetic data set large enough for a `fast` epoch to
last several seconds. A data grid is drawn on a canvas, so "all columns visible" is read from the grid's
scrolling element: its content is no wider than its box, and the box lies inside the viewport. Screenshots
go to tests/artifacts/ (lesson-*.png). Skipped without chromium and playwright, unless S7_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    IDLE,
    _browser_or_skip,
    _set_number,
    streamlit_app,
)

from s7core import runs
from s7core.config import settings
from s7core.data import make_tiny_cifar10
from s7core.spec import get_preset
from s7core.summary import summarize

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
VIEWPORTS = {"1280x720": {"width": 1280, "height": 720}, "1920x1080": {"width": 1920, "height": 1080}}
RF_COLUMNS = ["layer", "type", "k", "d", "s", "p", "RF", "jump", "out"]  # what a lesson reads in the RF table
EDITOR_COLUMNS = ["type", "channels", "kernel", "stride", "padding", "dilation", "groups"]
PARAM_COLUMNS = ["module", "shape", "params", "mult-adds", "trainable"]
GRIDS = """() => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"]')].map(g => {
  const box = g.getBoundingClientRect(), scroller = g.querySelector('.dvn-scroller');
  return { left: box.left, right: box.right, content: scroller ? scroller.scrollWidth : -1,
           shown: scroller ? scroller.clientWidth : -1, headers: [...g.querySelectorAll('th')].map(th => th.innerText.trim()) };
})"""  # noqa: E501
# Text cut short: an element that hides its overflow and holds more than it shows (a label ending in "…"), in the
# sidebar and the main column. Grids and charts draw on canvases and are checked above; a screen reader's
# visually hidden text (1 px wide) is not shown to anyone.
CLIPPED = """() => [...document.querySelectorAll('[data-testid="stSidebar"] *, [data-testid="stMain"] *')].filter(e => {
  if (e.offsetParent === null || e.clientWidth <= 1 || !e.innerText || !e.innerText.trim()) return false;
  if (e.closest('[data-testid="stDataFrame"], .js-plotly-plot, pre')) return false;
  if (e.matches('[data-testid="stMain"], [data-testid="stSidebarContent"], [data-testid="stMainBlockContainer"]')) return false;
  return getComputedStyle(e).overflowX !== 'visible' && e.scrollWidth > e.clientWidth + 1;
}).map(e => `${e.closest('[data-testid="stSidebar"]') ? 'sidebar' : 'main'}: "${e.innerText.trim().slice(0, 60)}" ` +
            `needs ${e.scrollWidth} px, has ${e.clientWidth}`)"""  # noqa: E501
# How many points the live loss chart's running-mean line has, read from plotly's own data on the page.
CHART_POINTS = """() => {
  const plot = [...document.querySelectorAll('[data-testid="stMain"] .js-plotly-plot')]
    .find(p => p.layout && p.layout.title && p.layout.title.text.replace(/<[^>]+>/g, '') === 'Loss');
  const line = plot && plot.data.find(t => t.name === 'train (running mean)');
  return line ? line.x.length : 0;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The app over a tiny data set whose epochs last seconds, not a blink."""
    _browser_or_skip()
    tmp = tmp_path_factory.mktemp("lesson")
    with streamlit_app(tmp, make_tiny_cifar10(tmp / "data", n_train=6000, n_test=200)) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_api = _browser_or_skip()
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _idle(page, timeout_ms: float = 60_000) -> None:
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)
    page.wait_for_timeout(500)  # the grids and charts draw after the script has finished


def _heading(page, text: str, timeout_ms: float = 60_000) -> None:
    page.locator('[data-testid="stMain"] h1').filter(has_text=text).first.wait_for(timeout=timeout_ms)
    _idle(page, timeout_ms)


def _headers_drawn(page, grids: int) -> None:
    """Wait until `grids` data grids have their hidden accessible table (it follows the canvas)."""
    page.wait_for_function(
        f"(n) => {{ const g = ({GRIDS})(); return g.length >= n && g.every(x => x.headers.length > 0); }}",
        arg=grids,
        timeout=30_000,
    )


def _shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"lesson-{name}.png"))


def _assert_columns_fit(grid: dict, wanted: list[str], width: int, what: str) -> None:
    missing = [c for c in wanted if c not in grid["headers"]]
    assert not missing, f"{what}: no column {missing} in {grid['headers']}"
    assert grid["content"] <= grid["shown"] + 1, f"{what}: {grid['content']} px of columns in {grid['shown']} px"
    assert grid["left"] >= 0 and grid["right"] <= width, f"{what}: the grid spans {grid['left']}..{grid['right']}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_the_lessons_columns_fit_and_the_architecture_path_opens(server, browser, size: str) -> None:
    url, _ = server
    viewport = VIEWPORTS[size]
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(f"{url}/architecture")  # typed in the address bar
    _heading(page, "Architecture", 90_000)
    assert page.get_by_text("Page not found").count() == 0
    assert page.locator('[data-testid="stMain"] [data-testid="stMetricValue"]').first.inner_text() == "925,706"
    assert page.get_by_role("button", name="Deploy").count() == 0
    _headers_drawn(page, 2)
    editor, rf_table = page.evaluate(GRIDS)
    _assert_columns_fit(editor, EDITOR_COLUMNS, viewport["width"], "layer editor")
    _assert_columns_fit(rf_table, RF_COLUMNS, viewport["width"], "RF table")
    _shoot(page, f"architecture-{size}")
    page.get_by_role("tab", name="Parameters").click()
    page.wait_for_function(f"() => ({GRIDS})().some(g => g.headers.includes('mult-adds'))", timeout=30_000)
    _idle(page)
    params = next(g for g in page.evaluate(GRIDS) if "mult-adds" in g["headers"])
    _assert_columns_fit(params, PARAM_COLUMNS, viewport["width"], "parameter table")
    page.context.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_no_label_is_cut_short_in_projector_mode(server, browser, size: str) -> None:
    url, _ = server
    page = browser.new_context(viewport=VIEWPORTS[size]).new_page()
    page.goto(f"{url}/architecture?projector=1")
    _heading(page, "Architecture", 90_000)
    assert page.get_by_role("switch", name="Projector mode").is_checked()
    _headers_drawn(page, 2)
    assert page.evaluate(CLIPPED) == [], "labels cut short on the Architecture page"
    for tab in ("RF picture", "Parameters"):
        page.get_by_role("tab", name=tab).click()
        _idle(page)
        assert page.evaluate(CLIPPED) == [], f"labels cut short on the {tab} tab"
    _shoot(page, f"projector-{size}")
    page.context.close()


@pytest.mark.timeout(300)
def test_picking_a_preset_loads_it(server, browser) -> None:
    url, _ = server
    page = browser.new_context(viewport=VIEWPORTS["1280x720"]).new_page()
    page.goto(url)
    _heading(page, "Architecture", 90_000)
    page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').filter(has_text="Start from a preset").click()
    page.get_by_role("option", name="fast", exact=True).click()  # no Load button pressed
    want = f"{summarize(get_preset('fast')).total_params:,}"
    page.locator('[data-testid="stMain"] [data-testid="stMetricValue"]').filter(has_text=want).wait_for(timeout=30_000)
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    assert "fast" in sidebar
    page.context.close()


@pytest.mark.timeout(400)
def test_a_fast_runs_live_chart_gains_a_point_a_second(server, browser) -> None:
    url, runs_dir = server
    page = browser.new_context(viewport=VIEWPORTS["1920x1080"]).new_page()
    page.goto(f"{url}/train")
    _heading(page, "Train", 90_000)
    network = page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').filter(has_text="Network").first
    shown = network.evaluate("b => b.innerText + ' ' + [...b.querySelectorAll('input')].map(i => i.value).join(' ')")
    assert "preset: fast" in shown, shown  # the quick demo is the first choice
    # Batch 64: a step then takes well under a second even on a busy 2-core machine (the curve gains a point at
    # each step event, at most every half second, and the run writes one a second).
    _set_number(page, next(s.title for s in settings() if s.path == "batch_size"), 64)
    page.locator('[data-testid="stMain"] button').filter(has_text="Launch training").click()
    page.get_by_text("started in the background").wait_for(timeout=60_000)
    (info,) = runs.list_runs(runs_dir)
    # The live panel is first on the page now: its progress bar sits above the form, inside the first screen.
    bar = page.locator('[data-testid="stMain"] [data-testid="stProgress"]').first
    bar.wait_for(timeout=30_000)
    assert bar.bounding_box()["y"] < VIEWPORTS["1920x1080"]["height"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until the run has trained 10 s (its own clock), or ended
        steps = runs.read_metrics(info.path, kind="step")
        if runs.run_info(info.path).state != "running" or (steps and steps[-1]["elapsed_s"] >= 10):
            break
        time.sleep(0.5)
    steps = runs.read_metrics(info.path, kind="step")
    first_10_s = [s for s in steps if s["elapsed_s"] <= 10]
    assert len(first_10_s) >= 5, [round(s["elapsed_s"], 1) for s in steps]
    page.wait_for_function(f"() => ({CHART_POINTS})() >= {len(first_10_s)}", timeout=30_000)
    left = page.locator('[data-testid="stMain"] [data-testid="stMetric"]').filter(has_text="Time left")
    _shoot(page, "train-live")
    if runs.run_info(info.path).state == "running":
        assert left.locator('[data-testid="stMetricValue"]').inner_text() != "—"  # counting from the first steps
    page.context.close()
