"""From the validated config to the run's privacy settings: the accounting it gets, the noise solved for a
target epsilon, and the refusal to start a run whose budget is spent before it could finish.

Accounting per schedule (docs/privacy.md says why):

- `fedavg` with central noise, sampling `per_round` of `count` clients uniformly at random each round (no
  over-selection, no deadline, no availability model, fewer than all clients): the subsampled Gaussian
  mechanism at q = per_round / count, composed over the versions run;
- every other case (FedBuff, FedAsync, FedFa, FedAvg otherwise, and any client-side noise): each client's own
  releases composed, without amplification by subsampling. The asynchronous schedules draw among *idle*
  clients, which depends on timing, not on a fresh uniform sample: no amplification is claimed for them.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from fedlora.errors import ConfigError
from fedlora.privacy.accounting import planned_epsilon, require_dp_accounting, solve_noise_multiplier
from fedlora.privacy.client import ClientNoise
from fedlora.privacy.engine import PrivacySettings

if TYPE_CHECKING:
    from fedlora.config import ExperimentConfig


def sampling_rate(where: str, schedule: str, options: Any, num_clients: int, availability: bool) -> float | None:
    """q when every version samples clients uniformly at random (central noise, FedAvg); else None."""
    if where != "server" or schedule != "fedavg" or availability:
        return None
    if getattr(options, "over_select", 0.0) or getattr(options, "deadline_s", None) is not None:
        return None
    if getattr(options, "selection", "uniform") != "uniform":  # a schedule that picks clients otherwise
        return None
    per_round = min(getattr(options, "per_round", None) or num_clients, num_clients)
    q = per_round / num_clients
    return q if q < 1.0 else None


@functools.lru_cache(maxsize=64)
def _solve(target: float, delta: float, kind: str, releases: int, q: float | None) -> float:
    return solve_noise_multiplier(target, delta, kind, releases, q)  # type: ignore[arg-type]


def privacy_settings(cfg: ExperimentConfig) -> PrivacySettings | None:
    """The resolved privacy settings of `cfg` (None without a privacy section); ConfigError if the budget
    (stop.epsilon) cannot pay for the planned run."""
    p = cfg.privacy
    if p is None:
        return None
    require_dp_accounting()
    q = sampling_rate(
        p.where,
        cfg.schedule.name,
        cfg.schedule.typed_options(),
        cfg.clients.count,
        cfg.clients.availability is not None,
    )
    versions = cfg.stop.versions
    if p.epsilon is not None:
        if versions is None:  # the config's cross-checks refuse this already
            raise ConfigError("privacy.epsilon: solving the noise for a target epsilon needs stop.versions")
        sigma = _solve(float(p.epsilon), float(p.delta), p.accountant, int(versions), q)
    else:
        sigma = float(p.noise_multiplier or 0.0)
    budget = cfg.stop.epsilon if cfg.stop.epsilon is not None else p.epsilon
    settings = PrivacySettings(
        clip_norm=float(p.clip_norm),
        noise_multiplier=sigma,
        delta=float(p.delta),
        where=p.where,
        accountant=p.accountant,
        sampling_rate=q,
        budget=budget,
        target_epsilon=p.epsilon,
        seed=cfg.seed,
    )
    if budget is not None:
        check_budget(settings, versions)
    return settings


def check_budget(s: PrivacySettings, versions: int | None) -> None:
    """Refuse to start a run that cannot stay within stop.epsilon: one release already exceeds it, or (the
    subsampled ledger, where the plan is exact) the planned versions would."""
    budget = float(s.budget)  # type: ignore[arg-type]
    first = planned_epsilon(s.noise_multiplier, s.delta, s.accountant, 1, s.sampling_rate)
    if not first <= budget:
        raise ConfigError(
            f"stop.epsilon: one version already spends epsilon={_fmt(first)} > {budget} at "
            f"privacy.noise_multiplier={s.noise_multiplier:.4g}; raise the noise multiplier or the budget"
        )
    if s.sampling_rate is not None and versions is not None:
        planned = planned_epsilon(s.noise_multiplier, s.delta, s.accountant, versions, s.sampling_rate)
        if planned > budget * (1 + 1e-6):
            raise ConfigError(
                f"stop.epsilon: stop.versions={versions} would spend epsilon={_fmt(planned)} > {budget} "
                f"(q={s.sampling_rate:.4g}, noise multiplier {s.noise_multiplier:.4g}); lower stop.versions, "
                "raise privacy.noise_multiplier, or give privacy.epsilon to solve the noise for the budget"
            )


def client_noise(s: PrivacySettings | None) -> ClientNoise | None:
    """What local training applies: the clip and noise of client-side DP (None under central noise)."""
    if s is None or s.where != "client":
        return None
    return ClientNoise(clip_norm=s.clip_norm, noise_multiplier=s.noise_multiplier, seed=s.seed)


def _fmt(eps: float) -> str:
    return "inf" if not math.isfinite(eps) else f"{eps:.4g}"
