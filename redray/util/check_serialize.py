"""Ray's `ray.util.check_serialize` module: finding what cannot be serialized."""

from redray.objectstore.serializability import FailureTuple, inspect_serializability

__all__ = ["FailureTuple", "inspect_serializability"]
