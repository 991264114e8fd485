"""The Flower transport's own checks, against a scripted Grid (no Flower engine, no Ray)."""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")

import torch
from flwr.app import ConfigRecord, Message, RecordDict

from fedlora.flower.codec import ADAPTER, JOB, JobHeader, reply_content
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


# ----- hostile replies: every one a counted rejection, never a crash ---------------------------------------
def _header(msg: Message) -> JobHeader:
    return JobHeader.from_record(msg.content.config_records[JOB])


def _reply(msg: Message, adapter, header: JobHeader | None = None, **counts) -> Message:
    header = header or _header(msg)
    content = reply_content(header, adapter, counts.get("num_samples", 8), counts.get("samples_trained", 4), {})
    return Message(content, reply_to=msg)


def _with_alpha(value: float):
    def answer(msg: Message) -> Message:
        header = _header(msg)
        lying = JobHeader(**{**header.__dict__, "alphas": {k: value for k in header.alphas}})
        return _reply(msg, num_adapter(float(header.client + 1)), lying)

    return answer


def _arrays(msg: Message, change) -> Message:
    """An honest reply whose ArrayRecord is rebuilt by `change(dict of name -> Array)`."""
    import numpy as np
    from flwr.app import Array, ArrayRecord

    reply = _reply(msg, num_adapter(float(_header(msg).client + 1)))
    arrays = dict(reply.content.array_records[ADAPTER].items())
    reply.content.array_records[ADAPTER] = ArrayRecord(change(arrays, np, Array))
    return reply


def _without_job(msg: Message) -> Message:
    reply = _reply(msg, num_adapter(1.0))
    return Message(RecordDict({ADAPTER: reply.content.array_records[ADAPTER]}), reply_to=msg)


def _bad_json(msg: Message) -> Message:
    reply = _reply(msg, num_adapter(1.0))
    reply.content.config_records[JOB]["alphas"] = "{not json"
    return reply


def _no_samples(msg: Message) -> Message:
    return _reply(msg, num_adapter(1.0), num_samples=0)


def _lying_shape(arrays, np, Array):
    data = Array(np.zeros((2, 2)))  # the bytes hold a 2x2 array, the declaration says 1x1
    return {**arrays, "lora.w.B": Array(dtype="float64", shape=(1, 1), stype=data.stype, data=data.data)}


HOSTILE = {
    "alpha_nan": (_with_alpha(float("nan")), "wrong_alpha"),
    "alpha_inf": (_with_alpha(float("inf")), "wrong_alpha"),
    "alpha_huge": (_with_alpha(1e30), "wrong_alpha"),
    "alpha_negative": (_with_alpha(-8.0), "wrong_alpha"),
    "alpha_zero": (_with_alpha(0.0), "wrong_alpha"),
    "no_job_record": (_without_job, "malformed"),
    "a_without_b": (
        lambda m: _arrays(m, lambda a, np, A: {k: v for k, v in a.items() if k != "lora.w.B"}),
        "malformed",
    ),
    "bad_json": (_bad_json, "malformed"),
    "no_samples": (_no_samples, "malformed"),
    "lying_shape": (lambda m: _arrays(m, _lying_shape), "malformed"),
    "wrong_dtype": (
        lambda m: _arrays(m, lambda a, np, A: {**a, "extra.head": A(np.zeros(1, np.float32))}),
        "wrong_dtype",
    ),
    "oversized": (lambda m: _arrays(m, lambda a, np, A: {**a, "extra.head": A(np.zeros(10**6))}), "oversized"),
    "over_rank": (
        lambda m: _arrays(m, lambda a, np, A: {**a, "lora.w.A": A(np.ones((2, 1))), "lora.w.B": A(np.ones((1, 2)))}),
        "over_rank",
    ),
    "under_rank": (  # rank 0: fits the job, but FedIT cannot combine it with rank-1 adapters
        lambda m: _arrays(m, lambda a, np, A: {**a, "lora.w.A": A(np.ones((0, 1))), "lora.w.B": A(np.ones((1, 0)))}),
        "aggregation_error",
    ),
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_a_hostile_reply_is_a_counted_rejection_and_the_run_finishes(attack):
    hostile, reason = HOSTILE[attack]

    def answer(msg: Message) -> Message:
        return hostile(msg) if _header(msg).job_id in (2, 5) else honest(msg)

    server = run_with(answer)
    totals = server.summary()["totals"]
    assert totals["rejected"] == {reason: 2} and totals["failed"] == {}
    assert totals["versions"] == 5 and server.stopped_by == "versions"
    assert all(torch.isfinite(t).all() for t in server.global_adapter.tensors().values())
    assert all(f.alpha == 1.0 for f in server.global_adapter.layers.values())


def test_a_hello_without_an_integer_client_id_leaves_that_node_out():
    class Grid(ScriptedGrid):
        def __init__(self, clients, answer):
            super().__init__(clients, answer)
            self.nodes = [*self.nodes, 999, 998]  # two impostors beside the real nodes

        def push_messages(self, messages):
            ids = super().push_messages(messages)
            for msg, mid in zip(messages, ids, strict=True):
                if msg.metadata.dst_node_id == 999:  # a client id that is no integer
                    cfg = ConfigRecord({"client_id": "one"})
                    self.inbox[mid] = Message(RecordDict({"hello": cfg}), reply_to=msg)
                elif msg.metadata.dst_node_id == 998:  # no hello record at all
                    self.inbox[mid] = Message(RecordDict({"other": ConfigRecord({})}), reply_to=msg)
            return ids

    transport = FlowerTransport("{}", len(SPEEDS), poll_s=0.0, wait_for_clients_s=5.0)
    server = make_server(fedbuff(), speeds=SPEEDS, steps=2, transport=transport, max_update_norm=None)
    transport.attach(Grid(len(SPEEDS), honest))
    server.run()
    assert transport.node_of == {0: 100, 1: 101, 2: 102}
    assert server.summary()["totals"]["versions"] == 5
