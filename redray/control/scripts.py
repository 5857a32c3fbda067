"""Loads the named Lua commands of commands.lua and calls them with the key prefix."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import redis

from redray.control import keys

_SECTION = re.compile(r"^-- command: (\w+)\s*$", re.MULTILINE)


def _load_sources() -> dict[str, str]:
    text = resources.files("redray.control").joinpath("commands.lua").read_text()
    parts = _SECTION.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


_SOURCES = _load_sources()


class Commands:
    """The Lua commands bound to one Redis client; `pipe=` runs one inside a pipeline."""

    def __init__(self, client: redis.Redis) -> None:
        self._scripts = {name: client.register_script(src) for name, src in _SOURCES.items()}

    def call(self, name: str, *args: Any, pipe: redis.client.Pipeline | None = None) -> Any:
        script = self._scripts[name]
        return script(args=[keys.PREFIX, *args], client=pipe)
