"""`@redray.remote`: makes a RemoteFunction of a function and an ActorClass of a class."""

from __future__ import annotations

import inspect
from typing import Any

from redray.actor import make_actor_class
from redray.remote_function import RemoteFunction


def make_remote(target: Any, remote_options: dict[str, Any]) -> Any:
    """RemoteFunction for a function, ActorClass for a class."""
    if inspect.isclass(target):
        return make_actor_class(target, remote_options)
    if callable(target):
        return RemoteFunction(target, remote_options)
    raise TypeError(
        "The @redray.remote decorator must be applied to either a function or a class, "
        f"not {type(target).__name__}."
    )


class RemoteDecoratorError(TypeError, AssertionError):
    """`remote` applied wrongly: a TypeError, and an AssertionError as Ray raises."""


def remote(*args: Any, **kwargs: Any) -> Any:
    """Define a remote function or an actor class (decorator, with or without options)."""
    if len(args) == 1 and not kwargs and (callable(args[0]) or inspect.isclass(args[0])):
        return make_remote(args[0], {})
    if args:
        raise RemoteDecoratorError(
            "The @redray.remote decorator must be applied either with no arguments and no "
            "parentheses, for example '@redray.remote', or with keyword arguments only, for "
            "example '@redray.remote(num_returns=2, num_cpus=1)'."
        )
    if not kwargs:
        raise RemoteDecoratorError(
            "The @redray.remote decorator must be applied either with no arguments and no "
            "parentheses, for example '@redray.remote', or with keyword arguments, for "
            "example '@redray.remote(num_returns=2)'."
        )
    return lambda target: make_remote(target, kwargs)
