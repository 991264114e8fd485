"""Privacy accounting, delegated to Google's dp-accounting library (RDP or PLD): nothing here is an accountant.

What this module decides is only *which* mechanism each release is, in dp-accounting's own vocabulary:

- `subsampled`: synchronous FedAvg that samples clients uniformly at random (rate q = sampled / count), with
  central noise: every version is one Poisson-subsampled Gaussian mechanism with the configured noise
  multiplier, `SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), versions)`, the same for
  every client (DP-FedAvg, McMahan et al. 2018; the fixed-size sample is analysed as Poisson at the same rate,
  as TF Privacy and Opacus do).
- `composed`: everything else (FedBuff, FedAsync, FedFa, FedAvg without uniform sampling, client-side noise):
  each client's own releases are composed without any amplification, `ComposedDpEvent` of one
  `GaussianDpEvent(sigma_eff)` per release that held its update; epsilon is the largest over the clients.

Neighbouring relation: add or remove one client's whole data (its update replaced by no change).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from fedlora.errors import ConfigError

AccountantKind = Literal["rdp", "pld"]

INSTALL_HINT = (
    "privacy needs the dp-accounting package (its RDP and PLD accountants); install it with "
    "`pip install dp-accounting` (or `pip install 'fedlora[privacy]'`), or remove the privacy section"
)

#: the PLD accountant's discretisation of the privacy loss (dp-accounting's default is 1e-4: ~10x slower,
#: and the discretisation is pessimistic either way, so a coarser grid only over-reports epsilon)
PLD_DISCRETIZATION = 1e-3


def require_dp_accounting() -> Any:
    """The dp_accounting module, or a ConfigError that says how to install it."""
    try:
        import dp_accounting
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return dp_accounting


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """dp-accounting's RDP logs a warning per order it cannot evaluate (harmless: the order is skipped)."""
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def make_accountant(kind: AccountantKind) -> Any:
    dpa = require_dp_accounting()
    if kind == "rdp":
        return dpa.rdp.RdpAccountant()
    if kind == "pld":
        return dpa.pld.PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    raise ConfigError(f"privacy.accountant: unknown accountant {kind!r}; choose rdp or pld")


def subsampled_event(q: float, sigma: float, releases: int) -> Any:
    """`releases` versions of the Poisson-subsampled Gaussian mechanism at rate q, noise multiplier sigma."""
    dpa = require_dp_accounting()
    return dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), releases)


def composed_event(groups: Mapping[float, int]) -> Any:
    """The composition of Gaussian mechanisms: `groups[sigma]` releases at noise multiplier sigma."""
    dpa = require_dp_accounting()
    return dpa.ComposedDpEvent(
        [dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(s), n) for s, n in sorted(groups.items()) if n > 0]
    )


def epsilon_of(event: Any, kind: AccountantKind, delta: float) -> float:
    """dp-accounting's epsilon at `delta` for `event` (inf for a mechanism without noise)."""
    with _quiet():
        acc = make_accountant(kind)
        acc.compose(event)
        eps = float(acc.get_epsilon(delta))
    return eps if math.isfinite(eps) else math.inf


def planned_event(sigma: float, releases: int, q: float | None) -> Any:
    """What a planned run of `releases` versions spends: subsampled at rate q, or a client in every one."""
    if q is not None:
        return subsampled_event(q, sigma, releases)
    return composed_event({sigma: releases})


def solve_noise_multiplier(
    target_epsilon: float, delta: float, kind: AccountantKind, releases: int, q: float | None
) -> float:
    """The smallest noise multiplier whose planned run stays within `target_epsilon` (dp-accounting's
    `calibrate_dp_mechanism`, a bracketed search on the library's own epsilon)."""
    dpa = require_dp_accounting()
    with _quiet():
        # RDP first (cheap at any sigma); PLD's epsilon is at most RDP's, so its sigma lies below RDP's, and
        # a bracket near it keeps PLD away from tiny sigmas, whose loss distributions are huge
        sigma = dpa.calibrate_dp_mechanism(
            lambda: make_accountant("rdp"),
            lambda s: planned_event(s, releases, q),
            target_epsilon,
            delta,
            bracket_interval=dpa.LowerEndpointAndGuess(1e-3, 1.0),
            tol=1e-4,
        )
        if kind == "pld":  # no PLD sigma in the bracket (ValueError): RDP's is within the budget too
            with contextlib.suppress(ValueError, RuntimeError):
                sigma = dpa.calibrate_dp_mechanism(
                    lambda: make_accountant("pld"),
                    lambda s: planned_event(s, releases, q),
                    target_epsilon,
                    delta,
                    bracket_interval=dpa.ExplicitBracketInterval(sigma / 2, sigma),
                    tol=1e-4,
                )
    return float(sigma)


