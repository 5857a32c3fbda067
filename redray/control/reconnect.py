"""Riding out a lost connection to Redis: retry with backoff, then fail clearly.

Every redray process talks to Redis through clients made here. A client (driver, worker,
actor) retries a failed command or connection with exponential backoff for a grace period
(`REDRAY_REDIS_GRACE_S`, or `init(_system_config={"redis_grace_s": ...})`; default 60 s)
and then raises `RedisUnreachableError`, a `RaySystemError` naming the address it could not
reach. Sockets time out (`SOCKET_TIMEOUT`), so a stopped or partitioned Redis is noticed
rather than waited on forever. Loops that manage their own reconnection (the notification
reader, the node daemon) take a client that fails fast and use `Backoff` themselves.

A command whose reply was lost may have run: a retried command can run twice. The
commands that matter (commits, requeues) are exactly-once Lua commands, so a second run is
refused.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redray.exceptions import RaySystemError

#: How long a client keeps retrying before it gives up (seconds); tests set it short.
GRACE_ENV = "REDRAY_REDIS_GRACE_S"
DEFAULT_GRACE_SECONDS = 60.0
#: The longest any one read or connect may take. Blocking commands block for at most a
#: few seconds (notification reads 1 s, idle actors 2 s), so a reply that takes longer
#: means Redis is stopped or unreachable.
SOCKET_TIMEOUT = 5.0
#: What a lost connection raises, from redis-py and the OS.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    TimeoutError,
    ConnectionError,
)

T = TypeVar("T")


def grace_seconds() -> float:
    """The grace period: REDRAY_REDIS_GRACE_S if set, else 60 s."""
    value = os.environ.get(GRACE_ENV)
    if not value:
        return DEFAULT_GRACE_SECONDS
    try:
        grace = float(value)
    except ValueError:
        raise ValueError(f"{GRACE_ENV} must be a number of seconds, got {value!r}.") from None
    if grace <= 0:
        raise ValueError(f"{GRACE_ENV} must be positive, got {value!r}.")
    return grace


def set_grace_seconds(seconds: float) -> None:
    """Set the grace period for this process and every process it starts afterwards."""
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"redis_grace_s must be a positive number of seconds, got {seconds!r}.")
    os.environ[GRACE_ENV] = str(float(seconds))


def describe(redis_kwargs: dict[str, Any]) -> str:
    """Where Redis is, as a person would name it."""
    socket_path = redis_kwargs.get("unix_socket_path") or redis_kwargs.get("path")
    if socket_path:  # `path` in a connection pool's kwargs
        return f"Redis at {socket_path}"
    return f"Redis at {redis_kwargs.get('host', 'localhost')}:{redis_kwargs.get('port', 6379)}"


class RedisUnreachableError(RaySystemError, redis.ConnectionError):
    """Redis (the cluster's control store) could not be reached within the grace period.

    A `RaySystemError`, as Ray raises when its GCS is gone; also a redis-py ConnectionError,
    so internal cleanup that tolerates a lost connection tolerates this one too.
    """

    def __init__(self, where: str, seconds: float, cause: BaseException | str) -> None:
        message = (
            f"cannot reach the cluster's control store ({where}) for {seconds:g} s: "
            f"{str(cause).rstrip('.')}. "
            f"Check that redis-server is running and reachable; the grace period is set by "
            f"{GRACE_ENV} or init(_system_config={{'redis_grace_s': ...}})."
        )
        super().__init__(message)
        self.where = where


class Backoff:
    """Exponential backoff with jitter, from 50 ms up to 1 s."""

    def __init__(self, first: float = 0.05, cap: float = 1.0) -> None:
        self._first, self._cap = first, cap
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def next_delay(self) -> float:
        self._failures += 1
        delay = min(self._cap, self._first * 2 ** min(self._failures, 16))
        return delay * random.uniform(0.5, 1.0)


class Outage:
    """When a connection has been failing since, and whether the grace period is over."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.since: float | None = None
        self.backoff = Backoff()

    def failed(self) -> bool:
        """Record a failure; True once failures have lasted the whole grace period."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return now - self.since >= grace_seconds()

    def recovered(self) -> None:
        self.since = None
        self.backoff.reset()

    def error(self, cause: BaseException | str) -> RedisUnreachableError:
        return RedisUnreachableError(self.where, grace_seconds(), cause)


class _GraceRetry(Retry):
    """redis-py's retry policy, bounded by time (the grace period) rather than a count."""

    def __init__(self, where: str) -> None:
        super().__init__(NoBackoff(), -1, supported_errors=CONNECTION_ERRORS)
        self._where = where

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        outage = Outage(self._where)
        failures = 0
        while True:
            try:
                return do()
            except RedisUnreachableError:
                raise
            except CONNECTION_ERRORS as error:
                if is_retryable and not is_retryable(error):  # type: ignore[arg-type]
                    raise
                failures += 1
                fail(error, failures) if with_failure_count else fail(error)
                if outage.failed():
                    raise outage.error(error) from error
                time.sleep(outage.backoff.next_delay())


def client(redis_kwargs: dict[str, Any], *, retry: bool = True) -> redis.Redis:
    """A redis-py client with socket timeouts; with `retry`, commands and connections are
    retried for the grace period and then raise RedisUnreachableError. Without it they
    fail at once (for loops that reconnect on their own terms). Connections made from its
    pool (control/raw.py) behave the same."""
    where = describe(redis_kwargs)
    policy = _GraceRetry(where) if retry else Retry(NoBackoff(), 0)
    return redis.Redis(
        **redis_kwargs,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        retry=policy,
    )


def with_env_password(redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    """A helper process's connection settings: the password comes by environment
    (REDRAY_REDIS_PASSWORD), never on its command line, where `ps` would show it."""
    password = os.environ.get("REDRAY_REDIS_PASSWORD")
    return {**redis_kwargs, "password": password} if password else dict(redis_kwargs)
