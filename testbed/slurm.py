"""A real Slurm cluster on this one machine, for the tests, demos and benchmarks: Debian's
`slurm-wlm` and `munge` (installed by `make`), nothing mocked. It starts its own `munged` (a fresh
key, its own socket), a `slurmctld` and one `slurmd -N NAME` per node (Debian's Slurm is built
with multiple-slurmd), every daemon on free ports with its state, spool and logs under one folder,
with no cgroups (`proctrack/linuxproc`, `task/none`).

    with SlurmCluster(tmp_dir, nodes=3) as slurm:
        job = slurm.submit("cluster/slurm/sweep.sbatch", "sweep/specs/smoke.yaml")
        slurm.wait(job, "COMPLETED")

Clients (`sbatch`, `squeue`, `scancel`, `scontrol`) find it through SLURM_CONF in `env()`. Every job
submitted with that environment carries ``MARK`` (Slurm hands the submitter's environment to the
job, and the job to what it starts: Ray's nodes, the sweep's driver), so stop() ends exactly what
this cluster started: its daemons, and whatever its jobs left behind.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .cluster import kill_processes, marked_processes, short_tempdir
from .procs import free_ports, stop_group

MARK = "GAP_SLURM_TESTBED"  # env var: the cluster's id, on every job and what the job starts
DAEMONS = ("munged", "slurmctld", "slurmd")
INSTALL = "apt-get install slurm-wlm munge (`make` does, where apt is usable)"


class SlurmError(RuntimeError):
    """The cluster could not start, or a job did not reach the state waited for."""


def missing_commands() -> list[str]:
    """The Slurm and munge commands this machine lacks (daemons and clients)."""
    need = (*DAEMONS, "mungekey", "sbatch", "squeue", "scancel", "scontrol", "sinfo")
    return [c for c in need if shutil.which(c) is None and not Path("/usr/sbin", c).exists()]


def _command(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    """munged + slurmctld + ``nodes`` slurmd of ``cpus`` CPUs each, in one partition, under ``root``."""

    def __init__(self, root: str | os.PathLike | None = None, nodes: int = 3, cpus: int = 1,
                 kill_wait: int = 15):
        self.root = Path(root) if root is not None else None
        self._remove = root is None  # a folder of its own: removed by stop()
        self.names = [f"gap{i + 1}" for i in range(nodes)]
        self.cpus, self.kill_wait = cpus, kill_wait
        self.id = secrets.token_hex(6)
        self.procs: dict[str, subprocess.Popen] = {}

    # -- starting ---------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        if missing := missing_commands():
            raise SlurmError(f"no {', '.join(missing)} on this machine: {INSTALL}")
        self.root = self.root or short_tempdir("slurm-")
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        try:
            self._start_munge()
            self.conf = self._write_conf()
            self._spawn("slurmctld", [_command("slurmctld"), "-D", "-c", "-f", str(self.conf)])
            for name in self.names:
                self._spawn(f"slurmd-{name}", [_command("slurmd"), "-D", "-N", name, "-f", str(self.conf)])
            self.wait_idle(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self) -> None:
        key, self.socket = self.root / "munge.key", self.root / "munge.socket"
        subprocess.run([_command("mungekey"), "--create", f"--keyfile={key}"], check=True,
                       capture_output=True)
        key.chmod(0o600)
        self._spawn("munged", [_command("munged"), "--foreground", "--force", f"--socket={self.socket}",
                               f"--key-file={key}", f"--pid-file={self.root / 'munged.pid'}",
                               f"--seed-file={self.root / 'munged.seed'}"])
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline or self.procs["munged"].poll() is not None:
                raise SlurmError(f"munged did not start; see {self.root / 'log' / 'munged.log'}")
            time.sleep(0.1)

    def _write_conf(self) -> Path:
        """slurm.conf: this host's nodes, each slurmd on a port of its own; root runs everything."""
        ctld, *node_ports = free_ports(1 + len(self.names))
        host = socket.gethostname()
        r = self.root
        lines = [
            f"ClusterName=gap{self.id[:6]}", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={ctld}",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={self.socket}", f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}/%n", f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd-%n.pid'}", f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd-%n.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU", "SchedulerType=sched/backfill", "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none", "ReturnToService=2", "MailProg=/bin/true",
            f"KillWait={self.kill_wait}",  # seconds between a cancel's SIGTERM and its SIGKILL
            *(f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={p} CPUs={self.cpus} RealMemory=2000"
              for n, p in zip(self.names, node_ports, strict=True)),
            "PartitionName=gap Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        path = r / "slurm.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 (the daemon's, for its lifetime)
        env = {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf"), MARK: self.id}
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until `sinfo` shows every node idle: up (slurmd registers a second or two after it starts),
        and done cleaning up after the jobs that ran on it."""
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmError(f"{name} exited with {proc.returncode}; see {self.root / 'log'}")
            out = self.run("sinfo", "--noheader", "--Node", "--format=%N %t", check=False).stdout
            states = dict(line.split() for line in out.splitlines() if line.strip())
            if sorted(states) == sorted(self.names) and set(states.values()) == {"idle"}:
                return
            if time.monotonic() > deadline:
                raise SlurmError(f"nodes not idle after {timeout:.0f} s ({states}); see {self.root / 'log'}")
            time.sleep(0.5)

    # -- what a client does ------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ for a client of this cluster: SLURM_CONF, and the mark its jobs inherit."""
        return {**os.environ, "SLURM_CONF": str(self.conf), MARK: self.id, **extra}

    def run(self, *cmd: str, check: bool = True, timeout: float = 60, **extra_env: str,
            ) -> subprocess.CompletedProcess:
        done = subprocess.run([_command(cmd[0]), *cmd[1:]], env=self.env(**extra_env), capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise SlurmError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def submit(self, *args: str, cwd: str | os.PathLike | None = None, **extra_env: str) -> str:
        """`sbatch --parsable ARGS` from ``cwd``; returns the job id."""
        done = subprocess.run([_command("sbatch"), "--parsable", *args], env=self.env(**extra_env), cwd=cwd,
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise SlurmError(f"sbatch {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job`'s fields (JobState, Restarts, Reason, ...), {} once Slurm forgot it."""
        out = self.run("scontrol", "show", "job", "--oneliner", job_id, check=False).stdout
        return dict(f.split("=", 1) for f in out.split() if "=" in f)

    def release_requeued(self, job_id: str) -> None:
        """Start a requeued job now rather than after the two minutes Slurm holds it back: once its
        nodes are idle (done cleaning up after its first run), and in a later second than that run's
        end. Each node revoked the job's credential as the first run ended, at one-second resolution,
        and refuses a credential made in that same second ("Killing non-startable batch JobId=N: Job
        credential revoked": the job ends FAILED, ExitCode 1:0, without running)."""
        self.wait_idle()
        time.sleep(1.0 - time.time() % 1.0 + 1.0)  # the clock's second after next
        self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")

    def controller_log(self, job_id: str) -> str:
        """slurmctld's lines about the job (its allocations, kills, requeues and ends), for a failure's
        message."""
        path = self.root / "log" / "slurmctld.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(line for line in lines if re.search(rf"JobId={job_id}\b", line))

    def queue(self) -> str:
        return self.run("squeue").stdout

    def wait(self, job_id: str, *states: str, timeout: float = 300.0) -> dict[str, str]:
        """Until the job's state is one of ``states`` (COMPLETED, RUNNING, PENDING, FAILED, ...)."""
        deadline = time.monotonic() + timeout
        while (info := self.job(job_id)).get("JobState") not in states:
            if time.monotonic() > deadline:
                raise SlurmError(f"job {job_id} not {'/'.join(states)} after {timeout:.0f} s: {info}")
            time.sleep(0.5)
        return info

    # -- stopping ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Its jobs' processes (they carry MARK), then its daemons; nothing else on the machine."""
        for _ in range(3):  # a dying job step can still be starting a process
            if not (left := [p for p in marked_processes(self.id, mark=MARK)
                             if p.pid not in {d.pid for d in self.procs.values()}]):
                break
            kill_processes(left, timeout=3.0)
        for proc in reversed(list(self.procs.values())):
            stop_group(proc, 10)
        if self._remove and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
