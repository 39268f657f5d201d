"""What a user sees in the MLflow UI, checked in a real browser.

A tiny sweep (two jobs of the exploding_identity study, a few steps) goes into a temporary
SQLite store through the Hydra app; ``mlflow ui`` serves it; headless Chromium (the
distribution's package, driven by Playwright) opens the lab's runs view, a child run's
per-layer charts, the parent's description and a logged figure. Screenshots land in the test's
temporary directory (printed at the end; ``pytest -s`` shows the path). Skips, saying why,
without Chromium or Playwright (``.ci/install-browser`` installs Chromium where it can).
"""

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

from lab.views import describe

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and os.path.exists(p)), None)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
GAINS = ("0.5", "1.5")  # one that trains, one that diverges at step 1
ML = "workflowType=machine_learning"  # MLflow 3.17's "Model training" side of the UI


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url, proc, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow ui exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow ui did not answer at {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no Chromium (apt-get install chromium, or run .ci/install-browser)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    tmp = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{tmp}/mlruns.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "true"}
    sweep = subprocess.run(
        [sys.executable, "-m", "lab", "-m", "+experiment=exploding_identity",
         f"init.gain={','.join(GAINS)}", "train.steps=12", "tracking.progress=false",
         f"hydra.sweep.dir={tmp}/multirun"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
         "--default-artifact-root", str(tmp / "mlartifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, cwd=tmp,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base, server)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("exploding_identity")
        runs = {("parent" if r.data.tags.get("sweep") == "parent" else
                 r.data.params.get("init.gain")): r for r in client.search_runs([exp.experiment_id])}
        yield {"base": base, "exp": exp, "runs": runs, "shots": tmp / "screenshots"}
    finally:  # the server and its uvicorn worker: their own process group
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        print(f"\nUI screenshots: {tmp / 'screenshots'}")


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 950})
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()


def _open(page, url, shots, name, wait_for_text):
    page.goto(url)
    page.get_by_text(wait_for_text, exact=False).first.wait_for()
    close = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count() and close.first.is_visible():  # MLflow's assistant panel, opened once
        close.first.click()
    time.sleep(1.5)  # charts and tables settle
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / f"{name}.png"))


def test_experiment_tags_for_the_ui(ui):
    tags = ui["exp"].tags
    assert tags[describe.KIND_TAG] == describe.KIND_TRAINING
    assert describe.VIEW_TAG in tags and "Question" not in tags[describe.VIEW_TAG]
    assert "What happens" in tags[describe.DESCRIPTION_TAG]  # the study's question


def test_runs_list_shows_parent_children_and_summary_columns(ui, page):
    url = describe.runs_view_url(ui["base"], ui["exp"].experiment_id)
    _open(page, url, ui["shots"], "1_runs", f"init.gain={GAINS[0]}")
    table = page.locator('[role="grid"], table').first
    text = table.inner_text()
    for name in ("exploding_identity", *(f"init.gain={g}" for g in GAINS)):
        assert name in text, name
    header = page.locator('[role="columnheader"], th').all_inner_texts()
    assert any("final loss" in h for h in header), header  # the lab's columns are shown
    assert any("status" in h for h in header), header
    # the experiment's description links to this view (MLflow renders it as Markdown)
    assert page.locator("a[href*='viewStateShareKey=gradlab']").count() >= 1


def test_chart_view_compares_runs_layer_by_layer(ui, page):
    url = describe.runs_view_url(ui["base"], ui["exp"].experiment_id)
    _open(page, url, ui["shots"], "5_chart_view", f"init.gain={GAINS[0]}")
    page.evaluate("() => document.querySelector('input[name=runs-view-mode][value=CHART]').click()")
    page.get_by_text(describe.PROFILE, exact=True).first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    time.sleep(2.0)
    page.screenshot(path=str(ui["shots"] / "5_chart_view.png"))
    first = page.evaluate("""() => (document.querySelector('.js-plotly-plot').data || [])
        .map(t => Array.from(t.y || []))""")
    lines = {tuple(round(v, 6) for v in y) for y in first if len(y) == 10}
    assert len(lines) == 2, first  # one line per child (the parent has no per-layer data)


def test_child_run_per_layer_chart_has_distinct_nonzero_values(ui, page):
    run = ui["runs"][GAINS[0]]
    url = (f"{ui['base']}/#/experiments/{ui['exp'].experiment_id}/runs/{run.info.run_id}"
           f"/model-metrics?{ML}")
    _open(page, url, ui["shots"], "2_child_layer_profile", describe.PROFILE)
    page.locator(".js-plotly-plot").first.wait_for()
    time.sleep(1.0)
    traces = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .map(d => ({title: d.closest('[data-testid]') ? '' : '', ys: (d.data || [])
        .map(t => Array.from(t.y || []))}))""")
    # the first section is the layer profile: log10 of each layer's norm, one point per layer
    ys = [y for t in traces for y in t["ys"] if len(y) == 10]
    assert ys, traces[:2]
    rising = [y for y in ys if len(set(round(v, 6) for v in y)) == 10 and all(v != 0 for v in y)]
    assert rising, ys  # log10 ‖dZ[l]‖ at init: ten distinct non-zero values (gain^(L-l))
    assert max(max(y) - min(y) for y in rising) > 2  # more than two decades across depth
    sections = page.inner_text("body")
    assert sections.index(describe.PROFILE) < sections.index("grad_norm")  # first on the page


def test_parent_overview_shows_the_summary_table(ui, page):
    parent = ui["runs"]["parent"]
    url = f"{ui['base']}/#/experiments/{ui['exp'].experiment_id}/runs/{parent.info.run_id}?{ML}"
    _open(page, url, ui["shots"], "3_parent_overview", "Description")
    more = page.get_by_text("Show more")
    if more.count():
        more.first.click()
        time.sleep(0.5)
    page.screenshot(path=str(ui["shots"] / "3_parent_overview.png"))
    table = page.locator("table").filter(has_text="final loss").first
    text = table.inner_text()
    assert all(f"init.gain={g}" in text for g in GAINS), text
    assert "diverged at step 1" in text
    assert "by job/log10 final loss" in page.inner_text("body")  # metrics comparing the jobs


def test_logged_figure_in_artifacts(ui, page):
    run = ui["runs"][GAINS[0]]
    url = (f"{ui['base']}/#/experiments/{ui['exp'].experiment_id}/runs/{run.info.run_id}"
           f"/artifacts?{ML}")
    _open(page, url, ui["shots"], "4_artifacts", "figures")
    page.get_by_text("figures", exact=True).first.click()
    page.get_by_text("grad_norm_by_layer.png", exact=True).first.click()
    page.get_by_text("figures/grad_norm_by_layer.png").first.wait_for()  # the preview's title
    # the preview is an <img> of a blob: URL; the figure is 10 in at 100 dpi
    page.wait_for_function("""() => Array.from(document.querySelectorAll('img'))
        .some(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth === 1000)""")
    time.sleep(0.5)
    page.screenshot(path=str(ui["shots"] / "4_artifacts.png"))
