"""Redis memory after many finished tasks whose refs were dropped (redray only).

    python benchmarks/bench_control_memory.py --tasks 200000

Starts an embedded cluster, runs the tasks in batches (each batch's refs dropped once its
results are read), and prints Redis `used_memory` and the key count before and after,
with the keys left grouped by kind. The 1,000,000-task soak (`--tasks 1000000`) is the
benchmark of issue 11's bound: memory within 20 MB of the start.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import redray
from redray.api import current_client


def _keys_by_kind(client) -> dict[str, int]:
    kinds: collections.Counter[str] = collections.Counter()
    for key in client.scan_iter(count=10_000):
        parts = key.decode().split(":")
        kinds[":".join(parts[1:2] + (["*"] if len(parts) > 3 else [])) or key.decode()] += 1
    return dict(kinds.most_common(12))


def measure(tasks: int, batch: int, settle: float, workload: str) -> dict[str, object]:
    redray.init(num_cpus=2)

    @redray.remote
    def task(i: int) -> int:
        return i

    @redray.remote
    class Echo:
        def echo(self, i: int) -> int:
            return i

    if workload == "actor":
        actor = Echo.remote()
        noop = actor.echo
    else:
        noop = task
    redis = current_client().redis
    redray.get([noop.remote(i) for i in range(200)])  # workers up, function exported
    time.sleep(settle)
    before = redis.info("memory")["used_memory"], redis.dbsize()
    started = time.monotonic()
    done = 0
    while done < tasks:
        n = min(batch, tasks - done)
        redray.get([noop.remote(i) for i in range(n)])
        done += n
    elapsed = time.monotonic() - started
    time.sleep(settle)  # frees are sent every few ms, acknowledgements per heartbeat
    after = redis.info("memory")["used_memory"], redis.dbsize()
    left = _keys_by_kind(redis)
    redray.shutdown()
    return {
        "workload": workload,
        "tasks": tasks,
        "tasks_per_s": round(tasks / elapsed),
        "used_memory_before_mb": round(before[0] / 2**20, 2),
        "used_memory_after_mb": round(after[0] / 2**20, 2),
        "growth_mb": round((after[0] - before[0]) / 2**20, 2),
        "keys_before": before[1],
        "keys_after": after[1],
        "keys_left_by_kind": left,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--workload", choices=["tasks", "actor"], default="tasks")
    args = parser.parse_args()
    print(json.dumps(measure(args.tasks, args.batch, args.settle, args.workload), indent=2))


if __name__ == "__main__":
    main()
