"""The researcher's commands: `fedlora compare`, `fedlora report`, `fedlora config-reference`.

Kept apart from cli.py so that file stays a list of registrations; heavy imports stay inside the bodies so
`fedlora --help` is fast.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from fedlora.errors import FedLoraError

console = Console()


def compare(
    config: Path = typer.Argument(..., help="YAML experiment config (the base of every cell)"),
    vary: list[str] = typer.Option(
        [], "--vary", help="a grid axis: --vary aggregator.name=hlora,zeropad (repeatable; cells = product)"
    ),
    seeds: str = typer.Option("1", "--seeds", help="seeds per cell: a count (3 = seeds 0,1,2) or a list (0,5,7)"),
    out: Path | None = typer.Option(None, "--out", help="grid directory (default: output.dir/compare-CONFIGNAME)"),
    jobs: int = typer.Option(1, "--jobs", help="cells run in parallel processes (capped so jobs x threads <= cores)"),
    set_: list[str] = typer.Option([], "--set", help="override a field in every cell: --set stop.versions=20"),
    report: bool = typer.Option(True, "--report/--no-report", help="write OUT/report when the grid is done"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show the progress bars"),
) -> None:
    """Run a grid of experiments over --vary values x --seeds; skip finished cells, resume interrupted ones."""
    from fedlora.sweep import compare as run_compare

    try:
        grid, outcomes = run_compare(
            config, vary, seeds, set_, out, jobs=jobs, progress=progress, console=console, on_grid=_announce
        )
    except FedLoraError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    counts = {a: sum(o.action == a for o in outcomes) for a in ("ran", "resumed", "skipped", "failed")}
    console.print(
        f"grid {grid.out}: " + ", ".join(f"{n} {a}" for a, n in counts.items() if n) + f" of {len(outcomes)} cells"
    )
    if counts["failed"]:
        for o in outcomes:
            if o.action == "failed":
                console.print(f"[red]failed[/red] {escape(str(o.cell.path))}: {escape(str(o.error))}", soft_wrap=True)
        console.print("rerun the same command to retry the failed cells (finished cells are skipped)")
        raise typer.Exit(1)
    if report:
        _report([grid.out], grid.out / "report", [], None, None, True, _command_line())


def _announce(grid) -> None:
    axes = " x ".join(f"{a.key}({len(a.labels)})" for a in grid.axes) or "no --vary"
    console.print(f"grid: {axes} x {len(grid.seeds)} seeds = {len(grid.cells)} cells in {grid.out}")


def report(
    run_dirs: list[Path] = typer.Argument(..., help="run directories or parents of run directories (compare output)"),
    out: Path | None = typer.Option(None, "--out", help="report directory (default: DIR/report for one DIR given)"),
    group_by: list[str] = typer.Option(
        [], "--group-by", help="group by these config keys (repeatable); default: the config minus the seed"
    ),
    target: float | None = typer.Option(
        None, "--target", help="time to this dev metric value, from each run's history (default: summary's)"
    ),
    metric: str | None = typer.Option(None, "--metric", help="metric of the figures (default: the runs' eval.metric)"),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="write the PNG figures"),
) -> None:
    """Tables (markdown, CSV) of mean and std over seeds, and curves with seed bands, from run directories."""
    _report(run_dirs, out, group_by, target, metric, figures, _command_line())


def _report(run_dirs, out, group_by, target, metric, figures, command) -> None:
    from fedlora.report import make_report, print_table

    try:
        rep = make_report(run_dirs, out, group_by, target=target, metric=metric, figures=figures, command=command)
    except FedLoraError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    print_table(rep.table, console)
    for p in rep.unfinished:
        console.print(f"[yellow]not finished, left out:[/yellow] {p}")
    console.print(f"report: {rep.out / 'report.md'} (+ summary.csv, runs.csv, {len(rep.files) - 3} figures)")


def config_reference(
    out: Path | None = typer.Option(None, "--out", help="write to this file instead of printing"),
) -> None:
    """Print the config reference (markdown) generated from the config models and every registered option."""
    from fedlora.docs_reference import generate

    text = generate()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        console.print(f"wrote {out}")


def _command_line() -> str:
    return "fedlora " + " ".join(shlex.quote(a) for a in sys.argv[1:])
