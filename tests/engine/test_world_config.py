"""Config of the heterogeneous world and the schedules: valid forms and errors that name the field."""

import pytest

from fedlora.config import validate_config
from fedlora.errors import ConfigError


def test_heterogeneous_world_settings_validate_and_name_the_field():
    cfg = validate_config(
        {
            "clients": {
                "count": 3,
                "bandwidth": {"scale": 1.0e6, "profile": {"name": "uniform", "low": 0.5, "high": 1.0}},
                "availability": {"mean_online_s": 100, "mean_offline_s": 20},
                "failure_prob": 0.1,
            },
            "eval": {"every_versions": None, "every_seconds": 30, "time_budgets": [60, 120]},
            "stop": {"virtual_seconds": 120, "target_accuracy": 0.7, "stop_at_target": False},
        }
    )
    assert cfg.clients.bandwidth.scale == 1.0e6 and cfg.eval.time_budgets == [60.0, 120.0]
    assert validate_config({"clients": {"count": 2, "bandwidth": "1.0e7"}}).clients.bandwidth == 1.0e7
    assert validate_config({"clients": {"count": 2, "bandwidth": [1e6, 2e6]}}).clients.bandwidth == [1e6, 2e6]
    for raw, message in [
        ({"clients": {"count": 2, "bandwidth": [1e6]}}, "clients.bandwidth lists 1 values but clients.count is 2"),
        ({"clients": {"failure_prob": 1.0}}, "clients.failure_prob: Input should be less than 1"),
        ({"clients": {"availability": {"mean_online_s": 10}}}, "clients.availability.mean_offline_s: Field required"),
        ({"stop": {"versions": None, "target_accuracy": 0.8, "stop_at_target": False}}, "stop_at_target is false"),
        ({"eval": {"time_budgets": [-1]}}, "eval.time_budgets.0: Input should be greater than 0"),
        ({"clients": {"count": 4}, "schedule": {"name": "fedfa", "concurrency": 5}}, "schedule.concurrency=5 exceeds"),
        ({"schedule": {"name": "fedfa", "mode": "grads"}}, "schedule.mode: Input should be 'models' or 'deltas'"),
    ]:
        with pytest.raises(ConfigError) as err:
            validate_config(raw)
        assert message in str(err.value), str(err.value)
