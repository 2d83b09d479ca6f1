"""What every harness here needs: a command installed with this Python, and free ports."""

from __future__ import annotations

import shutil
import socket
import sysconfig
from pathlib import Path


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
