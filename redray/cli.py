"""The `redray` command: start and stop a cluster's processes on this machine, and look at
a running cluster.

    redray start --head [--port 6379] [--host 127.0.0.1] ...   # redis-server + head node
    redray start --address HOST:PORT ...                      # one more node
    redray stop                                               # stop what `start` started here
    redray status | redray errors
    redray list|get|summary|memory|timeline ...               # what the cluster does (cli_state.py)

`redray start` records what it started in the state file (`current_cluster.json` under
REDRAY_STATE_DIR, default /tmp/redray), which `redray stop` reads and which lets drivers on
this machine join with `redray.init(address="auto")`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from redray import cli_jobs, cli_logs, cli_state, ids
from redray.client.node_view import read_nodes
from redray.cluster import (
    connect_kwargs,
    current_cluster_file,
    node_resources,
    recorded_cluster,
    resolve_address,
    start_node_process,
    state_dir,
)
from redray.control import keys
from redray.host import node_ip
from redray.node.redis_launcher import RedisServer, start_redis
from redray.objectstore.shm_store import store_directory

PASSWORD_ENV = "REDRAY_REDIS_PASSWORD"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}
_STOP_TIMEOUT = 10.0
_REDIS_START_TIMEOUT = 15.0
#: Longer Unix socket paths do not fit in sockaddr_un; Redis is then reached over TCP only.
_MAX_SOCKET_PATH = 100


class CliError(Exception):
    """A failure to report in one line, without a traceback."""


# ---- the state file ------------------------------------------------------------------


@contextlib.contextmanager
def _state_lock() -> Iterator[None]:
    """Serializes the `redray start`/`stop` invocations of this machine."""
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(directory / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_state(state: dict[str, Any]) -> None:
    """Atomically, readable by this user only: it may hold the Redis password."""
    path = current_cluster_file()
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(state, file, indent=2)
    os.replace(temporary, path)


def _process_record(pid: int) -> dict[str, Any]:
    """A pid plus its start time, so that a reused pid is never mistaken for ours."""
    return {"pid": pid, "created": psutil.Process(pid).create_time()}


def _running(record: dict[str, Any] | None) -> psutil.Process | None:
    if not record:
        return None
    try:
        process = psutil.Process(record["pid"])
        if abs(process.create_time() - record["created"]) < 0.01 and process.is_running():
            return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.Error:
        pass
    return None


def _live_state() -> dict[str, Any] | None:
    """The recorded cluster, if any process it lists still runs."""
    state = recorded_cluster()
    if state is None:
        return None
    if _running(state.get("redis")) or any(_running(node) for node in state["nodes"]):
        return state
    return None


def _new_session_dir() -> Path:
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    path = state_dir() / f"session_{stamp}_{os.getpid()}"
    path.mkdir(mode=0o700, parents=True)
    return path


# ---- starting ------------------------------------------------------------------------


def _password(args: argparse.Namespace) -> str | None:
    return args.redis_password or os.environ.get(PASSWORD_ENV) or None


def _parse_resources(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    try:
        resources = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(
            f"--resources must be a JSON object, e.g. '{{\"special\": 1}}': {error}"
        ) from None
    if not isinstance(resources, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
        for v in resources.values()
    ):
        raise CliError("--resources must map resource names to non-negative numbers.")
    for name in ("CPU", "GPU"):
        if name in resources:
            raise CliError(f"Use --num-{name.lower()}s instead of {name!r} in --resources.")
    return resources


def _reachable_ip() -> str:
    """This machine's address as other machines see it (for a Redis bound to 0.0.0.0)."""
    ip = node_ip()
    if not ip.startswith("127."):
        return ip
    try:  # the source address of the default route; UDP connect sends nothing
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
    except OSError:
        return ip


def _start_redis_server(
    host: str, port: int, password: str | None, session: Path, persist: str | None = None
) -> RedisServer:
    """`persist`: the fsync policy of an append-only file in the session directory."""
    unix_socket = str(session / "redis.sock")
    log_file = session / "redis.log"
    server = start_redis(
        host=host,
        port=port,
        password=password,
        unix_socket=unix_socket if len(unix_socket) <= _MAX_SOCKET_PATH else None,
        log_file=str(log_file),
        persist_dir=str(session) if persist else None,
        fsync=persist or "always",
    )
    client = redis.Redis(**server.client_kwargs(local=True))
    deadline = time.monotonic() + _REDIS_START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            log = log_file.read_text(errors="replace").strip().splitlines()[-3:]
            raise CliError(
                f"redis-server exited with code {server.process.returncode} (is port {port} "
                f"in use?): {' / '.join(log)}"
            )
        try:
            client.ping()
            return server
        except (redis.ConnectionError, FileNotFoundError, redis.BusyLoadingError):
            if time.monotonic() > deadline:
                server.stop()
                raise CliError(
                    f"redis-server did not answer within {_REDIS_START_TIMEOUT} s."
                ) from None
            time.sleep(0.01)
        finally:
            client.close()


