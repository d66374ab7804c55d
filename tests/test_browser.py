"""End to end in a real browser: design, train, study — through `streamlit run app.py` and headless chromium.

The test starts its own server on a free port over a tiny synthetic data set and an empty runs folder,
edits a layer and watches the RF table follow, trains the `tiny` preset for three short epochs from the Train
page, then opens Results and the Misclassified gallery and filters it by clicking a confusion-matrix cell. It
saves a screenshot of every page to tests/artifacts/ and prints two timings: each page's first render once
the server is warm, and the latency from a cell edit to the updated RF table.

With S7_BROWSER_DATA_DIR=<a CIFAR-10 folder> it trains two full epochs on that data instead (minutes on a
CPU); docs/screenshots/ were taken that way. Needs chromium at /usr/bin/chromium and the playwright package
(never `playwright install`); skipped without them unless S7_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from s7core import runs
from s7core.config import settings
from s7core.data import make_tiny_cifar10
from s7core.evaluate import misclassified
from s7core.spec import get_preset
from s7core.summary import summarize

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
# A real CIFAR-10 folder to train on instead of the synthetic set (for the README's screenshots; minutes on a CPU).
REAL_DATA = os.environ.get("S7_BROWSER_DATA_DIR")
VIEWPORT = {"width": 1600, "height": 1000}
SHOT_VIEWPORT = {"width": 1600, "height": 1900}
FRESH = '[data-testid="stMain"] [data-testid="stElementContainer"][data-stale="false"]'  # drawn by the latest run
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# What shows that a page has drawn its own content (not the previous page's): [CSS, text it must contain,
# whether it is a canvas that must have been painted], all inside elements drawn by the latest run.
PAGES = {
    "Architecture": [
        [f"{FRESH} h1", "Architecture", False],
        [f'{FRESH} [data-testid="stDataFrame"] canvas', "", True],
        [f'{FRESH} [data-testid="stMetricValue"]', "px", False],
    ],
    "Receptive field": [[f"{FRESH} h1", "Receptive field", False], [f"{FRESH} .js-plotly-plot .main-svg", "", False]],
    "Train": [[f"{FRESH} h1", "Train", False], [f"{FRESH} button", "Launch training", False]],
    "Results": [[f"{FRESH} h1", "Results", False], [f"{FRESH} .js-plotly-plot .main-svg", "", False]],
    "Misclassified": [[f"{FRESH} h1", "Misclassified", False], [f'{FRESH} [data-testid="stImage"] img', "", False]],
}
# Timings are taken inside the page: performance.now(), checked on every animation frame. They hold what the
# user sees, and none of the round trips between this test and the browser. A data grid is a canvas: its
# hidden accessible table follows the canvas about 200 ms later, so the canvas's pixels are what is watched.
CLOCK = """(() => {
  const grids = () => document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"]');
  const pixels = (canvas) => canvas && canvas.width ? canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data : null;
  const painted = (canvas) => { const d = pixels(canvas); if (!d) return false; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) return true; return false; };
  const hash = (canvas) => { const d = pixels(canvas); if (!d) return 0; let h = 0; for (let i = 0; i < d.length; i += 3) h = (h * 31 + d[i]) | 0; return h; };
  const ready = (conds) => conds.every(([css, text, mustPaint]) => [...document.querySelectorAll(css)].some(
      el => (!text || el.innerText.includes(text)) && (!mustPaint || painted(el))))
    && document.querySelector('[data-testid="stApp"][data-test-script-state="notRunning"]');
  window.__s7 = {
    // ms from t0 until every condition holds and the script has finished its run
    until: (conds, t0, timeout) => new Promise((resolve, reject) => {
      const tick = () => {
        if (ready(conds)) resolve(performance.now() - t0);
        else if (performance.now() - t0 > timeout) reject(new Error('not shown in time: ' + JSON.stringify(conds)));
        else requestAnimationFrame(tick);
      };
      tick();
    }),
    // click the sidebar menu's link to a page, then `until` from the moment of the click
    open: (title, conds, timeout) => {
      const link = [...document.querySelectorAll('[data-testid="stSidebarNav"] a')].find((a) => a.innerText.trim().endsWith(title));
      if (!link) return Promise.reject(new Error('no menu link ' + title));
      const t0 = performance.now();
      link.click();
      return window.__s7.until(conds, t0, timeout);
    },
    // watch grid `index` from the next Enter until its canvas shows something else
    armEdit: (index) => {
      const canvas = () => { const g = grids()[index]; return g && g.querySelector('canvas'); };
      const state = { before: hash(canvas()), enter: null, changed: null, shown: null };
      window.__s7.edit = state;
      window.addEventListener('keydown', (e) => { if (e.key === 'Enter' && state.enter === null) state.enter = performance.now(); }, true);
      const tick = () => {
        if (state.enter !== null) {
          const h = hash(canvas());
          if (h !== state.before && painted(canvas())) { state.changed = performance.now(); state.shown = h; return; }
        }
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    },
    gridHash: (index) => { const g = grids()[index]; return hash(g && g.querySelector('canvas')); },
  };
})()"""  # noqa: E501
# Layer 7 of the seed net is a dilated sepconv: dilation 2 gives a global RF of 64, dilation 1 gives 60.
EDIT_ROW, EDIT_COLUMN, RF_AFTER = 7, "dilation", {"1": "60 px", "2": "64 px"}

# Focus the accessible cell of the layer editor at (row, column): the grid then edits that cell on typing.
FOCUS_CELL = """([row, column]) => {
  const grid = document.querySelector('[data-testid="stMain"] [data-testid="stDataFrame"]');
  const th = [...grid.querySelectorAll('th')].find(h => h.innerText.trim() === column);
  const tr = [...grid.querySelectorAll('tr')].find(r => r.getAttribute('aria-rowindex') === String(row + 2));
  const td = th && tr && [...tr.querySelectorAll('td')].find(d => d.getAttribute('aria-colindex') === th.getAttribute('aria-colindex'));
  if (!td) return null;
  td.focus();
  return td.innerText;
}"""  # noqa: E501
RF_GRID = 1  # the RF table is the second data grid of the Architecture page, after the layer editor
RF_TABLE_TEXT = """() => {
  const grids = document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"]');
  return grids.length > 1 ? grids[1].textContent : '';  // the grid's accessible table is hidden: no innerText
}"""


def _browser_or_skip():
    """The playwright module, or a skip (a failure under S7_REQUIRE_BROWSER=1) saying what is missing."""
    missing = None
    try:
        from playwright import sync_api
    except ImportError:
        sync_api, missing = None, "the playwright python package is not installed"
    if missing is None and not CHROMIUM.exists():
        missing = f"no chromium at {CHROMIUM} (install the Debian chromium package)"
    if missing:
        if os.environ.get("S7_REQUIRE_BROWSER") == "1":
            pytest.fail(f"S7_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    return sync_api


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read().strip() == b"ok":
                    return
        time.sleep(0.3)
    pytest.fail(f"streamlit did not serve within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def _stop_runs(runs_dir: Path) -> None:
    """Stop any run still training (runs live in their own sessions, outside the server's group)."""
    for info in runs.list_runs(runs_dir):
        if info.state in ("running", "queued"):
            with contextlib.suppress(Exception):
                executor = runs.executor_for(info.path)
                executor.stop(info.path)
                executor.wait(info.path, timeout_s=20)


def stop_group(proc: subprocess.Popen) -> None:
    """End a server a test started, by its own process group: SIGTERM, then SIGKILL after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def streamlit_app(tmp: Path, data: Path) -> Iterator[tuple[str, Path]]:
    """`streamlit run app.py` on a free port of 127.0.0.1 over `data`: (its address, its runs folder).

    Afterwards the runs still training are stopped and the server's process group is ended.
    """
    runs_dir, port, log = tmp / "runs", _free_port(), tmp / "streamlit.log"
    env = {**os.environ, "S7_DATA_DIR": str(data), "S7_RUNS_DIR": str(runs_dir), "XDG_CACHE_HOME": str(tmp / "cache")}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
               "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_serving(url, proc, log)
        yield url, runs_dir
    finally:
        _stop_runs(runs_dir)
        stop_group(proc)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The app over a tiny data set (or the full one where it is beside the repository)."""
    _browser_or_skip()
    tmp = tmp_path_factory.mktemp("browser")
    data = Path(REAL_DATA) if REAL_DATA else make_tiny_cifar10(tmp / "data", n_train=256, n_test=100)
    with streamlit_app(tmp, data) as served:
        yield served


# ---------------------------------------------------------------- page helpers


def _open(page, title: str, timeout_ms: float = 30_000) -> float:
    """Click a page in the sidebar menu; seconds from the click until its own content shows."""
    return page.evaluate("([t, c, ms]) => window.__s7.open(t, c, ms)", [title, PAGES[title], timeout_ms]) / 1000


def _reopen(page, title: str) -> float:
    """Leave for another page, then come back: seconds to show `title` again."""
    _open(page, "Train" if title != "Train" else "Architecture")
    return _open(page, title)


def _wait_for_page(page, title: str, timeout_ms: float) -> float:
    """Seconds from the start of the page's loading until its own content shows."""
    return page.evaluate("([c, ms]) => window.__s7.until(c, 0, ms)", [PAGES[title], timeout_ms]) / 1000


def _idle(page, timeout_ms: float = 30_000) -> None:
    """Wait until the app's script has finished its run."""
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)


