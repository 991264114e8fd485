import pytest

from fedlora.engine.clock import VirtualClock
from fedlora.engine.cost import CostModel


def test_events_pop_in_time_order_with_deterministic_ties():
    clock = VirtualClock()
    clock.push(5.0, "eval", "e")
    clock.push(3.0, "arrival", "a1")
    clock.push(5.0, "arrival", "a2")
    clock.push(5.0, "timer", "t")
    clock.push(5.0, "arrival", "a3")
    clock.push(1.0, "timer", "t0")
    order = [clock.pop().payload for _ in range(len(clock))]
    # time first; at equal times arrivals before timers before evaluation ticks; then insertion order
    assert order == ["t0", "a1", "a2", "a3", "t", "e"]
    assert clock.now == 5.0


def test_clock_refuses_the_past_and_round_trips_its_state():
    clock = VirtualClock()
    clock.push(2.0, "arrival", 1)
    clock.pop()
    with pytest.raises(ValueError, match="before now"):
        clock.push(1.0, "arrival", 2)
    clock.push(4.0, "arrival", 3)
    clock.push(3.0, "timer", 4)
    other = VirtualClock()
    other.load_state_dict(clock.state_dict())
    assert [other.pop().payload for _ in range(2)] == [4, 3]


def test_cost_model_is_compute_plus_transfer_plus_latency():
    import numpy as np

    cost = CostModel(step_seconds=2.0, speeds=np.array([1.0, 0.5]), bandwidth=np.array([100.0, 50.0]), latency_s=0.5)
    assert cost.duration(0, steps=10, bytes_down=100, bytes_up=300) == pytest.approx(20 + 4 + 0.5)
    assert cost.duration(1, steps=10, bytes_down=100, bytes_up=300) == pytest.approx(40 + 8 + 0.5)
