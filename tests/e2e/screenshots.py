"""End to end in a real browser: headless Chromium against `vae-tune ui`.

Runs a small real study in a temporary project, starts `vae-tune ui`, then for optuna-dashboard's
history page and MLflow's run comparison: saves a screenshot and checks the rendered DOM shows the
study's trials. Needs Debian's `chromium` (apt-get install chromium); not part of the pytest suite.

    VAE_TUNE_DATA=../shared/data python tests/e2e/screenshots.py [--out tests/e2e/output]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
# --timeout (real time) rather than --virtual-time-budget: with virtual time the apps' API
# requests never completed and both pages stayed blank.
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1400,1000", "--timeout=30000",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("tests/e2e/output"))
    args = parser.parse_args()
    browser = shutil.which("chromium") or sys.exit("chromium not found: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        subprocess.run([str(BIN / "vae-tune"), "study", "ae", "--n-trials", "4", "--epochs", "2",
                        "--train-size", "500", "--val-size", "200"], cwd=project, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        ui = subprocess.Popen([str(BIN / "vae-tune"), "ui"], cwd=project, text=True,
                              stdout=subprocess.PIPE, env=env)  # fmt: skip
        try:
            urls = _urls(ui)
            _check_dashboard(browser, urls["optuna-dashboard"], args.out)
            _check_mlflow(browser, urls["MLflow UI"], args.out)
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


def _check_dashboard(browser: str, url: str, out: Path) -> None:
    study = _get(f"{url}/api/studies")["study_summaries"][0]
    page = f"{url}/dashboard/studies/{study['study_id']}"  # opens on the history plot
    dom = _render(browser, page, out / "optuna_dashboard_history.png")
    assert "History" in dom, "no history plot on the study page"
    assert "Include PRUNED trials" in dom, "the history plot's controls are missing"
    print(f"optuna-dashboard {page}: study {study['study_name']} rendered")


def _check_mlflow(browser: str, url: str, out: Path) -> None:
    experiment = _get(
        f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ae-fashion-mnist"
    )
    experiment_id = experiment["experiment"]["experiment_id"]
    runs = _get(f"{url}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]})["runs"]
    trial_runs = [r for r in runs if r["info"]["run_name"].startswith("trial-")]
    ids = json.dumps([r["info"]["run_id"] for r in trial_runs])
    query = urllib.parse.urlencode({"runs": ids, "experiments": json.dumps([experiment_id])})
    page = f"{url}/#/compare-runs?{query}"
    dom = _render(browser, page, out / "mlflow_compare_runs.png")
    shown = [r["info"]["run_name"] for r in trial_runs if r["info"]["run_name"] in dom]
    assert len(shown) == len(trial_runs), f"comparison shows {shown} of {len(trial_runs)} trials"
    print(f"MLflow comparison {url}/#/compare-runs: {', '.join(sorted(shown))} rendered")


def _render(browser: str, page: str, screenshot: Path) -> str:
    profile = tempfile.mkdtemp()
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    subprocess.run([*common, f"--screenshot={screenshot}", page], check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    dom = subprocess.run([*common, "--dump-dom", page], check=True, capture_output=True,
                         text=True, timeout=120).stdout  # fmt: skip
    shutil.rmtree(profile, ignore_errors=True)
    return dom


def _get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


if __name__ == "__main__":
    main()