def _main_metric(page, label: str) -> str:
    metric = page.locator('[data-testid="stMain"] [data-testid="stMetric"]').filter(has_text=label).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _shoot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.set_viewport_size(SHOT_VIEWPORT)  # the app scrolls inside its own pane: a tall window shows more
    _idle(page)
    page.wait_for_timeout(800)  # let charts finish drawing
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)
    assert path.stat().st_size > 20_000, f"{path} looks empty"
    return path


def _check_no_error(page) -> None:
    errors = page.locator('[data-testid="stMain"] [data-testid="stException"]')
    assert errors.count() == 0, errors.first.inner_text()


def _open_cell_editor(page, row: int, column: str) -> None:
    """Open the layer editor's cell editor at (row, column), checking it holds that cell's value; retried, as
    the grid may still be settling after a rerun."""
    page.wait_for_selector(f'{FRESH} [data-testid="stDataFrame"] td', state="attached")  # the grid's hidden table
    box = page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]').first.bounding_box()
    for _ in range(4):
        page.mouse.click(box["x"] + 60, box["y"] + 52)  # give the grid the keyboard focus
        with contextlib.suppress(Exception):  # the grid's hidden table may still be catching up with the canvas
            page.wait_for_function(f"(cell) => ({FOCUS_CELL})(cell) !== null", arg=[row, column], timeout=10_000)
        current = page.evaluate(FOCUS_CELL, [row, column])
        assert current is not None, f"no cell ({row}, {column}) in the layer editor"
        page.wait_for_timeout(300)  # the grid moves its selection to the focused cell
        page.keyboard.press("Enter")  # opens the cell's editor
        with contextlib.suppress(Exception):
            page.wait_for_function("() => document.activeElement?.classList.contains('gdg-input')", timeout=5_000)
            page.wait_for_timeout(300)  # the editor fills in the current value first
            if page.evaluate("() => document.activeElement.value") == current.strip():
                return
        page.keyboard.press("Escape")
        _idle(page)
    pytest.fail(f"the layer editor's cell ({row}, {column}) did not open for editing")


