"""A Flower client is told a small spec, not the server's experiment, and builds the same data and training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedlora.flower.spec import ClientSpec


def test_the_spec_holds_what_a_client_needs_and_nothing_of_the_servers_run(tiny_config):
    cfg = tiny_config("aggregator.name=hlora", "schedule={name: fedbuff, buffer_size: 2}", "stop.versions=7")
    spec = ClientSpec.of(cfg)
    sent = json.loads(spec.to_text())
    assert set(sent) == {
        "seed", "model", "lora", "training", "total_versions", "task", "partition", "clients", "local_val_share",
        "privacy",
    }  # fmt: skip
    assert sent["privacy"] is None  # client-side noise settings travel only when privacy.where is client
    assert "hlora" not in spec.to_text() and "fedbuff" not in spec.to_text()  # no aggregator, no schedule
    assert ClientSpec.from_text(spec.to_text()) == spec
    rebuilt = spec.experiment_config()
    assert (rebuilt.model, rebuilt.lora, rebuilt.training, rebuilt.task) == (
        cfg.model,
        cfg.lora,
        cfg.training,
        cfg.task,
    )
    assert rebuilt.stop.versions == 7 and rebuilt.seed == cfg.seed  # the learning-rate schedule's clock
    own = spec.experiment_config(data_dir="/data/client3")
    assert own.task.data_dir == "/data/client3" and own.clients.count == 1 and own.partition.name == "iid"


@pytest.mark.slow
def test_a_simulated_client_builds_the_servers_partitions_and_training_spec(tiny_config):
    from fedlora.experiment import prepare, training_spec

    cfg = tiny_config("partition={name: label, alpha: 0.5}", "eval.local_val_share=0.2")
    client_cfg = ClientSpec.of(cfg).experiment_config()
    server, client = prepare(cfg), prepare(client_cfg)
    assert all(np.array_equal(a, b) for a, b in zip(server.partitions, client.partitions, strict=True))
    assert training_spec(client_cfg) == training_spec(cfg)
