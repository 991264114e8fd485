"""Client availability: each simulated client alternates between online and offline periods.

Real devices drop out (a phone leaves Wi-Fi, a laptop sleeps), which hurts synchronous rounds most: a
client that goes offline mid-job never answers. Period lengths are exponential with the given means
(a two-state Markov chain in continuous time); a client starts online with the stationary probability
mean_online / (mean_online + mean_offline). Period k of client c is drawn from (seed, "availability",
c, k) alone, so the schedule of every client is a fixed function of the seed: the same whatever order
events are processed in, and after a resume.
"""

from __future__ import annotations

import bisect

from fedlora.seeding import numpy_rng


class Availability:
    def __init__(self, seed: int, mean_online_s: float, mean_offline_s: float):
        if mean_online_s <= 0 or mean_offline_s <= 0:
            raise ValueError("mean_online_s and mean_offline_s must be > 0")
        self.seed = seed
        self.mean_online_s = float(mean_online_s)
        self.mean_offline_s = float(mean_offline_s)
        self._starts_online: dict[int, bool] = {}
        self._changes: dict[int, list[float]] = {}  # increasing times at which the client toggles

    def _initial(self, client: int) -> bool:
        if client not in self._starts_online:
            p = self.mean_online_s / (self.mean_online_s + self.mean_offline_s)
            self._starts_online[client] = bool(numpy_rng(self.seed, "availability-start", client).random() < p)
            self._changes[client] = []
        return self._starts_online[client]

    def _extend(self, client: int, t: float) -> list[float]:
        """The client's toggle times, drawn at least until one lies strictly after t."""
        online = self._initial(client)
        changes = self._changes[client]
        while not changes or changes[-1] <= t:
            k = len(changes)
            period_online = online if k % 2 == 0 else not online
            mean = self.mean_online_s if period_online else self.mean_offline_s
            length = numpy_rng(self.seed, "availability", client, k).exponential(mean)
            changes.append((changes[-1] if changes else 0.0) + max(float(length), 1e-9))
        return changes

    def online(self, client: int, t: float) -> bool:
        changes = self._extend(client, t)
        return self._initial(client) ^ (bisect.bisect_right(changes, t) % 2 == 1)

    def next_change(self, client: int, t: float) -> float:
        """The first toggle strictly after t."""
        changes = self._extend(client, t)
        return changes[bisect.bisect_right(changes, t)]

    def next_offline(self, client: int, t: float) -> float:
        """When the client next goes offline (t itself if it is offline now)."""
        return self.next_change(client, t) if self.online(client, t) else t

    def next_online(self, client: int, t: float) -> float:
        """When the client is next online (t itself if it is online now)."""
        return t if self.online(client, t) else self.next_change(client, t)

    def offline_seconds(self, client: int, t0: float, t1: float) -> float:
        """Seconds of [t0, t1] the client spends offline."""
        total, t = 0.0, t0
        while t < t1:
            end = min(self.next_change(client, t), t1)
            if not self.online(client, t):
                total += end - t
            t = end
        return total
