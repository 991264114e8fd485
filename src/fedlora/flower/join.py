"""`fedlora join`: one data owner's client, a Flower SuperNode whose ClientApp stays loaded between jobs.

A SuperNode in Flower's default `subprocess` isolation starts a fresh ClientApp process for every message,
which would import torch and load the base model again for every job (seconds for a tiny model, minutes for
an LLM). `fedlora join` therefore starts the SuperNode with `--isolation process` and is itself the
process that executes its tasks: it acquires each task from the SuperNode's local Runtime API, runs
fedlora's ClientApp in this process (where `worker_for` keeps the model and the client's own data loaded),
and pushes the reply back through the SuperNode. Only fedlora's own ClientApp ever runs: the code inside the
submitted Flower App is not installed or imported, and a task from an app whose `clientapp` is not
fedlora's is refused.

The SuperNode talks to the SuperLink over TLS (`--root-cert`, the CA that signed the server's certificate)
and authenticates with this client's private key (`--auth-key`); a key the server has not registered is
refused at the door (the SuperNode exits, and so does `fedlora join`).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from flwr.app import Context, Error, Message

from fedlora.errors import FedLoraError
from fedlora.flower.internals import (
    IGNORED,
    REFUSED,
    AcquireTaskRequest,
    ErrorCode,
    HeartbeatSender,
    RuntimeHttpClient,
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SubStatus,
    TaskType,
    get_fab_config,
    make_simple_http_retry_invoker,
    make_task_heartbeat_fn_http,
    pull_task_input,
    push_message,
    push_task_output,
)
from fedlora.flower.processes import flower_env, free_port, kill_with_parent, tool
from fedlora.flower.serve import CLIENT_APP

log = logging.getLogger(__name__)


class StaleMessage(Exception):
    """The SuperNode gave up receiving this task's message: its run was stopped (see `GuardedRuntime`)."""


class JoinError(FedLoraError):
    """The client could not join or lost the server."""


def supernode_command(
    server: str,
    client_id: int,
    data: Path,
    runtime_port: int,
    *,
    root_cert: Path | None,
    auth_key: Path | None,
    insecure: bool,
) -> list[str]:
    cmd = [tool("flower-supernode"), "--superlink", server]
    cmd += ["--insecure"] if insecure else ["--root-certificates", str(root_cert)]
    if auth_key is not None:
        cmd += ["--auth-supernode-private-key", str(auth_key)]
    cmd += ["--node-config", f'client-id={client_id} data-dir="{data}"']
    cmd += ["--isolation", "process", "--host", "127.0.0.1", "--port", str(runtime_port)]
    cmd += ["--max-retries", "10"]
    return cmd


def check_paths(data: Path, root_cert: Path | None, auth_key: Path | None, insecure: bool) -> None:
    if not data.is_dir():
        raise JoinError(f"--data {data}: not a directory (a GLUE root or task folder holding this client's rows)")
    if not insecure and root_cert is None:
        raise JoinError("--root-cert CA.crt is required (the CA that signed the server's certificate), or --insecure")
    for flag, path in (("--root-cert", root_cert), ("--auth-key", auth_key)):
        if path is not None and not path.is_file():
            raise JoinError(f"{flag} {path}: no such file")


class GuardedRuntime:
    """One task's Runtime API client that stops pulling the task's message once the SuperNode has ignored it.

    When a server is killed and resumed (docs/deployment.md, "Server restart"), a SuperNode may have been
    receiving a job of the killed run; after the restart it finds that run stopped and ignores the message,
    but (Flower 1.42) keeps the task it had created for it, whose message content never arrives. Flower's
    own ClientApp would retry pulling it for up to two hours and this client would serve nobody meanwhile;
    here the pull fails as soon as the SuperNode's output names the message as ignored.
    """

    def __init__(self, client: RuntimeHttpClient, ignored: set[str]):
        self._client = client
        self._ignored = ignored
        self._message_id: str | None = None

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def PullMessages(self, request):
        res = self._client.PullMessages(request)
        if res.message_object_trees:
            self._message_id = res.message_object_trees[0].object_id
        return res

    def PullObject(self, request):
        if self._message_id in self._ignored:
            raise StaleMessage(f"message {self._message_id} belongs to a stopped run")
        return self._client.PullObject(request)


