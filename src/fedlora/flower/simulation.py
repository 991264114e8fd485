"""Flower simulation: fedlora's server loop inside a ServerApp, clients on Flower's Ray backend.

`drive` starts Flower's simulation engine with one virtual SuperNode per client and `workers` Ray actors
that run ClientApps in parallel, and runs the server loop in the ServerApp's `main`, where the Grid is. The
clock stays virtual: results are processed in virtual-time order, so the run's numbers equal the
in-process transport's for the same config and seed.

Ray's start (about 4 s) does not depend on the built run, so `start_ray` runs it while fedlora loads its
data and model (`experiment.build_alongside`); Flower's backend then finds Ray running and uses it.
"""

from __future__ import annotations

import logging
import os
import sys
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
            "init_args": ray_init_args(self.workers, self.worker_cpus),
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


def ray_init_args(workers: int, worker_cpus: float) -> dict:
    return {
        "num_cpus": workers * worker_cpus,
        "num_gpus": 0,
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
    }


def start_ray(workers: int, worker_cpus: float) -> None:
    """Start Ray as Flower's backend would (same arguments, the driver's sys.path passed on to the actors,
    which an editable install or a test's path needs); a Ray already running is left as it is."""
    import ray

    if ray.is_initialized():
        return
    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    os.environ["PYTHONPATH"] = pythonpath
    ray.init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **ray_init_args(workers, worker_cpus))


def stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
