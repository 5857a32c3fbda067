"""Resource arithmetic shared by the node choice and the local scheduler."""

from __future__ import annotations

from collections.abc import Mapping

# Quantities are compared with a little slack so that ten 0.1-CPU tasks fit in one CPU.
EPSILON = 1e-9


def fits(demand: Mapping[str, float], available: Mapping[str, float]) -> bool:
    return all(available.get(name, 0.0) + EPSILON >= amount for name, amount in demand.items())


def subtract(available: dict[str, float], demand: Mapping[str, float]) -> None:
    for name, amount in demand.items():
        available[name] = available.get(name, 0.0) - amount


def add(available: dict[str, float], demand: Mapping[str, float]) -> None:
    for name, amount in demand.items():
        available[name] = available.get(name, 0.0) + amount


def shape_key(demand: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """A hashable name for a demand, to queue tasks of the same shape together."""
    return tuple(sorted(demand.items()))
