import pytest

from fedlora.schedules.staleness import StalenessOptions, staleness_weight


def test_staleness_families():
    const = StalenessOptions(name="constant")
    poly = StalenessOptions(name="polynomial", a=0.5)
    hinge = StalenessOptions(name="hinge", a=2.0, b=3)
    assert [staleness_weight(t, const) for t in (0, 1, 10)] == [1.0, 1.0, 1.0]
    assert [staleness_weight(t, poly) for t in (0, 3, 8)] == [1.0, 0.5, 1 / 3]
    assert [staleness_weight(t, hinge) for t in (0, 3, 4, 6)] == [1.0, 1.0, 1 / 3, 1 / 7]
    with pytest.raises(ValueError, match="staleness must be >= 0"):
        staleness_weight(-1, const)
