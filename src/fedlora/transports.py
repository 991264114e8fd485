"""WHERE clients run (`transport.name`): the transport a built run gets unless the caller passes its own.

In-process trains every client on the run's own model host. Flower's simulation starts its own engine;
Flower is imported only when chosen. A deployment runs inside the ServerApp of `fedlora serve`, which has
the Grid: it passes its transport in (`run_experiment(..., connect=...)`, see flower/deploy.py), so asking
for one here means the run was started the wrong way, and the error says how to start it.

Flower's simulation engine (Ray) starts in about 4 s whatever the run, so `build_alongside` starts it while
the run's data and model load, instead of after them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from fedlora.config import ExperimentConfig
from fedlora.engine.transport.base import Transport
from fedlora.engine.transport.inprocess import InProcessTransport
from fedlora.errors import ConfigError

if TYPE_CHECKING:
    from fedlora.experiment import Components

DEPLOYMENT_HINT = (
    "transport.name=flower_deployment runs under a Flower SuperLink: start it with "
    "`fedlora serve CONFIG` (docs/deployment.md), not `fedlora run`"
)


T = TypeVar("T")


def build_alongside(cfg: ExperimentConfig, build: Callable[[], T]) -> T:
    """`build()`, with the transport's engine starting meanwhile where it needs nothing built (Ray, in the main
    thread as it expects; the build in a worker thread). An error of the build (bad config, data, path) is
    the one raised, and the engine is stopped again."""
    if cfg.transport.name != "flower_simulation":
        return build()
    from fedlora.flower import require_flower

    require_flower()
    from fedlora.flower.simulation import start_ray, stop_ray

    with ThreadPoolExecutor(1, thread_name_prefix="fedlora-build") as pool:
        built = pool.submit(build)
        try:
            start_ray(cfg.transport.workers, cfg.transport.worker_cpus)
        except Exception:
            built.result()  # a config or data error is the one to fix first
            raise
        try:
            return built.result()
        except BaseException:
            stop_ray()
            raise


def make_transport(cfg: ExperimentConfig, components: Components) -> Transport:
    c = components
    if cfg.transport.name == "inprocess":
        return InProcessTransport(
            c.prep.host, c.prep.train, c.prep.partitions, c.spec, c.base, batch_jobs=cfg.transport.batch_jobs
        )
    if cfg.transport.name == "flower_simulation":
        from fedlora.flower import require_flower

        require_flower()
        from fedlora.flower.simulation import FlowerSimulationTransport
        from fedlora.flower.spec import ClientSpec

        t = cfg.transport
        return FlowerSimulationTransport(
            ClientSpec.of(cfg).to_text(),
            cfg.clients.count,
            workers=t.workers,
            worker_cpus=t.worker_cpus,
            job_timeout_s=t.job_timeout_s,
            wait_for_clients_s=t.wait_for_clients_s,
            base=c.base,
        )
    if cfg.transport.name == "flower_deployment":
        raise ConfigError(DEPLOYMENT_HINT)
    raise ConfigError(f"transport.name={cfg.transport.name!r} is not a transport")
