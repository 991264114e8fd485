"""The command line's own behaviour: version, method list, fast help, and error lines printed as typed."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from fedlora.cli import app

runner = CliRunner()


def test_version_prints_the_package_version():
    from fedlora import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"fedlora {__version__}"


def test_methods_lists_every_registered_name_one_line_each():
    from fedlora.aggregators import AGGREGATORS
    from fedlora.clients.ranks import RANK_POLICIES
    from fedlora.data.partitioners import PARTITIONERS
    from fedlora.schedules import SCHEDULES

    result = runner.invoke(app, ["methods"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for title, names in [
        ("aggregators", AGGREGATORS.names()),
        ("schedules", SCHEDULES.names()),
        ("partitioners", PARTITIONERS.names()),
        ("rank policies", RANK_POLICIES.names()),
        ("speed profiles", ["constant", "uniform", "normal", "pareto", "zipf", "list"]),
    ]:
        start = next(i for i, line in enumerate(lines) if line.startswith(title))
        section = lines[start + 1 : start + 1 + len(names)]
        assert [line.split()[0] for line in section] == names, title
        assert all(len(line.split(maxsplit=1)) == 2 for line in section)  # a description on the same line


def test_speed_profiles_are_described_exactly_once_each():
    from typing import get_args

    from fedlora.clients.speeds import SPEED_PROFILES
    from fedlora.config import SpeedConfig

    assert set(SPEED_PROFILES) == set(get_args(SpeedConfig.model_fields["name"].annotation))


def test_help_imports_no_heavy_module():
    code = (
        "import sys; from fedlora.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'flwr', 'datasets', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_an_error_message_with_brackets_prints_as_typed():
    result = runner.invoke(app, ["show-config", "configs/tiny.yaml", "--set", "a[/b]=1"])
    assert result.exit_code == 2, result.output
    assert "a[/b]: unknown key" in result.output


def test_the_install_hint_keeps_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flwr", None)  # Flower not installed
    result = runner.invoke(app, ["join", "--server", "127.0.0.1:9092", "--client-id", "0", "--data", "."])
    assert result.exit_code == 2
    assert 'pip install "fedlora[flower]"' in result.output


def test_the_tensorboard_hint_keeps_its_extra(glue_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # tensorboard not installed
    args = ["run", "configs/tiny.yaml", "--set", f"task.data_dir={glue_dir}", "--set", "output.tensorboard=true"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "pip install 'fedlora[tensorboard]'" in result.output and not (tmp_path / "run").exists()


def test_a_yaml_error_is_one_line_with_exit_status_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stop: {versions: 3\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.strip()]  # one line, however long
    assert line.startswith(f"error: {bad}:2:") and "YAML syntax error" in line


def test_summary_of_an_unfinished_run_is_an_error_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")
    result = runner.invoke(app, ["summary", str(run)])
    assert result.exit_code == 2 and "unfinished run" in result.output and "Traceback" not in result.output


def test_a_run_whose_every_reply_is_rejected_stops_with_exit_status_2(glue_dir, tmp_path):
    # a bound no update meets: every reply is rejected, so the run would otherwise redispatch forever
    sets = [f"task.data_dir={glue_dir}", "validation={max_update_norm: 1.0e-12, max_rejections_in_a_row: 5}"]
    args = ["run", "configs/tiny.yaml", *[a for s in sets for a in ("--set", s)], "--out", str(tmp_path / "run")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "validation.max_rejections_in_a_row" in line and "over_norm x5" in line
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped_by"] == "rejections" and summary["totals"]["versions"] == 0
    assert sum(summary["totals"]["rejected"].values()) == 5
