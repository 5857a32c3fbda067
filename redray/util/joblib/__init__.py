"""joblib on the cluster: `register_ray()`, then `with joblib.parallel_backend("ray"):`.

joblib is imported only when register_ray() is called, so redray does not depend on it.
"""

from __future__ import annotations


def register_ray() -> None:
    """Register the backend under Ray's name "ray" and under "redray"."""
    try:
        from joblib.parallel import register_parallel_backend
    except ImportError as error:
        raise ImportError(
            "register_ray() needs joblib: install it with `pip install joblib`."
        ) from error
    from redray.util.joblib.backend import RayBackend

    register_parallel_backend("ray", RayBackend)
    register_parallel_backend("redray", RayBackend)


__all__ = ["register_ray"]
