"""Client-level differential privacy: clipping and Gaussian noise as one engine step, accounted by dp-accounting.

`engine.PrivacyEngine` is what the server calls (central noise, the budget, the ledger); `client.privatize`
what local training calls under client-side noise; `mechanism` the pure tensor functions; `accounting` which
dp-accounting mechanism each release is. docs/privacy.md says what is protected and what is not.
"""

from fedlora.privacy.accounting import Accountant, require_dp_accounting, solve_noise_multiplier
from fedlora.privacy.client import ClientNoise, privatize
from fedlora.privacy.engine import PrivacyEngine, PrivacySettings

__all__ = [
    "Accountant",
    "ClientNoise",
    "PrivacyEngine",
    "PrivacySettings",
    "privatize",
    "require_dp_accounting",
    "solve_noise_multiplier",
]
