"""Name -> implementation tables, and the one way every plugin is built from them.

An aggregator, schedule, partitioner, rank policy or speed profile is one class registered under a name;
the name is what a config's `name` key takes, the class's pydantic `Options` its other keys. Every kind is
built the same way, `REGISTRY.build(name, options, context)`: the options are validated once (a config's
typed options pass through as they are; a plain mapping is validated here, errors naming the field) and
the class's `from_context(options, context)` makes the instance, where the context carries what a plugin
may depend on besides its options: the run's seed, its client count and the server's LoRA rank r_max.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from fedlora.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class PluginContext:
    """What every plugin may depend on besides its options; random draws derive from `seed`."""

    seed: int = 0
    num_clients: int = 1
    r_max: int = 1


class Registry(Generic[T]):
    def __init__(self, kind: str, field: str):
        self.kind = kind
        self.field = field
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"{self.field}: unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def options(self, name: str, options: BaseModel | Mapping[str, Any] | None = None) -> BaseModel:
        """`name`'s options, validated once: an instance of its `Options` passes through as it is."""
        model: type[BaseModel] = self.get(name).Options  # type: ignore[attr-defined]
        if isinstance(options, model):
            return options
        if isinstance(options, BaseModel):
            options = options.model_dump()
        try:
            return model.model_validate(dict(options or {}))
        except ValidationError as exc:
            section = self.field.rsplit(".", 1)[0]
            problems = "; ".join(f"{section}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{self.kind} {name}: {problems}") from None

    def build(self, name: str, options: BaseModel | Mapping[str, Any] | None, context: PluginContext) -> Any:
        """The registered class's `from_context(options, context)`, with `options` validated once."""
        return self.get(name).from_context(self.options(name, options), context)  # type: ignore[attr-defined]