def _start_node(
    args: argparse.Namespace,
    redis_kwargs: dict[str, Any],
    password: str | None,
    session: Path,
    is_head: bool,
    node_id: str | None = None,
) -> tuple[subprocess.Popen, dict[str, Any]]:
    """Start a node daemon detached from this process; returns (Popen, state record)."""
    node_id = node_id or ids.new_node_id()
    total = node_resources(
        args.num_cpus,
        args.num_gpus,
        _parse_resources(args.resources),
        args.object_store_memory,
        is_head,
        node_ip(redis_kwargs),
    )
    config = {
        "node_id": node_id,
        # The password goes by environment (see daemon.main), never on the command line.
        "redis_kwargs": {k: v for k, v in redis_kwargs.items() if k != "password"},
        "resources": total,
        "is_head": is_head,
        "prestart_workers": max(1, int(total["CPU"])),
        # With --block the node must not outlive this command, even if it is SIGKILLed.
        "owner_pid": os.getpid() if args.block else None,
        "log_dir": str(session / "logs" / node_id),
        "metrics_export_port": args.metrics_export_port,
    }
    if password:
        os.environ[PASSWORD_ENV] = password
    log_file = session / f"node-{node_id}.log"
    try:
        process, _ = start_node_process(config, log_file=str(log_file))
    except RuntimeError as error:
        shutil.rmtree(store_directory(node_id), ignore_errors=True)
        raise CliError(str(error)) from None
    record = {"node_id": node_id, "is_head": is_head, "log_file": str(log_file)}
    return process, {**record, **_process_record(process.pid)}


def _start_job_manager(
    redis_kwargs: dict[str, Any], password: str | None, address: str, node_id: str, session: Path
) -> subprocess.Popen:
    """The head's job manager (redray.jobs.manager); the password goes by environment."""
    config = {
        "redis_kwargs": {k: v for k, v in redis_kwargs.items() if k != "password"},
        "address": address,
        "node_id": node_id,
        "log_dir": str(session),
    }
    log_path = session / "job-manager.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "redray.jobs.manager", json.dumps(config)],
            env={**os.environ, **({PASSWORD_ENV: password} if password else {})},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    client = redis.Redis(**redis_kwargs)
    deadline = time.monotonic() + _STOP_TIMEOUT
    try:
        while not client.exists(keys.JOB_MANAGER):  # jobs can be submitted once we return
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise CliError(f"the job manager did not start; see {log_path}")
            time.sleep(0.02)
    finally:
        client.close()
    return process


def _start_dashboard(
    args: argparse.Namespace, redis_kwargs: dict[str, Any], password: str | None, session: Path
) -> tuple[subprocess.Popen, str, str | None]:
    from redray.dashboard.launcher import DEFAULT_PORT, start_dashboard

    try:
        return start_dashboard(
            redis_kwargs, password, args.dashboard_host, args.dashboard_port or DEFAULT_PORT,
            session / "dashboard.log",
        )  # fmt: skip
    except RuntimeError as error:
        raise CliError(str(error)) from None


def cmd_start(args: argparse.Namespace) -> int:
    if args.node_ip_address:  # the node daemon (and its workers) read it from the environment
        os.environ["REDRAY_NODE_IP"] = args.node_ip_address
    if args.head:
        return _start_head(args)
    if not args.address:
        raise CliError("`redray start` needs --head (a new cluster) or --address (join one).")
    return _start_worker_node(args)


