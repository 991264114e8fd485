import pytest

from fedlora.config import load_config, validate_config
from fedlora.errors import ConfigError


def test_defaults_validate_and_overrides_apply(tmp_path):
    cfg = load_config("configs/tiny.yaml", ["schedule.per_round=2", "lora.target_modules=[query]", "seed=7"])
    assert cfg.schedule.options["per_round"] == 2
    assert cfg.lora.target_modules == ["query"]
    assert cfg.seed == 7


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"aggregator": {"name": "nope"}}, "aggregator.name: unknown aggregator 'nope'; choose one of:"),
        ({"schedule": {"name": "fedavg", "per_round": 0}}, "schedule.per_round: Input should be greater"),
        ({"schedule": {"name": "fedavg", "rounds": 3}}, "schedule.rounds: unknown key"),
        ({"task": {"name": "sst2"}}, "task.name: Input should be 'mrpc', 'rte' or 'qqp'"),
        ({"lora": {"rnk": 3}}, "lora.rnk: unknown key"),
        ({"partition": {"name": "label", "alpha": -1}}, "partition.alpha: Input should be greater than 0"),
        ({"training": {"local_epochs": 1}}, "set exactly one of training.local_steps and training.local_epochs"),
        ({"stop": {"versions": None}}, "stop: set at least one of"),
        ({"clients": {"count": 2, "speeds": {"name": "list", "values": [1]}}}, "clients.speeds.values has 1"),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(raw, message):
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    assert message in str(err.value)


def test_override_syntax_errors_are_clear():
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config("configs/tiny.yaml", ["schedule.per_round"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("configs/nope.yaml")


def test_every_shipped_config_validates():
    from pathlib import Path

    for path in sorted(Path("configs").rglob("*.yaml")):
        load_config(path)
