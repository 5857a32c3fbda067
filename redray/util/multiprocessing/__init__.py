"""`multiprocessing.Pool`'s interface on the cluster, as Ray's `ray.util.multiprocessing`."""

from multiprocessing import JoinableQueue, TimeoutError

from redray.util.multiprocessing.pool import AsyncResult, Pool

__all__ = ["AsyncResult", "JoinableQueue", "Pool", "TimeoutError"]
