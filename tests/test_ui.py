"""`vae-tune ui` as a user runs it: from a terminal, light, never lingering, printing URLs that
land on the trials; checked in a real browser (headless Chromium through Playwright)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    Terminal,
    alive,
    free_port,
    invoke,
    listening,
    load_study,
    process_tree,
    rss_mib,
    runs_of,
)

pytestmark = pytest.mark.slow  # a real study, two real servers
VAE_TUNE = str(Path(sys.executable).parent / "vae-tune")
STOP_S = 5.0
MEMORY_MIB = 1024
SCREENSHOTS = Path(__file__).resolve().parent / "e2e" / "output"
_RECONSTRUCTIONS = "get-artifact?path=images%2Freconstructions"  # log_image's files for the key


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A small AE study, linked to UI ports of its own (the defaults may be taken here)."""
    root = tmp_path_factory.mktemp("ui")
    ports = {"VAE_TUNE_DASHBOARD_PORT": str(free_port()), "VAE_TUNE_MLFLOW_PORT": str(free_port())}
    args = ["--n-trials", "3", "--epochs", "2", "--train-size", "500", "--val-size", "200"]
    result = invoke(root, "study", "ae", *args, env=ports)
    assert result.exit_code == 0, result.output
    return root, ports


def start_ui(project: tuple[Path, dict[str, str]], *args: str) -> Terminal:
    root, ports = project
    env = {**os.environ, **ports, "PYTHONUNBUFFERED": "1", "COLUMNS": "250"}
    terminal = Terminal([VAE_TUNE, "ui", *args], root, env)
    terminal.read_until("Ctrl-C stops both.")
    return terminal


