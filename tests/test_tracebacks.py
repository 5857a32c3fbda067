"""Remote tracebacks name the real file, line and source line of the user's code.

Whatever cloudpickle version is installed (3.1.3 and later rename every code object they
pickle by value to "<dynamic-code>"), for functions and actor methods defined in files, in
`__main__` scripts and in notebook cells; redray also ships the source lines with the
exported function, so they show on a node where the file does not exist (Ray does not:
those tests are redray-only).
"""

from __future__ import annotations

import importlib
import linecache
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from target_ray import AGAINST, CONDITION_TIMEOUT, ray, redray_only

MODULE_SOURCE = """
import os

from target_ray import ray


@ray.remote
def remove_own_file_then_fail(path):
    os.remove(path)  # from here on, this host has no such file
    raise ValueError("failing after the file is gone")


@ray.remote
class RemovesOwnFile:
    def fail(self, path):
        os.remove(path)
        raise KeyError("actor method failing after the file is gone")
"""


def _import_module_file(directory: Path) -> tuple[object, Path]:
    name = f"vanishing_{uuid.uuid4().hex[:8]}"
    path = directory / f"{name}.py"
    path.write_text(MODULE_SOURCE)
    sys.path.insert(0, str(directory))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(directory))
    return module, path


# redray-only: Ray's workers read source lines from their own disk: none where the file is gone.
@redray_only
def test_task_traceback_has_source_lines_where_the_file_does_not_exist(ray_start, tmp_path):
    module, path = _import_module_file(tmp_path)
    with pytest.raises(ValueError) as info:
        ray.get(module.remove_own_file_then_fail.remote(str(path)), timeout=CONDITION_TIMEOUT)
    text = str(info.value)
    assert not path.exists()
    assert f'File "{path}", line 10, in remove_own_file_then_fail' in text
    assert 'raise ValueError("failing after the file is gone")' in text
    assert "<dynamic-code>" not in text


# redray-only: Ray's workers read source lines from their own disk: none where the file is gone.
@redray_only
def test_actor_method_traceback_has_source_lines_where_the_file_does_not_exist(ray_start, tmp_path):
    module, path = _import_module_file(tmp_path)
    actor = module.RemovesOwnFile.remote()
    with pytest.raises(KeyError) as info:
        ray.get(actor.fail.remote(str(path)), timeout=CONDITION_TIMEOUT)
    text = str(info.value)
    assert f'File "{path}", line 17, in fail' in text
    assert 'raise KeyError("actor method failing after the file is gone")' in text


# redray-only: Ray's workers show no source line for a notebook cell.
@redray_only
def test_notebook_cell_traceback_has_the_cell_source(ray_start):
    # What IPython does with a cell: compile it under a name that is no file on disk and
    # register its lines in linecache (CachingCompiler.cache), then run it.
    cell_name = f"/tmp/ipykernel_{os.getpid()}/{uuid.uuid4().hex}.py"
    cell = textwrap.dedent(
        """
        @ray.remote
        def cell_function():
            raise RuntimeError("raised in a notebook cell")
        """
    )
    lines = cell.splitlines(keepends=True)
    linecache.cache[cell_name] = (len(cell), None, lines, cell_name)
    namespace = {"ray": ray, "__name__": "__main__"}
    exec(compile(cell, cell_name, "exec"), namespace)
    with pytest.raises(RuntimeError) as info:
        ray.get(namespace["cell_function"].remote(), timeout=CONDITION_TIMEOUT)
    text = str(info.value)
    assert f'File "{cell_name}", line 4, in cell_function' in text
    assert 'raise RuntimeError("raised in a notebook cell")' in text


MAIN_SCRIPT = """
import {module} as ray

ray.init(num_cpus=1, **{init_extra})


@ray.remote
def fails_in_main():
    raise ZeroDivisionError("raised in a __main__ script")


try:
    ray.get(fails_in_main.remote(), timeout=60)
except ZeroDivisionError as error:
    print(error)
ray.shutdown()
"""


@pytest.mark.timeout(180)
def test_main_script_traceback_names_the_script_and_its_line(tmp_path):
    script = tmp_path / "main_script.py"
    init_extra = {"include_dashboard": False} if AGAINST == "ray" else {}
    script.write_text(MAIN_SCRIPT.format(module=AGAINST, init_extra=init_extra))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=150
    )
    assert done.returncode == 0, done.stderr
    assert f'File "{script}", line 9, in fails_in_main' in done.stdout
    assert 'raise ZeroDivisionError("raised in a __main__ script")' in done.stdout
