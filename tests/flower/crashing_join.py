"""`fedlora join` with a fault-injecting ClientApp, for the deployment test's client that dies mid-job.

`python -m tests.flower.crashing_join join ...` runs the real CLI, but the ClientApp it executes is the
production one wrapped to exit the process (os._exit(17), as a killed machine would) while training the
client job named by FEDLORA_TEST_CRASH_ON_JOB. The production ClientApp has no such hook.
"""

from __future__ import annotations

import os

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedlora.flower import client_app
from fedlora.flower.codec import JOB, JobHeader

CRASH_ENV = "FEDLORA_TEST_CRASH_ON_JOB"

app = ClientApp()


@app.query("hello")
def hello(message: Message, context: Context) -> Message:
    return client_app.hello(message, context)


@app.train()
def train(message: Message, context: Context) -> Message:
    header = JobHeader.from_record(message.content.config_records[JOB])
    if os.environ.get(CRASH_ENV) == str(header.client_job):
        os._exit(17)  # a client killed mid-job
    return client_app.train(message, context)


if __name__ == "__main__":
    client_app.app = app  # what fedlora join executes for every task
    from fedlora.cli import app as cli

    cli(prog_name="fedlora")
