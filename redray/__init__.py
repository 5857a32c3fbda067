"""redray: Ray's core API (tasks, actors, objects) on Redis.

import redray as ray

@ray.remote
def square(x):
    return x * x

ray.init()
print(ray.get([square.remote(i) for i in range(4)]))  # [0, 1, 4, 9]
"""

from redray import exceptions, util
from redray.api import (
    available_resources,
    cancel,
    cluster_resources,
    error_info,
    get,
    get_actor,
    get_gpu_ids,
    get_runtime_context,
    init,
    is_initialized,
    kill,
    method,
    nodes,
    put,
    shutdown,
    wait,
)
from redray.decorators import remote
from redray.generators import ObjectRefGenerator
from redray.object_ref import ObjectRef
from redray.util.state.timeline import timeline

__version__ = "0.1.0"

__all__ = [
    "ObjectRef",
    "ObjectRefGenerator",
    "available_resources",
    "cancel",
    "cluster_resources",
    "error_info",
    "exceptions",
    "get",
    "get_gpu_ids",
    "get_runtime_context",
    "get_actor",
    "kill",
    "method",
    "init",
    "is_initialized",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "util",
    "wait",
]
