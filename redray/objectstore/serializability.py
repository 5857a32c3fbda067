"""What inside an object cannot be pickled: Ray's `inspect_serializability`, and the
explanation added to the TypeError of a task argument, return value or put that cannot be
serialized.

The walk pickles the object; if that fails it pickles its parts (a function's globals and
nonlocals, a container's items, an instance's attributes) and goes down into each part
that fails too, `depth` levels at most. The failures reported are the deepest failing
parts: those whose own parts all pickle (or that have none, or lie at the depth limit).
"""

from __future__ import annotations

import inspect
import io
from collections.abc import Iterator
from typing import IO, Any

from redray.objectstore.serialization import serialize

_RULE_WIDTH = 80


class FailureTuple:
    """One part that cannot be pickled: the object, the names leading to it from the
    inspected object, and the object that holds it."""

    def __init__(self, obj: Any, path: tuple[str, ...], parent: Any) -> None:
        self.obj = obj
        self.path = path
        self.parent = parent

    def __repr__(self) -> str:
        names = [str(p) if p is not None else "unknown" for p in self.path]
        name = names[-1] if names else "unknown"
        return (
            f"FailTuple({name} [path={' -> '.join(names)}, obj={self.obj}, parent={self.parent}])"
        )


def _pickles(obj: Any) -> Exception | None:
    """None if redray can serialize `obj`, else the error it raises."""
    try:
        serialize(obj)
    except Exception as error:
        return error
    return None


def _parts(obj: Any) -> Iterator[tuple[str, Any]]:
    """The named parts of `obj` that its pickle is made of."""
    if inspect.isfunction(obj):
        closure = inspect.getclosurevars(obj)
        yield from closure.globals.items()
        yield from closure.nonlocals.items()
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield repr(key), value
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for index, item in enumerate(obj):
            yield f"[{index}]", item
    elif not inspect.isclass(obj) and not inspect.ismodule(obj):
        attributes = getattr(obj, "__dict__", None)
        if isinstance(attributes, dict):
            yield from attributes.items()
        for slot in getattr(type(obj), "__slots__", ()):
            if isinstance(slot, str) and hasattr(obj, slot):
                yield slot, getattr(obj, slot)


class _Inspection:
    def __init__(self, out: IO[str] | None) -> None:
        self.out = out
        self.level = 0
        self.failures: set[FailureTuple] = set()

    def say(self, message: str) -> None:
        print("    " * self.level + message, file=self.out)

    def visit(self, obj: Any, path: tuple[str, ...], parent: Any, depth: int) -> bool:
        """True if `obj` pickles; otherwise record its deepest failing parts."""
        if path and self.level:
            self.say(f"Serializing '{path[-1]}' {obj}...")
        error = _pickles(obj)
        if error is None:
            return True
        self.say(f"!!! FAIL serialization: {error}")
        found = False
        if depth > 0:
            self.level += 1
            for name, part in _parts(obj):
                if not self.visit(part, (*path, name), obj, depth - 1):
                    found = True
            self.level -= 1
        if not found:
            self.failures.add(FailureTuple(obj, path, parent))
        return False


def inspect_serializability(
    base_obj: Any, name: str | None = None, depth: int = 3, print_file: IO[str] | None = None
) -> tuple[bool, set[FailureTuple]]:
    """Whether `base_obj` can be serialized, and the parts of it that cannot be.

    Prints what it tried to `print_file` (stdout by default), as Ray does.

    Example::

        ok, failures = inspect_serializability(my_function, name="my_function")
    """
    inspection = _Inspection(print_file)
    banner = f"Checking Serializability of {base_obj}"
    rule = "=" * min(len(banner), _RULE_WIDTH)
    inspection.say(rule)
    inspection.say(banner)
    inspection.say(rule)
    path = (name,) if name is not None else ()
    serializable = inspection.visit(base_obj, path, None, depth)
    if not serializable:
        failed = "\n".join(f"\t{failure}" for failure in inspection.failures)
        inspection.say(f"Variable: \n\n{failed}\n\nwas found to be non-serializable.")
        inspection.say(
            "Consider either removing the instantiation/imports of these variables or "
            "moving the instantiation into the scope of the function/class."
        )
        inspection.say(rule)
    return serializable, inspection.failures


def serialization_error(what: str, value: Any, error: Exception) -> TypeError:
    """The TypeError for a value that cannot be serialized: `what` it was (e.g. "the
    argument ... for task f"), the pickling error, and the inspection of the value."""
    report = io.StringIO()
    try:
        inspect_serializability(value, print_file=report)
    except Exception as failed:  # the explanation must never hide the original error
        report.write(f"(inspecting the value failed too: {failed})\n")
    return TypeError(f"Could not serialize {what}: {error}\n{report.getvalue()}")


__all__ = ["FailureTuple", "inspect_serializability", "serialization_error"]
