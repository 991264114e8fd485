"""Flower's simulation engine starts while the run builds, and a build error still wins and leaves no engine.

Ray itself is replaced by recording fakes here (its real start is covered by tests/flower/test_simulation.py,
whose numbers must equal the in-process run's through this path).
"""

from __future__ import annotations

import threading

import pytest

from fedlora.errors import ConfigError
from fedlora.transports import build_alongside

pytest.importorskip("flwr")

SIMULATION = "transport={name: flower_simulation, workers: 2, worker_cpus: 0.5}"


@pytest.fixture
def engine(monkeypatch):
    """Fake start_ray/stop_ray that record the thread they ran on and their arguments."""
    import fedlora.flower.simulation as simulation

    calls: dict = {"started": [], "stopped": 0, "fail": None, "ready": threading.Event()}

    def start_ray(workers, worker_cpus):
        calls["started"].append((workers, worker_cpus, threading.current_thread() is threading.main_thread()))
        calls["ready"].set()
        if calls["fail"] is not None:
            raise calls["fail"]

    def stop_ray():
        calls["stopped"] += 1

    monkeypatch.setattr(simulation, "start_ray", start_ray)
    monkeypatch.setattr(simulation, "stop_ray", stop_ray)
    return calls


def test_the_engine_starts_in_the_main_thread_while_the_build_runs_beside_it(tiny_config, engine):
    def build():
        # waits for the engine's start: this would time out if the two ran one after the other
        assert engine["ready"].wait(timeout=10)
        return threading.current_thread() is threading.main_thread()

    built_in_main = build_alongside(tiny_config(SIMULATION), build)
    assert built_in_main is False
    assert engine["started"] == [(2, 0.5, True)]
    assert engine["stopped"] == 0


def test_in_process_runs_build_directly_and_starts_nothing(tiny_config, engine):
    assert build_alongside(tiny_config(), lambda: threading.current_thread() is threading.main_thread())
    assert engine["started"] == [] and engine["stopped"] == 0


def test_a_build_error_is_raised_and_the_started_engine_stopped(tiny_config, engine):
    def build():
        raise ConfigError("task.data_dir: /nowhere does not exist")

    with pytest.raises(ConfigError, match="task.data_dir"):
        build_alongside(tiny_config(SIMULATION), build)
    assert len(engine["started"]) == 1 and engine["stopped"] == 1


def test_a_build_error_wins_over_an_engine_that_failed_to_start(tiny_config, engine):
    engine["fail"] = RuntimeError("ray could not start")

    def build():
        raise ConfigError("task.data_dir: /nowhere does not exist")

    with pytest.raises(ConfigError, match="task.data_dir"):
        build_alongside(tiny_config(SIMULATION), build)


def test_an_engine_that_failed_to_start_is_raised_after_a_good_build(tiny_config, engine):
    engine["fail"] = RuntimeError("ray could not start")
    done = []
    with pytest.raises(RuntimeError, match="ray could not start"):
        build_alongside(tiny_config(SIMULATION), lambda: done.append(True))
    assert done == [True]  # the build was waited for, not abandoned mid-way
