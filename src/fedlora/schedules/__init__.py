"""When the server combines and with which weights. Add one: a new module here that registers a class."""

from fedlora.schedules import fedasync, fedavg, fedbuff, fedfa
from fedlora.schedules.base import SCHEDULES, Schedule, ServerView, Step

__all__ = ["SCHEDULES", "Schedule", "ServerView", "Step", "fedasync", "fedavg", "fedbuff", "fedfa"]
