"""Every widget notebook as a learner meets it: JupyterLab 4 in headless Chromium, Run All at the smoke
profile, every widget drawn, every control moves its plot, no JavaScript error. Screenshots go to
build/screenshots/ (or $LABCORE_SCREENSHOTS).

Run with `make test-browser` (it installs Debian's chromium and Playwright, and sets LABCORE_BROWSER=1);
`make test` skips this file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LABCORE_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("LABCORE_SCREENSHOTS", ROOT / "build" / "screenshots"))
# notebook -> how many interactive (plotly) widgets it shows
WIDGET_NOTEBOOKS = {"01_autodeco": 2, "02_kda": 1, "03_kimi_linear_hybrid": 1, "05_rae": 1, "06_thinkmorph": 1}
RUN_ALL_TIMEOUT_S = 900
# Chromium's own attempts to reach the network (closed here) are not page errors
NETWORK_NOISE = ("Failed to load resource", "net::ERR_", "ERR_NAME_NOT_RESOLVED")

pytestmark = pytest.mark.skipif(os.environ.get("LABCORE_BROWSER") != "1",
                                reason="browser test: run `make test-browser`")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> None:
    """User settings for the test's JupyterLab: render every cell (no windowing, so outputs far down the
    notebook are in the DOM) and never ask the network for news or updates."""
    files = {"notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
             "apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                     "checkForUpdates": False}}
    for name, value in files.items():
        path = folder / "@jupyterlab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab on a free localhost port with a random token, over a copy of notebooks/."""
    import secrets

    work = tmp_path_factory.mktemp("lab")
    root, settings = work / "notebooks", work / "settings"
    root.mkdir()
    for stem in WIDGET_NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / f"{stem}.ipynb", root)
    _settings(settings)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "LABCORE_PROFILE": "smoke", "TRITON_INTERPRET": "1",
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTER_CONFIG_DIR": str(work / "config")}
    log = open(work / "lab.log", "w")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                             f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                             "--LabApp.expose_app_in_browser=True", "--allow-root"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; see {work / 'lab.log'}") from None
                time.sleep(0.5)
        yield base, token
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server by pid (it shuts its kernels down), SIGKILL its process group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test-browser` installs Debian's chromium package")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update"])
        yield b
        b.close()


# JS helpers, evaluated in the page (window.jupyterapp exists with expose_app_in_browser)
NOTEBOOK_STATE = """() => {
  const app = window.jupyterapp; const panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  cells.forEach((c, i) => { for (let j = 0; j < c.model.outputs.length; j++) {
      const o = c.model.outputs.get(j).toJSON();
      if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`); } });
  return {status: kernel ? kernel.status : 'none', cells: cells.length,
          pending: cells.filter(c => c.model.executionCount === null).length,
          running: Array.from(document.querySelectorAll('.jp-InputArea-prompt'))
            .filter(p => p.textContent.includes('*')).length,
          errors};
}"""
DRAWN = """(el) => Array.from(el.querySelectorAll('.js-plotly-plot')).map(gd => ({
  drawn: gd.querySelectorAll('.trace, .hm, .im, .table').length > 0 && gd.getBoundingClientRect().height > 50,
  signature: JSON.stringify((gd.data || []).map(t => [t.x, t.y, t.z, t.cells && t.cells.values, t.source])),
  title: gd.layout && gd.layout.title ? String(gd.layout.title.text || '') : ''}))"""


def _run_all(page, base: str, token: str, stem: str) -> dict:
    page.goto(f"{base}/lab/tree/{stem}.ipynb?token={token}&reset", wait_until="domcontentloaded")
    page.wait_for_function("() => { const a = window.jupyterapp; const p = a && a.shell.currentWidget;"
                           " const k = p && p.sessionContext && p.sessionContext.session &&"
                           " p.sessionContext.session.kernel; return k && k.status === 'idle'; }", timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline, state = time.monotonic() + RUN_ALL_TIMEOUT_S, None
    page.wait_for_timeout(2000)
    while time.monotonic() < deadline:
        state = page.evaluate(NOTEBOOK_STATE)
        if state and state["status"] == "idle" and (state["running"] == 0) and (
                state["pending"] == 0 or state["errors"]):
            return state
        page.wait_for_timeout(1000)
    raise AssertionError(f"{stem}: Run All did not finish in {RUN_ALL_TIMEOUT_S} s (last state {state})")


def _wait_drawn(output, timeout_s: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        plots = output.evaluate(DRAWN)
        if plots and all(p["drawn"] for p in plots) or time.monotonic() > deadline:
            return plots
        time.sleep(0.5)


def _controls(output, kind: str) -> list:
    """The widget's controls of one kind that can take another value: dropdowns ("select") with > 1
    option, sliders ("slider") with max > min."""
    if kind == "select":
        return [s for s in output.locator("select").all() if s.locator("option").count() > 1]
    found = []
    for handle in output.locator(".noUi-handle").all():
        lo, hi = handle.get_attribute("aria-valuemin"), handle.get_attribute("aria-valuemax")
        if lo is not None and hi is not None and float(hi) > float(lo):
            found.append(handle)
    return found


def _move(page, control) -> str:
    """Change one control the way a learner would; returns what was done."""
    if control.evaluate("e => e.tagName") == "SELECT":
        options = control.locator("option").all()
        current = control.evaluate("e => e.selectedIndex")
        target = (current + 1) % len(options)
        control.select_option(index=target)
        return f"dropdown -> {options[target].inner_text()}"
    control.scroll_into_view_if_needed()
    control.focus()
    now, hi = float(control.get_attribute("aria-valuenow")), float(control.get_attribute("aria-valuemax"))
    key = "ArrowLeft" if now >= hi else "ArrowRight"
    for _ in range(3):
        page.keyboard.press(key)
    return f"slider {key} x3"


def _check_moves(page, out, control, stem: str, i: int, report: list[str], n: int) -> int:
    """Move one control; its widget's plot must change and stay drawn."""
    before = [p["signature"] for p in out.evaluate(DRAWN)]
    what = _move(page, control)
    deadline, after = time.monotonic() + 20, before
    while time.monotonic() < deadline and after == before:
        page.wait_for_timeout(300)
        after = [p["signature"] for p in out.evaluate(DRAWN)]
    assert after != before, f"{stem}: widget {i}: {what} did not change its plot"
    assert all(p["drawn"] for p in out.evaluate(DRAWN)), f"{stem}: widget {i}: {what} broke its plot"
    report.append(f"widget {n}: {what}: plot changed")
    return 1


