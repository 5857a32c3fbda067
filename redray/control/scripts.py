"""Loads the named Lua commands of commands.lua and calls them with the key prefix.

Scripts are loaded into Redis once per client and then called by SHA, also inside
pipelines. (redis-py's registered scripts would ask SCRIPT EXISTS before every pipeline
that holds one: an extra round trip on the hot path of every task result.)
"""

from __future__ import annotations

import hashlib
import inspect
import re
from importlib import resources
from typing import Any

import redis

from redray.control import keys

_SECTION = re.compile(r"^-- command: (\w+)\s*$", re.MULTILINE)


def key_preamble() -> str:
    """Lua that defines the table `key` from redray/control/keys.py, so that no key name is
    spelled twice: `key.NODES` for each constant key, `key.task(task_id)` for each key
    function (and `key.ACTOR_GROUP`, `key.QUEUE_GROUP` for the consumer groups). Built on
    ARGV[1], the prefix every command receives."""
    lines = ["local key = {}"]
    for name, value in vars(keys).items():
        if name.startswith("_") or name == "PREFIX":
            continue
        if isinstance(value, str) and value.startswith(keys.PREFIX):
            lines.append(f"key['{name}'] = ARGV[1] .. {_lua_string(value[len(keys.PREFIX) :])}")
        elif isinstance(value, str) and name.isupper():
            lines.append(f"key['{name}'] = {_lua_string(value)}")
        elif inspect.isfunction(value) and value.__module__ == keys.__name__:
            params = list(inspect.signature(value).parameters)
            markers = [f"\x00{i}\x00" for i in range(len(params))]
            built = value(*markers)
            assert built.startswith(keys.PREFIX), f"keys.{name} does not start with PREFIX"
            pieces = ["ARGV[1]"]
            for piece in re.split("(\x00\\d+\x00)", built[len(keys.PREFIX) :]):
                if piece.startswith("\x00"):
                    pieces.append(params[int(piece.strip("\x00"))])
                elif piece:
                    pieces.append(_lua_string(piece))
            body = " .. ".join(pieces)
            lines.append(f"key['{name}'] = function({', '.join(params)}) return {body} end")
    return "\n".join(lines) + "\n"


def _lua_string(text: str) -> str:
    assert "'" not in text and "\\" not in text, text
    return f"'{text}'"


def _load_sources() -> dict[str, str]:
    """Each command's script: the generated key table and the shared library (the file's
    preamble) prepended."""
    text = resources.files("redray.control").joinpath("commands.lua").read_text()
    parts = _SECTION.split(text)
    # parts = [preamble (header comments + library functions), name1, body1, name2, ...]
    library = key_preamble() + parts[0]
    return {parts[i]: library + parts[i + 1] for i in range(1, len(parts), 2)}


_SOURCES = _load_sources()
_SHAS = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in _SOURCES.items()}


class Commands:
    """The Lua commands bound to one Redis client; `pipe=` queues one on a pipeline."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._loaded = False

    def reload(self) -> None:
        pipe = self._client.pipeline(transaction=False)
        for source in _SOURCES.values():
            pipe.script_load(source)
        pipe.execute()
        self._loaded = True

    def ensure_loaded(self) -> None:
        if not self._loaded:
            self.reload()

    def raw(self, name: str, *args: Any) -> tuple[Any, ...]:
        """The command that runs a Lua command, for a RawConnection or WriteBatcher."""
        self.ensure_loaded()
        return ("EVALSHA", _SHAS[name], 0, keys.PREFIX, *args)

    def call(self, name: str, *args: Any, pipe: Any = None) -> Any:
        self.ensure_loaded()
        target = pipe if pipe is not None else self._client
        try:
            return target.evalsha(_SHAS[name], 0, keys.PREFIX, *args)
        except redis.exceptions.NoScriptError:
            # Redis was restarted or flushed its script cache since we loaded.
            self.reload()
            return target.evalsha(_SHAS[name], 0, keys.PREFIX, *args)
