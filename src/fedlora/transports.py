"""WHERE clients run (`transport.name`): the transport a built run gets unless the caller passes its own.

In-process trains every client on the run's own model host. Flower's simulation starts its own engine;
Flower is imported only when chosen. A deployment runs inside the ServerApp of `fedlora serve`, which has
the Grid: it passes its transport in (`run_experiment(..., connect=...)`, see flower/deploy.py), so asking
for one here means the run was started the wrong way, and the error says how to start it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