class TaskRunner:
    """Executes the SuperNode's ClientApp tasks in this process (Flower's run_clientapp, without exiting)."""

    task_retry_s: float = 120.0  # a task's calls retry this long while the SuperNode is briefly unreachable

    def __init__(self, runtime_address: str, ignored: set[str] | None = None):
        self.address = runtime_address
        self.ignored = ignored if ignored is not None else set()  # message ids the SuperNode ignored
        # no retries here: the caller polls, and must notice at once when the SuperNode has exited
        self.acquirer = self._client(RuntimeVersionHttpInterceptor(component_name="SuperExec"), retry=False)

    def _client(self, *interceptors, retry: bool = True) -> RuntimeHttpClient:
        invoker = None
        if retry:
            invoker = make_simple_http_retry_invoker()
            invoker.max_time = self.task_retry_s
        return RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=True,  # the SuperNode's Runtime API listens on 127.0.0.1 only
            root_certificates=None,
            interceptors=list(interceptors),
            retry_invoker=invoker,
        )

    def acquire(self) -> str | None:
        """The token of the next ClientApp task, if the SuperNode has one."""
        res = self.acquirer.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value]))
        return res.token if res.HasField("task") and res.token else None

    def run(self, token: str) -> None:
        client = self._client(
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"), RuntimeTokenHttpInterceptor(token)
        )
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        heartbeat.start()
        message: Message | None = None
        context: Context | None = None
        reply: Message | None = None
        status, details = SubStatus.FAILED, "the ClientApp failed"
        try:
            message, context, _run, fab = pull_task_input(GuardedRuntime(client, self.ignored))
            wanted = get_fab_config(fab.content)["tool"]["flwr"]["app"]["components"]["clientapp"]
            if wanted != CLIENT_APP:
                raise PermissionError(f"this node runs fedlora's ClientApp ({CLIENT_APP}) only, not {wanted!r}")
            from fedlora.flower.client_app import app as client_app  # torch and the model: first task only

            reply = client_app(message=message, context=context)
            status, details = SubStatus.COMPLETED, ""
        except StaleMessage as exc:  # nobody waits for a reply: the task is closed as failed, the node goes on
            log.warning("skipped a job of a stopped run: %s", exc)
            details = f"StaleMessage: {exc}"
        except Exception as exc:  # the reply carries the error; the node keeps serving
            log.exception("ClientApp task failed")
            details = f"{type(exc).__name__}: {exc}"
            if message is not None:
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
        finally:
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)
            except Exception as exc:  # e.g. the server restarted mid-push (ObjectPushError): it times the job out
                log.warning("reply not delivered (%s: %s); the server fails the job", type(exc).__name__, exc)
                status, details = SubStatus.FAILED, f"reply not delivered: {exc}"
            try:
                push_task_output(client, context, status, details)
            except Exception as exc:  # the task's run may be gone with a restarted server; the node goes on
                log.warning("could not close the task (%s: %s)", type(exc).__name__, exc)
            finally:
                heartbeat.stop()
                client.close()


def join(
    server: str,
    client_id: int,
    data: Path,
    *,
    root_cert: Path | None = None,
    auth_key: Path | None = None,
    insecure: bool = False,
    home: Path | None = None,
    runtime_port: int | None = None,
    poll_s: float = 0.5,
) -> None:
    """Run this client until the SuperNode stops; raises `JoinError` if it was refused or failed."""
    data, root_cert, auth_key = data.resolve(), _abs(root_cert), _abs(auth_key)
    check_paths(data, root_cert, auth_key, insecure)
    home = home or Path(tempfile.mkdtemp(prefix=f"fedlora-join-{client_id}-"))
    home.mkdir(parents=True, exist_ok=True)
    port = runtime_port or free_port()
    cmd = supernode_command(
        server, client_id, data, port, root_cert=None if insecure else root_cert, auth_key=auth_key, insecure=insecure
    )
    log.info("client %d: starting the SuperNode for %s", client_id, server)
    node = subprocess.Popen(
        cmd,
        env=flower_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=kill_with_parent,
    )
    ignored: set[str] = set()
    refused, relay = _relay(node, ignored)
    stop = _stop_on_signals(node)
    try:
        runner = TaskRunner(f"127.0.0.1:{port}", ignored)
        while node.poll() is None:
            token = _try(runner.acquire)
            if token:
                try:
                    runner.run(token)
                except Exception:  # one job lost (its server times it out), never the client: it keeps serving
                    log.exception("client %d: a task failed outside the ClientApp; serving on", client_id)
            else:
                time.sleep(poll_s)
    finally:
        stop()
        relay.join(timeout=10)  # the SuperNode's last words (a refusal) are read before they are judged
    if refused.is_set():
        raise JoinError(
            f"client {client_id}: the server refused this node (its public key is not registered there, or "
            "--auth-key is not this client's key)"
        )
    if node.returncode not in (0, -signal.SIGTERM, -signal.SIGINT):
        raise JoinError(
            f"client {client_id}: the SuperNode exited with code {node.returncode} (the server is unreachable or "
            "has stopped; its output is above)"
        )


def _relay(node: subprocess.Popen, ignored: set[str]) -> tuple[threading.Event, threading.Thread]:
    """Copy the SuperNode's output to ours; the event is set if the SuperLink refused to activate it.

    flower-supernode reports a refused activation (an unregistered key) only in its output: its exit code is
    the generic 1. The same goes for a message it ignored because its run was stopped; their ids are added
    to `ignored`, so the task it left for such a message is skipped (`GuardedRuntime`).
    """
    refused = threading.Event()

    def copy() -> None:
        assert node.stdout is not None
        for line in node.stdout:
            if REFUSED in line:
                refused.set()
            if (stale := IGNORED.search(line)) is not None:
                ignored.add(stale.group(1))
            sys.stdout.write(line)
            sys.stdout.flush()

    thread = threading.Thread(target=copy, name="supernode-output", daemon=True)
    thread.start()
    return refused, thread


def _abs(path: Path | None) -> Path | None:
    return None if path is None else path.expanduser().resolve()


def _try(fn):
    """The SuperNode's Runtime API is not up at once; an unreachable API just means: ask again later."""
    try:
        return fn()
    except Exception as exc:  # httpx errors of every kind while the SuperNode starts or stops
        log.debug("runtime API not ready: %s", exc)
        return None


def _stop_on_signals(node: subprocess.Popen):
    """SIGTERM/SIGINT stop the SuperNode too; returns the cleanup to run when this process is done."""

    def handler(signum, _frame):
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def stop() -> None:
        if node.poll() is None:
            node.terminate()
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        for s, h in previous.items():
            signal.signal(s, h)

    return stop
