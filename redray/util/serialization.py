"""Custom serializers for types cloudpickle cannot handle (or should handle differently).

As in Ray, a registration applies to the process that makes it: values of `cls` that this
process serializes (put, task arguments, return values) go through `serializer`; the
`deserializer` travels inside the serialized value, so any process can read it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redray.objectstore.serialization import deregister_reducer, register_reducer


def register_serializer(
    cls: type, *, serializer: Callable[[Any], Any], deserializer: Callable[[Any], Any]
) -> None:
    """Serialize instances of exactly `cls` as `serializer(obj)`, read back by `deserializer`."""
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer() needs a class, got {cls!r}.")
    if not callable(serializer) or not callable(deserializer):
        raise TypeError("register_serializer() needs callable serializer and deserializer.")

    def reduce(obj: Any) -> tuple:
        return (deserializer, (serializer(obj),))

    register_reducer(cls, reduce)


def deregister_serializer(cls: type) -> None:
    """Undo register_serializer: instances of `cls` are pickled as usual again."""
    deregister_reducer(cls)
