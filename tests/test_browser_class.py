"""Class mode end to end in a real browser: a local OpenID Connect provider, two students and a teacher.

The test starts `oidc-provider-mock` and the app (with the class profile, `python -m s7core class serve`'s
command) on 127.0.0.1, in class mode over a tiny synthetic data set. Each user signs in through the provider in a
browser context of their own. Each student launches a one-epoch run of the tiny preset and sees only their own runs;
both appear on the Leaderboard; then one student launches a long run and the teacher, who sees every run, stops it.
Screenshots of the sign-in page and the leaderboard go to tests/artifacts/ (docs/screenshots/ holds copies).
Skipped without chromium and playwright unless S7_REQUIRE_BROWSER=1, like tests/test_browser.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    IDLE,
    VIEWPORT,
    _browser_or_skip,
    _expand,
    _free_port,
    _pick_preset,
    _set_number,
    _stop_runs,
    _wait_until_serving,
    stop_group,
)

from s7core import runs
from s7core.classroom import Roster, change_settings
from s7core.classroom.server import serve_command
from s7core.config import settings
from s7core.data import make_tiny_cifar10

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
STUDENTS = ("alice@school.org", "bob@school.org")
TEACHER = "tess@school.org"
ROSTER_USER, ROSTER_PASSWORD = "carol", "carol-secret"  # a class account beside the identity provider
SIDEBAR = '[data-testid="stSidebar"]'
MAIN = '[data-testid="stMain"]'


def _wait_for_provider(url: str, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the OpenID Connect test provider exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/.well-known/openid-configuration", timeout=2) as reply:
                if reply.status == 200:
                    return
        time.sleep(0.2)
    pytest.fail("the OpenID Connect test provider did not start")


@pytest.fixture(scope="module")
def class_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The provider and the app in class mode, both on 127.0.0.1; both stopped by their own process ids."""
    _browser_or_skip()
    try:
        import oidc_provider_mock  # noqa: F401
    except ImportError:
        missing = "the oidc-provider-mock package is not installed (requirements-dev.txt)"
        if os.environ.get("S7_REQUIRE_BROWSER") == "1":
            pytest.fail(f"S7_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    tmp = tmp_path_factory.mktemp("browser_class")
    data = make_tiny_cifar10(tmp / "data", n_train=256, n_test=100)
    runs_dir = tmp / "runs"
    change_settings(runs_dir, enabled=True, data_dir=str(data), teachers=(TEACHER,), max_concurrent=2,
                    max_active_per_student=1)  # fmt: skip
    Roster(runs_dir).add(ROSTER_USER, "student", ROSTER_PASSWORD)
    oidc_port, port = _free_port(), _free_port()
    provider_url, url = f"http://127.0.0.1:{oidc_port}", f"http://127.0.0.1:{port}"
    provider = subprocess.Popen(
        [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(oidc_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    app = None
    try:
        _wait_for_provider(provider_url, provider)
        secrets_file = tmp / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            f'redirect_uri = "{url}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_hex(32)}"\n'
            'client_id = "s7-class-test"\n'
            'client_secret = "any-secret-the-mock-accepts"\n'
            f'server_metadata_url = "{provider_url}/.well-known/openid-configuration"\n'
        )
        env = {**os.environ, "S7_RUNS_DIR": str(runs_dir), "XDG_CACHE_HOME": str(tmp / "cache")}
        env.pop("S7_DATA_DIR", None)  # the class's data folder is the one the teacher set
        command = serve_command(address="127.0.0.1", port=port, extra=["--secrets.files", str(secrets_file)])
        log = tmp / "streamlit.log"
        with open(log, "wb") as out:
            app = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        _wait_until_serving(url, app, log)
        yield url, runs_dir
    finally:
        _stop_runs(runs_dir)
        if app is not None:
            stop_group(app)
        stop_group(provider)


def _shoot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.wait_for_selector(IDLE, state="attached", timeout=30_000)
    page.wait_for_timeout(800)
    page.screenshot(path=str(path))
    return path


def _sign_in(browser, url: str, email: str, shot: str | None = None):
    """A new browser context signed in as `email` through the provider's form; its page."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url)
    button = page.get_by_role("button", name="Sign in with your school account")
    button.wait_for(timeout=60_000)
    if shot:
        _shoot(page, shot)
    button.click()
    page.get_by_placeholder("sub").fill(email)  # the provider's own sign-in form
    page.get_by_role("button", name="Authorize").click()
    page.locator(SIDEBAR).get_by_text(email).wait_for(timeout=60_000)
    return page


def _roster_sign_in_and_out(browser, url: str):
    """A class account: a wrong password is refused, the right one signs in, Sign out goes back to the form."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(url)
    form = page.locator('[data-testid="stForm"]')
    form.get_by_label("Name", exact=True).fill(ROSTER_USER)
    form.get_by_label("Password", exact=True).fill("not-her-password")
    form.get_by_role("button", name="Sign in").click()
    page.locator(MAIN).get_by_text("wrong name or password").wait_for(timeout=30_000)
    form.get_by_label("Password", exact=True).fill(ROSTER_PASSWORD)
    form.get_by_role("button", name="Sign in").click()
    page.locator(SIDEBAR).get_by_text(ROSTER_USER).wait_for(timeout=60_000)
    page.locator(SIDEBAR).get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in with your school account").wait_for(timeout=30_000)
    return page


def _open(page, title: str) -> None:
    # by the link's last line: a link's text starts with its icon's name, and Results' icon is "leaderboard"
    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=re.compile(rf"{title}$")).first.click()
    page.locator(f"{MAIN} h1").filter(has_text=title).wait_for(timeout=30_000)
    page.wait_for_selector(IDLE, state="attached", timeout=30_000)


def _launch(page, name: str, epochs: int) -> None:
    """Launch a run of the tiny preset from the Train page."""
    _open(page, "Train")
    page.wait_for_selector(IDLE, state="attached", timeout=30_000)
    _pick_preset(page, "tiny")
    declared = {s.path: s for s in settings()}
    _set_number(page, declared["epochs"].title, epochs)
    _set_number(page, declared["batch_size"].title, 32)
    if not page.get_by_label(declared["val_split"].title, exact=True).is_visible():  # a click toggles it
        _expand(page, declared["val_split"].group)
    _set_number(page, declared["val_split"].title, 0)
    page.locator(f'{MAIN} [data-testid="stTextInput"] input').and_(page.get_by_label("Run name (optional)")).fill(name)
    field = page.get_by_label(declared["epochs"].title, exact=True)
    assert field.input_value() == str(epochs)
    page.locator(f"{MAIN} button").filter(has_text="Launch training").click()
    page.get_by_text(f"Run {name} started in the background").or_(page.get_by_text(f"Run {name} is queued")).wait_for(
        timeout=30_000
    )


RUN_LIST_TEXT = """(want) => {
  const grids = document.querySelectorAll('[data-testid="stMain"] [data-testid="stDataFrame"]');
  const text = grids.length ? grids[grids.length - 1].textContent : '';  // the grid's hidden accessible table
  return text.includes(want) ? text : null;
}"""


def _run_list(page, must_show: str) -> str:
    """The text of the Train page's run list, once it shows `must_show`."""
    page.wait_for_selector(IDLE, state="attached", timeout=30_000)
    return page.wait_for_function(RUN_LIST_TEXT, arg=must_show, timeout=30_000).json_value()


def _wait_state(runs_dir: Path, name: str, states: tuple[str, ...], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while runs.run_info(runs_dir / name).state not in states:
        assert time.monotonic() < deadline, f"{name} is {runs.run_info(runs_dir / name).state}, not {states}"
        time.sleep(0.3)


@pytest.mark.timeout(420)
def test_two_students_and_a_teacher_in_class_mode(class_server: tuple[str, Path]) -> None:
    sync_api = _browser_or_skip()
    url, runs_dir = class_server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        pages = []
        try:
            alice = _sign_in(browser, url, STUDENTS[0], shot="sign_in")
            bob = _sign_in(browser, url, STUDENTS[1])
            pages = [alice, bob]
            assert alice.locator(SIDEBAR).get_by_text("student").count() > 0
            # students never see the teacher's page, nor a server path
            menu = [
                t.split("\n")[-1].strip() for t in alice.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
            ]
            assert "Leaderboard" in menu and "Class" not in menu
            assert str(runs_dir.parent) not in alice.locator(SIDEBAR).inner_text()

            _launch(alice, "alice-1", epochs=3)  # about 70% on the synthetic set
            _launch(bob, "bob-1", epochs=2)
            for name in ("alice-1", "bob-1"):
                _wait_state(runs_dir, name, ("finished",))
            assert runs.run_info(runs_dir / "alice-1").owner == STUDENTS[0]
            alice.reload()
            alice.locator(SIDEBAR).get_by_text(STUDENTS[0]).wait_for(timeout=60_000)  # still signed in
            _open(alice, "Train")
            assert "bob-1" not in _run_list(alice, "alice-1")
            _open(bob, "Train")
            assert "alice-1" not in _run_list(bob, "bob-1")

            _open(alice, "Leaderboard")
            board = alice.locator(f'{MAIN} [data-testid="stDataFrame"]').first
            board.locator("td").filter(has_text=STUDENTS[1]).first.wait_for(state="attached", timeout=30_000)
            cells = board.locator('td[aria-colindex="2"]').all_text_contents()
            assert set(STUDENTS) <= {c.strip() for c in cells}
            _shoot(alice, "leaderboard")

            _launch(bob, "bob-long", epochs=300)  # long enough to be stopped while it trains
            _wait_state(runs_dir, "bob-long", ("running",))
            tess = _sign_in(browser, url, TEACHER)
            pages.append(tess)
            assert tess.locator(SIDEBAR).get_by_text("teacher").count() > 0
            _open(tess, "Train")
            listed = _run_list(tess, "bob-long")
            assert "alice-1" in listed and "bob-1" in listed
            # the newest run, bob's, is the one watched first; its Stop button is keyed by its name
            tess.locator(f"{MAIN} .st-key-stop_bob-long button").click(timeout=30_000)
            _wait_state(runs_dir, "bob-long", ("stopped",), timeout_s=60)
            tess.locator(SIDEBAR).get_by_role("button", name="Sign out").click()  # out of the provider's session too
            tess.get_by_role("button", name="End session").click()  # the provider's own page asks first
            tess.get_by_role("button", name="Sign in with your school account").wait_for(timeout=60_000)
            pages.append(_roster_sign_in_and_out(browser, url))
            for page in pages:
                errors = page.locator(f'{MAIN} [data-testid="stException"]')
                assert errors.count() == 0, errors.first.inner_text()
        except Exception:
            for i, page in enumerate(pages):
                with contextlib.suppress(Exception):
                    _shoot(page, f"failure_class_{i}")
            raise
        finally:
            browser.close()
