"""One plugin convention: every kind is built from (options, context) through its registry."""

from __future__ import annotations

import pytest

from fedlora.aggregators import AGGREGATORS
from fedlora.clients.ranks import RANK_POLICIES
from fedlora.clients.speeds import SPEED_PROFILES
from fedlora.config import SpeedConfig, load_config
from fedlora.data.partitioners import PARTITIONERS
from fedlora.errors import ConfigError
from fedlora.registry import PluginContext
from fedlora.schedules import SCHEDULES

CONTEXT = PluginContext(seed=7, num_clients=5, r_max=8)


@pytest.mark.parametrize(
    ("registry", "name", "options"),
    [
        (AGGREGATORS, "hlora", {"sigma": "split"}),
        (SCHEDULES, "fedbuff", {"buffer_size": 3}),
        (PARTITIONERS, "label", {"alpha": 0.5}),
        (RANK_POLICIES, "speed_tier", {}),
    ],
)
def test_every_kind_is_built_from_options_and_the_context(registry, name, options):
    built = registry.build(name, options, CONTEXT)
    assert isinstance(built, registry.get(name))
    assert built.options == registry.options(name, options)
    assert getattr(built, "seed", CONTEXT.seed) == CONTEXT.seed  # seeded plugins take the run's seed
    if registry is AGGREGATORS:
        assert built.rank == CONTEXT.r_max
    if registry is SCHEDULES:
        assert built.num_clients == CONTEXT.num_clients


def test_a_configs_options_are_validated_once_and_passed_down_as_they_are(tiny_config):
    cfg = tiny_config("aggregator={name: zeropad, weights: norm}", "schedule={name: fedasync, alpha: 0.5}")
    typed = cfg.aggregator.typed_options()
    assert cfg.aggregator.typed_options() is typed  # validated when the config was, kept
    assert AGGREGATORS.build("zeropad", typed, CONTEXT).options is typed
    assert SCHEDULES.build("fedasync", cfg.schedule.typed_options(), CONTEXT).options is cfg.schedule.typed_options()


def test_options_given_as_a_mapping_are_validated_with_the_field_named():
    with pytest.raises(ConfigError, match=r"schedule\.buffer_size"):
        SCHEDULES.build("fedbuff", {"buffer_size": 0}, CONTEXT)
    with pytest.raises(ConfigError, match=r"aggregator\.nonsense"):
        AGGREGATORS.build("fedit", {"nonsense": 1}, CONTEXT)


def test_speed_profiles_are_registered_plugins_that_draw_the_same_speeds():
    from fedlora.clients.speeds import draw_speeds

    assert list(SPEED_PROFILES) == sorted(["constant", "uniform", "normal", "pareto", "zipf", "list"])
    profile = SpeedConfig(name="pareto", shape=1.0)
    a, b = draw_speeds(profile, 6, seed=3), draw_speeds(profile, 6, seed=3)
    assert (a == b).all() and len(set(a.tolist())) == 6 and (a >= profile.min_speed).all()
    assert load_config(None, ["clients.speeds={name: zipf}"]).clients.speeds.name in SPEED_PROFILES
