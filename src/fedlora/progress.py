"""The terminal progress display of a run: a rich bar (version, virtual time, last dev metric) and one line per
evaluation point. An engine observer, so the run loop knows nothing about terminals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedlora.engine.observer import Observer

if TYPE_CHECKING:
    from fedlora.engine.server import Server


class Progress(Observer):
    def __init__(self, metric: str, total_versions: int | None, enabled: bool):
        self.enabled = enabled
        self.metric = metric
        self.total = total_versions
        self._progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("[bold]fedlora"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
            )
            self._task = self._progress.add_task("run", total=self.total, status="starting")

    def __enter__(self) -> Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def new_version(self, server: Server) -> None:
        if self._progress is None:
            return
        last = server.history[-1]["metrics"] if server.history else {}
        status = f"v{server.version} t={server.now:,.0f}s {self.metric}={last.get(self.metric, float('nan')):.4f}"
        status += _epsilon_text(server)
        self._progress.update(self._task, completed=server.version, status=status)

    def evaluated(self, server: Server) -> None:
        if self._progress is None:
            return
        p = server.history[-1]
        metrics = " ".join(f"{k}={v:.4f}" for k, v in p["metrics"].items())
        for block, label in (("local", "local"), ("personal", "personal")):
            if p.get(block, {}).get("mean"):  # the global model (or each client's own) on the clients' splits
                metrics += f"  {label} mean {self.metric}={p[block]['mean'].get(self.metric, float('nan')):.4f}"
                metrics += f" worst={p[block]['worst'].get(self.metric, float('nan')):.4f}"
        metrics += _epsilon_text(server)
        self._progress.console.print(f"version {p['version']:>4}  virtual {p['virtual_s']:>10,.1f}s  {metrics}")
        self.new_version(server)


def _epsilon_text(server: Server) -> str:
    """' eps=1.23 (delta=1e-05)' under privacy (the epsilon spent so far), else ''."""
    privacy = getattr(server, "privacy", None)
    if privacy is None:
        return ""
    return f"  eps={privacy.epsilon():.3g} (delta={privacy.settings.delta:g})"
