"""Pickling functions and classes by value without losing their tracebacks.

cloudpickle (3.1.3 and later) replaces the file name of every code object it pickles by
value with "<dynamic-code>", so a remote traceback would read `File "<dynamic-code>", line
31` with no source line. redray pickles code objects itself, with `marshal`, which keeps
every field, file name included. That is as version-bound as cloudpickle's own code
pickling: both sides of a cluster run one Python minor version.

Exported functions and classes (`dumps_with_sources`) also carry the source lines of the
files their code came from, read from `linecache` on the driver (so notebook cells, which
IPython registers there, work too). Loading the export puts those lines into the worker's
`linecache` before any code runs, so tracebacks show source lines even on a node where the
file does not exist. They are shipped once per export, never per task.
"""

from __future__ import annotations

import io
import linecache
import marshal
import pickle
import types
from typing import Any

import cloudpickle

#: A file larger than this ships without its source lines (its tracebacks still name it).
MAX_SOURCE_BYTES = 1 << 20


def reduce_code(code: types.CodeType) -> tuple[Any, tuple[bytes]]:
    """A code object as marshal's bytes: file name, line table and all."""
    return marshal.loads, (marshal.dumps(code),)


class CodePickler(cloudpickle.CloudPickler):
    """cloudpickle, except that code objects keep their file names.

    `filenames` collects the files of every code object pickled, for `dumps_with_sources`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filenames: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.CodeType:
            self.filenames.add(obj.co_filename)
            return reduce_code(obj)
        return super().reducer_override(obj)


def _source_lines(filename: str) -> list[str]:
    lines = linecache.getlines(filename)
    if sum(len(line) for line in lines) > MAX_SOURCE_BYTES:
        return []
    return lines


def install_sources(sources: dict[str, list[str]]) -> None:
    """Make `linecache` answer for these files with the shipped lines.

    An entry whose modification time is None is never checked against the disk (it is how
    linecache keeps lines it got from a loader), so the lines stay those of the exported
    code even where a different file of that name exists.
    """
    for filename, lines in sources.items():
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)


def _load_with_sources(sources: dict[str, list[str]], payload: bytes) -> Any:
    install_sources(sources)
    return pickle.loads(payload)


class _WithSources:
    """Pickles as: install these source lines, then unpickle the payload."""

    def __init__(self, sources: dict[str, list[str]], payload: bytes) -> None:
        self.sources = sources
        self.payload = payload

    def __reduce__(self) -> tuple[Any, tuple[dict[str, list[str]], bytes]]:
        return _load_with_sources, (self.sources, self.payload)


def dumps_with_sources(target: Any) -> bytes:
    """Pickle a function or class for the function table, with its files' source lines.

    `pickle.loads` of the result returns `target`, having filled the loading process's
    linecache first.
    """
    stream = io.BytesIO()
    pickler = CodePickler(stream, protocol=5)
    pickler.dump(target)
    payload = stream.getvalue()
    sources = {name: lines for name in sorted(pickler.filenames) if (lines := _source_lines(name))}
    if not sources:
        return payload
    return pickle.dumps(_WithSources(sources, payload), protocol=5)
