"""The Flower transport's own checks, against a scripted Grid (no Flower engine, no Ray)."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Message, RecordDict

from fedlora.flower.codec import JOB, JobHeader, reply_content
from fedlora.flower.transport import FlowerTransport
from tests.engine.fakes import (
    make_server,
    num_adapter,
)
from tests.engine.test_faults_injection import SPEEDS, fedbuff


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch):
    """Messages are stamped with the run and node of the current Flower task; outside a run, set them."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


class ScriptedGrid:
    """Nodes 100 + c answer hello as client c; train replies are built by `answer(message) -> Message`."""

    def __init__(self, clients: int, answer):
        self.nodes = [100 + c for c in range(clients)]
        self.answer = answer
        self.inbox: dict[str, Message] = {}
        self.count = 0

    def get_node_ids(self):
        return list(self.nodes)

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            self.count += 1
            mid = f"m{self.count}"
            msg.metadata.__dict__["_message_id"] = mid
            if msg.metadata.message_type == "query.hello":
                reply = Message(
                    RecordDict({"hello": ConfigRecord({"client_id": msg.metadata.dst_node_id - 100})}), reply_to=msg
                )
            else:
                reply = self.answer(msg)
            if reply is not None:
                self.inbox[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, ids):
        return [self.inbox.pop(i) for i in list(ids) if i in self.inbox]


def honest(msg: Message) -> Message:
    header = JobHeader.from_record(msg.content.config_records[JOB])
    return Message(reply_content(header, num_adapter(float(header.client + 1)), 8, 4, {}), reply_to=msg)


def run_with(answer, **kw):
    transport = FlowerTransport("{}", len(SPEEDS), poll_s=0.0, **kw)
    server = make_server(fedbuff(), speeds=SPEEDS, steps=2, transport=transport, max_update_norm=None)
    transport.attach(ScriptedGrid(len(SPEEDS), answer))
    server.run()
    return server


def test_honest_nodes_are_discovered_and_their_replies_accepted():
    server = run_with(honest)
    assert server.transport.node_of == {0: 100, 1: 101, 2: 102}
    totals = server.summary()["totals"]
    assert totals["versions"] == 5 and totals["rejected"] == {} and totals["failed"] == {}


def test_a_reply_claiming_another_job_or_from_another_node_is_rejected():
    def liar(msg: Message) -> Message:
        reply = honest(msg)
        header = JobHeader.from_record(msg.content.config_records[JOB])
        if header.job_id == 2:  # claims to answer a job it was not sent
            reply.content.config_records[JOB]["job_id"] = 99
        if header.job_id == 4:  # arrives as if from another node
            reply.metadata.__dict__["_src_node_id"] = 555
        return reply

    totals = run_with(liar).summary()["totals"]
    assert totals["rejected"] == {"unsolicited": 2} and totals["versions"] == 5


def test_an_error_reply_or_no_reply_fails_the_job_without_blocking_the_run():
    def flaky(msg: Message):
        header = JobHeader.from_record(msg.content.config_records[JOB])
        if header.job_id == 1:
            from flwr.app import Error

            return Message(Error(code=2, reason="ClientApp raised"), reply_to=msg)
        if header.job_id == 3:
            return None  # the node vanished
        return honest(msg)

    totals = run_with(flaky, job_timeout_s=0.2).summary()["totals"]
    assert totals["failed"] == {"client_error": 1, "timeout": 1} and totals["versions"] == 5
