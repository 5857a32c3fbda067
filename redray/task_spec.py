"""What a node needs to run one task: the TaskSpec, built by the submitter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: An argument as it travels in a spec:
#:   ("v", blob)                   an inline serialized value
#:   ("o", object_id, entry)       a resolved ObjectRef; entry = (kind, size, node, data)
Arg = tuple


@dataclass
class TaskSpec:
    task_id: str
    name: str
    function_id: str
    args: list[Arg]
    kwargs: dict[str, Arg]
    return_ids: list[str]
    owner: str
    demand: dict[str, float]
    job_id: str = ""
    #: The submitting job's namespace: named actors are looked up there (get_actor).
    namespace: str = ""
    max_retries: int = 3
    retry_exceptions: bool | tuple[type, ...] = False
    max_calls: int = 0
    attempt: int = 0
    runtime_env: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_returns(self) -> int:
        return len(self.return_ids)
