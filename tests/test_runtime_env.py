"""runtime_env that ships code: working_dir and py_modules (with excludes) at init and per
task, pip, and the errors for what cannot be shipped.

Ray 2.60 takes local paths only at init() (per task it wants URIs) and accepts unknown
fields: the tests of those cases are redray-only.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from target_ray import CONDITION_TIMEOUT, ray, redray_only


def make_working_dir(root: Path, value: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "shipped_module.py").write_text(f"VALUE = {value}\n")
    (root / "data.txt").write_text(f"data {value}\n")
    (root / "big.bin").write_bytes(b"x" * 1000)
    (root / "logs").mkdir(exist_ok=True)
    (root / "logs" / "old.log").write_text("old\n")
    return root


def make_package(root: Path) -> Path:
    package = root / "shipped_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("def hello():\n    return 'hello from shipped_pkg'\n")
    return package


@ray.remote
def look_around():
    import shipped_module

    return {
        "cwd": os.getcwd(),
        "value": shipped_module.VALUE,
        "data": Path("data.txt").read_text(),
        "listing": sorted(os.listdir(".")),
    }


@ray.remote
def use_package():
    import shipped_pkg

    return shipped_pkg.hello()


def test_init_working_dir_is_the_tasks_cwd_and_importable(ray_fresh, tmp_path):
    source = make_working_dir(tmp_path / "project", 7)
    ray_fresh(runtime_env={"working_dir": str(source), "excludes": ["*.bin", "logs/"]})
    seen = ray.get(look_around.remote(), timeout=CONDITION_TIMEOUT)
    assert seen["value"] == 7
    assert seen["data"] == "data 7\n"
    assert Path(seen["cwd"]) != source  # a copy unpacked on the node
    assert "big.bin" not in seen["listing"] and "logs" not in seen["listing"]
    assert "shipped_module.py" in seen["listing"]


def test_init_py_modules_directory_imports_by_its_name(ray_fresh, tmp_path):
    package = make_package(tmp_path / "modules")
    ray_fresh(runtime_env={"py_modules": [str(package)]})
    assert ray.get(use_package.remote(), timeout=CONDITION_TIMEOUT) == "hello from shipped_pkg"


def test_actor_runs_in_the_jobs_working_dir(ray_fresh, tmp_path):
    source = make_working_dir(tmp_path / "project", 11)
    ray_fresh(runtime_env={"working_dir": str(source)})

    @ray.remote
    class Reader:
        def read(self):
            import shipped_module

            return shipped_module.VALUE, Path("data.txt").read_text()

    reader = Reader.remote()
    assert ray.get(reader.read.remote(), timeout=CONDITION_TIMEOUT) == (11, "data 11\n")


def test_init_working_dir_that_does_not_exist_fails_at_init(ray_fresh, tmp_path):
    with pytest.raises(ValueError, match="does-not-exist"):
        ray_fresh(runtime_env={"working_dir": str(tmp_path / "does-not-exist")})
    assert not ray.is_initialized()


# redray-only: Ray takes local paths per task only as URIs it uploaded.
@redray_only
def test_workers_serve_one_working_dir_each(ray_start, tmp_path):
    first = make_working_dir(tmp_path / "first", 1)
    second = make_working_dir(tmp_path / "second", 2)
    for _ in range(3):  # alternate: a worker reused across the two would import stale code
        one = look_around.options(runtime_env={"working_dir": str(first)}).remote()
        two = look_around.options(runtime_env={"working_dir": str(second)}).remote()
        seen = ray.get([one, two], timeout=CONDITION_TIMEOUT)
        assert [s["value"] for s in seen] == [1, 2]
    plain = ray.get(look_around.options(runtime_env={"working_dir": str(first)}).remote())
    assert plain["value"] == 1


# redray-only: Ray takes local paths per task only as URIs it uploaded.
@redray_only
def test_task_working_dir_zip_file(ray_start, tmp_path):
    source = make_working_dir(tmp_path / "zipped", 5)
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in source.rglob("*"):
            out.write(path, Path("zipped") / path.relative_to(source))  # one top-level dir
    seen = ray.get(
        look_around.options(runtime_env={"working_dir": str(archive)}).remote(),
        timeout=CONDITION_TIMEOUT,
    )
    assert seen["value"] == 5


# redray-only: Ray accepts fields it has no plugin for.
@redray_only
def test_unknown_field_is_refused(ray_start):
    with pytest.raises(ValueError, match="conda_env.*Supported: env_vars, working_dir"):
        look_around.options(runtime_env={"conda_env": "base"})


# redray-only: Ray takes local paths per task only as URIs it uploaded.
@redray_only
def test_not_a_zip_is_refused_at_remote(ray_start, tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_text("not a zip")
    with pytest.raises(ValueError, match="not a valid .zip"):
        look_around.options(runtime_env={"working_dir": str(fake)}).remote()


# redray-only: the size limit and its variable are redray's.
@redray_only
def test_package_over_the_limit_names_its_largest_files(ray_start, tmp_path, monkeypatch):
    source = make_working_dir(tmp_path / "heavy", 3)
    (source / "huge.dat").write_bytes(b"y" * 300_000)
    monkeypatch.setenv("REDRAY_PACKAGE_MAX_MB", "0.2")
    with pytest.raises(ValueError, match=r"over the 0 MB limit.*huge\.dat \(0\.3 MB\)"):
        look_around.options(runtime_env={"working_dir": str(source)}).remote()
    # excludes bring it under the limit
    ok = look_around.options(runtime_env={"working_dir": str(source), "excludes": ["*.dat"]})
    assert ray.get(ok.remote(), timeout=CONDITION_TIMEOUT)["value"] == 3


@ray.remote
def import_tomli_w():
    import tomli_w

    return tomli_w.dumps({"a": 1}), tomli_w.__file__


# redray-only: Ray's pip plugin builds a virtualenv per job; the behaviour is the same but
# takes minutes here.
@redray_only
@pytest.mark.timeout(300)
def test_pip_requirements_are_installed_for_the_task(ray_start):
    remote = import_tomli_w.options(runtime_env={"pip": ["tomli-w"]})
    text, module_file = ray.get(remote.remote(), timeout=240)
    assert text == "a = 1\n"
    # Imported from the node's install for this requirement set, whatever else is installed.
    assert "redray-runtime-env-" in module_file and "/pip_" in module_file


# redray-only: see above.
@redray_only
@pytest.mark.timeout(300)
def test_pip_install_failure_is_a_runtime_env_setup_error(ray_start):
    remote = import_tomli_w.options(runtime_env={"pip": ["redray-no-such-package-anywhere==0.0"]})
    with pytest.raises(ray.exceptions.RuntimeEnvSetupError, match="redray-no-such-package"):
        ray.get(remote.remote(), timeout=240)
