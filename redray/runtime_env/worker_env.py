"""A worker's code environment: the working_dir it runs in, the py_modules and pip packages
on its sys.path.

The node's scheduler gives a worker only tasks of one code environment (`spec.code_key`),
so a worker sets it up once, on its first task, and keeps it: modules imported from one
working_dir are never mixed with another's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from redray.exceptions import RuntimeEnvSetupError
from redray.runtime_env import packages
from redray.runtime_env.spec import code_key

#: How long a pip install may take before the task fails with RuntimeEnvSetupError.
PIP_TIMEOUT_S = 600.0


class CodeEnvironment:
    def __init__(self, client: redis.Redis, node_id: str) -> None:
        self._client = client
        self._node_id = node_id
        self._key = ""

    def apply(self, runtime_env: dict[str, Any] | None) -> None:
        """Set up the code environment of this task (once per worker); raises
        RuntimeEnvSetupError, with the reason, when it cannot be set up."""
        key = code_key(runtime_env)
        if not key or key == self._key:
            return
        assert runtime_env is not None
        try:
            paths = [self._pip_target(runtime_env["pip"])] if runtime_env.get("pip") else []
            for uri in runtime_env.get("py_modules") or []:
                paths.append(packages.unpack(self._client, uri, self._node_id))
            working_dir = runtime_env.get("working_dir")
            if working_dir:
                directory = packages.working_directory(
                    packages.unpack(self._client, working_dir, self._node_id)
                )
                os.chdir(directory)
                paths.append(directory)
        except RuntimeEnvSetupError:
            raise
        except Exception as error:
            raise RuntimeEnvSetupError(f"{type(error).__name__}: {error}") from error
        sys.path[:0] = [str(path) for path in reversed(paths)]
        self._key = key

    def _pip_target(self, pip: Any) -> Path:
        """Install the requirements once per node into a directory put on sys.path."""
        requirements = pip.get("packages") if isinstance(pip, dict) else pip
        name = "pip_" + code_key({"pip": requirements})
        cache = packages.cache_directory(self._node_id)
        target = cache / name
        with packages.locked(cache, name):
            if target.exists():
                return target
            partial = cache / f".{name}.partial"
            shutil.rmtree(partial, ignore_errors=True)  # what a failed install left
            command = [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--no-input", "--target", str(partial), *requirements,
            ]  # fmt: skip
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S
                )
            except subprocess.TimeoutExpired as error:
                raise RuntimeEnvSetupError(
                    f"pip install {' '.join(requirements)} took over {PIP_TIMEOUT_S:.0f} s."
                ) from error
            if done.returncode != 0:
                raise RuntimeEnvSetupError(
                    f"pip install {' '.join(requirements)} failed (exit code "
                    f"{done.returncode}):\n{(done.stderr or done.stdout).strip()}"
                )
            partial.rename(target)
        return target
