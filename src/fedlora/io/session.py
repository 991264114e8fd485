"""A run's life in its run directory: the resume policy, what is written before the first event, the results.

`RunSession.open` decides, before anything is loaded, whether the run starts fresh, resumes from its last
checkpoint or is finished already (`RunDir.open` refuses what cannot work), and refuses a resume on other data
than the run started on. `begin` is the first write: the directory, the partition tables, run.json (its
calibrated step seconds are reused on resume, so a resumed run keeps the virtual clock it had), the
checkpoint to resume from and the event log cut back to it; a failure there leaves no directory that would
refuse the fixed config. `finish` writes the global adapter (also in peft's format), any folded base delta
and summary.json. `RunDirObserver` is the engine observer that writes events and checkpoints there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fedlora.config import OWN_DATA_TASKS, ExperimentConfig, dump_config, redump_config
from fedlora.engine.observer import Observer
from fedlora.io.rundir import EventLog, RunDir, writing
from fedlora.io.state import follow_umask, save_adapter, save_tensors
from fedlora.io.tensorboard import with_tensorboard

if TYPE_CHECKING:
    from fedlora.engine.frozen_base import FrozenBase
    from fedlora.engine.server import Server
    from fedlora.partition_report import PartitionReport
    from fedlora.training.host import ModelHost


def data_fingerprint_of(cfg: ExperimentConfig) -> dict[str, Any]:
    """Where the run's data comes from and its sha256: a resume must read the same data."""
    if cfg.task.name in OWN_DATA_TASKS:
        from fedlora.data.own_data import own_data_fingerprint

        return own_data_fingerprint(cfg.task)
    from fedlora.data.glue import data_fingerprint

    return data_fingerprint(cfg.task.name, cfg.task.data_dir)


class RunDirObserver(Observer):
    """Events to events.jsonl (and TensorBoard), checkpoints to the run directory every `checkpoint_every`."""

    def __init__(self, log: Callable[[dict[str, Any]], None], rd: RunDir, checkpoint_every: int | None):
        self.log, self.rd, self.checkpoint_every = log, rd, checkpoint_every

    def record(self, event: dict[str, Any]) -> None:
        self.log(event)

    def checkpoint(self, state: dict[str, Any]) -> None:
        self.rd.save_checkpoint(state)


@dataclass
class RunSession:
    cfg: ExperimentConfig
    rd: RunDir
    resolved: str  # the resolved config text (config.yaml)
    status: str  # "fresh", "resume" or "finished"
    data: dict[str, Any] | None  # the data's fingerprint (None for a finished run)
    record: dict[str, Any]  # run.json: what was recorded so far (resume) or will be
    notify: Callable[[str], None]

    @classmethod
    def open(cls, cfg: ExperimentConfig, out: str | Path, resume: bool, notify: Callable[[str], None]) -> RunSession:
        rd = RunDir(out)
        resolved = dump_config(cfg)
        status = rd.open(resolved, resume, notify, redump=redump_config)
        if status == "finished":
            return cls(cfg, rd, resolved, status, None, {}, notify)
        data = data_fingerprint_of(cfg)
        record: dict[str, Any] = {}
        if status == "resume":
            rd.check_data(data)
            record = rd.read_json(rd.run_record) if rd.run_record.is_file() else {}
        return cls(cfg, rd, resolved, status, data, record, notify)

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def resuming(self) -> bool:
        return self.status == "resume"

    @property
    def recorded_step_seconds(self) -> float | None:
        value = self.record.get("step_seconds")
        return float(value) if value is not None else None

    def summary(self) -> dict[str, Any]:
        return self.rd.read_json(self.rd.summary)

    def begin(
        self, step_seconds: float, partition: list[dict[str, Any]], report: PartitionReport | None
    ) -> tuple[dict[str, Any] | None, Any]:
        """(the checkpoint state to resume from or None, the event log): the run's first writes."""
        rd = self.rd
        record = self.record
        record.setdefault("step_seconds", step_seconds)
        record.setdefault("partition", partition)
        record.setdefault("data", self.data)  # where the data came from and its fingerprint
        created = not rd.path.exists()
        if not self.resuming:
            rd.create(self.resolved)
        try:
            with writing(rd.path):
                if report is not None:
                    report.write(rd.path)  # partition.json, partition.md: the same table as `fedlora partition`
                record["torch_threads"] = torch.get_num_threads()
                rd.write_json(rd.run_record, record)
                state = rd.load_checkpoint(self.notify) if self.resuming else None
                if state is not None:
                    self.notify(f"resuming from version {state['version']} (virtual t={state['clock']['now']:,.1f} s)")
                log: Any = EventLog(rd.events, keep_lines=state["events_written"] if state else None)
                if self.cfg.output.tensorboard:
                    log = with_tensorboard(log, rd.path, rd.events)
        except BaseException:
            if not self.resuming:
                rd.discard_if_unstarted(created)
            raise
        return state, log

    def finish(self, server: Server, host: ModelHost, base: FrozenBase, summary: dict[str, Any]) -> dict[str, Any]:
        rd = self.rd
        with writing(rd.path):
            save_adapter(rd.path / "global_adapter.safetensors", server.global_adapter, {"version": server.version})
            host.save_peft(server.global_adapter, rd.adapter_dir)
            for exported in rd.adapter_dir.glob("*.safetensors"):  # peft writes them with safetensors' mode 0600
                follow_umask(exported)
            if base.version:  # the exported adapter only makes sense on top of the folded base
                save_tensors(base.current, rd.path / "merged_base_delta.safetensors")
        rd.write_json(rd.summary, summary)
        return summary
