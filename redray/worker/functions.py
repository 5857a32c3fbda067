"""Functions (and classes) by id, loaded from the function table once per worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cloudpickle
import redis

from redray.control import keys
from redray.exceptions import RaySystemError


class FunctionCache:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._loaded: dict[str, Callable[..., Any]] = {}
        #: The Redis this worker started with (see client/store_reset.py).
        self._epoch = client.get(keys.EPOCH)

    def load(self, function_id: str) -> Callable[..., Any]:
        function = self._loaded.get(function_id)
        if function is None:
            pickled = self._client.get(keys.function(function_id))
            if pickled is None:
                if self._client.get(keys.EPOCH) != self._epoch:
                    raise RaySystemError(
                        "Redis restarted without its data while this task was pending, so its "
                        f"function ({function_id}) was lost; submit the task again."
                    )
                raise RuntimeError(f"function {function_id} is missing from the function table")
            function = self._loaded[function_id] = cloudpickle.loads(pickled)
        return function
