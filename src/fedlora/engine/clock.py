"""A virtual clock: a heap of events ordered by (virtual time, kind, sequence number).

Ties are broken by a kind order and then by insertion sequence, both deterministic, so the same
config and seed process events in the same order however the transport computes results.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

# At equal times: arrivals first (they may complete a round), then schedule timers, then evaluation ticks.
KIND_ORDER = {"arrival": 0, "failure": 1, "timer": 2, "eval": 3}


@dataclass(order=True)
class Event:
    time: float
    kind_rank: int
    seq: int
    kind: str = field(compare=False)
    payload: Any = field(compare=False, default=None)


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[Event] = []
        self._seq = 0

    def push(self, time: float, kind: str, payload: Any = None) -> Event:
        if time < self.now:
            raise ValueError(f"cannot schedule {kind} at {time} before now={self.now}")
        ev = Event(float(time), KIND_ORDER[kind], self._seq, kind, payload)
        self._seq += 1
        heapq.heappush(self._heap, ev)
        return ev

    def pop(self) -> Event:
        ev = heapq.heappop(self._heap)
        self.now = ev.time
        return ev

    def peek(self) -> Event | None:
        return self._heap[0] if self._heap else None

    def discard(self, kind: str, payload: Any) -> None:
        """Remove the pending events of `kind` carrying `payload` (the wall-clock server's estimated arrivals)."""
        self._heap = [e for e in self._heap if not (e.kind == kind and e.payload is payload)]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._heap)

    def events(self) -> list[Event]:
        return sorted(self._heap)

    def state_dict(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "seq": self._seq,
            "events": [[e.time, e.kind, e.seq, e.payload] for e in sorted(self._heap)],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.now = state["now"]
        self._seq = state["seq"]
        self._heap = [Event(t, KIND_ORDER[k], s, k, p) for t, k, s, p in state["events"]]
        heapq.heapify(self._heap)