def _edit_cell(page, row: int, column: str, value: str, expect_rf: str) -> float:
    """Type a value into the layer editor; seconds from Enter until the RF table is redrawn. Then checks that
    the redrawn table, its text and the Global RF metric all show the edit."""
    _idle(page)
    before = page.evaluate(RF_TABLE_TEXT)
    _open_cell_editor(page, row, column)
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type(value)
    page.wait_for_function("(v) => document.activeElement?.value === v", arg=value, timeout=5_000)
    page.wait_for_timeout(300)  # the editor takes the typed text into its state before Enter commits it
    page.evaluate(f"() => window.__s7.armEdit({RF_GRID})")
    page.keyboard.press("Enter")
    page.wait_for_function("() => window.__s7.edit.changed !== null", timeout=15_000, polling="raf")
    page.wait_for_function(f"(before) => ({RF_TABLE_TEXT})() !== before", arg=before, timeout=15_000)
    page.wait_for_function(
        """(want) => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stMetric"]')]
            .some(m => m.innerText.includes('Global RF') && m.innerText.includes(want))""",
        arg=expect_rf,
        timeout=15_000,
    )
    _idle(page)
    edit = page.evaluate("() => window.__s7.edit")
    final = page.evaluate(f"() => window.__s7.gridHash({RF_GRID})")
    assert edit["shown"] == final, "the RF table's first redraw after the edit was not its final one"
    return (edit["changed"] - edit["enter"]) / 1000


def _select(page, label: str, option: str) -> None:
    box = page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    page.get_by_role("option", name=option, exact=True).click()


