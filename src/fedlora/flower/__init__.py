"""fedlora on Flower: the same schedules and aggregators, with clients in Flower SuperNodes.

Everything that imports `flwr` lives in this package and is imported lazily, so the core runs without
Flower installed. `require_flower()` turns a missing install into an error that says what to install.
"""

from __future__ import annotations

from fedlora.errors import FedLoraError

INSTALL_HINT = 'pip install "fedlora[flower]"'


class FlowerMissing(FedLoraError, ImportError):
    """The optional Flower dependency is not installed."""


def require_flower() -> None:
    """Raise `FlowerMissing` (with the install command) unless `flwr` can be imported."""
    try:
        import flwr  # noqa: F401
    except ImportError as exc:
        raise FlowerMissing(f"this needs Flower, which is not installed: {INSTALL_HINT}") from exc
