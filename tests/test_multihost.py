"""A cluster of real hosts: three Linux network namespaces on one bridge (netns_hosts.py).
The head (Redis bound to its address, with a password) and a second node each run on a host
of their own, started with the CLI; drivers run on a third host, as a laptop would.

Skipped, with the reason, where network namespaces cannot be made (not root, no iproute2).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from netns_hosts import Host, Network, available

UNAVAILABLE = available()
pytestmark = [
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no test hosts: {UNAVAILABLE}"),
    pytest.mark.timeout(300),
]
PORT = 6379
START_TIMEOUT_S = 90.0


@dataclass
class Cluster:
    head: Host
    second: Host
    client: Host
    password: str
    tmp: Path
    blocks: list[subprocess.Popen]

    @property
    def address(self) -> str:
        return f"{self.head.address}:{PORT}"

    def env(self, host: Host) -> dict[str, str]:
        return {
            **os.environ,
            "REDRAY_STATE_DIR": str(self.tmp / f"{host.name}-state"),
            "REDRAY_REDIS_PASSWORD": self.password,
            "REDRAY_NODE_IP": host.address,
        }

    def cli(self, host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            host.command(sys.executable, "-m", "redray.cli", *args),
            env=self.env(host), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, f"redray {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def start_node(self, host: Host, *args: str) -> None:
        log = open(self.tmp / f"{host.name}.log", "wb")
        self.blocks.append(
            subprocess.Popen(
                host.command(sys.executable, "-m", "redray.cli", "start", *args, "--block"),
                env=self.env(host),
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.cli(host, "health-check", "--address", self.address, check=False).returncode:
            assert self.blocks[-1].poll() is None, (self.tmp / f"{host.name}.log").read_text()
            assert time.monotonic() < deadline, f"{host.name} never became healthy"
            time.sleep(0.2)

    def run_driver(self, on: Host, body: str, **values: object) -> dict:
        """Run a driver script on host `on` (`values` are its dict VALUES); it prints one
        JSON line, returned here."""
        script = (
            "import json, os, redray\n"
            "VALUES = json.loads(os.environ['TEST_VALUES'])\n"
            f"redray.init(address={self.address!r})\n" + textwrap.dedent(body)
        )
        env = {**self.env(on), "TEST_VALUES": json.dumps(values)}
        done = subprocess.run(
            on.command(sys.executable, "-c", script), env=env,
            capture_output=True, text=True, timeout=240, cwd=self.tmp,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    network = Network()
    tmp = tmp_path_factory.mktemp("multihost")
    try:
        head, second, client = network.create(["head", "second", "client"])
        found = Cluster(head, second, client, secrets.token_urlsafe(16), tmp, [])
        found.start_node(
            head, "--head", "--host", head.address, "--port", str(PORT), "--num-cpus", "1"
        )
        found.start_node(second, "--address", found.address, "--num-cpus", "1")
        yield found
    finally:
        for block in reversed(locals().get("found", Cluster(*[None] * 5, [])).blocks):
            block.send_signal(signal.SIGTERM)
            try:
                block.wait(timeout=60)
            except subprocess.TimeoutExpired:
                block.kill()
        for host in network.hosts:  # anything still running on a host goes with it
            pids = subprocess.run(
                ["ip", "netns", "pids", host.namespace], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        network.destroy()


def test_nodes_advertise_their_hosts_addresses(cluster: Cluster):
    seen = cluster.run_driver(
        cluster.client,
        """
        nodes = [n for n in redray.nodes() if n["Alive"]]
        print(json.dumps(sorted(n["NodeManagerAddress"] for n in nodes)))
        """,
    )
    assert seen == sorted([cluster.head.address, cluster.second.address])


def test_default_scheduling_uses_both_hosts(cluster: Cluster):
    seen = cluster.run_driver(
        cluster.client,
        """
        import socket, time

        @redray.remote
        def meet(me, other):
            # Two 1-CPU hosts: both tasks run at once only if DEFAULT spread them.
            import redis
            r = redis.Redis(host=VALUES["host"], port=VALUES["port"], password=VALUES["pw"])
            r.set("meet:" + me, 1)
            deadline = time.monotonic() + 60
            while not r.exists("meet:" + other):
                assert time.monotonic() < deadline, "the other task never ran"
                time.sleep(0.01)
            return redray.get_runtime_context().get_node_id()

        nodes = redray.get([meet.remote("a", "b"), meet.remote("b", "a")], timeout=120)
        print(json.dumps(len(set(nodes))))
        """,
        host=cluster.head.address,
        port=PORT,
        pw=cluster.password,
    )
    assert seen == 2


def test_actors_and_a_200_mb_object_cross_hosts(cluster: Cluster):
    seen = cluster.run_driver(
        cluster.head,
        """
        import numpy as np
        from redray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        @redray.remote
        class Where:
            def ip(self):
                return redray.util.get_node_ip_address()

            def total(self, array):
                return int(array[::4096].sum())

        nodes = {n["NodeManagerAddress"]: n["NodeID"] for n in redray.nodes() if n["Alive"]}
        actors = {
            ip: Where.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
            ).remote()
            for ip, node in nodes.items()
        }
        ips = {ip: redray.get(actor.ip.remote(), timeout=120) for ip, actor in actors.items()}
        array = np.arange(200 * 2**20, dtype=np.uint8)  # 200 MB, put on the head
        ref = redray.put(array)
        sums = [redray.get(a.total.remote(ref), timeout=120) for a in actors.values()]
        print(json.dumps({"ips": ips, "sums": sums, "expected": int(array[::4096].sum())}))
        """,
    )
    assert all(ip == reported for ip, reported in seen["ips"].items())
    assert seen["sums"] == [seen["expected"]] * 2


def test_working_dir_reaches_the_other_host(cluster: Cluster, tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "shipped_there.py").write_text("ANSWER = 42\n")
    seen = cluster.run_driver(
        cluster.client,
        """
        from redray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        second = next(n["NodeID"] for n in redray.nodes()
                      if n["Alive"] and n["NodeManagerAddress"] == VALUES["second"])

        @redray.remote(runtime_env={"working_dir": VALUES["project"]},
                       scheduling_strategy=NodeAffinitySchedulingStrategy(second, soft=False))
        def answer():
            import shipped_there
            return shipped_there.ANSWER

        print(json.dumps(redray.get(answer.remote(), timeout=120)))
        """,
        second=cluster.second.address,
        project=str(project),
    )
    assert seen == 42


def test_job_submitted_from_another_host_runs_on_the_head(cluster: Cluster):
    done = cluster.cli(
        cluster.second, "job", "submit", "--address", cluster.address, "--",
        sys.executable, "-c",
        "import redray; redray.init(); print('job on', redray.util.get_node_ip_address())",
    )  # fmt: skip
    assert f"job on {cluster.head.address}" in done.stdout
