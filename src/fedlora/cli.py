"""The `fedlora` command line (typer)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from fedlora import partition_report, research_cli
from fedlora.errors import FedLoraError
from fedlora.flower import commands as flower_commands

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Federated LoRA fine-tuning of language models.")
console = Console()


@app.command()
def run(
    config: Path = typer.Argument(..., help="YAML experiment config"),
    set_: list[str] = typer.Option([], "--set", help="override a field: --set schedule.per_round=5 (repeatable)"),
    out: Path | None = typer.Option(None, "--out", help="run directory (default: output.dir/output.name)"),
    resume: bool = typer.Option(False, "--resume", help="continue a run directory from its last checkpoint"),
) -> None:
    """Run one federated experiment and write its run directory."""
    from fedlora.config import load_config
    from fedlora.experiment import run_experiment

    try:
        cfg = load_config(config, set_)
        summary = run_experiment(cfg, out=out, resume=resume)
    except FedLoraError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    final = summary["final"] or {"metrics": {}}
    metrics = " ".join(f"{k}={v:.4f}" for k, v in final["metrics"].items() if k != "loss")
    console.print(
        f"done: {summary['totals']['versions']} versions, {summary['totals']['virtual_seconds']:,.0f} virtual s, "
        f"{summary['timing']['real_seconds']:,.0f} real s; final {metrics}; run directory {summary['run_dir']}"
    )


@app.command("show-config")
def show_config(
    config: Path = typer.Argument(...),
    set_: list[str] = typer.Option([], "--set"),
) -> None:
    """Print the validated config with every default filled in."""
    from fedlora.config import dump_config, load_config

    try:
        typer.echo(dump_config(load_config(config, set_)))
    except FedLoraError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def summary(run_dir: Path = typer.Argument(...)) -> None:
    """Print a run directory's summary.json."""
    typer.echo(json.dumps(json.loads((run_dir / "summary.json").read_text()), indent=2))


# Commands implemented in their own modules register here, one line each.
app.command("partition")(partition_report.partition_command)
app.command("compare")(research_cli.compare)
app.command("report")(research_cli.report)
app.command("config-reference")(research_cli.config_reference)
app.command("serve")(flower_commands.serve_command)
app.command("join")(flower_commands.join_command)


if __name__ == "__main__":  # pragma: no cover
    app()
