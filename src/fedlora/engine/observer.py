"""What a run tells the world while it runs: one observer protocol instead of a callback per concern.

The server reports four things, and an observer overrides the ones it cares about (the base class ignores
all of them): `record(event)` for every event line (events.jsonl), `evaluated(server)` after every point of
the curve (a progress display), `new_version(server)` after every combination (kill switches in tests,
sweeps), `checkpoint(state)` every `checkpoint_every` versions (the run directory). `Observers` fans out to
several; `Callbacks` makes one from plain functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedlora.engine.server import Server


class Observer:
    #: versions between checkpoints handed to `checkpoint` (None: the run is never checkpointed)
    checkpoint_every: int | None = None

    def record(self, event: dict[str, Any]) -> None:
        """One event (dispatch, arrival, aggregation, evaluation, ...), as events.jsonl holds it."""

    def evaluated(self, server: Server) -> None:
        """A point was added to the curve (`server.history[-1]`)."""

    def new_version(self, server: Server) -> None:
        """The global adapter reached `server.version` (after its evaluation, if one was due)."""

    def checkpoint(self, state: dict[str, Any]) -> None:
        """The whole server state (`Server.state_dict()`), to be saved for a resume."""


class Observers(Observer):
    """Several observers in order; the first that checkpoints sets the checkpoint interval."""

    def __init__(self, *observers: Observer | None):
        self.observers = [o for o in observers if o is not None]
        self.checkpoint_every = next((o.checkpoint_every for o in self.observers if o.checkpoint_every), None)

    def record(self, event: dict[str, Any]) -> None:
        for o in self.observers:
            o.record(event)

    def evaluated(self, server: Server) -> None:
        for o in self.observers:
            o.evaluated(server)

    def new_version(self, server: Server) -> None:
        for o in self.observers:
            o.new_version(server)

    def checkpoint(self, state: dict[str, Any]) -> None:
        for o in self.observers:
            o.checkpoint(state)


class Callbacks(Observer):
    """An observer from plain functions; those left None are not called."""

    def __init__(
        self,
        record: Callable[[dict[str, Any]], None] | None = None,
        evaluated: Callable[[Server], None] | None = None,
        new_version: Callable[[Server], None] | None = None,
        checkpoint: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_every: int | None = None,
    ):
        self._record, self._evaluated, self._new_version, self._checkpoint = record, evaluated, new_version, checkpoint
        self.checkpoint_every = checkpoint_every if checkpoint is not None else None

    def record(self, event: dict[str, Any]) -> None:
        if self._record is not None:
            self._record(event)

    def evaluated(self, server: Server) -> None:
        if self._evaluated is not None:
            self._evaluated(server)

    def new_version(self, server: Server) -> None:
        if self._new_version is not None:
            self._new_version(server)

    def checkpoint(self, state: dict[str, Any]) -> None:
        if self._checkpoint is not None:
            self._checkpoint(state)
