"""The Flower internals fedlora reaches (flower/internals.py) are where it expects them in the installed Flower.

A Flower upgrade that moves one of them fails here, naming it, instead of in a deployment.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

flwr = pytest.importorskip("flwr")


def test_the_installed_flower_is_a_version_the_internals_were_checked_with():
    from fedlora.flower import internals

    minor = ".".join(flwr.__version__.split(".")[:2])
    assert minor in internals.TESTED, (
        f"Flower {flwr.__version__} is not one of {internals.TESTED}: run this file's tests, fix "
        "fedlora/flower/internals.py where they fail, then add the version to TESTED"
    )


def test_every_internal_name_imports_and_has_the_shape_fedlora_calls():
    from fedlora.flower import internals

    for name in internals.__all__:
        assert getattr(internals, name, None) is not None, f"flower/internals.py: {name} is gone"
    # fedlora join calls these with these arguments
    assert list(inspect.signature(internals.pull_task_input).parameters) == ["client"]
    assert list(inspect.signature(internals.push_message).parameters) == ["client", "message", "context"]
    pushed = ["client", "context", "sub_status", "details"]
    assert list(inspect.signature(internals.push_task_output).parameters) == pushed
    assert {"server_address", "insecure", "interceptors", "retry_invoker"} <= set(
        inspect.signature(internals.RuntimeHttpClient.from_server_address).parameters
    )
    assert hasattr(internals.SubStatus, "COMPLETED") and hasattr(internals.SubStatus, "FAILED")
    assert hasattr(internals.ErrorCode, "CLIENT_APP_RAISED_EXCEPTION")
    assert internals.TaskType.CLIENT_APP.value


def test_the_superlink_database_has_the_table_and_column_drop_undelivered_deletes_by(tmp_path):
    from flwr.supercore.state.schema.linkstate_tables import create_linkstate_metadata

    from fedlora.flower import internals

    table = create_linkstate_metadata().tables[internals.MESSAGES_TABLE]
    assert internals.DELIVERED_COLUMN in table.c
    assert internals.drop_undelivered(tmp_path / "not-a-database") == -1  # a resume goes on regardless


def test_the_supernode_still_says_the_two_lines_fedlora_join_reads():
    from fedlora.flower import internals

    sources = "\n".join(p.read_text(errors="replace") for p in Path(flwr.__file__).parent.rglob("*.py"))
    assert internals.REFUSED in sources
    logged = re.search(r'"Run ID %s is not in `RUNNING` status\. Ignoring message %s\."', sources)
    assert logged is not None
    line = "Run ID 7 is not in `RUNNING` status. Ignoring message 3fa9c0."
    assert internals.IGNORED.search(line).group(1) == "3fa9c0"
