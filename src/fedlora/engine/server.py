"""The server loop on the virtual clock.

Arrivals are popped from the clock in virtual-time order; the schedule decides what to combine and whom
to dispatch; the aggregator combines; the global model is evaluated every N versions and/or every T
virtual seconds (and at fixed time budgets), so accuracy-versus-time curves of different schedules share
one time axis; the whole state is checkpointed every N versions so a killed run resumes exactly.

Jobs that will fail (crash, client offline; see `engine.faults`) are known at dispatch and become
`failure` events instead of arrivals. Every job end (arrival, failure, rejection) frees its client.

A client can send anything, so nothing it sends may end the run: a reply the transport cannot read
(`UpdateRejected` from `collect`), an update that fails validation, and an update that makes the
aggregator raise (or return non-finite numbers) are all rejected, counted under their reason and logged.
The last kind is found when a combination fails: each client update in it is tried on its own against the
adapter its job was sent; one that fails is rejected (`aggregation_error`) and stands in the combination,
and in any later one that holds it (FedFa's window), as that start adapter: an update that changed nothing.

What a method changes besides the combination reaches the loop only through the aggregator's hooks
(aggregators/base.py): the factors a job trains, what follows a combination (a fold into the frozen base,
`engine.frozen_base`, whose version each job records), the state each client keeps across its jobs (held
here, checkpointed, and personalised into each job's start), the bytes a job moves. Reporting goes to one
`Observer`, scoring to one `Evaluator`; the statistics and the summary live in `engine.statistics`.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from fedlora.aggregators.base import Aggregator
from fedlora.engine.clock import VirtualClock
from fedlora.engine.cost import CostModel
from fedlora.engine.evaluation import EvalPlan, Evaluator
from fedlora.engine.faults import Faults
from fedlora.engine.frozen_base import FrozenBase
from fedlora.engine.local_metrics import local_block
from fedlora.engine.observer import Observer
from fedlora.engine.statistics import Counters, summarize
from fedlora.engine.transport.base import JobFailed, Transport
from fedlora.engine.validation import check_provenance, validate_update
from fedlora.errors import UpdateRejected
from fedlora.jobs import Job, JobResult
from fedlora.lora.adapter import Adapter
from fedlora.privacy.engine import PrivacyEngine
from fedlora.schedules.base import Schedule, Step

AGGREGATION_ERROR = "aggregation_error"


@dataclass(frozen=True)
class StopRules:
    versions: int | None = None
    virtual_seconds: float | None = None
    target: float | None = None
    samples: int | None = None
    target_stops: bool = True  # False: record the time to target but run on to the other rules


@dataclass(frozen=True)
class ClientWorld:
    """The simulated clients: rank, alpha, local steps and partition size of each."""

    ranks: list[int]
    alphas: list[float]
    steps: list[int]
    samples: list[int]

    @property
    def count(self) -> int:
        return len(self.ranks)


class Server:
    def __init__(
        self,
        *,
        aggregator: Aggregator,
        schedule: Schedule,
        transport: Transport,
        cost: CostModel,
        world: ClientWorld,
        initial_adapter: Adapter,
        evaluator: Evaluator,
        stop: StopRules,
        plan: EvalPlan = EvalPlan(),
        observer: Observer | None = None,
        faults: Faults | None = None,
        max_update_norm: float | None = None,
        max_rejections_in_a_row: int | None = None,
        base: FrozenBase | None = None,
        privacy: PrivacyEngine | None = None,
    ):
        """`evaluator` scores adapters (the engine never sees a model), `plan` says when; `observer` gets the
        events, evaluation points, versions and checkpoints; `base` holds what the aggregator folds into the
        frozen base weights (shared with the transport and the evaluator, which apply it)."""
        self.aggregator = aggregator
        self.schedule = schedule
        self.transport = transport
        self.cost = cost
        self.world = world
        self.evaluator = evaluator
        self.stop_rules = stop
        self.plan = plan
        self.observer = observer if observer is not None else Observer()
        self.max_update_norm = max_update_norm
        self.max_rejections_in_a_row = max_rejections_in_a_row
        self.base = base if base is not None else FrozenBase()
        self.faults = faults
        self.privacy = privacy  # clipping, noise and the epsilon ledger (fedlora.privacy); None: off
        self.time_budgets = tuple(sorted(float(b) for b in plan.time_budgets))

        self.clock = VirtualClock()
        self.global_adapter = initial_adapter
        self.reference = initial_adapter
        self._version = 0
        self.next_job_id = 0
        self.client_jobs = [0] * world.count
        self.client_synced = [0] * world.count  # the global version each client last downloaded
        self.in_flight: dict[int, Job] = {}
        self.doomed: set[int] = set()  # in-flight jobs that will fail: never sent to the transport
        self.counters = Counters()
        self.history: list[dict[str, Any]] = []
        self.time_to_target: dict[str, Any] | None = None
        self.stopped_by: str | None = None
        self.real_elapsed = 0.0
        self._real_start = time.perf_counter()
        self.events_written = 0
        self.started = False
        # accepted client updates by id(adapter) -> (weak reference, job), to tell which term of a failed
        # combination came from which job; and the jobs whose update was rejected at aggregation
        self._update_jobs: dict[int, tuple[weakref.ref, Job]] = {}
        self.combine_rejected: set[int] = set()
        # what each client keeps across its own jobs (the aggregator's keep hook), held here for it
        self.kept: dict[int, Adapter] = {}

    # ----- ServerView -------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    @property
    def now(self) -> float:
        return self.clock.now

    @property
    def num_clients(self) -> int:
        return self.world.count

    def idle_clients(self) -> list[int]:
        busy = {j.client for j in self.in_flight.values()}
        return [c for c in range(self.world.count) if c not in busy and self.online(c)]

    def busy_clients(self) -> list[int]:
        return sorted({j.client for j in self.in_flight.values()})

    def next_online_time(self) -> float | None:
        if self.faults is None or self.faults.availability is None:
            return None
        busy = {j.client for j in self.in_flight.values()}
        now = self.clock.now
        times = [
            self.faults.availability.next_online(c, now)
            for c in range(self.world.count)
            if c not in busy and not self.online(c)
        ]
        soonest = min(times, default=math.inf)
        return soonest if math.isfinite(soonest) else None  # None: no offline client ever comes back

    def online(self, client: int) -> bool:
        return self.faults is None or self.faults.online(client, self.clock.now)

    def client_samples(self, client: int) -> int:
        return self.world.samples[client]

    # ----- records ----------------------------------------------------------------------------------
    def real_seconds(self) -> float:
        return self.real_elapsed + (time.perf_counter() - self._real_start)

    def record(self, event: str, **fields: Any) -> None:
        self.events_written += 1
        self.observer.record(
            {
                "event": event,
                "version": self._version,
                "virtual_s": round(self.clock.now, 6),
                "real_s": round(self.real_seconds(), 3),
                **fields,
            }
        )

    # ----- dispatch and arrival -------------------------------------------------------------------------
    def dispatch(self, client: int, tag: int) -> Job:
        if any(j.client == client for j in self.in_flight.values()):
            raise RuntimeError(f"schedule dispatched client {client}, which already has a job in flight")
        if not self.online(client):
            raise RuntimeError(f"schedule dispatched client {client}, which is offline at {self.clock.now}")
        rank, alpha = self.world.ranks[client], self.world.alphas[client]
        start = self.client_start(client)
        trains = self.aggregator.trains(self._version)
        steps = self.world.steps[client]
        # usually start.nbytes; FLoRA adds the merged updates the client missed since it last synced
        bytes_down = self.aggregator.download_nbytes(start, self.client_synced[client], self._version)
        self.client_synced[client] = self._version
        # usually start.nbytes: the client answers at its own rank; less when it sends one factor only
        bytes_up = self.aggregator.upload_nbytes(start, trains)
        duration = self.cost.duration(client, steps, bytes_down, bytes_up)
        job = Job(
            job_id=self.next_job_id,
            client=client,
            client_job=self.client_jobs[client],
            rank=rank,
            alpha=alpha,
            start_version=self._version,
            start_adapter=start,
            steps=steps,
            dispatch_time=self.clock.now,
            arrival_time=self.clock.now + duration,
            bytes_down=bytes_down,
            bytes_up=bytes_up,
            tag=tag,
            trains=trains,
            base_version=self.base.version,
        )
        self.next_job_id += 1
        self.client_jobs[client] += 1
        self.in_flight[job.job_id] = job
        self.counters.jobs_dispatched += 1
        if self.privacy is not None:
            self.privacy.dispatched(client)  # client-side noise: every job is one release of its client
        self.counters.bytes_down += bytes_down
        fate = self.faults.fate(job) if self.faults is not None else None
        if fate is None:
            self.clock.push(job.arrival_time, "arrival", job)
            self.transport.submit(job)
        else:
            self.doomed.add(job.job_id)
            self.clock.push(fate[0], "failure", (job, fate[1]))
        self.record(
            "dispatch",
            client=client,
            job=job.job_id,
            rank=rank,
            steps=steps,
            bytes=bytes_down,
            arrival_virtual_s=round(job.arrival_time, 6),
            tag=tag,
        )
        return job

    def client_start(self, client: int) -> Adapter:
        """What `client` would start a job from now: its share of the global adapter, with what it kept."""
        rank, alpha = self.world.ranks[client], self.world.alphas[client]
        received = self.aggregator.distribute(self.global_adapter, rank=rank, alpha=alpha)
        return self.aggregator.personalize(received, self.kept.get(client))

    def _apply(self, step: Step) -> None:
        if step.combine and self.privacy is not None and not self.privacy.release_allowed(step.combine, self._job_of):
            self.stopped_by = self.stopped_by or "epsilon"  # the release would exceed stop.epsilon: none is made
            return
        if step.combine:
            combined, terms = self._combine(step.combine)
            self._version += 1
            self.global_adapter = self.aggregator.after_combine(combined, terms, self._version, self.base)
            dp = self._spend_privacy()
            self.record("aggregation", terms=len(step.combine), **self.aggregator.last_diagnostics, **dp, **step.info)
            self._after_version()
        # a stop rule holds: the step's dispatches would never come back, so none is sent
        for client in [] if self._stopping() else step.dispatch:
            if self.privacy is not None and not self.privacy.dispatch_allowed(client):
                self.stopped_by = self.stopped_by or "epsilon"  # client-side noise: its next release is over budget
                break
            self.dispatch(client, step.tag)
        if step.wake_at is not None:
            self.clock.push(max(step.wake_at, self.clock.now), "timer", step.timer_tag)
        self.base.keep_only(j.base_version for j in self.in_flight.values())

    def _spend_privacy(self) -> dict[str, Any]:
        """Account the combination just made (central DP); what the aggregation event records of it."""
        if self.privacy is None:
            return {}
        self.privacy.spend()
        return {**self.privacy.last_diagnostics, "epsilon": self.privacy.epsilon_field()}

    def _stopping(self) -> bool:
        """Whether the run stops after the event being handled: checked before a step's dispatches are sent,
        so no job is dispatched (or sent to a Flower client) that the run would never collect."""
        if self.stopped_by is not None:
            return True
        samples = self.stop_rules.samples
        return samples is not None and self.counters.samples_trained >= samples

    def _after_version(self) -> None:
        every = self.plan.every_versions
        if every and self._version % every == 0:
            self.evaluate()
        self.observer.new_version(self)
        if self.stop_rules.versions is not None and self._version >= self.stop_rules.versions:
            self.stopped_by = self.stopped_by or "versions"

    def _end_job(self, job: Job) -> None:
        self.in_flight.pop(job.job_id, None)
        self.doomed.discard(job.job_id)
        self.counters.busy_seconds += self.clock.now - job.dispatch_time

    def _on_failure(self, job: Job, reason: str) -> None:
        self._end_job(job)
        self.counters.failed[reason] = self.counters.failed.get(reason, 0) + 1
        self.record("failure", client=job.client, job=job.job_id, reason=reason)
        self._apply(self.schedule.on_failure(job, self))

    def _reject(self, job: Job, exc: UpdateRejected) -> None:
        """Count and log a rejected result; the schedule treats its job as failed."""
        self.counters.rejected[exc.reason] = self.counters.rejected.get(exc.reason, 0) + 1
        self.record("rejected", client=job.client, job=job.job_id, reason=exc.reason, message=str(exc))
        self.counters.rejected_in_a_row += 1
        limit = self.max_rejections_in_a_row
        if limit is not None and self.counters.rejected_in_a_row >= limit:
            # every client keeps sending what cannot be used: without this the run would redispatch forever
            self.stopped_by = self.stopped_by or "rejections"
        self._apply(self.schedule.on_failure(job, self))

    def _on_arrival(self, job: Job) -> None:
        self._end_job(job)
        try:
            result = self.transport.collect(job)
        except JobFailed as exc:
            self.counters.failed[exc.reason] = self.counters.failed.get(exc.reason, 0) + 1
            self.record("failure", client=job.client, job=job.job_id, reason=exc.reason)
            self._apply(self.schedule.on_failure(job, self))
            return
        except UpdateRejected as exc:  # a reply that cannot be read as an update (malformed, oversized...)
            self._reject(job, exc)
            return
        try:
            check_provenance(job, result.job, self.in_flight, self.next_job_id)
        except UpdateRejected as exc:  # not an answer to this job: nothing of it is counted or used
            self._reject(job, exc)
            return
        staleness = self._version - job.start_version
        self.counters.jobs_arrived += 1
        self.counters.samples_trained += result.samples_trained
        self.counters.bytes_up += job.bytes_up
        self.counters.staleness.append(staleness)
        try:
            validate_update(job, result.adapter, self.reference, self.max_update_norm)
            if self.privacy is not None:
                self.privacy.check_arrival(job, result.adapter)  # an update changes only what its job trains
        except UpdateRejected as exc:
            self._reject(job, exc)
            return
        self.counters.count_arrival(job.client)
        self._track(result)
        kept = self.aggregator.keep(result.adapter)
        if kept is not None:
            self.kept[job.client] = kept
        self.record(
            "arrival",
            client=job.client,
            job=job.job_id,
            staleness=staleness,
            bytes=job.bytes_up,
            samples=result.samples_trained,
            **{k: round(v, 6) for k, v in result.metrics.items()},
        )
        self.counters.add_job_metrics(result.metrics)
        step = self.schedule.on_arrival(result, self)
        if step.drop:
            self.counters.dropped[step.drop] = self.counters.dropped.get(step.drop, 0) + 1
            self.record("drop", client=job.client, job=job.job_id, reason=step.drop, staleness=staleness)
        self._apply(step)
        if self.stop_rules.samples is not None and self.counters.samples_trained >= self.stop_rules.samples:
            self.stopped_by = self.stopped_by or "samples"

    # ----- combining: an update that breaks the aggregator is rejected, not fatal -------------------------
    def _track(self, result: JobResult) -> None:
        """Remember which job an accepted update answers, for as long as anything (a buffer) holds it."""
        key = id(result.adapter)
        self._update_jobs[key] = (
            weakref.ref(result.adapter, lambda _, k=key: self._update_jobs.pop(k, None)),
            result.job,
        )

    def _job_of(self, adapter: Adapter) -> Job | None:
        entry = self._update_jobs.get(id(adapter))
        return entry[1] if entry is not None and entry[0]() is adapter else None

    def _combine(self, terms: list[tuple[float, Adapter]]) -> tuple[Adapter, list[tuple[float, Adapter]]]:
        """(`aggregator.combine(terms)`, the terms combined): an update that breaks it is rejected (see the
        module docstring) and its job's start adapter stands in for it."""
        terms = [(w, self._stand_in(ad)) for w, ad in terms]
        saved = self.aggregator.state_dict()
        try:
            return self._finite_combine(terms), terms
        except Exception as exc:  # caused by a client's tensors, or a bug: told apart below
            error = exc
        culprits: list[tuple[int, Job, Exception]] = []
        for i, (_, ad) in enumerate(terms):
            job = self._job_of(ad)
            if job is None:
                continue
            failure = self._probe([(0.5, job.start_adapter), (0.5, ad)], saved)
            # the control: the same combination of what the job was sent must work, or it is not the update
            if failure is not None and self._probe([(0.5, job.start_adapter)] * 2, saved) is None:
                culprits.append((i, job, failure))
        self._restore_aggregator(saved)
        if not culprits:
            raise error  # no client update fails where the adapter it was sent works: not a client's doing
        for i, job, exc in culprits:
            self.combine_rejected.add(job.job_id)
            self.counters.rejected[AGGREGATION_ERROR] = self.counters.rejected.get(AGGREGATION_ERROR, 0) + 1
            message = f"client {job.client}: the aggregator failed on this update ({type(exc).__name__}: {exc})"
            self.record("rejected", client=job.client, job=job.job_id, reason=AGGREGATION_ERROR, message=message)
            terms[i] = (terms[i][0], job.start_adapter)
        return self._finite_combine(terms), terms

    def _stand_in(self, adapter: Adapter) -> Adapter:
        """An update rejected at an earlier aggregation counts as the adapter its job started from."""
        job = self._job_of(adapter)
        return job.start_adapter if job is not None and job.job_id in self.combine_rejected else adapter

    def _probe(self, terms: list[tuple[float, Adapter]], saved: dict[str, Any]) -> Exception | None:
        """The error combining `terms` raises (None if it works), with the aggregator's state as `saved`."""
        self._restore_aggregator(saved)
        try:
            self._finite_combine(terms)
        except Exception as exc:
            return exc
        return None

    def _finite_combine(self, terms: list[tuple[float, Adapter]]) -> Adapter:
        if self.privacy is not None and self.privacy.central:  # clip each update, combine, add noise
            combined = self.privacy.combine(self.aggregator, terms, self._job_of, self._version + 1)
        else:
            combined = self.aggregator.combine(terms)
        for name, t in combined.tensors().items():
            if not torch.isfinite(t).all():
                raise FloatingPointError(f"the combination has NaN or Inf in {name}")
        return combined

    def _restore_aggregator(self, state: dict[str, Any]) -> None:
        self.aggregator.load_state_dict(state)

    def _track_restored(self, node: Any) -> None:
        """After a resume: track the accepted updates held in the schedule's restored state."""
        if isinstance(node, JobResult):
            self._track(node)
        elif isinstance(node, dict):
            for v in node.values():
                self._track_restored(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                self._track_restored(v)

    # ----- evaluation ------------------------------------------------------------------------------------
    def _point(self, metrics: dict[str, float]) -> dict[str, Any]:
        return {
            "version": self._version,
            "virtual_s": round(self.clock.now, 6),
            "samples": self.counters.samples_trained,
            "bytes": self.counters.bytes_up + self.counters.bytes_down,
            "metrics": {k: round(float(v), 6) for k, v in metrics.items()},
        }

    def _epsilon_field(self, point: dict[str, Any]) -> dict[str, Any]:
        """Under privacy, the epsilon spent so far joins an evaluation point (and its event)."""
        if self.privacy is None:
            return {}
        point["epsilon"] = self.privacy.epsilon_field()
        return {"epsilon": point["epsilon"]}

    def evaluate(self) -> dict[str, float]:
        """Evaluate the global model now and add a point to the curve.

        An unchanged version is not evaluated again: at the same virtual time nothing is added, at a later
        time (a clock tick, a time budget, the end of the run) the last metrics are repeated as a point
        marked `reused`, so every schedule's curve has a point at every tick.
        """
        last = self.history[-1] if self.history else None
        if last is not None and last["version"] == self._version:
            if last["virtual_s"] < round(self.clock.now, 6):
                point = {**self._point(last["metrics"]), "reused": True}
                self.history.append(point)
                self.record("evaluation", reused=True, **point["metrics"], **self._epsilon_field(point))
            return last["metrics"]
        metrics = self.evaluator.dev(self.global_adapter)
        point = self._point(metrics)
        # the global model on every client's local split, and (clients that keep state) each client's own
        local = self.evaluator.clients(self.global_adapter)
        if local is not None:
            point["local"] = local_block(local)
        if self.aggregator.personalizes:
            personal = self.evaluator.personal([self.client_start(c) for c in range(self.world.count)])
            if personal is not None:
                point["personal"] = local_block(personal)
        self._epsilon_field(point)
        self.history.append(point)
        extra = {k: point[k] for k in ("local", "personal", "epsilon") if k in point}
        self.record("evaluation", **point["metrics"], **extra)
        target = self.stop_rules.target
        if target is not None and self.time_to_target is None and metrics.get(self.plan.metric, 0.0) >= target:
            self.time_to_target = {k: point[k] for k in ("version", "virtual_s", "samples", "bytes")}
            if self.stop_rules.target_stops:
                self.stopped_by = self.stopped_by or "target"
        self.observer.evaluated(self)
        return metrics

    # ----- the loop --------------------------------------------------------------------------------------
    def start(self) -> None:
        self.started = True
        self.record("start", clients=self.world.count)
        self.evaluate()
        if self.plan.every_seconds:
            self.clock.push(self.plan.every_seconds, "eval", ("tick", 1))
        for budget in self.time_budgets:
            if budget > 0:
                self.clock.push(budget, "eval", ("budget", 0))
        self._apply(self.schedule.start(self))

    def _work_pending(self) -> bool:
        """Anything but evaluation ticks left on the clock: in-flight jobs or schedule timers."""
        return bool(self.in_flight) or any(ev.kind != "eval" for ev in self.clock.events())

    def run(self) -> None:
        if not self.started:
            self.start()
        while self.step():
            pass
        self.evaluate()  # the final version is always evaluated
        self.record("stop", reason=self.stopped_by)

    def step(self) -> bool:
        """Process the next event on the clock; False once a stop rule holds.

        Between two steps the state is complete: `state_dict()` may be taken after any step.
        """
        if self.stopped_by is not None:
            return False
        nxt = self.clock.peek()
        if nxt is None or not self._work_pending():
            self.stopped_by = "idle"  # nothing in flight and the schedule dispatched nothing
            return False
        if self.stop_rules.virtual_seconds is not None and nxt.time > self.stop_rules.virtual_seconds:
            self.clock.now = float(self.stop_rules.virtual_seconds)
            self.stopped_by = "virtual_seconds"
            return False
        ev = self.clock.pop()
        if ev.kind == "arrival":
            self._on_arrival(ev.payload)
        elif ev.kind == "failure":
            self._on_failure(*ev.payload)
        elif ev.kind == "timer":
            self._apply(self.schedule.on_timer(ev.payload, self))
        elif ev.kind == "eval":
            self.evaluate()
            self._next_tick(ev.payload)
        if self.checkpoint_due():
            self.checkpoint()
        return self.stopped_by is None

    def _next_tick(self, payload: Any) -> None:
        """Tick k+1 at (k+1) * T exactly: no drift from adding T again and again; budgets do not repeat."""
        every = self.plan.every_seconds
        if not every:
            return
        if payload is None:  # a checkpoint written before ticks were numbered
            k = round(self.clock.now / every)
        elif payload[0] == "tick":
            k = int(payload[1])
        else:
            return
        nxt = (k + 1) * every
        self.clock.push(nxt if nxt > self.clock.now else self.clock.now + every, "eval", ("tick", k + 1))

    # ----- checkpoints ----------------------------------------------------------------------------------
    _last_checkpoint_version = -1

    def checkpoint_due(self) -> bool:
        every = self.observer.checkpoint_every
        return (
            bool(every)
            and self.stopped_by is None
            and self._version != self._last_checkpoint_version
            and self._version % every == 0  # type: ignore[operator]
        )

    def checkpoint(self) -> None:
        self._last_checkpoint_version = self._version
        self.record("checkpoint")
        self.observer.checkpoint(self.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": self._version,
            "global_adapter": self.global_adapter,
            "clock": self.clock.state_dict(),
            "next_job_id": self.next_job_id,
            "client_jobs": list(self.client_jobs),
            "client_synced": list(self.client_synced),
            "in_flight": {str(k): v for k, v in self.in_flight.items()},
            "doomed": sorted(self.doomed),
            "counters": self.counters.state_dict(),
            "history": self.history,
            "time_to_target": self.time_to_target,
            "schedule": self.schedule.state_dict(),
            "aggregator": self.aggregator.state_dict(),
            "real_elapsed": self.real_seconds(),
            "events_written": self.events_written,
            "base": self.base.state_dict(),
            "kept": {str(c): ad for c, ad in sorted(self.kept.items())},
            "combine_rejected": sorted(self.combine_rejected),
            **({"privacy": self.privacy.state_dict()} if self.privacy is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._version = state["version"]
        self._last_checkpoint_version = self._version
        self.global_adapter = state["global_adapter"]
        self.clock.load_state_dict(state["clock"])
        self.next_job_id = state["next_job_id"]
        self.client_jobs = list(state["client_jobs"])
        self.client_synced = list(state.get("client_synced", [0] * self.world.count))
        self.in_flight = {int(k): v for k, v in state["in_flight"].items()}
        self.doomed = set(state.get("doomed", []))
        self.counters = Counters(**state["counters"])
        self.history = list(state["history"])
        self.time_to_target = state["time_to_target"]
        self.schedule.load_state_dict(state["schedule"])
        self._track_restored(state["schedule"])
        self.combine_rejected = set(state.get("combine_rejected", []))
        self.aggregator.load_state_dict(state["aggregator"])
        self.real_elapsed = state["real_elapsed"]
        self._real_start = time.perf_counter()
        self.events_written = state["events_written"]
        self.base.load_state_dict(state.get("base", state.get("extra", {})))
        self.kept = {int(c): ad for c, ad in state.get("kept", {}).items()}
        if self.privacy is not None and "privacy" in state:
            self.privacy.load_state_dict(state["privacy"])
        self.started = True
        for job_id, job in sorted(self.in_flight.items()):
            if job_id not in self.doomed:
                self.transport.submit(job)

    # ----- results ---------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        out = summarize(self)
        if self.privacy is not None:
            out["privacy"] = self.privacy.summary()
        return out
