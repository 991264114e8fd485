"""The `fedlora serve` and `fedlora join` commands (docs/deployment.md); Flower is imported only when they run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from fedlora.errors import FedLoraError

console = Console()


def serve_command(
    config: Path = typer.Argument(..., help="YAML experiment config with transport.name: flower_deployment"),
    set_: list[str] = typer.Option([], "--set", help="override a field: --set stop.versions=5 (repeatable)"),
    out: Path | None = typer.Option(None, "--out", help="run directory (default: output.dir/output.name)"),
    resume: bool = typer.Option(False, "--resume", help="continue a run directory from its last checkpoint"),
    flower_dir: Path | None = typer.Option(
        None, "--flower-dir", help="Flower's state and logs (default: the run directory's name + '-flower')"
    ),
) -> None:
    """Serve a deployment: a Flower SuperLink (TLS, SuperNode auth) running this experiment for joined clients."""
    from fedlora.config import load_config
    from fedlora.experiment import default_run_name

    try:
        cfg = load_config(config, set_)
        from fedlora.flower.serve import serve

        run_dir = out if out is not None else Path(cfg.output.dir) / (cfg.output.name or default_run_name(cfg))
        summary = serve(cfg, run_dir, resume=resume, flower_dir=flower_dir)
    except FedLoraError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("stopped")
        raise typer.Exit(130) from None
    final = summary["final"] or {"metrics": {}}
    metrics = " ".join(f"{k}={v:.4f}" for k, v in final["metrics"].items() if k != "loss")
    totals = summary["totals"]
    console.print(
        f"done: {totals['versions']} versions in {summary['timing']['real_seconds']:,.0f} s; final {metrics}; "
        f"rejected {totals['rejected']}, failed {totals['failed']}; run directory {summary['run_dir']}"
    )


def join_command(
    server: str = typer.Option(..., "--server", help="the SuperLink's HOST:PORT (transport.address of the server)"),
    client_id: int = typer.Option(..., "--client-id", help="this client's id, 0 .. clients.count-1"),
    data: Path = typer.Option(..., "--data", help="this client's own data: a GLUE root or task folder"),
    root_cert: Path | None = typer.Option(
        None, "--root-cert", help="the CA certificate that signed the server's certificate (ca.crt)"
    ),
    auth_key: Path | None = typer.Option(
        None, "--auth-key", help="this client's private key (client_<id>); its public key is registered on the server"
    ),
    insecure: bool = typer.Option(False, "--insecure", help="no TLS (only against a server with insecure: true)"),
    flower_dir: Path | None = typer.Option(None, "--flower-dir", help="Flower's state (default: a temporary folder)"),
) -> None:
    """Join a deployment as one client: a Flower SuperNode that trains on this machine's own data."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s fedlora join: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Runtime API call otherwise
    try:
        from fedlora.flower import require_flower

        require_flower()
        from fedlora.flower.join import join

        join(server, client_id, data, root_cert=root_cert, auth_key=auth_key, insecure=insecure, home=flower_dir)
    except FedLoraError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("stopped")