def _start_head(args: argparse.Namespace) -> int:
    password = _password(args)
    generated = False
    if args.host not in _LOOPBACK_HOSTS and not args.address and not password:
        # Redis reachable from other machines without a password would run anyone's code.
        password, generated = secrets.token_urlsafe(24), True
    with _state_lock():
        running = _live_state()
        if running is not None and args.persist and _restart_persisted_redis(running, password):
            return 0
        if running is not None:
            raise CliError(
                f"redray is already running on this machine (cluster {running['address']}); "
                "run `redray stop` first."
            )
        session = _new_session_dir()
        server = None
        manager: subprocess.Popen | None = None
        process: subprocess.Popen | None = None
        dashboard: subprocess.Popen | None = None
        token: str | None = None
        node_id = ids.new_node_id()
        try:
            if args.address:  # an external Redis, e.g. a managed one or a container
                address = resolve_address(args.address) or args.address
                redis_kwargs = _connect(address, password)
            else:
                server = _start_redis_server(args.host, args.port, password, session, args.persist)
                redis_kwargs = server.client_kwargs(local=True)
                host = _reachable_ip() if args.host in _WILDCARD_HOSTS else args.host
                address = f"{host}:{server.port}"
            client = redis.Redis(**redis_kwargs)
            facts = {"address": address, "head_node": node_id, "created": time.time()}
            # Defaults for every job's task history (client/jobs.py reads them at init).
            if args.task_events_max_per_job is not None:
                facts["task_events_max_per_job"] = args.task_events_max_per_job
            if args.task_events_ttl_s is not None:
                facts["task_events_ttl_s"] = args.task_events_ttl_s
            if server is not None and server.unix_socket:
                facts["unix_socket"] = server.unix_socket
            pipe = client.pipeline()
            pipe.delete(keys.CLUSTER)
            pipe.hset(keys.CLUSTER, mapping=facts)
            pipe.execute()
            client.close()
            manager = _start_job_manager(redis_kwargs, password, address, node_id, session)
            process, node = _start_node(args, redis_kwargs, password, session, True, node_id)
            if args.dashboard_port or args.include_dashboard:
                dashboard, facts["dashboard_url"], token = _start_dashboard(
                    args, redis_kwargs, password, session
                )
                redis.Redis(**redis_kwargs).hset(
                    keys.CLUSTER, "dashboard_url", facts["dashboard_url"]
                )
        except BaseException:
            if process is not None:
                _terminate([psutil.Process(process.pid)])
            if manager is not None:
                manager.kill()
            if server is not None:
                server.stop()
            raise
        state = {
            "address": address,
            "password": password,
            "head_node": node_id,
            "session_dir": str(session),
            "redis": _process_record(server.process.pid) if server else None,
            "unix_socket": server.unix_socket if server else None,
            "nodes": [node],
            "redis_start": {"host": args.host, "port": server.port, "persist": args.persist}
            if server
            else None,
            "job_manager": _process_record(manager.pid),
            "dashboard": _process_record(dashboard.pid) if dashboard else None,
            "dashboard_url": facts.get("dashboard_url"),
        }
        _write_state(state)
    _print_started(state, generated)
    if dashboard is not None:
        shown = f"http://{state['dashboard_url']}" + (f"/?token={token}" if token else "")
        print(f"Dashboard: {shown}")
    if args.block:
        children = [process, manager] + ([server.process] if server else [])
        return _block(state, children + ([dashboard] if dashboard else []))
    return 0


def _restart_persisted_redis(state: dict[str, Any], password: str | None) -> bool:
    """`redray start --head --persist` again after its redis-server died while the nodes
    live on: start Redis again from its append-only file. False if there is nothing to do."""
    start = state.get("redis_start") or {}
    if not start.get("persist") or _running(state.get("redis")):
        return False
    server = _start_redis_server(
        start["host"], start["port"], password or state.get("password"),
        Path(state["session_dir"]), start["persist"],
    )  # fmt: skip
    state["redis"] = _process_record(server.process.pid)
    _write_state(state)
    print(f"redis-server restarted from its append-only file at {state['address']}.")
    return True


def _warn_if_loopback(advertised: str, head_address: str) -> None:
    """A node that advertises a loopback address to a head on another host cannot be
    reached by the other nodes (object transfers to and from it fail)."""
    head_host = head_address.rpartition(":")[0]
    if advertised.startswith("127.") and not head_host.startswith(("127.", "localhost")):
        print(
            f"WARNING: this node would advertise the loopback address {advertised} to the "
            f"cluster at {head_address}: other hosts could not reach it. Pass "
            "--node-ip-address (or set REDRAY_NODE_IP) to an address they can reach.",
            file=sys.stderr,
        )


