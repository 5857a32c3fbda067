"""Functions (and classes) by id, loaded from the function table once per worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cloudpickle
import redis

from redray.control import keys


class FunctionCache:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._loaded: dict[str, Callable[..., Any]] = {}

    def load(self, function_id: str) -> Callable[..., Any]:
        function = self._loaded.get(function_id)
        if function is None:
            pickled = self._client.get(keys.function(function_id))
            if pickled is None:
                raise RuntimeError(f"function {function_id} is missing from the function table")
            function = self._loaded[function_id] = cloudpickle.loads(pickled)
        return function
