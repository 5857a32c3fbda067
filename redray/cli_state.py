"""The `redray` commands that look at what a cluster is doing (the state API on the command
line): `list`, `get`, `summary`, `memory`, `timeline`, and the demand part of `status`.

    redray list tasks --filter state=RUNNING --limit 20 --format json
    redray get actors <actor id>
    redray summary tasks
    redray memory
    redray timeline -o trace.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import redis

from redray.util.state import api as state
from redray.util.state import tasks as task_history
from redray.util.state.timeline import chrome_trace_events

#: A --address/--redis-password pair resolved to (address, client): cli._cluster_client.
ClusterClient = Callable[[argparse.Namespace], tuple[str, redis.Redis]]

RESOURCES = list(state.SOURCES)
_ID_COLUMNS = {
    "tasks": "task_id",
    "actors": "actor_id",
    "objects": "object_id",
    "nodes": "node_id",
    "jobs": "job_id",
    "placement-groups": "placement_group_id",
    "workers": "worker_id",
}
#: Wider cells are cut (with "…") so that a table fits the terminal.
_MIN_CELL = 8


class StateCliError(Exception):
    """A failure to report in one line (cli.CliError is raised from it by cli.py)."""


def add_commands(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the state commands; `common` adds --address/--redis-password."""
    listing = commands.add_parser("list", help="list tasks, actors, objects, nodes, jobs, ...")
    listing.add_argument("resource", choices=RESOURCES)
    listing.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep entries with KEY=VALUE (or KEY!=VALUE); repeatable, applied before --limit",
    )
    listing.add_argument("--limit", type=int, default=state.DEFAULT_LIMIT)
    listing.add_argument("--detail", action="store_true", help="every column")
    _add_format(listing)
    listing.set_defaults(state_handler=cmd_list)

    get = commands.add_parser("get", help="one task, actor, object, node, job or group")
    get.add_argument("resource", choices=RESOURCES)
    get.add_argument("id")
    _add_format(get, default="yaml")
    get.set_defaults(state_handler=cmd_get)

    summary = commands.add_parser("summary", help="counts of tasks, actors or objects")
    summary.add_argument("resource", choices=["tasks", "actors", "objects"])
    _add_format(summary)
    summary.set_defaults(state_handler=cmd_summary)

    memory = commands.add_parser("memory", help="objects by node, with sizes and owners")
    memory.add_argument("--limit", type=int, default=1000, help="objects shown per node")
    memory.set_defaults(state_handler=cmd_memory)

    timeline = commands.add_parser("timeline", help="write the task timeline (Chrome trace)")
    timeline.add_argument("-o", "--output", default=None, help="file (default: a new one)")
    timeline.set_defaults(state_handler=cmd_timeline)

    for parser in (listing, get, summary, memory, timeline):
        common(parser)


def _add_format(parser: argparse.ArgumentParser, default: str = "table") -> None:
    parser.add_argument("--format", choices=["table", "json", "yaml"], default=default)


def run(args: argparse.Namespace, cluster_client: ClusterClient) -> int:
    address, client = cluster_client(args)
    try:
        return args.state_handler(args, client)
    except ValueError as error:
        raise StateCliError(str(error)) from None


# ---- commands ----------------------------------------------------------------------------


def parse_filter(text: str) -> tuple[str, str, str]:
    for predicate in ("!=", "="):
        key, found, value = text.partition(predicate)
        if found and key:
            return key.strip(), predicate, value.strip()
    raise StateCliError(f"--filter takes KEY=VALUE or KEY!=VALUE, got {text!r}.")


def cmd_list(args: argparse.Namespace, client: redis.Redis) -> int:
    filters = [parse_filter(text) for text in args.filter]
    entries = state.list_from(client, args.resource, filters, args.limit, args.detail)
    rows = [asdict(entry) for entry in entries]
    if not args.detail:
        schema = state.SOURCES[args.resource][0]
        columns = schema.list_columns(detail=False)
        rows = [{name: row[name] for name in columns} for row in rows]
    _print(rows, args.format)
    _report_dropped(client, args.resource)
    if args.format == "table" and len(entries) == args.limit:
        print(f"(showing the first {args.limit}; raise --limit to see more)", file=sys.stderr)
    return 0


def cmd_get(args: argparse.Namespace, client: redis.Redis) -> int:
    column = _ID_COLUMNS[args.resource]
    found = state.list_from(client, args.resource, [(column, "=", args.id)], 10**9, True)
    if not found:
        raise StateCliError(f"No {args.resource[:-1].replace('-', ' ')} with id {args.id} found.")
    rows = [asdict(found[-1])] if args.resource == "tasks" else [asdict(e) for e in found]
    _print(rows[0] if len(rows) == 1 else rows, args.format, vertical=True)
    return 0


