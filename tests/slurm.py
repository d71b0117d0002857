"""A real one-node SLURM cluster for tests: Debian's `slurm-wlm` and `munge`, started in a
throwaway folder (slurmctld and slurmd on localhost, munge for authentication) and stopped
afterwards. Needs root, as slurmd does; without the packages the tests skip with the command
that installs them."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port

INSTALL = "apt-get install slurm-wlm munge (.ci/run does this)"


def require_slurm() -> None:
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if not shutil.which(b)]
    if missing:
        pytest.skip(f"no SLURM here ({', '.join(missing)} missing): {INSTALL}")
    if os.geteuid() != 0:
        pytest.skip("a test SLURM cluster needs root (slurmd runs jobs as their user)")


@contextlib.contextmanager
def slurm_cluster(cpus: int = 2) -> Iterator[dict[str, str]]:
    """Start the cluster; yield the environment its commands (sbatch, squeue) need."""
    require_slurm()
    folder = Path(tempfile.mkdtemp(prefix="vae-tune-slurm-"))
    for name in ("state", "spool", "log", "run"):
        (folder / name).mkdir()
    host = socket.gethostname()
    socket_path = folder / "run" / "munge.socket"
    conf = folder / "slurm.conf"
    conf.write_text(
        f"""ClusterName=vaetune
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={socket_path}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/run/slurmctld.pid
SlurmdPidFile={folder}/run/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=15
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[subprocess.Popen[bytes]] = []

    def daemon(*argv: str) -> None:
        started.append(
            subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        )

    try:
        daemon(
            "munged",
            "-F",
            "--force",
            f"--socket={socket_path}",
            f"--pid-file={folder}/run/munged.pid",
            f"--seed-file={folder}/run/munge.seed",
            f"--log-file={folder}/log/munged.log",
        )
        _wait(lambda: socket_path.exists(), "munged", folder)
        daemon("slurmctld", "-D", "-f", str(conf))
        daemon("slurmd", "-D", "-f", str(conf))
        _wait(lambda: _idle(env), "the node to come up", folder)
        yield {"SLURM_CONF": str(conf)}
    finally:
        for process in reversed(started):
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_jobs(job_ids: list[str], env: dict[str, str], timeout: float = 900.0) -> None:
    """Until none of the jobs (arrays included) is pending or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        if out.returncode == 0 and not out.stdout.strip():
            return
        time.sleep(2)
    raise AssertionError(f"jobs {job_ids} still queued after {timeout:.0f} s")


def _idle(env: dict[str, str]) -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() in ("idle", "mixed")


def _wait(ready, what: str, folder: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text()[-2000:] for p in (folder / "log").glob("*.log"))
            raise AssertionError(f"SLURM: no {what} after {timeout:.0f} s\n{logs}")
        time.sleep(0.5)
