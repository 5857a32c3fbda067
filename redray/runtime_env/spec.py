"""Checking runtime_env dicts, merging them, and naming the code environment they need.

Pure functions: no Redis, no files read (paths are checked where they are packed, in
`packages`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: The fields redray applies. Ray also accepts fields for plugins it has (conda, container,
#: uv, ...): those are refused here rather than ignored.
SUPPORTED_FIELDS = ("env_vars", "working_dir", "py_modules", "excludes", "pip", "config")

#: The fields that change which code a worker runs: a worker serves one such environment.
CODE_FIELDS = ("working_dir", "py_modules", "pip")

#: The URI scheme of a package uploaded to the cluster's Redis.
URI_SCHEME = "redray://"


def check(name: str, value: Any) -> None:
    """Raise TypeError or ValueError for a runtime_env that redray cannot apply.

    `name` is what the user passed it as (an option name, or "runtime_env" of init).
    """
    if value is None:
        return
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict; got {value!r} of type {type(value).__name__}.")
    unknown = sorted(set(value) - set(SUPPORTED_FIELDS))
    if unknown:
        raise ValueError(
            f"{name} has fields redray does not support: {', '.join(map(repr, unknown))}. "
            f"Supported: {', '.join(SUPPORTED_FIELDS)}."
        )
    env_vars = value.get("env_vars")
    if env_vars is not None and (
        not isinstance(env_vars, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items())
    ):
        raise TypeError(f"{name}: 'env_vars' must be a dict of str to str; got {env_vars!r}.")
    working_dir = value.get("working_dir")
    if working_dir is not None and not isinstance(working_dir, str):
        raise TypeError(
            f"{name}: 'working_dir' must be a path (a directory or a .zip file) or a "
            f"{URI_SCHEME} URI; got {working_dir!r}."
        )
    expected = {
        "py_modules": f"a list of paths (directories, .zip or .whl files) or {URI_SCHEME} URIs",
        "excludes": "a list of gitignore-style patterns",
    }
    for field, what in expected.items():
        if value.get(field) is not None and not _is_str_list(value[field]):
            raise TypeError(f"{name}: {field!r} must be {what}; got {value[field]!r}.")
    pip = value.get("pip")
    if pip is not None:
        requirements = pip.get("packages") if isinstance(pip, dict) else pip
        if not isinstance(requirements, str) and not _is_str_list(requirements):
            raise TypeError(
                f"{name}: 'pip' must be a list of requirements, a requirements file's path, "
                f"or a dict with 'packages'; got {pip!r}."
            )


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def merge(parent: dict[str, Any] | None, child: dict[str, Any] | None) -> dict[str, Any] | None:
    """A task's runtime_env over the one it inherits (the job's, or its parent task's), as
    in Ray: the child's fields replace the parent's, except `env_vars`, merged by name."""
    if not parent:
        return child or None
    if not child:
        return parent
    merged = {**parent, **child}
    if "env_vars" in parent and "env_vars" in child:
        merged["env_vars"] = {**parent["env_vars"], **child["env_vars"]}
    return merged


def code_key(runtime_env: dict[str, Any] | None) -> str:
    """The code environment a resolved runtime_env needs, as a short name: "" for none.

    Workers are reused only for tasks with the same key: code once imported from one
    working_dir cannot be unloaded for the next.
    """
    if not runtime_env:
        return ""
    code = {field: runtime_env[field] for field in CODE_FIELDS if runtime_env.get(field)}
    if not code:
        return ""
    return hashlib.sha1(json.dumps(code, sort_keys=True).encode()).hexdigest()[:16]


def needs_packing(runtime_env: dict[str, Any] | None) -> bool:
    """Whether some working_dir or py_modules entry is a local path, not yet a URI."""
    if not runtime_env:
        return False
    paths = [runtime_env.get("working_dir"), *(runtime_env.get("py_modules") or [])]
    return any(path and not path.startswith(URI_SCHEME) for path in paths)
