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
        ({"task": {"name": "sst2"}}, "task.name: Input should be 'mrpc', 'rte', 'qqp', 'text_classification' or"),
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


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 0\nschedule: {name: fedavg, per_round: 4\nstop: {versions: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3:") and "YAML syntax error" in message and "\n" not in message


def test_a_yaml_error_in_a_set_value_says_how_to_quote_it():
    with pytest.raises(ConfigError, match=r"--set 'schedule=\{name: fedbuff': the value is not valid YAML"):
        load_config("configs/tiny.yaml", ["schedule={name: fedbuff"])


def test_a_config_that_is_not_utf8_empty_or_a_directory_is_refused_with_the_fix(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"seed: 0\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin\.yaml:2: not UTF-8 text \(byte 0xe9\); save the config as UTF-8"):
        load_config(latin)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty.*write `\{\}` in it"):
        load_config(empty)
    (tmp_path / "all-defaults.yaml").write_text("{}\n")
    assert load_config(tmp_path / "all-defaults.yaml").schedule.name == "fedavg"  # on purpose: still allowed
    with pytest.raises(ConfigError, match=r"is a directory; give a YAML config file such as .*all-defaults\.yaml"):
        load_config(tmp_path)


def test_switching_a_method_with_set_names_whose_options_are_left_over():
    with pytest.raises(ConfigError) as err:
        load_config("configs/tiny.yaml", ["schedule.name=fedbuff"])  # tiny.yaml's schedule has per_round
    message = str(err.value)
    assert "schedule.per_round: per_round is an option of fedavg; fedbuff takes: " in message
    assert "buffer_size" in message and "concurrency" in message and "check the spelling" not in message
    with pytest.raises(ConfigError, match="schedule.per_rund: unknown key"):  # a typo is still a typo
        load_config("configs/tiny.yaml", ["schedule.per_rund=3"])


def test_a_switched_section_keeps_only_the_options_of_its_method():
    cfg = load_config("configs/tiny.yaml", ["schedule.name=fedbuff", "schedule.buffer_size=2"], switched=["schedule"])
    assert cfg.schedule.name == "fedbuff" and cfg.schedule.options["buffer_size"] == 2
    assert "per_round" not in (cfg.schedule.model_extra or {})
    with pytest.raises(ConfigError, match="schedule.per_rund: unknown key"):
        load_config("configs/tiny.yaml", ["schedule.name=fedbuff", "schedule.per_rund=1"], switched=["schedule"])
