"""The deployed server: fedlora's run loop inside a Flower ServerApp that a SuperLink starts for `fedlora serve`.

`fedlora serve` submits a Flower App whose ServerApp is `server_app` below, with the run's settings in the
run config (`experiment`: the resolved config file, `out`: the run directory, `resume`, and `nodes`: which
Flower node id each client's registered key got). Its `main` runs `run_experiment` exactly as `fedlora run`
does, passing in a `DeploymentTransport` on the Grid this ServerApp was given (as Flower's
`Strategy.start(grid=...)` is handed its Grid; nothing global). The clock is the wall clock
(`engine/wallclock.py`), so asynchronous schedules update on real arrival.

The transport differs from the simulation one in three ways that matter on a real network:
- a node is accepted as client c only if it is the node Flower authenticated with client c's registered
  key (`accepts`), so a registered client cannot pose as another one;
- a job for a client whose node is offline is held back, not pushed, until the node is back or the job
  times out: the schedule re-dispatches to a departed client without spinning;
- replies are pulled at most every `pull_every_s`, not on every tick of the server loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedlora.engine.frozen_base import FrozenBase
from fedlora.engine.transport.base import JobFailed
from fedlora.errors import ConfigError
from fedlora.flower.serve import CLIENT_APP, SERVER_APP, parse_nodes
from fedlora.flower.transport import FlowerTransport
from fedlora.jobs import Job, JobResult
from fedlora.transports import DEPLOYMENT_HINT

__all__ = ["CLIENT_APP", "SERVER_APP", "DeploymentTransport", "server_app"]

log = logging.getLogger(__name__)


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment of this Flower run (see the module docstring for the run config keys)."""
    from fedlora.config import load_config
    from fedlora.experiment import run_experiment
    from fedlora.flower.spec import ClientSpec

    settings = context.run_config
    nodes = parse_nodes(str(settings.get("nodes", "")))
    cfg = load_config(str(settings["experiment"]))
    t = cfg.transport

    def connect(components) -> DeploymentTransport:
        return DeploymentTransport.from_config(
            ClientSpec.of(cfg).to_text(),
            cfg.clients.count,
            t.job_timeout_s,
            t.wait_for_clients_s,
            grid=grid,
            nodes=nodes,
            base=components.base,
        )

    summary = run_experiment(
        cfg,
        out=str(settings["out"]),
        resume=bool(settings.get("resume", False)),
        say=lambda text: print(f"fedlora: {text}", flush=True),
        connect=connect,
    )
    totals = summary["totals"]
    print(
        f"fedlora: run finished ({summary['stopped_by']}): {totals['versions']} versions, "
        f"rejected {totals['rejected']}, failed {totals['failed']}; run directory {summary['run_dir']}",
        flush=True,
    )


class DeploymentTransport(FlowerTransport):
    """The Flower transport on a SuperLink's Grid, for SuperNodes on other machines (see the module docstring)."""

    def __init__(
        self,
        client_spec: str,
        num_clients: int,
        *,
        job_timeout_s: float | None = None,
        wait_for_clients_s: float = 600.0,
        pull_every_s: float = 0.25,
        online_every_s: float = 1.0,
        base: FrozenBase | None = None,
    ):
        super().__init__(
            client_spec,
            num_clients,
            poll_s=0.25,
            job_timeout_s=job_timeout_s,
            wait_for_clients_s=wait_for_clients_s,
            base=base,
        )
        self.pull_every_s = pull_every_s
        self.online_every_s = online_every_s
        self.nodes: dict[int, int] | None = None  # client id -> the node id of its registered key; None: any
        self._grid: Grid | None = None  # the ServerApp's Grid, attached when the run is driven
        self._held: dict[int, tuple[Job, float]] = {}  # job id -> (job, submitted at): its node is offline
        self._online: set[int] = set()
        self._online_at = float("-inf")
        self._pulled_at = float("-inf")
        self._ready: list[int] = []

    @classmethod
    def from_config(
        cls,
        client_spec: str,
        num_clients: int,
        job_timeout_s: float | None,
        wait_s: float,
        *,
        grid: Grid | None = None,
        nodes: dict[int, int] | None = None,
        base: FrozenBase | None = None,
    ) -> DeploymentTransport:
        """The transport on the `grid` of the ServerApp now running, binding clients to `nodes`; without a Grid
        (`fedlora run` of a deployment config) a ConfigError says how to start it."""
        if grid is None:
            raise ConfigError(DEPLOYMENT_HINT)
        transport = cls(client_spec, num_clients, job_timeout_s=job_timeout_s, wait_for_clients_s=wait_s, base=base)
        transport.nodes, transport._grid = nodes, grid
        return transport

    def drive(self, run: Callable[[], None]) -> None:
        if self._grid is None:
            raise ConfigError(DEPLOYMENT_HINT)
        log.info("waiting for %d clients to join", self.num_clients)
        self.attach(self._grid)
        log.info("all clients joined: %s", self.node_of)
        run()

    def accepts(self, client: int, node: int) -> bool:
        return self.nodes is None or self.nodes.get(client) == node

    def online(self, fresh: bool = False) -> set[int]:
        """The node ids Flower currently lists as connected (asked at most every `online_every_s`)."""
        assert self.grid is not None
        now = time.monotonic()
        if fresh or now - self._online_at > self.online_every_s:
            self._online = set(self.grid.get_node_ids())
            self._online_at = now
        return self._online

    def submit(self, job: Job) -> None:
        if self.grid is not None and self.node_of.get(job.client) not in self.online():
            self._held[job.job_id] = (job, time.monotonic())
            return
        super().submit(job)

    def poll(self) -> list[int]:
        now = time.monotonic()
        if now - self._pulled_at < self.pull_every_s:
            return self._ready
        self._pulled_at = now
        if self._held:
            online = self.online()
            for job_id, (job, _) in list(self._held.items()):
                if self.node_of.get(job.client) in online:
                    del self._held[job_id]
                    super().submit(job)
        self._ready = super().poll()
        return self._ready

    def overdue(self) -> list[int]:
        late = super().overdue()
        if self.job_timeout_s is not None:
            now = time.monotonic()
            late += [j for j, (_, t) in self._held.items() if now - t > self.job_timeout_s]
        return late

    def collect(self, job: Job) -> JobResult:
        self._ready = [j for j in self._ready if j != job.job_id]
        while job.job_id in self._held:  # wait for its node to come back (the wall-clock server never does)
            if job.job_id in self.overdue():
                del self._held[job.job_id]
                raise JobFailed(job, "timeout")  # its client never came back
            self._pulled_at = float("-inf")
            self.poll()
            if job.job_id in self._held:
                time.sleep(self.poll_s)
        return super().collect(job)

    def close(self) -> None:
        super().close()
        self._held.clear()
