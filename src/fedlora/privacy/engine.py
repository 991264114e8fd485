"""Client-level differential privacy as one step of the engine, the same for every aggregator and schedule.

`PrivacyEngine` sits between a client's arrival and the combination (central DP, `where: server`), or
counts each job a client noises itself (`where: client`, `privacy.client`). The server calls it at four
points and nowhere else: `check_arrival` (an update may change only what its job trains), `release_allowed`
before a combination or `dispatch_allowed` before a job (the budget, `stop.epsilon`), `combine` instead of
the aggregator's own (clip, combine, add noise), and `spend` once a combination is the new version.

Central noise. A combination's terms are the schedule's [(w, adapter)]; the terms that are client updates
are those the server tracks to a job. Client c's clipped contribution to the combination has norm at most
C * S_c, S_c = sum of |w| over c's terms (its L2 sensitivity under add/remove-one-client). Gaussian noise of
std = sigma * C * max_c S_c therefore gives every client an effective noise multiplier sigma_c =
std / (C S_c) >= sigma, which is what the accountant composes for it (`accounting.Accountant`). The noise
goes where the aggregator combines: on the combined factors a client could change (the union of the jobs'
`trains`) and the head, or, in product space, on the dense sum before the truncated SVD.

Noise draws derive from (run seed, "dp-noise", version, tensor); a client's own noise from (run seed,
"dp-client-noise", client, client job): deterministic, and the same on every transport and after a resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fedlora.jobs import Job
from fedlora.lora.adapter import Adapter
from fedlora.lora.algebra import Term
from fedlora.privacy.accounting import Accountant, AccountantKind
from fedlora.privacy.mechanism import (
    add_noise,
    check_frozen,
    clip_scale,
    clipped_terms,
    noise_std,
    noised_coordinates,
    noised_product_combine,
    update_norm,
)

Where = Literal["server", "client"]


@dataclass(frozen=True)
class PrivacySettings:
    """The resolved privacy section: the noise multiplier is solved already when a target epsilon was given."""

    clip_norm: float
    noise_multiplier: float
    delta: float
    where: Where = "server"
    accountant: AccountantKind = "rdp"
    sampling_rate: float | None = None  # the subsampled ledger (uniform FedAvg, central noise); None: composed
    budget: float | None = None  # stop.epsilon
    target_epsilon: float | None = None  # privacy.epsilon, when the noise was solved for it
    seed: int = 0


@dataclass
class Release:
    """What one combination released: the noise, the clients in it and the noise multiplier each saw."""

    std: float
    sigmas: dict[int, float]
    clipped: int
    updates: int
    norm_max: float
    coordinates: int = 0  # numbers noised (noise norm = std sqrt(coordinates))


class PrivacyEngine:
    def __init__(self, settings: PrivacySettings, space: str | None, rank: int, options: Any = None, agg_seed: int = 0):
        """`space` is the aggregator's `privacy_space` ("factor", "product"; None: central DP unsupported),
        `rank` the server's r_max, `options` the aggregator's (product space reads `scaling` and `sigma`)."""
        self.settings = settings
        self.space = space
        self.rank = int(rank)
        self.scaled = getattr(options, "scaling", "effective") == "effective"
        self.sigma_factor = getattr(options, "sigma", "B")
        self.agg_seed = agg_seed
        s = settings
        self.accountant = Accountant(s.accountant, s.delta, s.noise_multiplier, s.sampling_rate)
        self.pending: Release | None = None
        self.last_diagnostics: dict[str, float] = {}
        # over the run (central DP): client updates combined, how many were clipped, the largest norm seen
        self.totals = {"updates": 0, "clipped": 0, "norm_max": 0.0, "noised_coordinates": 0}

    @property
    def central(self) -> bool:
        return self.settings.where == "server"

    # ----- epsilon -----------------------------------------------------------------------------------------
    def epsilon(self) -> float:
        return self.accountant.epsilon()

    def epsilon_field(self) -> float | None:
        """Epsilon for an event or a JSON file: rounded; None (JSON null) while it is infinite (no noise)."""
        eps = self.epsilon()
        return round(eps, 6) if math.isfinite(eps) else None

    def _over_budget(self, eps: float) -> bool:
        budget = self.settings.budget
        return budget is not None and not eps <= budget

    # ----- central DP --------------------------------------------------------------------------------------
    def check_arrival(self, job: Job, update: Adapter) -> None:
        if self.central and self.space is not None:
            check_frozen(job.client, job.trains, update, job.start_adapter, self.space)  # type: ignore[arg-type]

    def _client_terms(self, terms: Sequence[Term], job_of: Callable[[Adapter], Job | None]) -> list[Job | None]:
        return [job_of(ad) for _, ad in terms]

    def _sensitivities(self, terms: Sequence[Term], jobs: Sequence[Job | None]) -> dict[int, float]:
        sens: dict[int, float] = {}
        for (w, _), job in zip(terms, jobs, strict=True):
            if job is not None and float(w) != 0.0:
                sens[job.client] = sens.get(job.client, 0.0) + abs(float(w))
        return sens

    def _sigmas(self, sens: dict[int, float]) -> tuple[float, dict[int, float]]:
        """(noise std, each client's effective noise multiplier) for a combination with these sensitivities."""
        if not sens:
            return 0.0, {}
        top = max(sens.values())
        sigma = self.settings.noise_multiplier
        if sigma <= 0.0:
            return 0.0, dict.fromkeys(sens, 0.0)
        return noise_std(sigma, self.settings.clip_norm) * top, {c: sigma * top / s for c, s in sens.items()}

    def release_allowed(self, terms: Sequence[Term], job_of: Callable[[Adapter], Job | None]) -> bool:
        """Whether combining `terms` keeps epsilon within the budget (central DP)."""
        if not self.central or self.settings.budget is None:
            return True
        _, sigmas = self._sigmas(self._sensitivities(terms, self._client_terms(terms, job_of)))
        if not sigmas:
            return True
        return not self._over_budget(self.accountant.after(sigmas))

    def combine(
        self,
        aggregator: Any,
        terms: Sequence[Term],
        job_of: Callable[[Adapter], Job | None],
        version: int,
    ) -> Adapter:
        """The aggregator's combination of the clipped terms, with central noise; remembered as `pending`."""
        jobs = self._client_terms(terms, job_of)
        rewritten: list[Term] = []
        clipped, norm_max, trained = 0, 0.0, set()
        for (w, ad), job in zip(terms, jobs, strict=True):
            if job is None:
                rewritten.append((w, ad))
                continue
            trained.add(job.trains)
            norm = update_norm(ad, job.start_adapter, self.space, self.rank, self.scaled)  # type: ignore[arg-type]
            norm_max = max(norm_max, norm)
            scale = clip_scale(norm, self.settings.clip_norm)
            clipped += scale < 1.0
            rewritten += clipped_terms(w, ad, job.start_adapter, scale)
        std, sigmas = self._sigmas(self._sensitivities(terms, jobs))
        if not math.isfinite(std):
            raise ValueError("privacy: noise for an infinite clip_norm is infinite; set a finite privacy.clip_norm")
        seed = self.settings.seed
        if std > 0.0 and self.space == "product":
            combined, diag = noised_product_combine(
                rewritten,
                self.rank,
                std,
                seed,
                version,
                scaled=self.scaled,
                sigma=self.sigma_factor,
                completion_seed=self.agg_seed,
            )
            aggregator.last_diagnostics = diag
        else:
            combined = aggregator.combine(rewritten)
            combined = add_noise(combined, std, sorted(trained), seed, "dp-noise", version)
        space = "product" if std > 0.0 and self.space == "product" else "factor"
        coords = noised_coordinates(combined, space, sorted(trained))  # type: ignore[arg-type]
        self.pending = Release(std, sigmas, clipped, sum(j is not None for j in jobs), norm_max, coords)
        return combined

    def spend(self) -> None:
        """Account the pending release (the combination that became the new version)."""
        r, self.pending = self.pending, None
        if r is None:
            return
        self.accountant.spend(r.sigmas)
        self.totals["updates"] += r.updates
        self.totals["clipped"] += r.clipped
        self.totals["norm_max"] = max(self.totals["norm_max"], r.norm_max)
        self.totals["noised_coordinates"] = max(self.totals.get("noised_coordinates", 0), r.coordinates)
        self.last_diagnostics = {
            "dp_noise_std": round(r.std, 8),
            "dp_clipped": r.clipped,
            "dp_updates": r.updates,
            "dp_norm_max": round(r.norm_max, 6),
        }

    # ----- client-side noise: each job is one release of its client -----------------------------------------
    def dispatch_allowed(self, client: int) -> bool:
        if self.central or self.settings.budget is None:
            return True
        return not self._over_budget(self.accountant.after({client: self.settings.noise_multiplier}))

    def dispatched(self, client: int) -> None:
        """A job leaves for `client`: counted as one release of its own noised update (conservative: a job
        that fails may never have been sent back)."""
        if not self.central:
            self.accountant.spend({client: self.settings.noise_multiplier})

    # ----- records -------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        s = self.settings
        eps = self.epsilon_field()
        out: dict[str, Any] = {
            "epsilon": eps,
            "delta": s.delta,
            "where": s.where,
            "accountant": s.accountant,
            "accounting": self.accountant.accounting,
            "sampling_rate": s.sampling_rate,
            "noise_multiplier": round(s.noise_multiplier, 8),
            "clip_norm": s.clip_norm if math.isfinite(s.clip_norm) else None,
            "target_epsilon": s.target_epsilon,
            "budget": s.budget,
            "releases": self.accountant.releases,
        }
        if self.central:
            out["clipping"] = {**self.totals, "norm_max": round(self.totals["norm_max"], 6)}
        per_client = self.accountant.client_epsilons()
        if per_client:
            out["epsilon_per_client"] = {
                str(c): (round(e, 6) if math.isfinite(e) else None) for c, e in per_client.items()
            }
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"accountant": self.accountant.state_dict(), "totals": dict(self.totals)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.load_state_dict(state["accountant"])
        self.totals = dict(state.get("totals", self.totals))
        self.pending = None
