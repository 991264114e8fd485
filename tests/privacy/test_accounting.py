"""The accountant is dp-accounting's: its epsilon equals the library's own computation for hand-set numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

dpa = pytest.importorskip("dp_accounting")

from fedlora.privacy.accounting import (  # noqa: E402
    PLD_DISCRETIZATION,
    Accountant,
    planned_epsilon,
    solve_noise_multiplier,
)

Q, SIGMA, STEPS, DELTA = 0.25, 1.1, 30, 1e-5


def test_subsampled_rdp_epsilon_equals_the_library_computation():
    acc = Accountant("rdp", DELTA, SIGMA, sampling_rate=Q)
    for _ in range(STEPS):
        acc.spend({0: SIGMA, 1: SIGMA})
    rdp_mod = dpa.rdp.rdp_privacy_accountant
    orders = np.array(dpa.rdp.RdpAccountant()._orders)
    rdp = np.asarray(rdp_mod._compute_rdp_poisson_subsampled_gaussian(Q, SIGMA, orders)) * STEPS
    expected, _ = rdp_mod.compute_epsilon(orders, rdp, DELTA)
    assert acc.epsilon() == pytest.approx(expected, rel=1e-9)
    assert acc.releases == STEPS


def test_subsampled_pld_epsilon_equals_the_library_computation():
    acc = Accountant("pld", DELTA, SIGMA, sampling_rate=Q)
    for _ in range(STEPS):
        acc.spend({0: SIGMA})
    pld = dpa.pld.privacy_loss_distribution.from_gaussian_mechanism(
        SIGMA, sampling_prob=Q, value_discretization_interval=PLD_DISCRETIZATION
    ).self_compose(STEPS)
    assert acc.epsilon() == pytest.approx(pld.get_epsilon_for_delta(DELTA), rel=1e-3)


def test_composed_ledger_is_the_worst_clients_gaussian_composition():
    acc = Accountant("rdp", DELTA, SIGMA, sampling_rate=None)
    acc.spend({0: SIGMA, 1: 2 * SIGMA})
    acc.spend({0: SIGMA})
    acc.spend({1: SIGMA})
    orders = np.array(dpa.rdp.RdpAccountant()._orders)
    rdp_mod = dpa.rdp.rdp_privacy_accountant
    gauss = lambda s: orders / (2 * s**2)  # noqa: E731  the Gaussian mechanism's RDP
    eps0, _ = rdp_mod.compute_epsilon(orders, 2 * gauss(SIGMA), DELTA)
    eps1, _ = rdp_mod.compute_epsilon(orders, gauss(2 * SIGMA) + gauss(SIGMA), DELTA)
    assert acc.client_epsilons() == pytest.approx({0: eps0, 1: eps1}, rel=1e-9)
    assert acc.epsilon() == pytest.approx(max(eps0, eps1))
    # a hypothetical release costs nothing until spent; a resumed ledger gives the same numbers
    assert acc.after({1: SIGMA}) > acc.epsilon() and acc.releases == 3
    again = Accountant("rdp", DELTA, SIGMA, sampling_rate=None)
    again.load_state_dict(acc.state_dict())
    assert again.epsilon() == acc.epsilon()


def test_no_noise_is_infinite_epsilon_and_no_release_is_zero():
    acc = Accountant("rdp", DELTA, 0.0, sampling_rate=None)
    assert acc.epsilon() == 0.0
    acc.spend({0: 0.0})
    assert math.isinf(acc.epsilon())


@pytest.mark.parametrize("q", [None, 0.5])
def test_the_solved_noise_spends_the_target_over_the_planned_run(q):
    sigma = solve_noise_multiplier(4.0, DELTA, "rdp", 20, q)
    eps = planned_epsilon(sigma, DELTA, "rdp", 20, q)
    assert eps <= 4.0 and eps == pytest.approx(4.0, rel=1e-2)
