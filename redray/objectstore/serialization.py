"""Turning values into bytes and back, with out-of-band buffers for zero-copy reads.

A serialized object is laid out as one contiguous blob, the same in Redis (small objects)
and in a shared-memory file (large ones):

    header: pickled_len u64, n_buffers u64, then n_buffers x (offset u64, length u64)
    pickled stream (cloudpickle, protocol 5)
    each out-of-band buffer, at a 64-byte aligned offset

Reading back slices memoryviews of that blob, so numpy arrays (and any other object that
exposes buffers) come back pointing into the blob itself: no copy, and read-only when the
blob is a read-only mapping.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from redray.objectstore.code_pickle import CodePickler

_ALIGN = 64
_HEADER = struct.Struct("<QQ")
_SLOT = struct.Struct("<QQ")

#: Values whose blob is at most this size are stored inline in Redis.
INLINE_MAX_BYTES = 100 * 1024

_context = threading.local()


def note_contained_ref(ref: Any) -> None:
    """Called by ObjectRef.__reduce__ so that serialize() knows which refs a value holds."""
    found = getattr(_context, "refs", None)
    if found is not None:
        found.append(ref)


@contextmanager
def _collecting_refs() -> Iterator[list[Any]]:
    previous = getattr(_context, "refs", None)
    _context.refs = []
    try:
        yield _context.refs
    finally:
        _context.refs = previous


@dataclass
class SerializedObject:
    """A value as a pickle stream plus the raw buffers it refers to out of band."""

    pickled: bytes
    buffers: list[memoryview]
    contained_refs: list[Any] = field(default_factory=list)

    def _layout(self) -> tuple[bytes, list[tuple[int, int]], int]:
        header_len = _HEADER.size + _SLOT.size * len(self.buffers)
        offset = header_len + len(self.pickled)
        slots = []
        for buf in self.buffers:
            offset = _aligned(offset)
            slots.append((offset, buf.nbytes))
            offset += buf.nbytes
        header = _HEADER.pack(len(self.pickled), len(self.buffers)) + b"".join(
            _SLOT.pack(*slot) for slot in slots
        )
        return header, slots, offset

    @property
    def total_size(self) -> int:
        return self._layout()[2]

    def chunks(self) -> Iterator[memoryview | bytes]:
        """The blob as a sequence of pieces (padding included), without copying buffers."""
        header, slots, _ = self._layout()
        yield header
        yield self.pickled
        position = len(header) + len(self.pickled)
        for (offset, _), buf in zip(slots, self.buffers):
            if offset > position:
                yield bytes(offset - position)
            yield buf
            position = offset + buf.nbytes

    def to_bytes(self) -> bytes:
        return b"".join(self.chunks())

    def write_to_fd(self, fd: int) -> None:
        """Write the blob with as few syscalls (and copies) as the kernel allows."""
        pending = [memoryview(c).cast("B") for c in self.chunks() if len(c)]
        while pending:
            written = os.writev(fd, pending[:1024])
            while written and pending:
                head = pending[0]
                if written >= head.nbytes:
                    written -= head.nbytes
                    pending.pop(0)
                else:
                    pending[0] = head[written:]
                    written = 0

    def write_to_buffer(self, destination: memoryview) -> None:
        """Copy the blob into a writable buffer of `total_size` bytes (one memcpy per chunk)."""
        offset = 0
        for chunk in self.chunks():
            view = memoryview(chunk).cast("B")
            destination[offset : offset + view.nbytes] = view
            offset += view.nbytes


def _aligned(offset: int) -> int:
    return (offset + _ALIGN - 1) // _ALIGN * _ALIGN


_custom_reducers: dict[type, Callable[[Any], tuple]] = {}


def register_reducer(cls: type, reducer: Callable[[Any], tuple]) -> None:
    """Serialize instances of `cls` with `reducer` (a __reduce__-style callable)."""
    _custom_reducers[cls] = reducer


def deregister_reducer(cls: type) -> None:
    _custom_reducers.pop(cls, None)


class _Pickler(CodePickler):
    def reducer_override(self, obj: Any) -> Any:
        reducer = _custom_reducers.get(type(obj)) if _custom_reducers else None
        if reducer is not None:
            return reducer(obj)
        return super().reducer_override(obj)


def serialize(value: Any) -> SerializedObject:
    """Pickle `value`, keeping large buffers (numpy data, bytes-like) out of band."""
    buffers: list[memoryview] = []

    def keep(buf: pickle.PickleBuffer) -> bool:
        # Every buffer out of band, however small: a numpy array then comes back as a
        # read-only view of the stored object, as in Ray, not as a private copy.
        buffers.append(buf.raw())
        return False

    stream = io.BytesIO()
    with _collecting_refs() as refs:
        _Pickler(stream, protocol=5, buffer_callback=keep).dump(value)
    return SerializedObject(stream.getvalue(), buffers, list(refs))


def deserialize(blob: bytes | memoryview) -> Any:
    """Rebuild a value from its blob; buffers are views into `blob`, not copies."""
    view = memoryview(blob)
    pickled_len, n_buffers = _HEADER.unpack_from(view, 0)
    buffers = []
    position = _HEADER.size
    for _ in range(n_buffers):
        offset, length = _SLOT.unpack_from(view, position)
        buffers.append(view[offset : offset + length])
        position += _SLOT.size
    return pickle.loads(view[position : position + pickled_len], buffers=buffers)


def dumps(value: Any) -> bytes:
    """Plain cloudpickle, for specs and functions (no out-of-band buffers)."""
    return cloudpickle.dumps(value, protocol=5)
