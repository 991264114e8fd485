import pytest

from fedlora.clients.availability import Availability
from fedlora.clients.bandwidth import draw_bandwidth
from fedlora.clients.speeds import draw_speeds
from fedlora.config import BandwidthProfile, SpeedConfig


def test_availability_is_a_fixed_function_of_the_seed_whatever_the_query_order():
    a = Availability(0, mean_online_s=10.0, mean_offline_s=5.0)
    b = Availability(0, mean_online_s=10.0, mean_offline_s=5.0)
    times = [0.5 * k for k in range(400)]
    forward = [a.online(3, t) for t in times]
    backward = [b.online(3, t) for t in reversed(times)][::-1]
    assert forward == backward
    assert forward != [Availability(1, 10.0, 5.0).online(3, t) for t in times]
    assert len(set(forward)) == 2


def test_availability_periods_are_consistent():
    av = Availability(4, mean_online_s=10.0, mean_offline_s=5.0)
    for client in range(5):
        t = 0.0
        for _ in range(50):
            change = av.next_change(client, t)
            assert change > t
            assert av.online(client, t) == av.online(client, (t + change) / 2) != av.online(client, change)
            if av.online(client, t):
                assert av.next_offline(client, t) == change and av.next_online(client, t) == t
            else:
                assert av.next_online(client, t) == change and av.next_offline(client, t) == t
            t = change


def test_the_offline_share_matches_the_stationary_probability():
    av = Availability(7, mean_online_s=30.0, mean_offline_s=10.0)
    horizon = 200_000.0
    share = sum(av.offline_seconds(c, 0.0, horizon) for c in range(4)) / (4 * horizon)
    assert share == pytest.approx(10 / 40, abs=0.03)
    assert av.offline_seconds(0, 5.0, 5.0) == 0.0


def test_bandwidth_is_one_number_a_list_or_a_scaled_profile_with_its_own_draws():
    assert draw_bandwidth(2e6, 3, seed=0).tolist() == [2e6] * 3
    assert draw_bandwidth([1.0, 2.0], 2, seed=0).tolist() == [1.0, 2.0]
    profile = BandwidthProfile(scale=1e7, profile=SpeedConfig(name="pareto", shape=1.0))
    bw = draw_bandwidth(profile, 20, seed=0)
    assert bw.max() <= 1e7 and len(set(bw.tolist())) > 1
    # independent of the speed draw from the same profile and seed
    assert (bw / 1e7).tolist() != draw_speeds(profile.profile, 20, seed=0).tolist()
    with pytest.raises(ValueError, match="lists 1 values for 2 clients"):
        draw_bandwidth([1.0], 2, seed=0)
