"""Test hosts made of Linux network namespaces: each host has its own network stack (its own
loopback, its own abstract Unix sockets) and one address on a private bridge, as machines
on one LAN have. Processes run on a host with `ip netns exec`.

The bridge lives in a namespace of its own, so nothing is added to the machine's network.
Needs root and iproute2; `available()` says whether this machine allows it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field

SUBNET = "10.213.77"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def available() -> str | None:
    """None when network namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"rr-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as error:
        return f"`ip netns add` is not permitted here: {error.stderr.decode().strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass
class Host:
    name: str
    namespace: str
    address: str

    def command(self, *argv: str) -> list[str]:
        """`argv` as run on this host."""
        return ["ip", "netns", "exec", self.namespace, *argv]


@dataclass
class Network:
    """Hosts 1..n on one bridge: SUBNET.1, SUBNET.2, ..."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    hosts: list[Host] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"rr-{self.tag}-sw"

    def create(self, names: list[str]) -> list[Host]:
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for number, name in enumerate(names, 1):
            host = Host(name, f"rr-{self.tag}-{name}", f"{SUBNET}.{number}")
            self.hosts.append(host)
            inside, outside = f"rr{self.tag}h{number}", f"rr{self.tag}s{number}"
            _ip("netns", "add", host.namespace)
            _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
            _ip("link", "set", inside, "netns", host.namespace)
            _ip("link", "set", outside, "netns", self.switch)
            _ip("-n", self.switch, "link", "set", outside, "master", "br0", "up")
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", inside)
            _ip("-n", host.namespace, "link", "set", inside, "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        return list(self.hosts)

    def cut(self, host: Host) -> None:
        """Unplug a host's cable (its processes keep running)."""
        number = self.hosts.index(host) + 1
        _ip("-n", self.switch, "link", "set", f"rr{self.tag}s{number}", "down")

    def reconnect(self, host: Host) -> None:
        number = self.hosts.index(host) + 1
        _ip("-n", self.switch, "link", "set", f"rr{self.tag}s{number}", "up")

    def destroy(self) -> None:
        """Delete every namespace (their interfaces go with them); after the processes
        that ran in them are gone."""
        for namespace in [host.namespace for host in self.hosts] + [self.switch]:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        self.hosts.clear()
