"""The package's layers (pyproject.toml, [tool.importlinter]): no module imports a layer
above its own. A new upward import fails this test, so the import circle cannot return."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from target_ray import redray_only

REPO = Path(__file__).resolve().parent.parent


def _lint_imports() -> str:
    beside_python = Path(sys.executable).parent / "lint-imports"
    found = str(beside_python) if beside_python.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail('lint-imports not found: install the test extra (pip install -e ".[test]").')
    return found


@redray_only
@pytest.mark.timeout(120)
def test_no_module_imports_a_layer_above_it() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
