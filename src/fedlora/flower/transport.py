"""The Flower transport: jobs go out as `train` messages through a Grid, results come back as replies.

`submit` pushes a message at once, so clients train in parallel; `collect` pulls until that job's reply is
there, keeping the replies of other jobs for later. The server collects in virtual-time order, so the run's
numbers do not depend on which reply Flower delivers first.

Which node is which client is learnt once, by a `query.hello` to every node. A reply is trusted only as
far as it matches what was sent: it must come from the node the job went to and echo that job's id and
client; otherwise the result is handed to the server under the job it claims, and the server rejects it
(`unsolicited` or `duplicate`) without its arrays ever being read. A reply that cannot be decoded, or whose
arrays do not fit the job (declared shapes, dtypes, size), is rejected as it is read (`UpdateRejected`:
`malformed`, `oversized`, ...). A reply carrying a Flower error (the ClientApp raised, the node vanished)
or none before the job's deadline fails the job (`client_error`, `unavailable`, `timeout`). A hello reply
that cannot be read leaves its node unregistered (with a warning), never the server down.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedlora.engine.frozen_base import FrozenBase
from fedlora.engine.transport.base import JobFailed, Transport
from fedlora.errors import UpdateRejected
from fedlora.flower.client_app import HELLO, TRAIN
from fedlora.flower.codec import ADAPTER, JobHeader, adapter_from_record, decode_meta, job_content
from fedlora.jobs import Job, JobResult

log = logging.getLogger(__name__)

ERROR_REASONS = {2: "client_error", 3: "unavailable", 4: "unavailable", 5: "unavailable"}


class FlowerTransport(Transport):
    def __init__(
        self,
        client_spec: str,
        num_clients: int,
        *,
        poll_s: float = 0.02,
        job_timeout_s: float | None = None,
        wait_for_clients_s: float = 60.0,
        base: FrozenBase | None = None,
    ):
        self.client_spec = client_spec  # flower.spec.ClientSpec as text: what every train message carries
        self.base = base if base is not None else FrozenBase()
        self.num_clients = num_clients
        self.poll_s = poll_s
        self.job_timeout_s = job_timeout_s
        self.wait_for_clients_s = wait_for_clients_s
        self.grid: Grid | None = None
        self.node_of: dict[int, int] = {}  # client id -> node id
        self._queued: list[Job] = []  # submitted before the grid was attached
        self._sent: dict[int, tuple[str, int, float]] = {}  # job id -> (message id, node id, sent at)
        self._replies: dict[str, Message] = {}  # message id -> reply not yet collected
        self._arrived_at: dict[str, float] = {}

    # ----- connecting ----------------------------------------------------------------------------------
    def attach(self, grid: Grid) -> None:
        """Learn which node is which client, then send the jobs submitted so far."""
        self.grid = grid
        self.discover()
        missing = sorted(set(range(self.num_clients)) - set(self.node_of))
        if missing:
            raise RuntimeError(
                f"no Flower node answered as client(s) {missing} within {self.wait_for_clients_s:g} s; "
                "start one `fedlora join --client-id ID` per client"
            )
        queued, self._queued = self._queued, []
        for job in queued:
            self.submit(job)

    def discover(self, until: Callable[[], bool] | None = None) -> None:
        """Say hello to every node not yet known until all clients answered (or the wait is over)."""
        assert self.grid is not None
        deadline = time.monotonic() + self.wait_for_clients_s
        asked: dict[str, int] = {}  # hello message id -> node id
        while len(self.node_of) < self.num_clients and time.monotonic() < deadline:
            known = set(self.node_of.values()) | set(asked.values())
            new = [n for n in self.grid.get_node_ids() if n not in known]
            if new:
                msgs = [Message(RecordDict({"hello": ConfigRecord({})}), n, HELLO) for n in new]
                asked.update(zip(self.grid.push_messages(msgs), new, strict=True))
            for reply in self.grid.pull_messages(list(asked)):
                node = asked.pop(reply.metadata.reply_to_message_id, None)
                if node is None or reply.has_error() or reply.metadata.src_node_id != node:
                    continue
                client = hello_client_id(reply)
                if client is None:
                    log.warning("node %s answered hello without an integer client id; ignored", node)
                    continue
                if not 0 <= client < self.num_clients or client in self.node_of:
                    log.warning("node %s claims client id %s, which is out of range or taken; ignored", node, client)
                    continue
                if not self.accepts(client, node):
                    log.warning("node %s claims client id %s, registered to another node; ignored", node, client)
                    continue
                self.node_of[client] = node
            time.sleep(self.poll_s)

    def accepts(self, client: int, node: int) -> bool:
        """Whether `node` may act as `client`; a deployment binds each client id to its authenticated node."""
        return True

    # ----- the transport interface ----------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if self.grid is None:
            self._queued.append(job)
            return
        header = JobHeader(
            job_id=job.job_id,
            client=job.client,
            client_job=job.client_job,
            rank=job.rank,
            start_version=job.start_version,
            steps=job.steps,
            alphas=job.start_adapter.alphas(),
            trains=job.trains,
            base_version=job.base_version,
        )
        node = self.node_of[job.client]
        content = job_content(header, job.start_adapter, self.client_spec, self.base.at(job.base_version))
        msg = Message(content, node, TRAIN, group_id=str(job.job_id))
        (msg_id,) = self.grid.push_messages([msg])
        self._sent[job.job_id] = (msg_id, node, time.monotonic())

    def poll(self) -> list[int]:
        """Pull whatever replies are there; the ids of jobs whose reply (or error) has arrived."""
        assert self.grid is not None
        waiting = {m for m, _, _ in self._sent.values() if m not in self._replies}
        if waiting:
            now = time.monotonic()
            for reply in self.grid.pull_messages(waiting):
                self._replies[reply.metadata.reply_to_message_id] = reply
                self._arrived_at[reply.metadata.reply_to_message_id] = now
        ready = [(self._arrived_at[m], j) for j, (m, _, _) in self._sent.items() if m in self._replies]
        return [j for _, j in sorted(ready)]

    def overdue(self) -> list[int]:
        """Jobs without a reply past their deadline (`job_timeout_s` after sending)."""
        if self.job_timeout_s is None:
            return []
        now = time.monotonic()
        return [j for j, (m, _, t) in self._sent.items() if m not in self._replies and now - t > self.job_timeout_s]

    def collect(self, job: Job) -> JobResult:
        if job.job_id not in self._sent:
            raise JobFailed(job, "not_sent")
        msg_id, node, sent_at = self._sent[job.job_id]
        while msg_id not in self._replies:
            if self.job_timeout_s is not None and time.monotonic() - sent_at > self.job_timeout_s:
                del self._sent[job.job_id]
                raise JobFailed(job, "timeout")
            self.poll()
            if msg_id not in self._replies:
                time.sleep(self.poll_s)
        del self._sent[job.job_id]
        self._arrived_at.pop(msg_id, None)
        reply = self._replies.pop(msg_id)
        if reply.has_error():
            log.warning("job %s on client %s: %s", job.job_id, job.client, reply.error.reason)
            raise JobFailed(job, ERROR_REASONS.get(reply.error.code, "client_error"))
        meta = decode_meta(reply.content, job)  # UpdateRejected("malformed"): the server counts it
        claimed = job
        if reply.metadata.src_node_id != node:
            claimed = dataclasses.replace(job, client=-1)  # not from the node the job was sent to
        elif (meta.header.job_id, meta.header.client) != (job.job_id, job.client):
            claimed = dataclasses.replace(job, job_id=meta.header.job_id, client=meta.header.client)
        if claimed is not job:
            # not an answer to this job: the server rejects it on provenance, so its arrays are never read
            adapter = job.start_adapter
        else:
            try:
                adapter = adapter_from_record(reply.content.array_records[ADAPTER], meta.header.alphas, job)
            except UpdateRejected:
                raise
            except Exception as exc:  # a missing record, bytes that are no array, alphas of other layers...
                raise UpdateRejected(
                    "malformed",
                    f"client {job.client}, job {job.job_id}: the reply's adapter cannot be decoded "
                    f"({type(exc).__name__}: {exc})",
                ) from None
        return JobResult(
            job=claimed,
            adapter=adapter,
            num_samples=meta.num_samples,
            samples_trained=meta.samples_trained,
            metrics=meta.metrics,
        )

    def close(self) -> None:
        self._sent.clear()
        self._replies.clear()


def hello_client_id(reply: Message) -> int | None:
    """The client id a hello reply claims, or None when it is missing or not an integer."""
    try:
        value = reply.content.config_records["hello"]["client_id"]
    except Exception:  # no such record or key: an untrusted reply, not a server error
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value