def _start_worker_node(args: argparse.Namespace) -> int:
    address = resolve_address(args.address) or args.address
    password = _password(args)
    with _state_lock():
        state = _live_state()
        redis_kwargs = _connect(address, password)
        password = redis_kwargs.get("password")
        head_node = _head_node(redis_kwargs)
        # The same cluster may be recorded under another of its addresses (e.g. loopback).
        if state is not None and state.get("head_node") != head_node:
            raise CliError(
                f"This machine already belongs to the cluster at {state['address']}; "
                "run `redray stop` first."
            )
        if state is None:
            session = _new_session_dir()
            state = {
                "address": address,
                "password": password,
                "head_node": head_node,
                "session_dir": str(session),
                "redis": None,
                "unix_socket": None,
                "nodes": [],
            }
        _warn_if_loopback(node_ip(redis_kwargs), address)
        process, node = _start_node(
            args, redis_kwargs, password, Path(state["session_dir"]), is_head=False
        )
        state["nodes"].append(node)
        _write_state(state)
    print(f"redray node {node['node_id']} started and joined the cluster at {address}.")
    print(f"Its log: {node['log_file']}")
    if args.block:
        return _block({**state, "nodes": [node], "redis": None}, [process])
    print("To stop the redray processes of this machine, run\n    redray stop")
    return 0


def _head_node(redis_kwargs: dict[str, Any]) -> str | None:
    client = redis.Redis(**redis_kwargs)
    try:
        return _head_node_of(client)
    finally:
        client.close()


def _head_node_of(client: redis.Redis) -> str | None:
    head = client.hget(keys.CLUSTER, "head_node")
    return head.decode() if head else None


def _print_started(state: dict[str, Any], generated_password: bool) -> None:
    address, password = state["address"], state["password"]
    password_arg = f" --redis-password='{password}'" if password else ""
    init_password = f", _redis_password='{password}'" if password else ""
    head = state["nodes"][0]["node_id"]
    print(f"redray runtime started: cluster at {address}, head node {head}.")
    if generated_password:
        print(
            f"Redis listens on a non-loopback address, so it requires a password: {password}\n"
            f"(generated; recorded in {current_cluster_file()}, readable by this user only)."
        )
    print(
        "\nTo add another node to this cluster, run\n"
        f"    redray start --address='{address}'{password_arg}\n"
        "To connect to this cluster:\n"
        "    import redray\n"
        f"    redray.init(address='{address}'{init_password})  # or 'auto' on this machine\n"
        "To stop the redray processes of this machine, run\n"
        "    redray stop\n"
        f"Logs: {state['session_dir']}"
    )


# ---- stopping ------------------------------------------------------------------------


def _terminate(processes: list[psutil.Process]) -> None:
    """SIGTERM, wait, then SIGKILL whatever is still running."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=_STOP_TIMEOUT)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=_STOP_TIMEOUT)


def _stop_recorded(state: dict[str, Any]) -> int:
    """Stop the job manager (and so the running jobs), the nodes (other nodes first, the
    head last), then redis-server."""
    nodes = sorted(state["nodes"], key=lambda node: node["is_head"])
    stopped = 0
    for record in (state.get("dashboard"), state.get("job_manager")):
        helper = _running(record)
        if helper is not None:
            _terminate([helper])
            stopped += 1
    for node in nodes:
        process = _running(node)
        if process is not None:
            _terminate([process])
            stopped += 1
        # A daemon that was killed or crashed cannot have removed its store.
        shutil.rmtree(store_directory(node["node_id"]), ignore_errors=True)
    server = _running(state.get("redis"))
    if server is not None:
        _terminate([server])
        stopped += 1
    if state.get("unix_socket"):
        Path(state["unix_socket"]).unlink(missing_ok=True)
    return stopped


def cmd_stop(args: argparse.Namespace) -> int:
    with _state_lock():
        state = recorded_cluster()
        if state is None:
            print("No redray processes recorded on this machine; nothing to stop.")
            return 0
        stopped = _stop_recorded(state)
        current_cluster_file().unlink(missing_ok=True)
    print(f"Stopped {stopped} redray process(es) of the cluster at {state['address']}.")
    return 0


def _forget(started: dict[str, Any]) -> None:
    """Drop what a --block invocation started from the state file; the file goes with its
    last process."""
    state = recorded_cluster()
    if state is None or state["address"] != started["address"]:
        return
    mine = {node["node_id"] for node in started["nodes"]}
    state["nodes"] = [node for node in state["nodes"] if node["node_id"] not in mine]
    if started.get("redis"):
        state["redis"] = None
    if state["nodes"] or state.get("redis"):
        _write_state(state)
    else:
        current_cluster_file().unlink(missing_ok=True)


def _block(started: dict[str, Any], children: list[Any]) -> int:
    """Stay in the foreground until SIGTERM/SIGINT (or a child's death), then stop it all."""
    stop_requested = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, request_stop)
    print("Running in the foreground (--block); stop with SIGTERM or Ctrl-C.", flush=True)
    while not stop_requested:
        dead = [child for child in children if child.poll() is not None]
        if dead:
            print(
                f"redray: process {dead[0].pid} exited with code {dead[0].returncode}; "
                "stopping the rest.",
                file=sys.stderr,
            )
            break
        time.sleep(0.5)
    with _state_lock():
        _stop_recorded(started)
        _forget(started)
    return 0 if stop_requested else 1