def _pick_preset(page, name: str) -> None:
    """Pick preset `name` on the Train page and wait until the page has been redrawn for it.

    The pick reruns the script, which draws the form anew with the preset's recipe; a field filled in before
    that rerun has drawn it lands in the old form and is lost. The caption under the picker, drawn by the
    rerun, names the preset's parameter count: once it shows, the new form is there or being drawn."""
    caption = page.locator(FRESH).get_by_text(f"{summarize(get_preset(name)).total_params:,} parameters")
    if not caption.is_visible():  # a second launch in the same session finds the preset still picked
        _select(page, "Network", f"preset: {name}")
    caption.wait_for(timeout=30_000)
    _idle(page)


def _set_number(page, label: str, value: int) -> None:
    field = page.locator(f'{FRESH} [data-testid="stNumberInput"] input').and_(  # not a stale copy being replaced
        page.get_by_label(label, exact=True)
    )
    field.fill(str(value))
    field.press("Tab")


def _expand(page, title: str) -> None:
    page.locator('[data-testid="stExpander"] summary').filter(has_text=title).first.click()


# ---------------------------------------------------------------- the walk through


def _new_page(browser):
    """A page in a new browser context: an empty HTTP cache and a new Streamlit session, with the clock in."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(CLOCK)
    return context.new_page()


def _warm_up(browser, url: str) -> None:
    """Visit every page once in a throwaway session so imports and caches are warm."""
    page = _new_page(browser)
    page.goto(url)
    _wait_for_page(page, "Architecture", 90_000)
    for title in ("Receptive field", "Train", "Results", "Architecture"):
        link = page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first
        link.click()
        page.wait_for_timeout(1500)
    page.context.close()


def _architecture(page) -> list[float]:
    """Edit layer 7's dilation back and forth; the RF table and Global RF follow every edit."""
    assert _main_metric(page, "Global RF") == "64 px"
    latencies = []
    for value in ("1", "2", "1", "2", "1"):
        latencies.append(_edit_cell(page, EDIT_ROW, EDIT_COLUMN, value, RF_AFTER[value]))
    assert _main_metric(page, "Global RF") == "60 px"
    _check_no_error(page)
    _shoot(page, "architecture")
    return latencies


def _train(page, runs_dir: Path) -> None:
    """Launch one epoch of the tiny preset and watch it finish."""
    epochs, batch = (2, 128) if REAL_DATA else (3, 32)  # synthetic: about 70% after 3 short epochs
    _pick_preset(page, "tiny")
    declared = {s.path: s for s in settings()}  # the form's labels and headings
    _set_number(page, declared["epochs"].title, epochs)
    _set_number(page, declared["batch_size"].title, batch)
    _expand(page, declared["val_split"].group)
    _set_number(page, declared["val_split"].title, 0)
    page.locator('[data-testid="stMain"] button').filter(has_text="Launch training").click()
    page.get_by_text("started in the background").wait_for(timeout=30_000)
    progress = page.locator('[data-testid="stMain"] [data-testid="stProgress"]')
    progress.filter(has_text="finished").first.wait_for(timeout=600_000 if REAL_DATA else 150_000)
    (info,) = runs.list_runs(runs_dir)
    assert info.state == "finished" and info.preset == "tiny" and info.epoch == epochs
    page.locator('[data-testid="stMain"] .js-plotly-plot').first.wait_for(timeout=15_000)
    _check_no_error(page)
    _shoot(page, "train")


def _results(page, runs_dir: Path) -> None:
    """The finished run's accuracy and its per-class chart."""
    (info,) = runs.list_runs(runs_dir)
    assert _main_metric(page, "Test accuracy") == f"{info.best_accuracy:.2%}"  # the saved evaluation, named
    page.locator(".js-plotly-plot .gtitle").filter(has_text="Per-class test accuracy").wait_for(timeout=15_000)
    page.locator(".js-plotly-plot .gtitle").filter(has_text="Confusion matrix").wait_for(timeout=15_000)
    _check_no_error(page)
    _shoot(page, "results")


