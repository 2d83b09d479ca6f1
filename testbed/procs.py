"""What every harness here needs: a command installed with this Python, and free ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sysconfig
from pathlib import Path
from typing import Any


def installed_binary(name: str, install: str) -> str:
    """A command installed with this Python (a virtual environment's bin/), else the one on PATH;
    FileNotFoundError naming what to install where there is none."""
    here = Path(sysconfig.get_path("scripts")) / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"no `{name}` command beside this Python or on PATH: {install}")
    return found


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on every interface now (the OS picks them, from its ephemeral range,
    so none is a server's fixed default)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stop_group(process: subprocess.Popen | None, grace: float) -> None:
    """SIGTERM to the process group ``process`` leads (it was started in a session of its own), then
    SIGKILL if it is still there after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def serve_until_interrupted(server: Any, scheme: str) -> None:
    """`python -m testbed.s3 DIR` and friends: the server, a bucket "gap" and the variables a
    client needs, printed as shell exports, until Ctrl-C."""
    with server:
        server.create_bucket("gap")
        print("\n".join(f"export {k}={v}" for k, v in server.env().items()), flush=True)
        print(f"# bucket: {scheme}://gap; Ctrl-C stops the server", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
