"""partition.name by_column: each owner a client, or owners grouped by a seeded, stated rule; small clients
are reported, never dropped."""

import numpy as np
import pytest

from fedlora.data.partitioners import PARTITIONERS, PartitionInputs
from fedlora.errors import ConfigError
from fedlora.partition_report import build_report

# 7 owners of 1..12 rows, interleaved as rows of an export are
SIZES = {"7": 12, "10": 9, "3": 6, "x1": 5, "x2": 3, "x3": 2, "9": 1}
OWNERS = [o for o, k in SIZES.items() for _ in range(k)]
OWNERS = [OWNERS[i] for i in np.random.default_rng(0).permutation(len(OWNERS))]


def inputs() -> PartitionInputs:
    return PartitionInputs(labels=np.zeros(len(OWNERS), dtype=np.int64), columns={"user_id": OWNERS})


def partitioner(seed: int = 0, **options):
    cls = PARTITIONERS.get("by_column")
    return cls(cls.Options.model_validate({"column": "user_id", **options}), seed)


def owners_of(parts) -> list[set[str]]:
    return [{OWNERS[i] for i in p} for p in parts]


def test_each_owner_is_one_client_in_sorted_order():
    parts = partitioner().split(inputs(), 7)
    # some owners are not integers, so all sort as text
    assert [sorted(s) for s in owners_of(parts)] == [["10"], ["3"], ["7"], ["9"], ["x1"], ["x2"], ["x3"]]
    assert [len(p) for p in parts] == [9, 6, 12, 1, 5, 3, 2]
    numeric = PartitionInputs(labels=np.zeros(4, dtype=np.int64), columns={"user_id": ["10", "9", "10", "100"]})
    assert [p.tolist() for p in partitioner().split(numeric, 3)] == [[1], [0, 2], [3]]  # 9 < 10 < 100
    with pytest.raises(ConfigError) as exc:
        partitioner().split(inputs(), 4)
    msg = str(exc.value)
    assert "has 7 distinct owners but clients.count=4" in msg and "set clients.count=7" in msg
    assert "partition.group: balanced" in msg


def test_balanced_grouping_follows_the_stated_rule():
    p = partitioner(group="balanced")
    parts = p.split(inputs(), 3)
    groups = owners_of(parts)
    assert sorted(o for g in groups for o in g) == sorted(SIZES)  # every owner once: never split
    for g, part in zip(groups, parts, strict=True):
        assert len(part) == sum(SIZES[o] for o in g)
    # largest first onto the least-loaded client (lowest id on ties): 12 | 9 | 6; 5 -> client 2 (11);
    # 3 -> client 1 (12); 2 -> client 2 (13); 1 -> client 0 (13)
    assert groups == [{"7", "9"}, {"10", "x2"}, {"3", "x1", "x3"}]
    assert [len(x) for x in parts] == [13, 12, 13]
    assert p.split(inputs(), 3)[0].tolist() == parts[0].tolist()  # deterministic
    # the seed only breaks ties between owners of equal size; here sizes differ, so any seed agrees
    assert owners_of(partitioner(seed=5, group="balanced").split(inputs(), 3)) == groups
    # owners of equal size: the seeded shuffle decides, the same way every time
    equal = PartitionInputs(labels=np.zeros(8, dtype=np.int64), columns={"user_id": list("aabbccdd")})

    def grouping(seed):
        return [set(np.array(list("aabbccdd"))[q]) for q in partitioner(seed, group="balanced").split(equal, 2)]

    assert grouping(0) == grouping(0)
    assert len({frozenset(map(frozenset, grouping(s))) for s in range(6)}) > 1
    with pytest.raises(ConfigError, match="only 7 distinct owners for clients.count=9"):
        p.split(inputs(), 9)


def test_small_clients_are_reported_not_dropped():
    p = partitioner(min_size=3)
    parts = p.split(inputs(), 7)
    report = build_report("by_column", p, inputs(), parts)
    assert sum(r["examples"] for r in report.rows) == len(OWNERS)
    assert report.small_clients == [3, 6] and report.min_size == 3  # owners "9" (1 row) and "x3" (2 rows)
    assert "clients under partition.min_size=3 examples (kept, not dropped): 3, 6" in report.caption()
    assert [r["owners"] for r in report.rows][:3] == [["10"], ["3"], ["7"]]
    md = report.to_markdown()
    assert "| owners |" in md.splitlines()[4] and md.count("\n| ") == 9
    grouped = partitioner(group="balanced")
    report = build_report("by_column", grouped, inputs(), grouped.split(inputs(), 2))
    assert all(len(r["owners"]) > 1 for r in report.rows) and "owners" in report.headers()


def test_without_an_owner_column_it_says_which_task_has_one():
    bare = PartitionInputs(labels=np.zeros(4, dtype=np.int64))
    with pytest.raises(ConfigError, match="task.name text_classification or instruction"):
        partitioner().split(bare, 2)
    assert partitioner().needs_columns() == ("user_id",)
    cls = PARTITIONERS.get("noise")
    noisy = cls(cls.Options.model_validate({"base": {"name": "by_column", "column": "user_id"}}), 0)
    assert noisy.needs_columns() == ("user_id",)