def _misclassified(page, runs_dir: Path) -> None:
    """The gallery of mistakes, enlarged; a click on a confusion-matrix cell filters it to that cell."""
    images = page.locator(f'{FRESH} [data-testid="stImage"] img')
    assert 0 < images.count() <= 24
    assert "→" in page.locator('[data-testid="stImageCaption"]').first.inner_text()
    assert images.first.evaluate("img => img.naturalWidth") == 128  # 32x32 shown 4x, pixel for pixel
    _shoot(page, "misclassified")
    (info,) = runs.list_runs(runs_dir)
    evaluation = runs.load_predictions(info.path)
    wrong = misclassified(evaluation)
    true, pred = int(evaluation.labels[wrong[-1]]), int(evaluation.predictions[wrong[-1]])
    _click_confusion_cell(page, true, pred, len(evaluation.classes))
    summary = f"{evaluation.confusion[true, pred]} misclassified images shown by this filter"
    page.locator(FRESH).filter(has_text=summary).first.wait_for(timeout=15_000)
    true_box = page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').filter(has_text="True class")
    shown = true_box.evaluate("b => b.innerText + ' ' + [...b.querySelectorAll('input')].map(i => i.value).join(' ')")
    assert evaluation.classes[true] in shown, shown
    captions = page.locator(f'{FRESH} [data-testid="stImageCaption"]').all_inner_texts()
    assert captions and all(f"{evaluation.classes[true]} → {evaluation.classes[pred]}" in c for c in captions)
    plain = images.first.get_attribute("src")
    _select(page, "Grad-CAM layer", _gradcam_layer_with_evidence(info.path, misclassified(evaluation, true, pred)[0]))
    page.wait_for_function(
        "([sel, old]) => { const i = document.querySelector(sel); return i && i.getAttribute('src') !== old; }",
        arg=[f'{FRESH} [data-testid="stImage"] img', plain],
        timeout=30_000,
    )  # the first image is now tinted where that layer found evidence for the predicted class
    _check_no_error(page)
    _shoot(page, "misclassified_gradcam")


def _gradcam_layer_with_evidence(run_dir: str, image: int) -> str:
    """The menu label of the latest layer whose Grad-CAM map of one test image is not all zero."""
    import torch

    from s7core.data import load_cifar10, normalize
    from s7core.gradcam import grad_cam, gradcam_layers

    model = runs.load_run_model(run_dir)
    batch = normalize(load_cifar10(runs.run_data_dir(run_dir)).test_images[torch.tensor([image])])
    found = [name for name in gradcam_layers(model) if grad_cam(model, batch, name).max() > 0]
    assert found, "no layer has any evidence for the predicted class"
    position, part = model.layer_of(found[-1])
    label = f"layer {position}: {model.spec.layers[position].label()}"
    return f"{label} ({part} part)" if part else label


def _click_confusion_cell(page, row: int, column: int, classes: int) -> None:
    """Click the middle of cell (row = true class, column = predicted class) of the confusion heatmap."""
    _idle(page)
    area = page.locator(f"{FRESH} .js-plotly-plot .nsewdrag").first.bounding_box()
    x = area["x"] + (column + 0.5) * area["width"] / classes
    y = area["y"] + (row + 0.5) * area["height"] / classes  # the first true class is drawn at the top
    page.mouse.click(x, y)


@pytest.mark.timeout(900 if REAL_DATA else 300)
def test_design_train_and_study_in_the_browser(server: tuple[str, Path]) -> None:
    sync_api = _browser_or_skip()
    url, runs_dir = server
    first_render: dict[str, float] = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            _warm_up(browser, url)
            page = _new_page(browser)
            page.goto(url)
            first_render["Architecture"] = _wait_for_page(page, "Architecture", 60_000)
            latencies = _architecture(page)
            first_render["Receptive field"] = _open(page, "Receptive field")
            _check_no_error(page)
            _shoot(page, "receptive_field")
            first_render["Train"] = _open(page, "Train")
            _train(page, runs_dir)
            first_render["Results"] = _open(page, "Results")
            _results(page, runs_dir)
            first_render["Misclassified"] = _open(page, "Misclassified")
            _misclassified(page, runs_dir)
            again = {title: statistics.median(_reopen(page, title) for _ in range(3)) for title in PAGES}
            reloads = []  # a new session in a browser that has the app's scripts in its cache
            for _ in range(3):
                page.goto(url)
                reloads.append(_wait_for_page(page, "Architecture", 60_000))
        except Exception:
            with contextlib.suppress(Exception):
                _shoot(page, "failure")  # what the browser showed when it went wrong
            raise
        finally:
            browser.close()
    print("\nfirst render after warm-up (s): " + ", ".join(f"{k} {v:.2f}" for k, v in first_render.items()))
    print(f"Architecture in a new session, browser cache warm (s): median of 3 {statistics.median(reloads):.2f}")
    print("median of 3 later renders (s): " + ", ".join(f"{k} {v:.2f}" for k, v in again.items()))
    print("edit -> RF table (ms): " + ", ".join(f"{1000 * v:.0f}" for v in latencies)
          + f"; median {1000 * statistics.median(latencies):.0f}")  # fmt: skip
