"""The Flower ClientApp: answers `query.hello` with its client id and `train` with fedlora's local training.

The client id comes from the node config: `client-id` on a deployed SuperNode (`fedlora join`), or the
`partition-id` Flower gives each simulated node. A deployed node also names its own `data-dir`. A train
message for another client id is refused (the reply is an error), so a node never trains on behalf of
someone else. A train message carries the job's values (`codec.JobHeader`), the start adapter, the client
spec (`flower.spec`) and, after folds, the frozen base; the reply echoes the header with the trained adapter.
Fault injection for tests lives in a test ClientApp (tests/flower/crashing_join.py), not here.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedlora.flower.codec import ADAPTER, JOB, SPEC, JobHeader, adapter_from_record, base_from_content, reply_content
from fedlora.flower.worker import worker_for

HELLO = "query.hello"
TRAIN = "train"
CLIENT_ID = "client-id"
DATA_DIR = "data-dir"
PARTITION_ID = "partition-id"  # set by Flower's simulation engine

app = ClientApp()


def client_id(context: Context) -> int:
    cfg = context.node_config
    if CLIENT_ID in cfg:
        return int(cfg[CLIENT_ID])
    if PARTITION_ID in cfg:
        return int(cfg[PARTITION_ID])
    raise ValueError(f"node config has neither {CLIENT_ID!r} nor {PARTITION_ID!r}: start the node with fedlora join")


@app.query("hello")
def hello(message: Message, context: Context) -> Message:
    return Message(RecordDict({"hello": ConfigRecord({"client_id": client_id(context)})}), reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    me = client_id(context)
    header = JobHeader.from_record(message.content.config_records[JOB])
    if header.client != me:
        raise PermissionError(f"job {header.job_id} is for client {header.client}, this node is client {me}")
    data_dir = context.node_config.get(DATA_DIR)
    worker = worker_for(str(message.content.config_records[SPEC]["spec"]), str(data_dir) if data_dir else None)
    adapter = adapter_from_record(message.content.array_records[ADAPTER], header.alphas)
    base = (header.base_version, base_from_content(message.content))
    trained, metrics = worker.run(
        adapter, header.steps, me, header.client_job, header.start_version, header.trains, base
    )
    samples_trained = header.steps * worker.spec.batch_size
    echoed = JobHeader(**{**header.__dict__, "alphas": trained.alphas()})
    content = reply_content(echoed, trained, len(worker.indices(me)), samples_trained, metrics)
    return Message(content, reply_to=message)
