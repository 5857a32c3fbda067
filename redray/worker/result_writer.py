"""Committing a task's results without waiting for Redis's reply before saying "done".

The worker writes the commit (one pipelined batch) to its own Redis connection, tells its
node daemon the task is done, and only then reads the reply. The daemon's next dispatch
overlaps the commit's round trip. Nothing is lost by this: once the commands are written,
Redis executes them even if the worker dies before reading the reply, and a duplicate
commit (after a retry) is refused by commit_objects.
"""

from __future__ import annotations

from typing import Any

import redis

from redray.control import reconnect
from redray.control.raw import RawConnection
from redray.control.scripts import Commands


class CommandRecorder:
    """Stands in for a pipeline: records the commands results.py queues on it."""

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def evalsha(self, *args: Any) -> None:
        self.commands.append(("EVALSHA", *args))

    def lpush(self, key: str, *values: Any) -> None:
        self.commands.append(("LPUSH", key, *values))

    def ltrim(self, key: str, start: int, end: int) -> None:
        self.commands.append(("LTRIM", key, start, end))

    def xadd(
        self, key: str, fields: dict[str, Any], maxlen: int | None = None, approximate: bool = True
    ) -> None:
        trim = ("MAXLEN", "~" if approximate else "=", maxlen) if maxlen is not None else ()
        flat = [item for pair in fields.items() for item in pair]
        self.commands.append(("XADD", key, *trim, "*", *flat))

    def xack(self, key: str, group: str, *entry_ids: Any) -> None:
        self.commands.append(("XACK", key, group, *entry_ids))

    def xdel(self, key: str, *entry_ids: Any) -> None:
        self.commands.append(("XDEL", key, *entry_ids))


class ResultWriter:
    def __init__(self, client: redis.Redis, commands: Commands) -> None:
        self._client = client
        self._commands = commands
        self._connection = RawConnection(client)
        self._in_flight: list[tuple[Any, ...]] = []

    def recorder(self) -> CommandRecorder:
        return CommandRecorder()

    def send(self, recorded: CommandRecorder) -> None:
        """Write the recorded commands; their replies are read by finish()."""
        self.finish()
        self._commands.ensure_loaded()
        self._connection.send(recorded.commands)
        self._in_flight = recorded.commands

    def _run_again(self, commands: list[tuple[Any, ...]]) -> None:
        """Through the client, which retries for the grace period (control/reconnect.py),
        with the scripts loaded again (a restarted Redis has none)."""
        self._commands.reload()
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        pipe.execute()

    def finish(self) -> None:
        """Read the replies of the last send(); re-run it if Redis had lost our scripts."""
        in_flight, self._in_flight = self._in_flight, []
        if not in_flight:
            return
        try:
            replies = self._connection.read(len(in_flight))
        except reconnect.CONNECTION_ERRORS:
            # Lost with the connection (Redis restarted, say): run them again. A commit that
            # did land is refused the second time (commit_objects is exactly-once).
            self._connection.close()
            self._run_again(in_flight)
            return
        if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
            self._run_again(in_flight)
            return
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