def cmd_summary(args: argparse.Namespace, client: redis.Redis) -> int:
    summarize = {
        "tasks": state.task_summary,
        "actors": state.actor_summary,
        "objects": state.object_summary,
    }[args.resource]
    result = summarize(client)
    if args.format != "table":
        _print(result, args.format)
        return 0
    cluster = result["cluster"]
    totals = {k: v for k, v in cluster.items() if k.startswith("total")}
    print("======== " + args.resource.capitalize() + " Summary ========")
    print("  ".join(f"{k}: {v}" for k, v in totals.items()))
    rows = []
    for name, group in cluster["summary"].items():
        row = {"name": name}
        row.update({k: v for k, v in group.items() if not isinstance(v, dict) and k != name})
        for key in ("state_counts", "task_state_counts", "ref_type_counts"):
            if key in group:
                row[key] = ", ".join(f"{s}: {n}" for s, n in sorted(group[key].items()))
        rows.append(row)
    _print(rows, "table")
    if args.resource == "tasks":
        _report_dropped(client, "tasks")
    return 0


def cmd_memory(args: argparse.Namespace, client: redis.Redis) -> int:
    """Objects grouped by the node holding them, and each node's store usage."""
    nodes = {row.node_id: row for row in state.list_from(client, "nodes", [], 10**9, True)}
    objects = state.list_from(client, "objects", [], 10**9, True)
    by_node: dict[str, list[Any]] = {}
    for entry in objects:
        by_node.setdefault(entry.node_id or "(inline in Redis)", []).append(entry)
    print("======== Object references ========")
    for node_id, entries in sorted(by_node.items()):
        node = nodes.get(node_id)
        stored = sum(e.object_size or 0 for e in entries)
        capacity = (node.resources_total or {}).get("object_store_memory") if node else None
        where = f"{node.node_ip} ({node_id})" if node else node_id
        usage = f"{_size(stored)}" + (f" of {_size(capacity)} store" if capacity else "")
        print(f"--- Node {where}: {len(entries)} object(s), {usage} ---")
        rows = [
            {
                "object_id": e.object_id,
                "size": _size(e.object_size or 0),
                "owner_pid": e.pid,
                "owner": e.type,
                "reference_type": e.reference_type,
                "status": e.task_status,
                "spilled": e.spilled,
            }
            for e in entries[: args.limit]
        ]
        _print(rows, "table")
    total = sum(e.object_size or 0 for e in objects)
    print(f"--- Total: {len(objects)} object(s), {_size(total)} ---")
    return 0


def cmd_timeline(args: argparse.Namespace, client: redis.Redis) -> int:
    import time

    events = chrome_trace_events(client)
    path = args.output or f"redray-timeline-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    with open(path, "w") as file:
        json.dump(events, file)
    print(f"Wrote {len(events)} task event(s) to {path}; open it in chrome://tracing or Perfetto.")
    return 0


def demand_lines(client: redis.Redis, nodes: list[Any]) -> list[str]:
    """`redray status`: what waits for resources. Tasks queued on each node (from their
    heartbeats), and pending tasks by resource shape, marking the shapes no alive node
    could ever run (infeasible). `nodes`: the alive nodes (client/node_view.NodeState)."""
    from redray.control import keys

    beats = client.mget([keys.node_alive(node.node_id) for node in nodes]) if nodes else []
    queued = sum(json.loads(beat).get("queued", 0) for beat in beats if beat)
    pending = state.list_from(
        client, "tasks", [("state", "=", "PENDING_NODE_ASSIGNMENT")], 10**9, True
    )
    shapes: dict[str, int] = {}
    for task in pending:
        shape = json.dumps(task.required_resources or {}, sort_keys=True)
        shapes[shape] = shapes.get(shape, 0) + 1
    lines = [f"Demands ({queued} task(s) queued on nodes, waiting for resources):"]
    for shape, count in sorted(shapes.items()):
        demand = json.loads(shape)
        fits = any(all(n.total.get(k, 0) >= v for k, v in demand.items()) for n in nodes)
        tag = "" if fits else "  (infeasible: no node can ever run it)"
        lines.append(f"  {demand}: {count}+ pending task(s)/actor(s){tag}")
    if len(lines) == 1:
        lines.append("  (no resource demands)")
    return lines


# ---- output --------------------------------------------------------------------------------


def _report_dropped(client: redis.Redis, resource: str) -> None:
    if resource != "tasks":
        return
    dropped = task_history.dropped_counts(client)
    if dropped:
        detail = ", ".join(f"job {job}: {count}" for job, count in dropped.items())
        print(
            f"Note: {sum(dropped.values())} task event(s) were dropped at the per-job cap "
            f"({detail}); raise it with `redray start --task-events-max-per-job`.",
            file=sys.stderr,
        )


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def _print(data: Any, fmt: str, vertical: bool = False) -> None:
    if fmt == "json":
        print(json.dumps(data, indent=2, default=str))
    elif fmt == "yaml":
        import yaml

        print(yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False))
    elif isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        for key, value in data.items():
            print(f"{key:<{width}}  {_cell(value)}")
    elif not data:
        print("(none)")
    else:
        _print_table(data)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _print_table(rows: list[dict[str, Any]]) -> None:
    """A table that fits the terminal: the widest columns are cut first."""
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    room = shutil.get_terminal_size((160, 24)).columns - 2 * (len(columns) - 1)
    while sum(widths) > room and max(widths) > _MIN_CELL:
        widest = widths.index(max(widths))
        widths[widest] -= 1

    def fit(text: str, width: int) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    print("  ".join(fit(c.upper(), w).ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(fit(text, w).ljust(w) for text, w in zip(row, widths)).rstrip())
