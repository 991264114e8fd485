"""The `fedlora` command line (typer)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from fedlora import __version__, catalog, partition_report, research_cli
from fedlora.errors import FedLoraError
from fedlora.flower import commands as flower_commands

# Heavy modules (torch, transformers, flwr) are imported inside the commands, never here: `fedlora --help`
# and `fedlora --version` must answer at once.
app = typer.Typer(add_completion=False, no_args_is_help=True, help="Federated LoRA fine-tuning of language models.")
console = Console()


def print_error(exc: BaseException | str) -> None:
    """One `error:` line; the message is escaped, so brackets in it (`fedlora[flower]`, `a[/b]`) print as typed."""
    console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)


def say(text: str) -> None:
    """A notice of the run (resuming, starting fresh), printed as plain text."""
    console.print(escape(text), soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fedlora {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print fedlora's version and exit"
    ),
) -> None:
    """Federated LoRA fine-tuning of language models."""


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
        summary = run_experiment(cfg, out=out, resume=resume, say=say)
    except FedLoraError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    if summary["stopped_by"] == "rejections":
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted(summary["totals"].get("rejected", {}).items()))
        print_error(
            f"validation.max_rejections_in_a_row: the last {cfg.validation.max_rejections_in_a_row} client replies "
            f"were all rejected ({reasons}); see the 'rejected' events in {summary['run_dir']}/events.jsonl and fix "
            "the clients (or raise the limit)"
        )
        raise typer.Exit(2)
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
        print_error(exc)
        raise typer.Exit(2) from None


@app.command()
def summary(run_dir: Path = typer.Argument(...)) -> None:
    """Print a run directory's summary.json."""
    from fedlora.io.rundir import RunDir

    try:
        summary = RunDir(run_dir).finished_summary()
    except FedLoraError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(summary, indent=2))


# Commands implemented in their own modules register here, one line each.
app.command("methods")(catalog.methods_command)
app.command("partition")(partition_report.partition_command)
app.command("compare")(research_cli.compare)
app.command("report")(research_cli.report)
app.command("config-reference")(research_cli.config_reference)
app.command("serve")(flower_commands.serve_command)
app.command("join")(flower_commands.join_command)


if __name__ == "__main__":  # pragma: no cover
    app()
