"""Flower simulation: fedlora's server loop inside a ServerApp, clients on Flower's Ray backend.

`drive` starts Flower's simulation engine with one virtual SuperNode per client and `workers` Ray actors
that run ClientApps in parallel, and runs the server loop in the ServerApp's `main`, where the Grid is. The
clock stays virtual: results are processed in virtual-time order, so the run's numbers equal the
in-process transport's for the same config and seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from fedlora.engine.frozen_base import FrozenBase
from fedlora.flower.client_app import app as client_app
from fedlora.flower.transport import FlowerTransport


class FlowerSimulationTransport(FlowerTransport):
    def __init__(
        self,
        client_spec: str,
        num_clients: int,
        *,
        workers: int = 2,
        worker_cpus: float = 1.0,
        job_timeout_s: float | None = None,
        wait_for_clients_s: float = 600.0,
        base: FrozenBase | None = None,
    ):
        super().__init__(
            client_spec, num_clients, job_timeout_s=job_timeout_s, wait_for_clients_s=wait_for_clients_s, base=base
        )
        self.workers = workers
        self.worker_cpus = worker_cpus

    def backend_config(self) -> dict:
        """Ray reserves `worker_cpus` per actor and gets exactly `workers` actors' worth of CPUs."""
        return {
            "client_resources": {"num_cpus": self.worker_cpus, "num_gpus": 0.0},
            "init_args": {
                "num_cpus": self.workers * self.worker_cpus,
                "num_gpus": 0,
                "include_dashboard": False,
                "logging_level": logging.WARNING,
                "log_to_driver": False,
            },
        }

    def drive(self, run: Callable[[], None]) -> None:
        server_app = ServerApp()

        @server_app.main()
        def main(grid: Grid, context: Context) -> None:
            self.attach(grid)
            run()

        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=self.num_clients,
            backend_config=self.backend_config(),
        )
