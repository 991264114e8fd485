"""The Flower ClientApp: answers `query.hello` with its client id and `train` with fedlora's local training.

The client id comes from the node config: `client-id` on a deployed SuperNode (`fedlora join`), or the
`partition-id` Flower gives each simulated node. A deployed node also names its own `data-dir`. A train
message for another client id is refused (the reply is an error), so a node never trains on behalf of
someone else.
"""

from __future__ import annotations

import os

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedlora.flower.codec import ADAPTER, JOB, RUN, JobHeader, adapter_from_record, reply_content
from fedlora.flower.worker import worker_for

HELLO = "query.hello"
TRAIN = "train"
CLIENT_ID = "client-id"
DATA_DIR = "data-dir"
PARTITION_ID = "partition-id"  # set by Flower's simulation engine
CRASH_ENV = "FEDLORA_TEST_CRASH_ON_JOB"  # tests only: os._exit while training this client job number

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
    worker = worker_for(str(message.content.config_records[RUN]["config"]), str(data_dir) if data_dir else None)
    if os.environ.get(CRASH_ENV) == str(header.client_job):
        os._exit(17)  # a client killed mid-job, for the deployment fault test
    adapter = adapter_from_record(message.content.array_records[ADAPTER], header.alphas)
    trained, metrics = worker.run(adapter, header.steps, me, header.client_job, header.start_version)
    samples_trained = header.steps * worker.spec.batch_size
    echoed = JobHeader(**{**header.__dict__, "alphas": trained.alphas()})
    content = reply_content(echoed, trained, len(worker.indices(me)), samples_trained, metrics)
    return Message(content, reply_to=message)