def planned_epsilon(sigma: float, delta: float, kind: AccountantKind, releases: int, q: float | None) -> float:
    if sigma <= 0:
        return math.inf
    return epsilon_of(planned_event(sigma, releases, q), kind, delta)


class Accountant:
    """The run's privacy ledger: what was released, and dp-accounting's epsilon for it.

    `sampling_rate` set: the subsampled ledger (a count of versions). None: one ledger per client, a
    multiset {noise multiplier: releases}; epsilon is the worst client's. Epsilons are cached per ledger, so
    a check that is repeated (every evaluation, every budget check) costs nothing.
    """

    def __init__(self, kind: AccountantKind, delta: float, noise_multiplier: float, sampling_rate: float | None):
        self.kind = kind
        self.delta = float(delta)
        self.noise_multiplier = float(noise_multiplier)
        self.sampling_rate = sampling_rate
        self.releases = 0  # versions released (subsampled), or releases holding any client (composed)
        self.clients: dict[int, dict[float, int]] = {}
        self._cache: dict[tuple, float] = {}
        self._client_eps: dict[int, float] = {}

    @property
    def accounting(self) -> str:
        return "subsampled" if self.sampling_rate is not None else "composed"

    def _eps(self, key: tuple, make: Any) -> float:
        if key not in self._cache:
            self._cache[key] = epsilon_of(make(), self.kind, self.delta)
        return self._cache[key]

    def _subsampled_eps(self, releases: int) -> float:
        if releases == 0:
            return 0.0
        if self.noise_multiplier <= 0:
            return math.inf
        q, s = self.sampling_rate, self.noise_multiplier
        return self._eps(("subsampled", releases), lambda: subsampled_event(q, s, releases))

    def _ledger_eps(self, ledger: Mapping[float, int]) -> float:
        groups = {s: n for s, n in ledger.items() if n > 0}
        if not groups:
            return 0.0
        if any(s <= 0 for s in groups):
            return math.inf
        key = ("composed", *sorted(groups.items()))
        return self._eps(key, lambda: composed_event(groups))

    def epsilon(self) -> float:
        """Epsilon at `delta` spent so far (the worst client's under `composed`)."""
        if self.sampling_rate is not None:
            return self._subsampled_eps(self.releases)
        return max(self._client_eps.values(), default=0.0)

    def client_epsilons(self) -> dict[int, float]:
        if self.sampling_rate is not None:
            return {}
        return dict(sorted(self._client_eps.items()))

    def after(self, sigmas: Mapping[int, float]) -> float:
        """Epsilon if one more release held these clients (client -> its noise multiplier), without spending."""
        if self.sampling_rate is not None:
            return self._subsampled_eps(self.releases + 1)
        worst = self.epsilon()
        for c, s in sigmas.items():
            ledger = dict(self.clients.get(c, {}))
            ledger[s] = ledger.get(s, 0) + 1
            worst = max(worst, self._ledger_eps(ledger))
        return worst

    def spend(self, sigmas: Mapping[int, float]) -> None:
        """Record one release holding these clients (client -> the noise multiplier it saw)."""
        if not sigmas and self.sampling_rate is None:
            return
        self.releases += 1
        if self.sampling_rate is not None:
            return
        for c, s in sigmas.items():
            ledger = self.clients.setdefault(int(c), {})
            ledger[float(s)] = ledger.get(float(s), 0) + 1
            self._client_eps[int(c)] = self._ledger_eps(ledger)

    def state_dict(self) -> dict[str, Any]:
        return {
            "releases": self.releases,
            "clients": {str(c): [[s, n] for s, n in sorted(ledger.items())] for c, ledger in self.clients.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.releases = int(state["releases"])
        self.clients = {int(c): {float(s): int(n) for s, n in pairs} for c, pairs in state["clients"].items()}
        self._client_eps = {c: self._ledger_eps(ledger) for c, ledger in self.clients.items()}
