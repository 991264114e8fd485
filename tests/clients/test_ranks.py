"""Rank policies: which rank each client trains."""

import numpy as np
import pytest

from fedlora.clients.ranks import RANK_POLICIES
from fedlora.errors import ConfigError
from fedlora.experiment import client_world


def assign(name, count=8, r_max=16, speeds=None, samples=None, seed=0, **options):
    policy_cls = RANK_POLICIES.get(name)
    policy = policy_cls(policy_cls.Options.model_validate(options))
    speeds = np.linspace(1, 2, count) if speeds is None else np.asarray(speeds, dtype=float)
    samples = np.full(count, 100) if samples is None else np.asarray(samples)
    return policy.assign(count, r_max, speeds, samples, seed)


def test_uniform_and_explicit_list():
    assert assign("uniform", count=3) == [16, 16, 16]
    assert assign("list", count=3, values=[2, 16, 4]) == [2, 16, 4]
    with pytest.raises(ConfigError, match=r"clients.ranks.values lists 2 ranks but clients.count is 3"):
        assign("list", count=3, values=[2, 4])
    with pytest.raises(ConfigError, match=r"clients.ranks.values: rank 32 is outside 1..lora.rank=16"):
        assign("list", count=2, values=[2, 32])


def test_speed_tiers_give_slower_clients_lower_ranks():
    speeds = [0.3, 2.0, 1.0, 0.5, 1.5, 0.8, 1.2, 0.9]
    ranks = assign("speed_tier", speeds=speeds, tiers=[2, 4, 8, 16])
    order = np.argsort(speeds)
    assert [ranks[i] for i in order] == [2, 2, 4, 4, 8, 8, 16, 16]
    assert assign("speed_tier", count=4, r_max=8) == [1, 2, 4, 8]  # default tiers r_max/8 .. r_max
    with pytest.raises(ConfigError, match=r"clients.ranks.tiers: rank 16 is outside 1..lora.rank=8"):
        assign("speed_tier", r_max=8, tiers=[2, 16])


def test_data_size_follows_the_hlora_percentile_rule():
    samples = [10, 40, 20, 30]  # percentiles 1/4, 4/4, 2/4, 3/4
    assert assign("data_size", count=4, r_max=8, samples=samples) == [2, 8, 4, 6]
    assert min(assign("data_size", count=20, r_max=8, samples=list(range(20)))) == 1  # never below 1


def test_random_ranks_are_seeded_and_follow_the_probabilities():
    a = assign("random", count=200, seed=1, choices=[2, 8], probs=[0.75, 0.25])
    assert a == assign("random", count=200, seed=1, choices=[2, 8], probs=[0.75, 0.25])
    assert a != assign("random", count=200, seed=2, choices=[2, 8], probs=[0.75, 0.25])
    assert set(a) == {2, 8} and 0.6 < a.count(2) / 200 < 0.9
    with pytest.raises(ValueError, match="probs"):
        assign("random", choices=[2, 8], probs=[1.0])


def test_config_errors_name_the_field(tiny_config):
    cfg = tiny_config("clients.ranks={name: list, values: [1, 2, 4, 8]}")  # lora.rank is 4 in tiny.yaml
    with pytest.raises(ConfigError, match=r"clients.ranks.values: rank 8 is outside 1..lora.rank=4"):
        client_world(cfg, [np.arange(5)] * 4, np.ones(4))
    cfg = tiny_config("clients.ranks={name: speed_tier}")  # fedit cannot combine mixed ranks
    with pytest.raises(ConfigError, match="aggregator.name=fedit needs equal ranks"):
        client_world(cfg, [np.arange(5)] * 4, np.ones(4))
    with pytest.raises(ConfigError, match="clients.ranks.name: unknown rank policy"):
        tiny_config("clients.ranks={name: fastest}")
