"""Noticing that Redis came back empty after an outage (no persistence), and saying so.

Every client learns the cluster's epoch (a random id in `{p}epoch`, set by whoever finds
it missing) when it starts, and compares it after each reconnection. A different epoch
means everything Redis held is gone: the tasks and actor calls this process was waiting
for fail with a RaySystemError naming the restart (their results can never arrive), and
the process re-registers and reloads what it had put into Redis once (Lua commands,
exported functions). Node daemons re-register by themselves (node/daemon.py).
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import redis

from redray.control import keys, reconnect
from redray.exceptions import RaySystemError

if TYPE_CHECKING:
    from redray.client.core import CoreClient

logger = logging.getLogger(__name__)


def current_epoch(client: redis.Redis) -> str:
    """The cluster's epoch, set now if Redis has none (a new or emptied Redis)."""
    client.set(keys.EPOCH, secrets.token_hex(8), nx=True)
    value = client.get(keys.EPOCH)
    return value.decode() if isinstance(value, bytes) else str(value)


def check_after_reconnect(client: CoreClient, epoch_now: str) -> None:
    """Fail what this process waits for if Redis lost it; adopt the new epoch."""
    if epoch_now == client.epoch:
        return
    client.epoch = epoch_now
    where = reconnect.describe(client.redis_kwargs)
    logger.error("redray: %s restarted empty: pending tasks and objects were lost", where)
    client.commands.reload()
    client.export_again()
    client.register()
    error = RaySystemError(
        f"{where} restarted without its data while this task was pending, so its result "
        "was lost; submit the task again."
    )
    # What was written after the batcher reconnected went to the new Redis: it stays.
    sent_before = client.batcher.generation
    lost = [*client.in_flight_tasks(sent_before), *client.pending_actor_calls()]
    for task_id, _, return_ids in lost:
        client.commit_error(task_id, return_ids, error, final_state="finished")
