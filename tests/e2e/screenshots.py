"""End to end in a real browser: headless Chromium against `vae-tune ui`.

Runs a small real study in a temporary project, starts `vae-tune ui`, then drives Debian's
`chromium` through Playwright: optuna-dashboard's history page and MLflow's run comparison are
each opened, waited on until the study's trials are on screen, checked and saved as screenshots.
Not part of the pytest suite (it needs a browser):

    apt-get install chromium && pip install -e '.[e2e]'
    VAE_TUNE_DATA=../shared/data python tests/e2e/screenshots.py [--out tests/e2e/output]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

BIN = Path(sys.executable).parent
N_TRIALS = 4
WAIT_MS = 60_000  # the MLflow UI's first page load compiles nothing but is slow on 2 cores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("tests/e2e/output"))
    args = parser.parse_args()
    browser_path = shutil.which("chromium") or sys.exit(
        "chromium not found: apt-get install chromium"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        subprocess.run(
            [
                str(BIN / "vae-tune"),
                "study",
                "ae",
                "--n-trials",
                str(N_TRIALS),
                "--epochs",
                "2",
                "--train-size",
                "500",
                "--val-size",
                "200",
            ],
            cwd=project,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        ui = subprocess.Popen(
            [str(BIN / "vae-tune"), "ui"], cwd=project, text=True, stdout=subprocess.PIPE
        )
        try:
            urls = _urls(ui)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=browser_path)
                page = browser.new_page(viewport={"width": 1800, "height": 1100})
                page.set_default_timeout(WAIT_MS)
                expect.set_options(timeout=WAIT_MS)
                _check_dashboard(page, urls["optuna-dashboard"], args.out)
                _check_mlflow(page, urls["MLflow UI"], args.out)
                browser.close()
        finally:
            ui.send_signal(signal.SIGINT)
            ui.wait(timeout=60)
    print("both UIs show the study's trials; screenshots in", args.out)


def _urls(ui: subprocess.Popen) -> dict[str, str]:
    urls = {}
    for line in ui.stdout:
        name, _, url = line.strip().partition(": ")
        if url.startswith("http://"):
            urls[name] = url
        if len(urls) == 2:
            return urls
    raise SystemExit("vae-tune ui did not print both URLs")


def _check_dashboard(page: Page, url: str, out: Path) -> None:
    study = _get(f"{url}/api/studies")["study_summaries"][0]
    page.goto(f"{url}/dashboard/studies/{study['study_id']}")  # opens on the history plot
    expect(page.get_by_role("heading", name="History", exact=True)).to_be_visible()
    # The plotly history plot draws one marker per finished trial.
    markers = page.locator(".js-plotly-plot .scatterlayer .point")
    expect(markers.first).to_be_visible()
    page.wait_for_timeout(1_000)  # let plotly finish its transition before the picture
    page.screenshot(path=out / "optuna_dashboard_history.png", full_page=True)
    shown = markers.count()
    assert shown >= N_TRIALS, f"the history plot shows {shown} points for {N_TRIALS} trials"
    print(f"optuna-dashboard: study {study['study_name']}, history plot with {shown} points")


def _check_mlflow(page: Page, url: str, out: Path) -> None:
    api = f"{url}/api/2.0/mlflow"
    experiment = _get(f"{api}/experiments/get-by-name?experiment_name=ae-fashion-mnist")
    experiment_id = experiment["experiment"]["experiment_id"]
    runs = _get(f"{api}/runs/search", {"experiment_ids": [experiment_id]})["runs"]
    trial_runs = [r for r in runs if r["info"]["run_name"].startswith("trial-")]
    ids = json.dumps([r["info"]["run_id"] for r in trial_runs])
    query = urllib.parse.urlencode({"runs": ids, "experiments": json.dumps([experiment_id])})
    page.goto(f"{url}/#/compare-runs?{query}")
    names = sorted(r["info"]["run_name"] for r in trial_runs)
    for name in names:
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    expect(page.get_by_text("val_loss").first).to_be_visible()
    page.wait_for_timeout(2_000)  # the parallel-coordinates plot animates in
    page.screenshot(path=out / "mlflow_compare_runs.png", full_page=True)
    print(f"MLflow comparison: {', '.join(names)} with their params and metrics")


def _get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


if __name__ == "__main__":
    main()
