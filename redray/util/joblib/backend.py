"""RayBackend: joblib's parallel backend running its batches on a redray Pool.

joblib's own PoolManagerMixin drives a multiprocessing-style pool (`apply_async` with a
callback); redray.util.multiprocessing.Pool has that interface, with actors as processes,
so the backend only decides the pool's size and creates it.
"""

from __future__ import annotations

from typing import Any

from joblib._parallel_backends import ParallelBackendBase, PoolManagerMixin

from redray import api
from redray.util.multiprocessing import Pool


class RayBackend(PoolManagerMixin, ParallelBackendBase):
    """Runs joblib's work (and scikit-learn's `n_jobs`) on the cluster's workers.

    `ray_remote_args` (here or in `Parallel(...)`'s backend arguments) configure the pool's
    actors, as in Ray."""

    supports_retrieve_callback = True
    supports_inner_max_num_threads = False

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        ray_remote_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs
        )
        self.ray_remote_args = ray_remote_args

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """n_jobs, counted against the cluster's CPUs: -1 is all of them, -2 all but one,
        and no more processes than the cluster has CPUs (the pool could not start them)."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if not api.is_initialized():
            api.init()  # RAY_ADDRESS / REDRAY_ADDRESS, else an embedded cluster, as Ray does
        cpus = max(int(api.cluster_resources().get("CPU", 1)), 1)
        if n_jobs < 0:
            n_jobs = cpus + 1 + n_jobs
        return max(1, min(n_jobs, cpus))

    def configure(
        self,
        n_jobs: int = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        ray_remote_args: dict[str, Any] | None = None,
        **backend_args: Any,
    ) -> int:
        processes = self.effective_n_jobs(n_jobs)
        remote_args = ray_remote_args if ray_remote_args is not None else self.ray_remote_args
        self._pool = Pool(processes=processes, ray_remote_args=remote_args)
        self.parallel = parallel
        return processes
