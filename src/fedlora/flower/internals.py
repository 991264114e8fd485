"""Every place fedlora reaches past Flower's public API, in one module.

fedlora's ServerApp, ClientApp, transports and records use Flower's public API (`flwr.app`, `flwr.clientapp`,
`flwr.serverapp`, `flwr.simulation`, the `flwr`/`flower-superlink`/`flower-supernode` commands). Three
things have no public form, and live here:

- `fedlora join` executes its SuperNode's ClientApp tasks in its own long-lived process, so the model stays
  loaded between jobs: the Runtime API client, its task protocol (acquire, pull, push, close) and the
  heartbeat are Flower's process-isolation internals.
- `fedlora serve --resume` drops a killed run's undelivered messages from the SuperLink's database
  (`drop_undelivered`): Flower's table and column names.
- `fedlora join` reads two lines of the SuperNode's output: a refused activation, and a message it ignored
  because its run was stopped.

tests/flower/test_internals.py checks each of these against the installed Flower, so an upgrade that moves
one fails there, by name, instead of in a deployment. The versions it was last checked with: `TESTED`.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

from flwr.common.config import get_fab_config
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

__all__ = [
    "IGNORED",
    "REFUSED",
    "TESTED",
    "AcquireTaskRequest",
    "ErrorCode",
    "HeartbeatSender",
    "RuntimeHttpClient",
    "RuntimeTokenHttpInterceptor",
    "RuntimeVersionHttpInterceptor",
    "SubStatus",
    "TaskType",
    "drop_undelivered",
    "get_fab_config",
    "make_simple_http_retry_invoker",
    "make_task_heartbeat_fn_http",
    "pull_task_input",
    "push_message",
    "push_task_output",
]

TESTED = ("1.41", "1.42")  # the Flower minor versions these internals were checked against

REFUSED = "Failed to activate SuperNode"  # flower-supernode's words when the SuperLink does not know its key
# flower-supernode's words when a message's run was stopped while it was being received (a killed server)
IGNORED = re.compile(r"not in `RUNNING` status\. Ignoring message ([0-9a-f]+)")

#: the SuperLink's table of messages to nodes, and the column that stays empty until a node pulled one
MESSAGES_TABLE, DELIVERED_COLUMN = "message_ins", "delivered_at"


def drop_undelivered(database: Path) -> int:
    """Delete the messages no SuperNode has pulled yet from a killed server's SuperLink database.

    They are the killed run's jobs, which the resumed run sends again. Left in place, a surviving SuperNode
    would pull one after the restart, find its run stopped and ignore it, but (Flower 1.42) keep a task for
    it whose input never arrives; `fedlora join` would wait on that task for hours instead of serving the
    resumed run. Runs before the SuperLink starts, so nothing else has the database open. Returns how many
    were dropped, or -1 if the database is not what this Flower version writes (the resume goes on).
    """
    try:
        with contextlib.closing(sqlite3.connect(database)) as db, db:
            sql = f"DELETE FROM {MESSAGES_TABLE} WHERE {DELIVERED_COLUMN} = ''"
            return db.execute(sql).rowcount
    except sqlite3.Error:
        return -1
