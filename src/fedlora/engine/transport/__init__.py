"""WHERE clients run: behind one interface, in-process by default."""

from fedlora.engine.transport.base import Transport

__all__ = ["Transport"]
