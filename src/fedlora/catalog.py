"""`fedlora methods`: every registered aggregator, schedule, partitioner, rank policy and speed profile, one line each.

Why a command: the names are what a config's `name` keys take, and they grow with every registered file;
reading them off the code (or the long config reference) is what a new user should not have to do.
"""

from __future__ import annotations

import re
from typing import get_args

import typer

WIDTH = 110  # a description is cut to this many characters, so every method stays on one line


def catalog() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(section title, [(name, one-line description)])] in the order `fedlora methods` prints them."""
    from fedlora.aggregators import AGGREGATORS
    from fedlora.clients.ranks import RANK_POLICIES
    from fedlora.clients.speeds import SPEED_PROFILES
    from fedlora.config import SpeedConfig
    from fedlora.data.partitioners import PARTITIONERS
    from fedlora.docs_reference import _implementation_doc
    from fedlora.schedules import SCHEDULES

    sections = []
    for title, registry in (
        ("aggregators (aggregator.name)", AGGREGATORS),
        ("schedules (schedule.name)", SCHEDULES),
        ("partitioners (partition.name)", PARTITIONERS),
        ("rank policies (clients.ranks.name)", RANK_POLICIES),
    ):
        sections.append((title, [(n, one_line(_implementation_doc(registry.get(n)))) for n in registry.names()]))
    speeds = get_args(SpeedConfig.model_fields["name"].annotation)  # in the config's order
    described = [(n, one_line(_implementation_doc(SPEED_PROFILES.get(n)))) for n in speeds]
    sections.append(("speed profiles (clients.speeds.name)", described))
    return sections


def one_line(doc: str) -> str:
    """The first sentence of a docstring paragraph, cut to WIDTH characters."""
    text = re.split(r"(?<=\.)\s", doc.strip(), maxsplit=1)[0]
    return text if len(text) <= WIDTH else text[: WIDTH - 3].rstrip() + "..."


def methods_command() -> None:
    """List the aggregators, schedules, partitioners, rank policies and speed profiles, one line each."""
    lines = []
    for title, items in catalog():
        lines.append(f"{title}:")
        pad = max(len(n) for n, _ in items)
        lines += [f"  {n:<{pad}}  {text}" for n, text in items]
        lines.append("")
    lines.append("each name's options: `fedlora config-reference` (docs/config-reference.md)")
    typer.echo("\n".join(lines))
