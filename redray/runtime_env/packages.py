"""Shipping code to every node through Redis: runtime_env packages.

A working_dir (a directory or a .zip) and each py_modules entry (a directory, a .zip or a
.whl) is packed once into a zip whose name is its content hash, stored in Redis under
`keys.package(name)` if not there yet, and referred to by the URI `redray://<name>`. A
node unpacks each package once into its cache directory; workers then run with that
directory as cwd (working_dir) or on sys.path (py_modules), as Ray's first runtime_env
shipped a zipped working_dir through its Redis.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from redray.control import keys
from redray.runtime_env.spec import URI_SCHEME, merge, needs_packing

#: Largest package (before compression) a runtime_env may upload; REDRAY_PACKAGE_MAX_MB.
DEFAULT_MAX_MB = 100
#: Fixed timestamps make a package's bytes (and so its name) depend on content alone.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def max_package_bytes() -> int:
    return int(float(os.environ.get("REDRAY_PACKAGE_MAX_MB", DEFAULT_MAX_MB)) * 1e6)


# ---- the driver: packing and uploading ------------------------------------------------


def _files(root: Path, excludes: list[str]) -> list[Path]:
    import pathspec  # only drivers that ship code need it

    ignored = pathspec.GitIgnoreSpec.from_lines(excludes)
    found = []
    for directory, subdirs, names in os.walk(root):
        relative_dir = Path(directory).relative_to(root)
        subdirs[:] = sorted(
            d for d in subdirs if not ignored.match_file(f"{(relative_dir / d).as_posix()}/")
        )
        for name in sorted(names):
            relative = relative_dir / name
            if not ignored.match_file(relative.as_posix()):
                found.append(relative)
    return found


def _check_size(root: Path, files: list[Path], what: str) -> None:
    sizes = [(root.joinpath(f).stat().st_size, f) for f in files]
    total = sum(size for size, _ in sizes)
    limit = max_package_bytes()
    if total > limit:
        largest = ", ".join(f"{f} ({size / 1e6:.1f} MB)" for size, f in sorted(sizes)[::-1][:5])
        raise ValueError(
            f"{what} {root} is {total / 1e6:.1f} MB, over the {limit / 1e6:.0f} MB limit for "
            f"a runtime_env package (REDRAY_PACKAGE_MAX_MB). Its largest files: {largest}. "
            "Leave files out with runtime_env['excludes'] (gitignore-style patterns)."
        )


def _zip_directory(root: Path, excludes: list[str], prefix: str, what: str) -> bytes:
    files = _files(root, excludes)
    _check_size(root, files, what)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for relative in files:
            info = zipfile.ZipInfo(f"{prefix}{relative.as_posix()}", date_time=_EPOCH)
            info.external_attr = (root.joinpath(relative).stat().st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, root.joinpath(relative).read_bytes())
    return buffer.getvalue()


def pack(path: str, excludes: list[str], what: str) -> tuple[str, bytes]:
    """(package name, bytes) of a working_dir (`what` == "working_dir") or a py_modules
    entry: a directory is zipped (a py_modules directory under its own name, so that it
    imports by that name), a .zip or .whl file is shipped as it is."""
    source = Path(path).expanduser().resolve()
    if source.is_dir():
        prefix = "" if what == "working_dir" else f"{source.name}/"
        data = _zip_directory(source, excludes, prefix, what)
        suffix = ".zip"
    elif source.is_file() and source.suffix in (".zip", ".whl"):
        if not zipfile.is_zipfile(source):
            raise ValueError(f"{what} {path} is not a valid {source.suffix} (zip) file.")
        if source.stat().st_size > max_package_bytes():
            raise ValueError(
                f"{what} {path} is {source.stat().st_size / 1e6:.1f} MB, over the "
                f"{max_package_bytes() / 1e6:.0f} MB limit (REDRAY_PACKAGE_MAX_MB)."
            )
        data = source.read_bytes()
        suffix = source.suffix
    else:
        allowed = (
            "a directory or a .zip file"
            if what == "working_dir"
            else ("a directory, a .zip or a .whl file")
        )
        problem = "does not exist" if not source.exists() else "is not " + allowed
        raise ValueError(f"{what} {path} {problem}: it must be {allowed}.")
    return f"pkg_{hashlib.sha1(data).hexdigest()[:16]}{suffix}", data


def upload(client: redis.Redis, uploads: dict[str, bytes]) -> None:
    """Store the packages (name -> bytes) that are not there already: a large one is sent
    only once per cluster."""
    for name, data in uploads.items():
        key = keys.package(name)
        if not client.exists(key):
            client.set(key, data, nx=True)


def _read_requirements(pip: Any) -> Any:
    """A requirements file's path becomes its lines, so that every node installs the same."""
    requirements = pip.get("packages") if isinstance(pip, dict) else pip
    if not isinstance(requirements, str):
        return pip
    path = Path(requirements).expanduser()
    if not path.is_file():
        raise ValueError(f"runtime_env 'pip': the requirements file {requirements} does not exist.")
    lines = [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return {**pip, "packages": lines} if isinstance(pip, dict) else lines


def prepare(runtime_env: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Pack every local path of a runtime_env: (the runtime_env with URIs in their place,
    the packages to upload by name). Raises ValueError naming a path that cannot be packed."""
    resolved = dict(runtime_env)
    uploads: dict[str, bytes] = {}
    excludes = runtime_env.get("excludes") or []

    def packed(path: str, what: str) -> str:
        if path.startswith(URI_SCHEME):
            return path
        name, data = pack(path, excludes, what)
        uploads[name] = data
        return URI_SCHEME + name

    if runtime_env.get("working_dir"):
        resolved["working_dir"] = packed(runtime_env["working_dir"], "working_dir")
    if runtime_env.get("py_modules"):
        resolved["py_modules"] = [
            packed(module, "py_modules entry") for module in runtime_env["py_modules"]
        ]
    if runtime_env.get("pip"):
        resolved["pip"] = _read_requirements(runtime_env["pip"])
    resolved.pop("excludes", None)
    return resolved, uploads


_resolved: dict[tuple[int, str], dict[str, Any]] = {}


def for_task(
    client: redis.Redis, own: dict[str, Any] | None, inherited: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The runtime_env a task or actor is submitted with: its own over the inherited one,
    local paths packed and uploaded once per process and cluster."""
    runtime_env = merge(inherited, own)
    if not needs_packing(runtime_env):
        return runtime_env
    assert runtime_env is not None
    cache_key = (id(client), json.dumps(runtime_env, sort_keys=True))
    resolved = _resolved.get(cache_key)
    if resolved is None:
        resolved, uploads = prepare(runtime_env)
        upload(client, uploads)
        _resolved[cache_key] = resolved
    return resolved


# ---- a node: unpacking into its cache ---------------------------------------------------


def cache_directory(node_id: str) -> Path:
    """Where a node keeps unpacked packages and pip installs (removed when it stops)."""
    return Path(tempfile.gettempdir()) / f"redray-runtime-env-{node_id}"


@contextlib.contextmanager
def locked(directory: Path, name: str) -> Iterator[None]:
    """Hold this node's lock on one cache entry: one process fills it, the others wait."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one unpack per node; the others wait for it
        yield


def unpack(client: redis.Redis, uri: str, node_id: str) -> Path:
    """The local directory of a package: unpacked on first use on this node."""
    if not uri.startswith(URI_SCHEME):
        raise ValueError(f"not a {URI_SCHEME} package URI: {uri!r}")
    name = uri[len(URI_SCHEME) :]
    cache = cache_directory(node_id)
    target = cache / name
    with locked(cache, name):
        if not target.exists():
            data = client.get(keys.package(name))
            if data is None:
                raise RuntimeError(
                    f"The runtime_env package {uri} is missing from the cluster's Redis (it is "
                    "uploaded by the driver that used it; was Redis restarted empty?)."
                )
            partial = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache))
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    archive.extractall(partial)
                partial.rename(target)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
    return target


def working_directory(unpacked: Path) -> Path:
    """A zip holding one top-level directory (as `zip -r dir.zip dir` makes) stands for it."""
    entries = list(unpacked.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return unpacked
