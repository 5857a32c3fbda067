"""`cancel()` of an actor call, as Ray 2.x does it.

* A queued call never runs; a call running on a sync actor is not interrupted (its result
  is discarded); a call running on an async actor gets asyncio.CancelledError in its
  coroutine. Either way get() raises the cancellation.
* `force=True` is not supported for actor calls: ValueError, as in Ray.

The canceller commits the error first (exactly once, final state "cancelled", so the
actor's own result is refused): TaskCancelledError for a call of an in-order actor, and,
for an async or threaded actor, a RayTaskError caused by TaskCancelledError (which
`except TaskCancelledError` and `except RayTaskError` both catch), as Ray's errors are.
Then it tells the actor, through its mailbox and its socket when this process has one:
the actor skips the call if it has not started it, and cancels its coroutine if it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redray.control import keys
from redray.control.messages import CancelCallMessage, xadd
from redray.exceptions import RayTaskError, TaskCancelledError

if TYPE_CHECKING:
    from redray.client.core import CoreClient


def cancel_actor_call(
    client: CoreClient, actor_id: str, task_id: str, return_ids: list[str], force: bool
) -> None:
    if force:
        raise ValueError(
            "force=True is not supported for actor tasks: a running call of a sync actor "
            "cannot be interrupted (use redray.kill() to stop the actor)."
        )
    error: Exception = TaskCancelledError(task_id)
    in_order = bool(client.redis.hget(keys.actor(actor_id), "direct"))
    if not in_order:
        error = RayTaskError(function_name=task_id, traceback_str="", cause=error)
    if not client.commit_error(task_id, return_ids, error, final_state="cancelled"):
        return  # already finished: cancelling does nothing
    client.redis.execute_command(*xadd(keys.actor_mailbox(actor_id), CancelCallMessage(task_id)))
    client.direct.send_cancel(actor_id, task_id)