def assert_all_gone(tree: list[int], ports: dict[str, str]) -> float:
    """Within STOP_S, no process of the tree runs and nothing listens: seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < STOP_S:
        if not alive(tree) and not any(listening(int(p)) for p in ports.values()):
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"left running: {alive(tree)}, listening: {ports}")


def test_ui_is_light_prints_its_urls_and_stops_on_ctrl_c(project, tmp_path: Path) -> None:
    _, ports = project
    opened = tmp_path / "opened"
    # --open hands each URL to $BROWSER: here, a line appended to a file.
    os.environ["BROWSER"] = f"sh -c 'echo \"$1\" >> {opened}' sh %s"
    try:
        terminal = start_ui(project, "--open")
    finally:
        del os.environ["BROWSER"]
    try:
        tree = process_tree(terminal.process.pid)
        assert len(tree) == 3, "the launcher and one process per server"
        assert rss_mib(tree) <= MEMORY_MIB, f"{rss_mib(tree):.0f} MiB"
        dashboard, mlflow = ports["VAE_TUNE_DASHBOARD_PORT"], ports["VAE_TUNE_MLFLOW_PORT"]
        assert f"http://127.0.0.1:{dashboard}/dashboard/studies/0" in terminal.output
        assert f"http://127.0.0.1:{mlflow}/#/experiments/1/runs?workflowType" in terminal.output
        assert "viewStateShareKey=vae-tune-topk&compareRunsMode=CHART" in terminal.output
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_lines(opened)) < 2:
            time.sleep(0.2)
        assert [u.split("/")[2].split(":")[1] for u in _lines(opened)] == [dashboard, mlflow]
        terminal.ctrl_c()
        assert_all_gone(tree, ports)
        assert terminal.process.wait(timeout=STOP_S) == 0
        assert "stopping both servers" in terminal.read_until("stopping both servers")
    finally:
        terminal.close()


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("end", ["hang-up", "sigterm", "sigkill"])
def test_no_server_outlives_the_ui(project, end: str) -> None:
    _, ports = project
    terminal = start_ui(project)
    try:
        tree = process_tree(terminal.process.pid)
        if end == "hang-up":
            terminal.hang_up()  # the terminal window closes, or the SSH session drops
        else:
            os.kill(terminal.process.pid, signal.SIGTERM if end == "sigterm" else signal.SIGKILL)
        assert_all_gone(tree, ports)
    finally:
        terminal.close()


def test_ui_errors_clearly_without_stores_or_with_a_taken_port(project, tmp_path: Path) -> None:
    result = invoke(tmp_path, "ui")
    assert result.exit_code == 2 and "no study storage" in result.output
    root, ports = project
    terminal = start_ui(project)
    try:
        again = invoke(root, "ui", env=ports)  # the same ports: the first UI holds them
        port = ports["VAE_TUNE_DASHBOARD_PORT"]
        assert again.exit_code == 2, again.output
        assert f"port {port} on 127.0.0.1 is taken" in again.output
        assert "another `vae-tune ui` may be running" in again.output
    finally:
        terminal.ctrl_c()
        terminal.process.wait(timeout=STOP_S)
        terminal.close()


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("no Chromium here: apt-get install chromium (the browser tests drive it)")
    return found


@pytest.mark.e2e
def test_urls_land_on_the_trials_in_a_browser(project) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    _, ports = project
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    terminal = start_ui(project)
    urls = _printed_urls(terminal.output)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            # The MLflow URL opens the runs table in the machine-learning view, trials as rows.
            page.goto(urls["trials in MLflow"])
            expect(page.get_by_text("trial-000", exact=True)).to_be_visible(timeout=60_000)
            expect(page.get_by_text("trial-002", exact=True)).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "mlflow_runs.png")
            # The dashboard URL opens the study; a trial page shows its picture and its note,
            # whose MLflow link opens that trial's run.
            page.goto(urls["trials in optuna-dashboard"])
            expect(page.get_by_text("ae-fashion-mnist").first).to_be_visible(timeout=60_000)
            page.screenshot(path=SCREENSHOTS / "dashboard_study.png")
            page.goto(urls["trials in optuna-dashboard"] + "/trials?numbers=0")
            picture = page.locator("img[src*='/artifacts/']").first
            expect(picture).to_be_visible(timeout=60_000)
            assert page.evaluate("(img) => img.naturalWidth", picture.element_handle()) > 0
            link = page.locator("a[href*='/#/experiments/']").first
            expect(link).to_be_visible()
            href = link.get_attribute("href")
            assert href and href.startswith(f"http://127.0.0.1:{ports['VAE_TUNE_MLFLOW_PORT']}/")
            page.screenshot(path=SCREENSHOTS / "dashboard_trial.png")
            picture.scroll_into_view_if_needed()
            page.screenshot(path=SCREENSHOTS / "dashboard_trial_picture.png")
            page.goto(href)
            expect(page.get_by_text("trial-000").first).to_be_visible(timeout=60_000)
            page.screenshot(path=SCREENSHOTS / "mlflow_run.png")
            browser.close()
    finally:
        tree = process_tree(terminal.process.pid)
        terminal.ctrl_c()
        assert_all_gone(tree, ports)
        terminal.close()


@pytest.mark.e2e
def test_trials_link_shows_metric_params_and_pruned_at_first_sight(project) -> None:
    """The printed link opens the study's saved view (MLflow's experiment-tag format, not a
    public API: an MLflow that reads it no more fails here) at 1920x1000: the best trial's
    metric value, a searched parameter's value and PRUNED on screen without a click, the
    Assistant panel open beside them as MLflow opens it. The view is in the store: the same
    after the server restarts."""
    from playwright.sync_api import expect

    root, _ = project
    study = load_study(root)
    assert any(t.state.name == "PRUNED" for t in study.trials), "the fixture pruned no trial"
    best = study.best_trial
    wanted = [repr(best.value), str(best.params["model.latent_dim"])]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for attempt in ("first", "after a restart"):
        with _printed_link_in_chromium(project, "trials in MLflow") as (page, url, _):
            assert "viewStateShareKey=vae-tune-trials" in url, attempt
            pruned = page.get_by_text(re.compile(r"^PRUNED at epoch \d+$")).first
            expect(pruned).to_be_visible(timeout=60_000)
            for text in [*wanted, "COMPLETE"]:
                _assert_on_screen(page, page.get_by_text(text, exact=True).first, text)
            _assert_on_screen(page, pruned, "PRUNED")
            assert "orderByKey=metrics.%60val_loss%60" in page.url  # the view was applied
            page.screenshot(path=SCREENSHOTS / "mlflow_trials_view.png")


@pytest.mark.e2e
def test_topk_link_shows_values_and_pictures_at_first_sight(project) -> None:
    """The printed top-k link opens the study's top-k view (MLflow's saved-view and chart
    formats, not a public API) in chart mode at 1920x1000: each top trial's value (in full),
    number and state, and a picture of a top trial loaded, on screen without a click."""
    from playwright.sync_api import expect

    root, _ = project
    _, _, children = runs_of(root)
    top = {r.info.run_id: r for r in children if r.data.tags.get("trial.top_k") == "true"}
    complete = [t for t in load_study(root).trials if t.state.name == "COMPLETE"]
    assert complete and len(top) == len(complete)  # 3 trials: every complete one is in the top
    with _printed_link_in_chromium(project, "side by side in MLflow") as (page, url, responses):
        assert "viewStateShareKey=vae-tune-topk" in url
        expect(page.get_by_text("Value val_loss", exact=True)).to_be_visible(timeout=60_000)
        for trial in complete:
            value = page.get_by_text(f"{trial.value:.6g}", exact=True).first
            _assert_on_screen(page, value, f"trial {trial.number}'s val_loss")
        _assert_on_screen(page, page.get_by_text("COMPLETE", exact=True).first, "state")
        # A top trial's reconstructions, logged by log_image, fetched from its run and drawn:
        # MLflow up to 3.17 points the <img> at get-artifact, 3.18 draws a blob it fetched.
        picture = page.get_by_role("row").filter(has_text="reconstructions").locator("img").first
        expect(picture).to_be_visible(timeout=60_000)
        loaded = "(img) => img.complete && img.naturalWidth > 0"
        page.wait_for_function(loaded, arg=picture.element_handle())
        fetched = [url for status, url in responses if status == 200 and _RECONSTRUCTIONS in url]
        assert any(f"run_uuid={run_id}" in url for url in fetched for run_id in top), fetched
        # Its top rows at least: the chart's card cuts a tall picture at its lower edge.
        _assert_on_screen(page, picture, "a picture", near_top=True)
        page.screenshot(path=SCREENSHOTS / "mlflow_topk_view.png")


@contextlib.contextmanager
def _printed_link_in_chromium(
    project, name: str
) -> Iterator[tuple[Any, str, list[tuple[int, str]]]]:
    """`vae-tune ui` started, the link it prints as `name` opened in Chromium at 1920x1000,
    with the (status, URL) of every response the page gets; afterwards the UI stopped with
    Ctrl-C and none of its processes left."""
    from playwright.sync_api import sync_playwright

    executable = chromium()  # none installed: skipped before anything starts
    terminal = start_ui(project)
    try:
        url = _printed_urls(terminal.output)[name]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable)
            page = browser.new_page(viewport={"width": 1920, "height": 1000})
            responses: list[tuple[int, str]] = []
            page.on("response", lambda response: responses.append((response.status, response.url)))
            page.goto(url)
            yield page, url, responses
            browser.close()
    finally:
        tree = process_tree(terminal.process.pid)
        terminal.ctrl_c()
        assert_all_gone(tree, project[1])
        terminal.close()


def _assert_on_screen(page, locator, what: str, near_top: bool = False) -> None:
    """Visible in the viewport and not under anything else (the Assistant panel): its middle,
    or a point `near_top`."""
    box = locator.bounding_box()
    assert box is not None, what
    x, y = box["x"] + box["width"] / 2, box["y"] + (10 if near_top else box["height"] / 2)
    assert 0 <= x <= 1920 and 0 <= y <= 1000, (what, box)
    top = "([x, y, el]) => el.contains(document.elementFromPoint(x, y))"
    assert page.evaluate(top, [x, y, locator.element_handle()]), f"{what} is covered"


def _printed_urls(output: str) -> dict[str, str]:
    """`name: URL` lines, by name (`top 5 side by side in MLflow` as `side by side ...`)."""
    found = re.findall(r"^\s*(?:top \d+ )?(.+?):\s+(http\S+)", output, flags=re.MULTILINE)
    return dict(found)


def test_every_trial_has_its_picture_and_compare_draws_any_of_them(project) -> None:
    root, _ = project
    client, [parent], children = runs_of(root)
    for run in children:  # complete and pruned trials alike
        assert "recon.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    compare = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    assert "compare/recon_topk.png" in compare
    result = invoke(root, "compare", "ae", "--trials", "0,2")
    assert result.exit_code == 0, result.output
    assert (root / "reports" / "ae-fashion-mnist-recon_trials_0-2.png").is_file()
    drawn = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    assert "compare/recon_trials_0-2.png" in drawn
    bad = invoke(root, "compare", "ae", "--trials", "0,99")
    assert bad.exit_code == 2 and "--trials [99]" in bad.output