# ---- looking at a cluster ------------------------------------------------------------


def _connect(address: str, password: str | None) -> dict[str, Any]:
    try:
        return connect_kwargs(address, password)
    except (ConnectionError, ValueError) as error:
        raise CliError(str(error)) from None


def _cluster_client(args: argparse.Namespace) -> tuple[str, redis.Redis]:
    try:
        address = resolve_address(args.address) or resolve_address("auto")
    except ConnectionError as error:
        raise CliError(str(error)) from None
    assert address is not None
    return address, redis.Redis(**_connect(address, _password(args)))


def _amount(name: str, value: float) -> str:
    if name in ("memory", "object_store_memory"):
        return f"{value / 2**30:.2f} GiB"
    return f"{value:g}"


def cmd_status(args: argparse.Namespace) -> int:
    address, client = _cluster_client(args)
    nodes = read_nodes(client, include_dead=True)
    alive_count = sum(alive for _, alive in nodes)
    print(f"======== redray cluster at {address} ========")
    dashboard_url = client.hget(keys.CLUSTER, "dashboard_url")
    if dashboard_url:
        print(f"Dashboard: http://{dashboard_url.decode()}")
    print(f"Nodes: {alive_count} alive, {len(nodes) - alive_count} dead")
    total: dict[str, float] = {}
    available: dict[str, float] = {}
    for state, alive in sorted(nodes, key=lambda entry: (not entry[0].is_head, entry[0].node_id)):
        role = "head" if state.is_head else "worker"
        print(f"  {state.node_id}  {state.address}  {'ALIVE' if alive else 'DEAD'}  {role}")
        described = ", ".join(f"{n}: {_amount(n, v)}" for n, v in state.total.items())
        print(f"    resources: {described}")
        if alive:
            for name, amount in state.total.items():
                total[name] = total.get(name, 0.0) + amount
                available[name] = available.get(name, 0.0) + state.available.get(name, 0.0)
    print("Resources (used / total):")
    for name in sorted(total):
        if not name.startswith("node:"):
            used = total[name] - available[name]
            print(f"  {_amount(name, used)} / {_amount(name, total[name])} {name}")
    print("Available:")
    for name in sorted(available):
        if not name.startswith("node:"):
            print(f"  {_amount(name, available[name])} {name}")
    print("\n".join(cli_state.demand_lines(client, [n for n, alive in nodes if alive])))
    return 0


def cmd_errors(args: argparse.Namespace) -> int:
    address, client = _cluster_client(args)
    records = [json.loads(raw) for raw in client.lrange(keys.ERRORS, 0, args.limit - 1)]
    if not records:
        print(f"No errors recorded in the cluster at {address}.")
        return 0
    for record in records:
        when = datetime.fromtimestamp(record.get("time", 0)).strftime("%Y-%m-%d %H:%M:%S")
        retrying = " (retrying)" if record.get("retrying") else ""
        print(
            f"{when}  {record.get('error_type', '?')} in {record.get('type', 'task')} "
            f"{record.get('task_name', '?')}{retrying}\n"
            f"    task {record.get('task_id')}, attempt {record.get('attempt')}, "
            f"node {record.get('node_id')}, pid {record.get('pid')}"
        )
        for line in str(record.get("message", "")).splitlines():
            print(f"    | {line}")
    return 0