@pytest.mark.parametrize("stem", list(WIDGET_NOTEBOOKS))
def test_widgets_render_and_respond(lab, browser, stem):
    base, token = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    js_errors: list[str] = []
    page.on("pageerror", lambda e: js_errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: m.type == "error" and not any(n in m.text for n in NETWORK_NOISE)
            and js_errors.append(f"console: {m.text}"))
    try:
        state = _run_all(page, base, token, stem)
        assert not state["errors"], f"{stem}: cells raised under Run All: {state['errors']}"
        page.wait_for_timeout(2000)
        body = page.inner_text("body")
        assert "Error displaying widget" not in body, f"{stem}: a widget failed to display"
        outputs = page.locator(".jp-OutputArea-output:has(> .jupyter-widgets)")  # one per displayed widget
        report, figure_widgets = [], 0
        for i in range(outputs.count()):
            out = outputs.nth(i)
            out.scroll_into_view_if_needed()
            assert out.locator(".jupyter-widgets").count() > 0, f"{stem}: widget output {i} is not rendered"
            if out.locator(".js-plotly-plot").count() == 0:
                assert out.locator(".widget-hprogress, .widget-html, .widget-label, .widget-slider").count() > 0, \
                    f"{stem}: widget output {i} rendered nothing a reader can see"
                continue  # a tqdm bar (closed, so not pending) or a plain control
            figure_widgets += 1
            plots = _wait_drawn(out)
            assert plots and all(p["drawn"] for p in plots), \
                f"{stem}: widget {i} has an empty plot frame (not drawn): {[p['title'] for p in plots]}"
            out.screenshot(path=str(SHOTS / f"{stem}-widget{figure_widgets}.png"))
            moved = 0
            # dropdowns first: picking another trace or layer can make a slider movable (a longer trace)
            for kind in ("select", "slider"):  # sliders looked up after the dropdowns have moved
                for control in _controls(out, kind):
                    moved += _check_moves(page, out, control, stem, i, report, figure_widgets)
            assert moved, f"{stem}: widget {i} has no control a learner can move"
            out.screenshot(path=str(SHOTS / f"{stem}-widget{figure_widgets}-moved.png"))
        assert figure_widgets == WIDGET_NOTEBOOKS[stem], \
            f"{stem}: {figure_widgets} plotly widgets rendered, expected {WIDGET_NOTEBOOKS[stem]}"
        assert not js_errors, f"{stem}: JavaScript errors: {js_errors[:5]}"
        print(f"{stem}: {figure_widgets} widgets drawn;", "; ".join(report))
    finally:
        page.screenshot(path=str(SHOTS / f"{stem}.png"))
        page.close()
