"""Starting Flower's own processes (SuperLink, SuperNode, `flwr` CLI) from fedlora, the same way everywhere.

Flower's processes find each other's executables on PATH (a SuperLink starts `flower-superexec`, which
starts `flwr-serverapp`), so they get this interpreter's bin directory first on PATH, whether or not the
virtual environment is activated. Each deployment gets its own Flower home (FLWR_HOME: CLI config, installed
app bundles), so runs on one machine never share state; telemetry and update checks are off, because a
deployment must not depend on reaching the internet.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from pathlib import Path

from fedlora.errors import FedLoraError


def tool(name: str) -> str:
    """The path of a Flower executable: beside this interpreter, else on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FedLoraError(f'{name} not found: install Flower with pip install "fedlora[flower]"')
    return found


def flower_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["FLWR_HOME"] = str(home)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, alive, timeout_s: float) -> None:
    """Block until something accepts connections on host:port; `alive()` False or the timeout raises."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise FedLoraError(f"the process that should listen on {host}:{port} exited")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise FedLoraError(f"nothing listens on {host}:{port} after {timeout_s:g} s")


def kill_with_parent() -> None:
    """preexec_fn: on Linux, the child gets SIGTERM when the process that started it dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
