"""A real multi-node Ray cluster on this one machine, started the way a user starts one
(`ray start --head`, then `ray start --address` per worker), for the tests, demos and benchmarks.

Each node is its own set of Ray processes with its own temp dir, so a task, an actor, a node's loss
and `ray job submit` behave as on machines of their own. Three things keep it apart from any other
Ray on the machine (a user's cluster, another test run's `ray.init()`):

* ports: every port Ray would otherwise take at a fixed default (6379 GCS, 8265 dashboard,
  10001 client server, 52365 dashboard agent) is a free one chosen here;
* auth: Ray's token auth is on (`RAY_AUTH_MODE=token`) with a fresh token in a file of its own
  (`RAY_AUTH_TOKEN_PATH`); the user's ``~/.ray/auth_token`` is neither read nor written;
* processes: every process carries ``SWEEP_LOCALCLUSTER=<id>`` in its environment (Ray's processes
  inherit it, job drivers too, though these leave the process group), and stop() kills exactly the
  processes that carry it. Never `ray stop`: it kills every Ray process on the machine.

    with LocalCluster(workers=2, cpus_per_worker=1) as cluster:
        subprocess.run(["ray", "status"], env=cluster.env())     # 3 nodes: a 0-CPU head, 2 workers
        cluster.kill_worker(0)                                    # SIGKILL that node's raylet

`FakeAutoscalingCluster` is the same head with Ray's fake multi-node provider as its autoscaler
(`RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=...`): workers come and go with demand,
as `ray up cluster.yaml` would make them on a cloud. The GPUs its nodes advertise are claims:
`simulated_gpu/sitecustomize.py` on their PYTHONPATH runs a trial given one that torch cannot see
on the CPU.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from .procs import free_ports, installed_binary

MARK = "SWEEP_LOCALCLUSTER"  # env var: the cluster's id, on every process it started
NODE_MARK = "SWEEP_LOCALCLUSTER_NODE"  # env var: which node ("head", "worker-0", ...)
# env vars of the caller's that would point ray at another cluster or another token
FOREIGN_VARS = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE",
                "RAY_API_SERVER_ADDRESS", MARK, NODE_MARK)
FAKE_HEAD_TYPE = "ray.head.default"  # the fake provider tags its head so, whatever the config says
UNIX_SOCKET_ROOM = 50  # Ray's sockets live under <root>/<node>/session_<stamp>_<pid>/sockets/; sun_path < 108
SIMULATED_GPU = Path(__file__).resolve().parent / "simulated_gpu"  # a sitecustomize for nodes' claimed GPUs


class ClusterError(RuntimeError):
    """A local cluster could not start, or a node did not come up."""


def ray_binary() -> str:
    """The `ray` CLI beside this Python (a virtual environment's bin/), else the one on PATH."""
    try:
        return installed_binary("ray", "pip install 'ray[default]'")
    except FileNotFoundError as e:
        raise ClusterError(str(e)) from None


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError:
            return True
    return False


def short_tempdir(prefix: str = "lc-") -> Path:
    """A fresh directory with a short path: Ray's Unix sockets under it must fit in 107 bytes, which
    pytest's tmp_path (/tmp/pytest-of-USER/pytest-N/test_name0/) can exceed."""
    base = tempfile.gettempdir()
    if len(base) > UNIX_SOCKET_ROOM:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def marked_processes(cluster_id: str, node: str | None = None, mark: str = MARK) -> list[psutil.Process]:
    """This machine's processes whose environment has ``mark`` = ``cluster_id`` (and ``node``, if
    given); never this process. Processes whose environment we may not read (other users') are
    skipped."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get(mark) == cluster_id and (node is None or env.get(NODE_MARK) == node):
            found.append(proc)
    return found


def kill_processes(procs: list[psutil.Process], timeout: float = 5.0, sig: int = signal.SIGTERM) -> None:
    """``sig`` to each, then SIGKILL whatever is still alive after ``timeout`` seconds."""
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=timeout)


def end_cluster(cluster_id: str) -> None:
    """Kill every process that carries ``cluster_id``: SIGTERM, then SIGKILL after 2 s (GCS and
    raylets take 10 s and more over a SIGTERM); again while any is left, since a dying raylet can
    still be starting a worker."""
    for _ in range(3):
        procs = marked_processes(cluster_id)
        if not procs:
            return
        kill_processes(procs, timeout=2.0)


def _start_reaper(cluster_id: str, root: Path, remove: bool) -> subprocess.Popen:
    """A watchdog that ends the cluster if this process dies without stop() (killed by a timeout,
    a crash, Ctrl-C twice): `ray start` daemonizes, so nothing else would end the nodes. It is this
    module run by `python -m`, in a session of its own so that signals to the caller's process
    group miss it."""
    cmd = [sys.executable, "-m", "testbed.cluster", "--reap", cluster_id, str(root), str(int(remove))]
    quiet = subprocess.DEVNULL
    return subprocess.Popen(cmd, stdin=quiet, stdout=quiet, stderr=quiet, start_new_session=True,
                            cwd=Path(__file__).resolve().parents[1])  # where `sweep` imports from


def _reap(cluster_id: str, root: str, remove: bool) -> None:
    """The watchdog's loop: once its parent is gone (it is re-parented), end the cluster."""
    owner = os.getppid()
    while os.getppid() == owner:
        time.sleep(1.0)
    end_cluster(cluster_id)
    if remove:
        shutil.rmtree(root, ignore_errors=True)


def active_nodes(status_text: str) -> dict[str, int]:
    """The node counts by name in the "Active:" section of `ray status`'s output, e.g.
    {"ray.head.default": 1, "gpu_worker": 2}; without an autoscaler config each node is its own id."""
    counts: dict[str, int] = {}
    in_active = False
    for line in status_text.splitlines():
        if line.strip() in ("Active:", "Healthy:"):
            in_active = True
        elif in_active and re.fullmatch(r"\s*\d+\s+\S+\s*", line):
            n, name = line.split()
            counts[name] = counts.get(name, 0) + int(n)
        elif in_active:
            break
    return counts


class LocalCluster:
    """A 0-CPU head (it only drives, as cluster.yaml's head) and ``workers`` nodes of
    ``cpus_per_worker`` CPUs (and ``resources``, e.g. {"GPU": 1}: a node may claim what it lacks),
    each started by `ray start` in a process group of its own, all under ``root``."""

    def __init__(self, workers: int = 2, cpus_per_worker: int = 1, resources: dict | None = None,
                 root: str | os.PathLike | None = None, object_store_bytes: int = 200 * 2**20,
                 port: int | None = None, start_timeout: float = 120.0):
        self.workers_wanted, self.cpus_per_worker, self.resources = workers, cpus_per_worker, resources or {}
        self._root_given = root is not None
        self.root = Path(root) if root is not None else None
        self.object_store_bytes, self.start_timeout = object_store_bytes, start_timeout
        self.id = secrets.token_hex(6)
        self.port = port
        self.dashboard_port: int | None = None
        self.dashboard_url: str | None = None
        self.address: str | None = None  # the GCS's host:port, what `ray start --address` and ray.init take
        self.token_path: Path | None = None
        self.workers: list[str] = []  # node names, in the order they were added ("worker-0", ...)
        self._next_worker = 0
        self._reaper: subprocess.Popen | None = None

    # -- starting ---------------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        if self.root is None:
            self.root = short_tempdir()
        elif len(str(self.root)) > UNIX_SOCKET_ROOM:
            raise ClusterError(f"root {self.root} is too long for Ray's Unix sockets: at most "
                               f"{UNIX_SOCKET_ROOM} characters (leave root=None for a short one)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.token_path = self.root / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` makes
        self.token_path.chmod(0o600)
        self._reaper = _start_reaper(self.id, self.root, remove=not self._root_given)
        try:
            self._start_head()
            for _ in range(self.workers_wanted):
                self.add_worker(wait=False)
            self.wait_for_nodes(1 + self.workers_wanted)
        except BaseException:
            self.stop()
            raise
        return self

    def _head_args(self) -> list[str]:
        if self.port is not None and port_in_use(self.port):
            raise ClusterError(f"port {self.port} is in use (another Ray cluster?): ask for another, or none")
        self.port = self.port or free_ports(1)[0]
        self.dashboard_port, client_port, agent_port = free_ports(3)
        return ["--head", "--num-cpus", "0", "--port", str(self.port),
                "--dashboard-port", str(self.dashboard_port), "--ray-client-server-port", str(client_port),
                "--dashboard-agent-listen-port", str(agent_port)]

    def _start_head(self) -> None:
        args = self._head_args()
        extra_args, extra_env = self._head_extra()
        self._ray_start("head", [*args, *extra_args], extra_env)
        self.address = (self.root / "head" / "ray_current_cluster").read_text().strip()  # ray start wrote it
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"  # a port given: no retries elsewhere

    def _head_extra(self) -> tuple[list[str], dict[str, str]]:
        """More `ray start --head` arguments and environment (the autoscaling cluster's)."""
        return [], {}

    def add_worker(self, cpus: int | None = None, resources: dict | None = None, wait: bool = True) -> int:
        """Start one more worker node; returns its index (for kill_worker)."""
        name = f"worker-{self._next_worker}"
        self._next_worker += 1
        args = ["--address", self.address, "--num-cpus", str(self.cpus_per_worker if cpus is None else cpus),
                "--dashboard-agent-listen-port", str(free_ports(1)[0])]
        res = dict(self.resources if resources is None else resources)
        if "GPU" in res:  # ray start refuses GPU in --resources
            args += ["--num-gpus", str(res.pop("GPU"))]
        if res:
            args += ["--resources", json.dumps(res)]
        self._ray_start(name, args)
        self.workers.append(name)
        if wait:
            self.wait_for_nodes(1 + len(self.alive_workers()))
        return len(self.workers) - 1

    def _ray_start(self, node: str, args: list[str], extra_env: dict | None = None) -> str:
        """`ray start ARGS` for ``node`` in a new session (its daemons stay in that process group),
        marked and authenticated; returns what it printed, raises with its last line if it failed."""
        temp_dir = self.root / node
        log = self.root / f"{node}.start.log"
        cmd = [ray_binary(), "start", *args, "--temp-dir", str(temp_dir), "--object-store-memory",
               str(self.object_store_bytes), "--disable-usage-stats"]
        env = {**self._node_env(node), **(extra_env or {})}
        try:
            done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=self.start_timeout, start_new_session=True)
        except subprocess.TimeoutExpired as e:
            log.write_text(_text(e.output))
            raise ClusterError(f"ray start ({node}) ran over {self.start_timeout:.0f} s; see {log}") from None
        log.write_text(done.stdout)
        if done.returncode != 0:
            last = next((ln for ln in reversed(_plain(done.stdout).splitlines()) if ln.strip()), "")
            raise ClusterError(f"ray start ({node}) failed with exit code {done.returncode}: {last.strip()} "
                               f"(full output: {log})")
        return done.stdout

    def wait_for_nodes(self, n: int, timeout: float = 60.0) -> None:
        """Until the GCS counts exactly ``n`` alive nodes (`ray start` returns before its node has
        registered). One client process, public API: ray.init + ray.nodes()."""
        script = ("import sys, time, ray\n"
                  "ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR')\n"
                  "want, deadline = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])\n"
                  "while (alive := sum(n['Alive'] for n in ray.nodes())) != want:\n"
                  "    if time.monotonic() > deadline:\n"
                  "        sys.exit(f'{alive} alive nodes, not {want}')\n"
                  "    time.sleep(0.2)\n")
        done = subprocess.run([sys.executable, "-c", script, self.address, str(n), str(timeout)],
                              env=self.env(), capture_output=True, text=True, timeout=timeout + 60)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise ClusterError(f"cluster at {self.address} had not {n} nodes after {timeout:.0f} s: {last}")

    # -- what a client needs -----------------------------------------------------------------------

    def _auth_env(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def _node_env(self, node: str) -> dict[str, str]:
        marks = {MARK: self.id, NODE_MARK: node, "RAY_USAGE_STATS_ENABLED": "0"}
        return {**own_env(), **self._auth_env(), **marks}

    def env(self) -> dict[str, str]:
        """os.environ for a client of this cluster (ray.init(), `ray status`, `ray job submit`):
        RAY_ADDRESS, RAY_API_SERVER_ADDRESS (the dashboard, for `ray job`), the auth variables; a
        token of the caller's (RAY_AUTH_TOKEN outranks the path) is dropped. No process mark: a
        client is not the cluster's to kill."""
        return {**own_env(), **self._auth_env(), "RAY_ADDRESS": self.address,
                "RAY_API_SERVER_ADDRESS": self.dashboard_url}

    def run(self, *cmd: str, timeout: float = 120.0, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """A command as a client of this cluster (env(), and ``env`` over it), its output as text."""
        done = subprocess.run(list(cmd), env={**self.env(), **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["?"])[-1]
            raise ClusterError(f"{' '.join(cmd[:3])} ... failed with exit code {done.returncode}: {last}")
        return done

    def status(self) -> str:
        """`ray status` as a client sees it."""
        return self.run(ray_binary(), "status").stdout

    # -- processes, failures, teardown -------------------------------------------------------------

    def processes(self, node: str | None = None) -> list[psutil.Process]:
        """The live processes of this cluster (or of one node: "head", "worker-0", ...)."""
        return marked_processes(self.id, node)

    def alive_workers(self) -> list[str]:
        """The workers whose raylet is running."""
        return [w for w in self.workers if self._raylets(w)]

    def node_of(self, pid: int) -> str | None:
        """The node ("head", "worker-0", ...) that process ``pid`` belongs to (a task's worker process
        inherits its raylet's environment, marks included); None if it is gone or not this cluster's."""
        try:
            env = psutil.Process(pid).environ()
        except (psutil.Error, OSError):
            return None
        return env.get(NODE_MARK) if env.get(MARK) == self.id else None

    def _raylets(self, node: str | None = None) -> list[psutil.Process]:
        out = []
        for p in self.processes(node):
            try:
                if p.name() == "raylet":
                    out.append(p)
            except psutil.Error:
                pass
        return out

    def kill_worker(self, i: int) -> None:
        """A node crash: SIGKILL worker ``i``'s raylet (its Ray workers die with it), then the node's
        remaining daemons (log monitor, agents), which outlive a raylet on their own."""
        node = self.workers[i]
        raylets = self._raylets(node)
        if not raylets:
            raise ClusterError(f"{node} has no raylet running (already killed?)")
        kill_processes(raylets, sig=signal.SIGKILL)
        kill_processes(self.processes(node), sig=signal.SIGKILL)

    def kill_head(self) -> None:
        """A head crash: SIGKILL every head process (GCS, raylet, dashboard, autoscaler; the fake
        autoscaler's nodes too, being its children). Worker raylets exit once they give up on the GCS."""
        kill_processes(self.processes("head"), sig=signal.SIGKILL)

    def stop(self, keep_files: bool = False) -> None:
        """End every process this cluster started, and only those; remove its files unless
        ``keep_files`` (each node's logs are under root/<node>/session_latest/logs)."""
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
        end_cluster(self.id)
        if self.root is not None and not keep_files and not self._root_given:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- autoscaling with Ray's fake multi-node provider -----------------------------------------------

def fake_autoscaling_config(cluster_yaml: str | os.PathLike, gcs_address: str, max_workers: int = 2,
                            cpus: int = 1, gpus: int = 0, idle_timeout_minutes: float = 0.1,
                            object_store_bytes: int = 200 * 2**20) -> dict:
    """cluster.yaml's node types as a config for the fake multi-node provider: its head with 0 CPUs
    (renamed ray.head.default, the type the provider gives its head), each worker type with
    ``min_workers: 0``, at most ``max_workers``, ``cpus`` CPUs and ``gpus`` GPUs (claimed: the
    provider starts them as local processes that advertise them). ``gcs_address`` is where the
    provider's nodes join (without it they join <this machine's IP>:6379)."""
    cluster = yaml.safe_load(Path(cluster_yaml).read_text())
    types = cluster.get("available_node_types") or {}
    head_type = cluster.get("head_node_type")
    if head_type not in types or len(types) < 2:
        raise ClusterError(f"{cluster_yaml}: available_node_types needs its head_node_type and a worker type")
    node_types = {FAKE_HEAD_TYPE: {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0}}
    for name, spec in types.items():
        if name == head_type:
            continue
        resources = {"CPU": cpus, "object_store_memory": object_store_bytes}
        if gpus:
            resources["GPU"] = gpus
        node_types[name] = {"resources": resources, "node_config": {}, "min_workers": 0,
                            "max_workers": min(max_workers, spec.get("max_workers", max_workers))}
    return {
        "cluster_name": f"{cluster.get('cluster_name', 'cluster')}-fake",
        "max_workers": max_workers,
        "upscaling_speed": cluster.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address, "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": node_types,
        "head_node_type": FAKE_HEAD_TYPE,
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


def write_fake_autoscaling_config(cluster_yaml: str | os.PathLike, path: str | os.PathLike, gcs_address: str,
                                  **kwargs) -> Path:
    """fake_autoscaling_config(...) written to ``path`` as YAML; returns the path."""
    path = Path(path)
    config = fake_autoscaling_config(cluster_yaml, gcs_address, **kwargs)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class FakeAutoscalingCluster(LocalCluster):
    """A head whose autoscaler is Ray's fake multi-node provider, derived from ``cluster_yaml``:
    no workers at first; a demand for CPUs (or GPUs) makes it start worker nodes (local processes,
    `ray status` names them by cluster.yaml's type), and after ``idle_timeout_minutes`` idle it
    removes them. Any free port works: the config tells the provider where the GCS is. A ``port``
    asked for and in use (6379 by a user's cluster, say) is a ClusterError naming it."""

    def __init__(self, cluster_yaml: str | os.PathLike, max_workers: int = 2, cpus: int = 1, gpus: int = 0,
                 idle_timeout_minutes: float = 0.1, **kwargs):
        super().__init__(workers=0, **kwargs)
        self.cluster_yaml = cluster_yaml
        self.fake = dict(max_workers=max_workers, cpus=cpus, gpus=gpus,
                         idle_timeout_minutes=idle_timeout_minutes,
                         object_store_bytes=self.object_store_bytes)
        self.config_path: Path | None = None

    def _head_extra(self) -> tuple[list[str], dict[str, str]]:
        self.config_path = write_fake_autoscaling_config(self.cluster_yaml, self.root / "autoscaling.yaml",
                                                         f"{node_ip()}:{self.port}", **self.fake)
        # AUTOSCALER_UPDATE_INTERVAL_S: the autoscaler's loop every second, not every 5
        env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        if self.fake["gpus"]:  # the nodes it starts inherit the head's environment
            env["PYTHONPATH"] = simulated_gpu_path(os.environ.get("PYTHONPATH"))
        return [f"--autoscaling-config={self.config_path}"], env

    def add_worker(self, *args, **kwargs) -> int:
        raise ClusterError("FakeAutoscalingCluster adds workers itself, on demand")


def simulated_gpu_path(pythonpath: str | None) -> str:
    """``pythonpath`` with SIMULATED_GPU first: a process started with it runs a sweep trial given a
    GPU that torch cannot see on the CPU (simulated_gpu/sitecustomize.py)."""
    return os.pathsep.join([str(SIMULATED_GPU), *filter(None, (pythonpath or "").split(os.pathsep))])


def own_env() -> dict[str, str]:
    """os.environ without what points Ray elsewhere, and with this Python's bin/ first on PATH, as
    in an activated virtual environment: a job's entrypoint `python ...` runs with the nodes' PATH
    and must find the Python that has Ray (and this project), not the system's."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_VARS}
    bins = [str(Path(ray_binary()).parent), str(Path(sys.executable).parent)]
    env["PATH"] = os.pathsep.join(dict.fromkeys([*bins, *env.get("PATH", "").split(os.pathsep)]))
    return env


def node_ip() -> str:
    """The address Ray gives this machine's nodes (what `ray start` prints), as the provider computes it."""
    from ray._private.services import get_node_ip_address

    return get_node_ip_address()


def _plain(text: str) -> str:
    """``text`` without terminal colour codes (ray start colours its output)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


if __name__ == "__main__" and sys.argv[1:2] == ["--reap"]:  # _start_reaper's watchdog
    _reap(sys.argv[2], sys.argv[3], sys.argv[4] == "1")
