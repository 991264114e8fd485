"""`fedlora serve`: a Flower SuperLink with TLS and SuperNode authentication, and fedlora's run submitted to it.

What it does, in Flower's own terms (docs/deployment.md gives the equivalent manual commands):
1. `flower-superlink` with the config's TLS certificate and key, `--enable-supernode-auth`, and runtime
   dependency installation off (the ServerApp runs in this Python environment, nothing is downloaded);
2. `flwr supernode register` of every client's public key, in client-id order, so only those SuperNodes
   can join; the node id each key gets is bound to that client id (a registered client cannot pose as
   another);
3. `flwr run` of a Flower App whose ServerApp is `fedlora.flower.deploy:server_app`, with the resolved config,
   the run directory and the key binding in its run config; the run's log is streamed until it ends;
4. the SuperLink is stopped and the run's summary returned.

Flower's state (CLI config, SuperLink log, the app bundle) lives in its own directory beside the run
directory (`RUN-flower/`), so the run directory stays what `fedlora run` writes.

A server can be killed and restarted (`fedlora serve --resume`) while the clients keep running. That works
because the SuperLink keeps its state in a database file (`RUN-flower/superlink.db`), not in memory: a
SuperNode activates once and from then on only names its node id, so a restarted SuperLink must still know
that id. With the database, the registered keys, their node ids and the nodes' online status survive; the
surviving SuperNodes' next pull or heartbeat simply succeeds again, and the key binding (`nodes.json`) is
the same as before. The run itself resumes from its checkpoint (in-flight jobs are sent again); the killed
Flower run's undelivered messages are dropped and the run is stopped, so no client starts one of its jobs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

from fedlora.config import ExperimentConfig, dump_config, parse_host_port
from fedlora.errors import ConfigError, FedLoraError
from fedlora.flower.processes import flower_env, kill_with_parent, tool, wait_for_port

CONNECTION = "fedlora"  # the name of the SuperLink connection in the Flower CLI config
SERVER_APP = "fedlora.flower.deploy:server_app"  # the ServerApp and ClientApp of the submitted Flower App
CLIENT_APP = "fedlora.flower.client_app:app"
STATE_DB = "superlink.db"  # the SuperLink's state in the Flower home: node registrations survive a restart
NODES_FILE = "nodes.json"  # client id -> node id of its registered key, read again by `--resume`


class ServeError(FedLoraError):
    """The SuperLink could not start, a key could not be registered, or the run failed."""


def deployment_files(cfg: ExperimentConfig) -> dict[str, Path | list[Path] | None]:
    """The TLS files and client public keys of the config, absolute, each checked to exist."""
    t = cfg.transport
    if t.name != "flower_deployment":
        raise ConfigError(
            f"fedlora serve needs transport.name: flower_deployment (the config has {t.name}); see docs/deployment.md"
        )

    def existing(field: str, value: str | None) -> Path | None:
        if value is None:
            return None
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"transport.{field}: {value} does not exist (scripts/make_certs.sh makes test files)")
        return path

    files: dict[str, Path | list[Path] | None] = {
        "ca": existing("tls_ca_cert", t.tls_ca_cert),
        "cert": existing("tls_cert", t.tls_cert),
        "key": existing("tls_key", t.tls_key),
    }
    keys = t.client_public_keys if t.supernode_auth else None
    files["client_keys"] = [existing(f"client_public_keys[{i}]", k) for i, k in enumerate(keys or [])]
    return files


def superlink_command(cfg: ExperimentConfig, files: dict, database: Path | None = None) -> list[str]:
    t = cfg.transport
    host, port = parse_host_port(t.address)
    cmd = [tool("flower-superlink")]
    if t.insecure:
        cmd += ["--insecure"]
    else:
        cmd += ["--ssl-ca-certfile", str(files["ca"]), "--ssl-certfile", str(files["cert"])]
        cmd += ["--ssl-keyfile", str(files["key"])]
    if t.supernode_auth:
        cmd += ["--enable-supernode-auth"]
    if database is not None:
        cmd += ["--database", str(database)]
    cmd += ["--disable-runtime-dependency-installation", "--host", host, "--port", str(port)]
    return cmd


def local_address(address: str) -> tuple[str, int]:
    """Where this machine reaches a SuperLink that listens on `address` (a wildcard host means loopback)."""
    host, port = parse_host_port(address)
    return ("127.0.0.1" if host in ("0.0.0.0", "", "*") else "::1" if host == "::" else host), port


def cli_config(cfg: ExperimentConfig, files: dict) -> str:
    """The Flower CLI config (FLWR_HOME/config.toml) with one connection to this SuperLink."""
    host, port = local_address(cfg.transport.address)
    lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]"]
    lines.append(f'address = "{f"[{host}]" if ":" in host else host}:{port}"')
    if cfg.transport.insecure:
        lines.append("insecure = true")
    else:
        lines.append(f"root-certificates = {json.dumps(str(files['ca']))}")
    return "\n".join(lines) + "\n"


def format_nodes(nodes: dict[int, int]) -> str:
    """{0: 123, 1: 456} -> '0=123 1=456': the key binding as a Flower run config value (a scalar)."""
    return " ".join(f"{c}={n}" for c, n in sorted(nodes.items()))


def parse_nodes(text: str) -> dict[int, int] | None:
    """The inverse of `format_nodes`; None (no binding) for an empty string, i.e. without SuperNode auth."""
    if not text.strip():
        return None
    pairs = (item.split("=", 1) for item in text.split())
    return {int(c): int(n) for c, n in pairs}


def app_project(experiment: Path, out: Path, resume: bool, nodes: dict[int, int]) -> str:
    """pyproject.toml of the Flower App that `flwr run` submits: fedlora's apps and this run's settings."""
    from fedlora import __version__

    binding = format_nodes(nodes)
    return f"""[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "fedlora-deployment"
version = "{__version__}"
description = "fedlora's ServerApp and ClientApp (the code is the installed fedlora package)"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "fedlora"

[tool.flwr.app.components]
serverapp = "{SERVER_APP}"
clientapp = "{CLIENT_APP}"

[tool.flwr.app.config]
experiment = {json.dumps(str(experiment))}
out = {json.dumps(str(out))}
resume = {"true" if resume else "false"}
nodes = "{binding}"
"""


def register_keys(
    keys: list[Path], env: dict[str, str], known: dict[int, int] | None = None, record: Path | None = None
) -> dict[int, int]:
    """`flwr supernode register` every client's public key; client id -> the node id Flower gave it.

    Keys in `known` (the binding of the run being resumed) are registered in the SuperLink's database
    already and keep their node ids, so their running SuperNodes stay valid. The binding is written to
    `record` after every key, so a server killed while registering does not lose a node id.
    """
    nodes: dict[int, int] = dict(known or {})
    for client, key in enumerate(keys):
        if client in nodes:
            continue
        cmd = [tool("flwr"), "supernode", "register", str(key), CONNECTION, "--format", "json"]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        try:
            answer = json.loads(res.stdout[res.stdout.index("{") :])
        except ValueError:
            answer = {"success": False, "error-message": (res.stdout + res.stderr).strip()}
        if not answer.get("success"):
            raise ServeError(f"registering client {client}'s key {key} failed: {answer.get('error-message')}")
        nodes[client] = int(answer["node-id"])
        if record is not None:
            record.write_text(json.dumps({str(c): n for c, n in sorted(nodes.items())}) + "\n")
    return nodes


def read_nodes(record: Path) -> dict[int, int]:
    return {int(c): int(n) for c, n in json.loads(record.read_text()).items()} if record.is_file() else {}


def stop_stale_runs(env: dict[str, str], echo: TextIO) -> None:
    """Stop the Flower runs a killed server left unfinished (`flwr ls`, `flwr stop`).

    Their ServerApp died with the server, but until Flower notices, such a run counts as running: a
    client's late reply to it would be stored for nobody, and `flwr ls` would show it as still going.
    """
    res = subprocess.run(
        [tool("flwr"), "ls", CONNECTION, "--format", "json"], env=env, capture_output=True, text=True, timeout=120
    )
    try:
        runs = json.loads(res.stdout[res.stdout.index("{") :]).get("runs", [])
    except ValueError:
        return  # nothing to stop is the common case; a failed listing must not block the resume
    for run in runs:
        status = str(run.get("status", ""))
        if status.startswith(("pending", "starting", "running")):
            rid = str(run.get("run-id"))
            subprocess.run([tool("flwr"), "stop", rid, CONNECTION], env=env, capture_output=True, timeout=120)
            say(echo, f"stopped Flower run {rid} of the killed server ({status})")


def serve(
    cfg: ExperimentConfig,
    out: Path,
    *,
    resume: bool = False,
    flower_dir: Path | None = None,
    echo: TextIO = sys.stdout,
    startup_timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Start the SuperLink, register the clients' keys, run the experiment on it; the run's summary."""
    from fedlora.flower import require_flower

    require_flower()
    files = deployment_files(cfg)
    out = out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; give a directory for the run")
    if out.exists() and any(out.iterdir()) and not resume:
        raise ConfigError(f"run directory {out} already exists; pass --resume to continue it or --out elsewhere")
    home = (flower_dir or out.with_name(out.name + "-flower")).expanduser().resolve()
    (home / "app").mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(cli_config(cfg, files))
    experiment = home / "experiment.yaml"
    experiment.write_text(dump_config(cfg))
    env = flower_env(home)
    database, nodes_file = home / STATE_DB, home / NODES_FILE
    if not resume or not database.is_file():
        for stale in [nodes_file, *home.glob(STATE_DB + "*")]:  # a fresh run starts from a fresh SuperLink
            stale.unlink(missing_ok=True)
    elif (dropped := _drop_undelivered(database)) != 0:
        say(echo, f"dropped {dropped} undelivered messages of the killed run (its jobs are sent again)")

    with open(home / "superlink.log", "ab") as link_log:
        superlink = subprocess.Popen(
            superlink_command(cfg, files, database),
            env=env,
            stdout=link_log,
            stderr=subprocess.STDOUT,
            preexec_fn=kill_with_parent,
        )
    try:
        host, port = local_address(cfg.transport.address)
        try:
            wait_for_port(host, port, lambda: superlink.poll() is None, startup_timeout_s)
        except FedLoraError as exc:
            raise ServeError(f"the SuperLink did not start: {exc}; see {home / 'superlink.log'}") from None
        say(echo, f"SuperLink listening on {cfg.transport.address} (log: {home / 'superlink.log'})")
        known = read_nodes(nodes_file)
        if known:
            stop_stale_runs(env, echo)
        nodes = register_keys(files["client_keys"], env, known, nodes_file)
        if known:
            say(echo, f"resuming: {len(known)} client keys keep their node ids (joined clients reconnect)")
        if len(nodes) > len(known):
            say(echo, f"registered {len(nodes) - len(known)} client keys: only their SuperNodes can join")
        say(echo, f"waiting for the clients to join (fedlora join --server HOST:{port} ...)")
        (home / "app" / "pyproject.toml").write_text(app_project(experiment, out, resume, nodes))
        _stream(
            [tool("flwr"), "run", str(home / "app"), CONNECTION, "--stream"], env, home / "run.log", echo, superlink
        )
    finally:
        _stop(superlink)
    summary_file = out / "summary.json"
    if not summary_file.is_file():
        raise ServeError(f"the run did not finish; see {home / 'run.log'} and {home / 'superlink.log'}")
    return json.loads(summary_file.read_text())


def _drop_undelivered(database: Path) -> int:
    from fedlora.flower.internals import drop_undelivered  # Flower's database layout: isolated there

    return drop_undelivered(database)


def say(echo: TextIO, text: str) -> None:
    echo.write(f"fedlora serve: {text}\n")
    echo.flush()


def _stream(cmd: list[str], env: dict[str, str], log_path: Path, echo: TextIO, superlink: subprocess.Popen) -> None:
    """Run `flwr run --stream`, copying its output (the ServerApp's log) to `echo` and to `log_path`."""
    with (
        open(log_path, "a") as log,
        subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=kill_with_parent
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()
            echo.write(line)
            echo.flush()
        proc.wait()
    if superlink.poll() is not None:
        raise ServeError(f"the SuperLink exited with code {superlink.returncode}")


def _stop(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`: the SuperLink keeps no state worth a long graceful shutdown."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
