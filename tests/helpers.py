"""Helpers the test modules share: the real data, the CLI in-process and as a subprocess, the
stores of a project folder. Test modules import from here, never from one another."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner, Result

from vae_tune.cli import app
from vae_tune.project.storage import open_storage

REPO = Path(__file__).resolve().parent.parent
VAE_TUNE = str(Path(sys.executable).parent / "vae-tune")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Quick studies on real data: 1,000 training and 500 validation images.
SMALL = ["--epochs", "2", "--train-size", "1000", "--val-size", "500"]
TINY = ["--epochs", "2", "--train-size", "500", "--val-size", "200"]
STUDY = "ae-fashion-mnist"


def data_dir() -> Path:
    """`$VAE_TUNE_DATA`, else the shared folder beside the checkout; a clear failure if absent."""
    path = Path(os.environ.get("VAE_TUNE_DATA") or REPO.parent / "shared" / "data")
    if not (path / "fashion-mnist").is_dir():
        pytest.fail(f"real data not found in {path}: set VAE_TUNE_DATA to the IDX folder")
    return path.resolve()


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def invoke(root: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run `vae-tune ARGS` in-process with `root` as the project folder."""
    with chdir(root):
        runner = CliRunner(env={"VAE_TUNE_DATA": str(data_dir()), **(env or {})})
        return runner.invoke(app, list(args))


def env() -> dict[str, str]:
    """The environment of a `vae-tune` subprocess: the real data, unbuffered output."""
    return {**os.environ, "VAE_TUNE_DATA": str(data_dir()), "PYTHONUNBUFFERED": "1"}


def as_foreground_job() -> None:
    """Signals as a shell leaves them for a command in the foreground.

    A shell script's background job (`pytest ... &`) ignores SIGINT, and a child inherits the
    ignore: Python then installs no KeyboardInterrupt handler, and a test of Ctrl-C tests
    nothing. A terminal's foreground command has the default handlers.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def start(command: list[str], cwd: Path) -> subprocess.Popen[str]:
    """A `vae-tune` subprocess on the real data, its output (both streams) as text lines."""
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=as_foreground_job,
    )


def study_command(*args: str) -> list[str]:
    """`vae-tune study ae` on a small subset, as a subprocess command line."""
    return [VAE_TUNE, "study", "ae", *SMALL, *args]


class Output:
    """A subprocess's output, read line by line by a thread as it comes (a full pipe would
    stall the process while a test waits for a state)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self.thread.join(timeout=10)
        return code


def running_trial(
    root: Path, output: Output, epochs: int = 1, timeout: float = 300.0
) -> optuna.trial.FrozenTrial:
    """Wait until a trial of the project's study is RUNNING with `epochs` epochs reported: a
    state read from the storage, not a printed line, so a signal sent next lands inside it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if output.process.poll() is not None:
            raise AssertionError(f"the process ended before a trial ran:\n{output.text}")
        if (root / "studies" / "optuna.journal").is_file():
            with contextlib.suppress(KeyError):  # the study is not created yet
                for trial in load_study(root).get_trials(states=(TrialState.RUNNING,)):
                    if len(trial.intermediate_values) >= epochs:
                        return trial
        time.sleep(0.2)
    raise AssertionError(f"no trial ran {epochs} epoch(s) in {timeout:.0f} s:\n{output.text}")


def mlflow_client(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def load_study(root: Path, name: str = STUDY) -> optuna.Study:
    storage = open_storage(str(root / "studies" / "optuna.journal"))
    return optuna.load_study(study_name=name, storage=storage)


def runs_of(root: Path, name: str = STUDY) -> tuple[MlflowClient, list[Run], list[Run]]:
    """The MLflow client, the study's parent run(s) and its trial runs."""
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("vae_tune.role") == "study"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def promotion_runs(root: Path, study: str) -> list[Run]:
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name(study)
    return client.search_runs(
        [experiment.experiment_id], filter_string="tags.`vae_tune.role` = 'promotion'"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Terminal:
    """A command run as in a terminal: the session leader of its own pseudo-terminal, so Ctrl-C
    is a keystroke (SIGINT to its foreground group) and closing the terminal is a hang-up."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=self._foreground_of_its_tty,
        )
        os.close(slave)
        self.output = ""

    @staticmethod
    def _foreground_of_its_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty becomes its controlling terminal
        as_foreground_job()

    def read_until(self, text: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            ended = self.process.poll() is not None  # what it printed before it ended counts
            ready, _, _ = select.select([self.master], [], [], 0.5)
            chunk = b""
            if ready:
                with contextlib.suppress(OSError):  # EIO: the other side is closed
                    chunk = os.read(self.master, 65536)
            self.output += chunk.decode(errors="replace")
            if text not in self.output and (time.monotonic() > deadline or (ended and not chunk)):
                raise AssertionError(f"{text!r} not printed; output:\n{self.output}")
        return self.output

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def hang_up(self) -> None:
        """The terminal closes: the kernel sends SIGHUP to the session leader."""
        os.close(self.master)
        self.master = -1

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = status.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(status.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def alive(pids: list[int]) -> list[int]:
    """The pids that still run (zombies, waiting for their parent to reap them, do not)."""
    running = []
    for pid in pids:
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                running.append(pid)
    return running


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether anything accepts connections on the port."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0
