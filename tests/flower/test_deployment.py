"""fedlora deployed on Flower over loopback: a SuperLink with TLS and SuperNode auth, and separate client processes.

One `fedlora serve` and three `fedlora join` processes (each with its own data directory and private key),
FedBuff with HLoRA and speed-tier ranks on the wall clock. Client 2 dies in its first job (the process
exits mid-training, its SuperNode with it); a fourth client whose key was never registered tries to join.
The run must still finish, the unauthorized client must be refused, and the global adapter must load in peft.

A second run kills the server (`fedlora serve` and everything it started) after a checkpoint and restarts it
with `--resume` on the same address while the three clients keep running: they must reconnect, and the run
must continue from the checkpoint to the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedlora.flower.processes import free_port

pytest.importorskip("flwr", reason="the deployment test needs Flower: pip install 'fedlora[flower]'")

REPO = Path(__file__).resolve().parents[2]
CLIENTS = 3
ROWS_PER_CLIENT = 60
DEADLINE_S = 240  # generous against a loaded machine; the run itself takes well under a minute

needs_tools = pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("ssh-keygen") is None,
    reason="scripts/make_certs.sh needs openssl and ssh-keygen",
)


def client_data(glue: Path, root: Path) -> list[Path]:
    """Each client's own GLUE-style folder: a disjoint slice of MRPC's training rows, and a few dev rows."""
    header, *rows = (glue / "MRPC" / "train.tsv").read_text(encoding="utf-8-sig").splitlines()
    dev = (glue / "MRPC" / "dev.tsv").read_text(encoding="utf-8-sig").splitlines()[:9]
    dirs = []
    for c in range(CLIENTS + 1):
        d = root / f"client{c}" / "MRPC"
        d.mkdir(parents=True)
        part = rows[c * ROWS_PER_CLIENT : (c + 1) * ROWS_PER_CLIENT]
        (d / "train.tsv").write_text("\n".join([header, *part]) + "\n", encoding="utf-8")
        (d / "dev.tsv").write_text("\n".join(dev) + "\n", encoding="utf-8")
        dirs.append(d.parent)
    return dirs


def fedlora(*args: str, log: Path, env: dict[str, str] | None = None, cli: str = "fedlora.cli") -> subprocess.Popen:
    """A `fedlora` CLI process in its own session (so the test can stop it and its children); `cli` is the
    module that runs it (tests.flower.crashing_join: the CLI with a fault-injecting ClientApp)."""
    return subprocess.Popen(
        [sys.executable, "-m", cli, *args],
        stdout=open(log, "w"),  # the process owns it until it exits
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        cwd=REPO,
    )


def stop(*procs: subprocess.Popen) -> None:
    """SIGTERM every process group at once (children of exited leaders too), SIGKILL what is left after 15 s."""

    def signal_group(p: subprocess.Popen, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, sig)

    for p in procs:
        signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        signal_group(p, signal.SIGKILL)


def kill_strays(marker: Path) -> None:
    """SIGKILL every process whose command line names `marker` (this test's tmp_path).

    Flower starts the ServerApp in a process group of its own, so a killed server's group can leave it behind.
    """
    procs = Path("/proc")
    for proc in procs.iterdir() if procs.is_dir() else ():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if str(marker).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)


def tail(path: Path, n: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.is_file() else "(no log)"


def serve_args(
    glue_dir: Path, tmp_path: Path, certs: Path, port: int, versions: int, extra: tuple[str, ...] = ()
) -> list[str]:
    """`fedlora serve` arguments: tiny.yaml as FedBuff with HLoRA and speed-tier ranks over TLS with key auth."""
    keys = ", ".join(str(certs / f"client_{c}.pub") for c in range(CLIENTS))
    overrides = [
        f"task.data_dir={glue_dir}",
        f"output.dir={tmp_path}",
        "output.progress=false",
        "training.threads=1",
        f"clients.count={CLIENTS}",
        "clients.speeds={name: list, values: [1.0, 2.0, 0.5]}",
        "clients.ranks={name: speed_tier}",
        "aggregator.name=hlora",
        "schedule={name: fedbuff, buffer_size: 2}",
        f"stop.versions={versions}",
        f"transport={{name: flower_deployment, address: '127.0.0.1:{port}', tls_ca_cert: {certs / 'ca.crt'}, "
        f"tls_cert: {certs / 'server.pem'}, tls_key: {certs / 'server.key'}, client_public_keys: [{keys}], "
        "job_timeout_s: 10, wait_for_clients_s: 150}",
        *extra,
    ]
    return [str(REPO / "configs" / "tiny.yaml"), *(a for o in overrides for a in ("--set", o))]


def join_client(
    tmp_path: Path, certs: Path, data: list[Path], port: int, client: int, key: int, cli="fedlora.cli", **env: str
) -> subprocess.Popen:
    """`fedlora join` as `client` with the private key of client `key`, logging to tmp_path/c<client>.log."""
    return fedlora(
        "join",
        *("--server", f"127.0.0.1:{port}", "--client-id", str(client), "--data", str(data[client])),
        *("--root-cert", str(certs / "ca.crt"), "--auth-key", str(certs / f"client_{key}")),
        *("--flower-dir", str(tmp_path / f"home{client}")),
        log=tmp_path / f"c{client}.log",
        env=env,
        cli=cli,
    )


def wait_for_line(log: Path, text: str, server: subprocess.Popen) -> None:
    start = time.monotonic()
    while not log.is_file() or text not in log.read_text():
        assert server.poll() is None and time.monotonic() - start < DEADLINE_S, tail(log)
        time.sleep(0.2)


def all_logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{tail(p)}" for p in sorted(tmp_path.glob("*.log")))


def assert_adapter_loads_in_peft(run_dir: Path) -> None:
    from peft import PeftModel

    from fedlora.config import load_config
    from fedlora.models.loading import load_classifier

    cfg = load_config(run_dir / "config.yaml")
    assert cfg.transport.clock == "wall"
    base = load_classifier("minilm", 2, random_init=cfg.model.random_init)
    PeftModel.from_pretrained(base, run_dir / "adapter")


@pytest.mark.slow
@needs_tools
def test_a_tls_authenticated_deployment_survives_a_dead_client_and_refuses_an_unknown_one(glue_dir, tmp_path):
    certs = tmp_path / "certs"
    subprocess.run(["bash", str(REPO / "scripts" / "make_certs.sh"), str(certs), str(CLIENTS + 1)], check=True)
    data = client_data(glue_dir, tmp_path / "data")
    port = free_port()
    run_dir = tmp_path / "run"
    # client-side DP: each joined client clips and noises its update on its own machine (the ClientApp)
    private = ("privacy={clip_norm: 0.5, noise_multiplier: 0.5, where: client}",)
    args = serve_args(glue_dir, tmp_path, certs, port, versions=3, extra=private)
    server = fedlora("serve", *args, "--out", str(run_dir), log=tmp_path / "s.log")

    def join(client: int, key: int, **env: str) -> subprocess.Popen:
        return join_client(tmp_path, certs, data, port, client, key, **env)

    def join_crashing(client: int, key: int, on_job: int) -> subprocess.Popen:
        """A client whose ClientApp (a test one) exits mid-job: the production ClientApp has no such hook."""
        crash = {"FEDLORA_TEST_CRASH_ON_JOB": str(on_job)}
        return join_client(tmp_path, certs, data, port, client, key, cli="tests.flower.crashing_join", **crash)

    clients: list[subprocess.Popen] = []
    try:
        # clients join once their keys are registered (the documented order)
        wait_for_line(tmp_path / "s.log", "waiting for the clients", server)
        clients = [join(0, 0), join(1, 1), join_crashing(2, 2, on_job=0)]
        intruder = join(3, 3)  # a key the server never registered
        start = time.monotonic()
        while server.poll() is None and time.monotonic() - start < DEADLINE_S:
            time.sleep(0.5)
        logs = all_logs(tmp_path)
        assert server.returncode == 0, f"fedlora serve did not finish cleanly:\n{logs}"
        assert intruder.wait(timeout=60) == 2, logs
        assert "refused this node" in (tmp_path / "c3.log").read_text()
        assert clients[2].wait(timeout=30) == 17  # died mid-job (os._exit in training)
    finally:
        stop(server, *clients, *([intruder] if "intruder" in locals() else []))
        kill_strays(tmp_path)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped_by"] == "versions" and summary["totals"]["versions"] == 3
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    arrivals = [e for e in events if e["event"] == "arrival"]
    assert {e["client"] for e in arrivals} == {0, 1}  # the live clients delivered; client 2 died in its first job
    assert any(e["event"] == "dispatch" and e["client"] == 2 for e in events)
    assert len({e["rank"] for e in events if e["event"] == "dispatch"}) > 1  # heterogeneous ranks
    assert summary["totals"]["rejected"] == {}  # every accepted update answered a job sent to that client
    assert summary["privacy"]["where"] == "client" and summary["privacy"]["epsilon"] is not None
    assert_adapter_loads_in_peft(run_dir)


RESUME_VERSIONS = 5


@pytest.mark.slow
@needs_tools
def test_a_killed_server_resumes_from_its_checkpoint_while_the_clients_keep_running(glue_dir, tmp_path):
    from fedlora.io.rundir import RunDir
    from fedlora.io.state import load_state

    certs = tmp_path / "certs"
    subprocess.run(["bash", str(REPO / "scripts" / "make_certs.sh"), str(certs), str(CLIENTS)], check=True)
    data = client_data(glue_dir, tmp_path / "data")
    port = free_port()
    run_dir = tmp_path / "run"
    args = [*serve_args(glue_dir, tmp_path, certs, port, versions=RESUME_VERSIONS), "--out", str(run_dir)]
    server = fedlora("serve", *args, log=tmp_path / "s1.log")
    clients: list[subprocess.Popen] = []
    resumed: subprocess.Popen | None = None
    try:
        wait_for_line(tmp_path / "s1.log", "waiting for the clients", server)
        clients = [join_client(tmp_path, certs, data, port, c, c) for c in range(CLIENTS)]
        start = time.monotonic()
        events_file = run_dir / "events.jsonl"
        while not any(e["event"] == "checkpoint" and e["version"] >= 2 for e in read_events(events_file)):
            assert server.poll() is None and time.monotonic() - start < DEADLINE_S, all_logs(tmp_path)
            time.sleep(0.2)
        os.killpg(server.pid, signal.SIGKILL)  # the server, its SuperLink and its ServerApp, with no warning
        server.wait()
        before = events_file.read_text().splitlines()
        state = load_state(RunDir(run_dir).checkpoint)  # what the resume starts from
        assert state["version"] >= 2 and not (run_dir / "summary.json").exists()

        resumed = fedlora("serve", *args, "--resume", log=tmp_path / "s2.log")
        start = time.monotonic()
        while resumed.poll() is None and time.monotonic() - start < DEADLINE_S:
            assert all(c.poll() is None for c in clients), all_logs(tmp_path)  # no client had to be restarted
            time.sleep(0.5)
        logs = all_logs(tmp_path)
        assert resumed.returncode == 0, f"fedlora serve --resume did not finish cleanly:\n{logs}"
        assert "keep their node ids" in (tmp_path / "s2.log").read_text(), logs
    finally:
        stop(*([resumed] if resumed is not None else []), server, *clients)
        kill_strays(tmp_path)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped_by"] == "versions" and summary["totals"]["versions"] == RESUME_VERSIONS
    assert summary["totals"]["rejected"] == {}
    events = read_events(run_dir / "events.jsonl")
    kept = state["events_written"]  # the log is cut back to the checkpoint, then continues
    assert [json.dumps(e) for e in events[:kept]] == [json.dumps(json.loads(line)) for line in before[:kept]]
    assert events[kept - 1]["event"] == "checkpoint" and events[kept - 1]["version"] == state["version"]
    after = events[kept:]
    versions = [e["version"] for e in after if e["event"] == "aggregation"]
    assert versions == list(range(state["version"] + 1, RESUME_VERSIONS + 1))  # continued, nothing repeated
    arrived = {e["job"] for e in after if e["event"] == "arrival"}
    dispatched = {e["job"] for e in after if e["event"] == "dispatch"}
    assert min(dispatched) > max(int(j) for j in [*state["in_flight"], -1])  # new jobs continue the numbering
    assert {e["client"] for e in after if e["event"] == "arrival"} == set(range(CLIENTS))  # all clients came back
    # the checkpoint's in-flight jobs were sent again; those that came back were accepted under their own ids
    assert arrived & {int(j) for j in state["in_flight"]} or not state["in_flight"]
    assert_adapter_loads_in_peft(run_dir)


def read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip().endswith("}")]


# ----- the pieces, without processes --------------------------------------------------------------------------


def test_deployment_config_is_validated_with_field_names(tiny_config):
    from fedlora.errors import ConfigError

    with pytest.raises(ConfigError, match=r"transport.tls_ca_cert: flower_deployment needs TLS"):
        tiny_config("transport={name: flower_deployment}")
    with pytest.raises(ConfigError, match=r"transport.supernode_auth: SuperNode authentication needs TLS"):
        tiny_config("transport={name: flower_deployment, insecure: true}")
    with pytest.raises(ConfigError, match=r"transport.client_public_keys: supernode_auth is on"):
        tiny_config("transport={name: flower_deployment, tls_ca_cert: a, tls_cert: b, tls_key: c}")
    with pytest.raises(ConfigError, match=r"transport.address: expected host:port"):
        tiny_config("transport={name: flower_deployment, insecure: true, supernode_auth: false, address: nowhere}")
    with pytest.raises(ConfigError, match=r"transport.clock: flower_deployment processes results as they really"):
        tiny_config("transport={name: flower_deployment, insecure: true, supernode_auth: false, clock: virtual}")
    with pytest.raises(ConfigError, match=r"client_public_keys lists 2 keys but clients.count is 4"):
        tiny_config(
            "transport={name: flower_deployment, tls_ca_cert: a, tls_cert: b, tls_key: c, client_public_keys: [x, y]}"
        )
    cfg = tiny_config("transport={name: flower_deployment, insecure: true, supernode_auth: false}")
    assert cfg.transport.clock == "wall"  # a deployment has only the wall clock


def test_serve_checks_files_before_starting_anything(tiny_config, tmp_path):
    from fedlora.errors import ConfigError
    from fedlora.flower.serve import serve

    cfg = tiny_config(
        f"transport={{name: flower_deployment, tls_ca_cert: {tmp_path / 'ca.crt'}, tls_cert: b, tls_key: c, "
        "client_public_keys: [k0, k1, k2, k3]}"
    )
    with pytest.raises(ConfigError, match=r"transport.tls_ca_cert: .*ca.crt does not exist"):
        serve(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"fedlora serve needs transport.name: flower_deployment"):
        serve(tiny_config(), tmp_path / "run")
    assert not (tmp_path / "run-flower").exists()


def test_join_refuses_missing_files_with_the_flag_name(tmp_path):
    from fedlora.flower.join import JoinError, join

    with pytest.raises(JoinError, match="--data"):
        join("127.0.0.1:1", 0, tmp_path / "nothing")
    with pytest.raises(JoinError, match="--root-cert CA.crt is required"):
        join("127.0.0.1:1", 0, tmp_path)
    with pytest.raises(JoinError, match="--auth-key .*: no such file"):
        join("127.0.0.1:1", 0, tmp_path, root_cert=Path(__file__), auth_key=tmp_path / "client_0")


@pytest.fixture
def task_identity(monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def deployment(nodes, **kw):
    from fedlora.flower.deploy import DeploymentTransport

    transport = DeploymentTransport("{}", 3, pull_every_s=0.0, online_every_s=0.0, **kw)
    transport.poll_s = 0.0
    transport.nodes = nodes
    return transport


def test_a_node_is_accepted_only_as_the_client_its_key_was_registered_for(task_identity):
    from tests.flower.test_transport import ScriptedGrid, honest

    transport = deployment({0: 100, 1: 101, 2: 102}, wait_for_clients_s=5)
    transport.attach(ScriptedGrid(3, honest))
    assert transport.node_of == {0: 100, 1: 101, 2: 102}

    swapped = deployment({0: 101, 1: 100, 2: 102}, wait_for_clients_s=0.3)  # nodes 100/101 claim the other's id
    with pytest.raises(RuntimeError, match=r"client\(s\) \[0, 1\]"):
        swapped.attach(ScriptedGrid(3, honest))


def test_jobs_for_an_offline_client_wait_for_it_and_time_out_without_spinning(task_identity):
    from fedlora.engine.wallclock import WallClockServer
    from tests.engine.fakes import make_server
    from tests.engine.test_faults_injection import SPEEDS, fedbuff
    from tests.flower.test_transport import ScriptedGrid, honest

    class SlowGrid(ScriptedGrid):
        """Replies become visible 0.1 s after the message was pushed, like a client that trains."""

        def __init__(self, clients, answer):
            super().__init__(clients, answer)
            self.sent_at: dict[str, float] = {}
            self.trained_on: list[int] = []

        def push_messages(self, messages):
            messages = list(messages)
            self.trained_on += [m.metadata.dst_node_id for m in messages if m.metadata.message_type == "train"]
            ids = super().push_messages(messages)
            self.sent_at.update(dict.fromkeys(ids, time.monotonic()))
            return ids

        def pull_messages(self, ids):
            due = [i for i in ids if time.monotonic() - self.sent_at.get(i, 0.0) > 0.1]
            return super().pull_messages(due)

    grid = SlowGrid(3, honest)
    transport = deployment(None, job_timeout_s=0.2)
    server = make_server(
        fedbuff(), speeds=SPEEDS, steps=2, transport=transport, max_update_norm=None, server_cls=WallClockServer
    )
    transport.attach(grid)
    grid.nodes.remove(102)  # client 2 has left before its first job is sent
    server.run()
    totals = server.summary()["totals"]
    assert totals["versions"] == 5 and totals["rejected"] == {}
    assert 1 <= totals["failed"].get("timeout", 0) <= 1 + server.real_seconds() / 0.2  # one per timeout: no spinning
    assert 102 not in grid.trained_on and {100, 101} <= set(grid.trained_on)  # nothing went to the absent node


def test_a_deployment_config_outside_fedlora_serve_says_how_to_start_it():
    from fedlora.errors import ConfigError
    from fedlora.flower.deploy import DeploymentTransport

    with pytest.raises(ConfigError, match=r"start it with `fedlora serve CONFIG`"):
        DeploymentTransport.from_config("{}", 3, None, 1.0)


def test_a_task_whose_message_the_supernode_ignored_fails_fast_instead_of_waiting_for_hours():
    from types import SimpleNamespace

    from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

    from fedlora.flower.join import GuardedRuntime, StaleMessage

    class Runtime:
        """A SuperNode whose message content never arrives (its run was stopped while it was received)."""

        pulls = 0

        def PullMessages(self, request):
            return SimpleNamespace(message_object_trees=[SimpleNamespace(object_id="abc123")])

        def PullObject(self, request):
            self.pulls += 1
            raise ObjectUnavailableError("abc123")

    ignored: set[str] = set()
    runtime = Runtime()
    guarded = GuardedRuntime(runtime, ignored)
    guarded.PullMessages(None)
    with pytest.raises(ObjectUnavailableError):
        guarded.PullObject(None)  # still being received, as far as anyone knows: Flower retries
    ignored.add("abc123")  # the SuperNode printed "... Ignoring message abc123."
    with pytest.raises(StaleMessage):
        guarded.PullObject(None)
    assert runtime.pulls == 1


def test_the_supernode_line_that_ignores_a_message_is_recognized():
    from fedlora.flower.join import IGNORED

    line = "\x1b[92mINFO \x1b[0m:  Run ID 17 is not in `RUNNING` status. Ignoring message 599c69e3ab."
    assert IGNORED.search(line).group(1) == "599c69e3ab"
    assert IGNORED.search("Run ID 17 is not in `RUNNING` status. Ignoring reply message 599c.") is None
