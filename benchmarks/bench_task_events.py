"""What task events cost: sync task latency and async task throughput with events on and
off (`enable_task_events=False`), on one redray cluster, in alternating rounds so that the
load of a shared machine falls on both alike. Also: listing 100k recorded tasks with a
filter, and the Redis memory those records take.

    python benchmarks/bench_task_events.py [--rounds 4] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redray  # noqa: E402


def noop() -> None:
    return None


def latency_us(f: Any, count: int) -> float:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        redray.get(f.remote())
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def throughput(f: Any, count: int) -> float:
    start = time.perf_counter()
    redray.get([f.remote() for _ in range(count)])
    return count / (time.perf_counter() - start)


def listing_100k() -> tuple[float, float]:
    """(ms to list the 10 of 100k recorded tasks a filter matches, MiB of Redis memory)."""
    from redray.client.task_events import FINISHED, TaskEventBuffer, static_fields
    from redray.control import keys
    from redray.task_spec import TaskSpec
    from redray.util import state

    client = redray.api.current_client()
    job = "bench-100k"
    buffer = TaskEventBuffer(client.commands.raw)
    pipe = client.redis.pipeline(transaction=False)
    node = client.node_id
    for i in range(100_000):
        name = "needle" if i % 10_000 == 0 else "hay"
        spec = TaskSpec(f"{i:024x}", name, "", [], {}, [], "", {"CPU": 1}, job_id=job)
        buffer.record(spec, "PENDING_NODE_ASSIGNMENT", **static_fields(spec))
        buffer.running(spec, node, "a" * 16)
        if i % 2:  # half finished, half still running
            buffer.ended(spec, FINISHED, {})
        if i % 1000 == 999:
            pipe.execute_command(*buffer.drain())
            pipe.execute()
    try:
        start = time.perf_counter()
        found = state.list_tasks(filters=[("name", "=", "needle")])
        elapsed = (time.perf_counter() - start) * 1000
        assert len(found) == 10, len(found)
        memory = client.redis.memory_usage(keys.task_events(job), samples=0) / 2**20
        return elapsed, memory
    finally:
        client.redis.delete(keys.task_events(job), keys.task_events_meta(job))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    # Many short rounds, alternating on and off: on a shared machine, others' load then
    # falls on both alike, and medians drop the rounds it hit hardest.
    latency_n, throughput_n = (100, 500) if args.quick else (300, 2000)
    redray.init(num_cpus=2)
    on = redray.remote(noop)
    off = on.options(enable_task_events=False)
    for f in (on, off):  # warm-up: workers started, function exported
        redray.get([f.remote() for _ in range(200)])
    figures: dict[str, dict[str, list[float]]] = {
        "on": {"latency": [], "throughput": []},
        "off": {"latency": [], "throughput": []},
    }
    for round_number in range(args.rounds):
        order = [("on", on), ("off", off)]
        if round_number % 2:
            order.reverse()
        for label, f in order:
            figures[label]["latency"].append(latency_us(f, latency_n))
            figures[label]["throughput"].append(throughput(f, throughput_n))
    list_ms, memory_mib = listing_100k()
    redray.shutdown()

    lat_on = statistics.median(figures["on"]["latency"])
    lat_off = statistics.median(figures["off"]["latency"])
    thr_on = statistics.median(figures["on"]["throughput"])
    thr_off = statistics.median(figures["off"]["throughput"])
    print(f"sync task latency, median of round medians: on {lat_on:,.0f} us, "
          f"off {lat_off:,.0f} us ({(lat_on / lat_off - 1) * 100:+.1f} %)")  # fmt: skip
    print(f"async task throughput, median round: on {thr_on:,.0f} tasks/s, "
          f"off {thr_off:,.0f} tasks/s ({(thr_on / thr_off - 1) * 100:+.1f} %)")  # fmt: skip
    print(f"list_tasks with a filter matching 10 of 100k recorded tasks: {list_ms:,.0f} ms")
    print(f"Redis memory of 100k recorded task attempts: {memory_mib:.1f} MiB")
    print(f"rounds: {figures}")


if __name__ == "__main__":
    main()