def cmd_health_check(args: argparse.Namespace) -> int:
    """Exit 0 when this machine's nodes run and heartbeat in the cluster's Redis (a
    container's healthcheck); 1, saying why, otherwise."""
    address, client = _cluster_client(args)
    try:
        head_node = _head_node_of(client)
    except redis.RedisError as error:
        raise CliError(f"the cluster's Redis at {address} does not answer: {error}") from None
    state = recorded_cluster()
    if state is None or state.get("head_node") != head_node or not state["nodes"]:
        raise CliError(f"no node of the cluster at {address} was started on this machine")
    for node in state["nodes"]:
        if _running(node) is None:
            raise CliError(f"node {node['node_id']}: its daemon (pid {node['pid']}) is not running")
        if not client.exists(keys.node_alive(node["node_id"])):
            raise CliError(f"node {node['node_id']}: no current heartbeat in {address}")
    print(f"healthy: {len(state['nodes'])} node(s) of this machine in the cluster at {address}")
    return 0


# ---- the command line ----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redray", description="Run and inspect redray clusters.")
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("start", help="start redray processes on this machine")
    start.add_argument("--head", action="store_true", help="start a new cluster (and its Redis)")
    start.add_argument(
        "--address",
        help="the cluster to join (HOST:PORT of its Redis); with --head, an external Redis "
        "to use instead of starting redis-server",
    )
    start.add_argument("--port", type=int, default=6379, help="Redis port (--head)")
    start.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address Redis binds to (--head); any non-loopback address requires a password",
    )
    start.add_argument("--redis-password", help=f"Redis password (or ${PASSWORD_ENV})")
    start.add_argument("--num-cpus", type=float)
    start.add_argument("--num-gpus", type=float)
    start.add_argument("--resources", help="custom resources as JSON, e.g. '{\"special\": 1}'")
    start.add_argument("--object-store-memory", type=int, help="bytes")
    start.add_argument(
        "--persist",
        nargs="?",
        const="always",
        choices=["always", "everysec", "no"],
        help="--head: Redis logs every write to an append-only file in the session "
        "directory, fsynced per this policy (default always: nothing acknowledged is lost; "
        "everysec: up to a second); running the same command after Redis died restarts it",
    )
    start.add_argument(
        "--node-ip-address",
        help="the address other nodes reach this one by (default: the local address of the "
        "route to Redis; also REDRAY_NODE_IP)",
    )
    start.add_argument(
        "--metrics-export-port",
        type=int,
        help="serve this node's Prometheus metrics on this port (0: any free port)",
    )
    start.add_argument(
        "--block", action="store_true", help="stay in the foreground; SIGTERM stops it all"
    )
    start.add_argument(
        "--include-dashboard", action="store_true", help="serve the dashboard (--head)"
    )
    start.add_argument("--dashboard-port", type=int, help="serve the dashboard on this port")
    start.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="the address the dashboard binds to; beyond loopback it requires a token",
    )
    start.add_argument(
        "--task-events-max-per-job",
        type=int,
        help="task attempts each job's history keeps (--head; default 100000)",
    )
    start.add_argument(
        "--task-events-ttl-s",
        type=float,
        help="seconds a job's task history is kept after its last event (--head; default 1 day)",
    )
    start.set_defaults(handler=cmd_start)

    stop = commands.add_parser("stop", help="stop the redray processes `start` started here")
    stop.set_defaults(handler=cmd_stop)

    for name, handler, text in (
        ("status", cmd_status, "show the nodes and resources of a cluster"),
        ("errors", cmd_errors, "show failed tasks, newest first"),
        ("health-check", cmd_health_check, "exit 0 if this machine's nodes are healthy"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--address", help="HOST:PORT (default: this machine's cluster)")
        command.add_argument("--redis-password", help=f"Redis password (or ${PASSWORD_ENV})")
        if name == "errors":
            command.add_argument("--limit", type=int, default=20)
        command.set_defaults(handler=handler)
    cli_jobs.add_parser(commands, PASSWORD_ENV)
    cli_state.add_commands(commands, _add_cluster_arguments)

    logs = commands.add_parser("logs", help="show workers' output (of a task, actor, worker...)")
    logs.add_argument("--address", help="HOST:PORT (default: this machine's cluster)")
    logs.add_argument("--redis-password", help=f"Redis password (or ${PASSWORD_ENV})")
    cli_logs.configure(logs)
    logs.set_defaults(handler=lambda args: cli_logs.run(args, _cluster_client(args)[1]))
    return parser


def _add_cluster_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--address", help="HOST:PORT (default: this machine's cluster)")
    command.add_argument("--redis-password", help=f"Redis password (or ${PASSWORD_ENV})")
    command.set_defaults(handler=_state_command)


def _state_command(args: argparse.Namespace) -> int:
    try:
        return cli_state.run(args, _cluster_client)
    except cli_state.StateCliError as error:
        raise CliError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except CliError as error:
        print(f"redray {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
