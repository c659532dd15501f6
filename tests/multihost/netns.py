"""Test hosts as Linux network namespaces, wired to one switch namespace by veth pairs.

Every segment (one per server: db, redis, broker; `front` for the web) is a bridge inside the
switch namespace; a host that talks to a server has one veth pair on that server's segment:
`net-<segment>` inside the host, `<host code>-<segment>` on the bridge. Cutting one host from
one server is `ip link set <port> down` on the switch side: the host's interface keeps its
address and routes, its packets are silently dropped (a partition, not a refused connection),
established TCP connections hang and retransmit, and bringing the port up heals them.

Nothing is created in the root namespace and every address is in 10.213.0.0/16, which exists
only inside these namespaces. Names start with `blmh-<pid>-`, so a run's leftovers (a killed
pytest) are recognised and removed by the next run (`leftovers_remove`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field

NETWORK = "10.213.0.0/16"
NAME_PREFIX = "blmh-"
# server -> (segment number, the server's host number on it)
SEGMENTS = {"db": 1, "redis": 2, "broker": 3, "front": 4}
SERVER_OF_SEGMENT = {"db": "db", "redis": "redis", "broker": "broker", "front": "web"}
HOST_NUMBERS = {"db": 1, "redis": 1, "broker": 1, "web": 10, "worker-a": 11, "worker-b": 12, "beat": 13, "ctl": 20}
HOST_CODES = {"db": "db", "redis": "rd", "broker": "bk", "web": "wb", "worker-a": "wa", "worker-b": "wbb", "beat": "bt"}
HOST_CODES["ctl"] = "ct"


class NamespacesUnavailable(RuntimeError):
    """This machine (or this user) cannot make network namespaces."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def probe() -> None:
    """Make and delete one namespace with a veth pair; NamespacesUnavailable says why not."""
    name = f"{NAME_PREFIX}{os.getpid()}-probe"
    try:
        if subprocess.run(["ip", "-V"], capture_output=True).returncode != 0:
            raise NamespacesUnavailable("iproute2's `ip` does not run")
        ip("netns", "add", name)
        try:
            ip("-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
            ip("-n", name, "link", "add", "b0", "type", "bridge")
        finally:
            ip("netns", "del", name, check=False)
    except FileNotFoundError as exc:
        raise NamespacesUnavailable("iproute2 (`ip`) is not installed") from exc
    except RuntimeError as exc:
        raise NamespacesUnavailable(f"cannot make a network namespace with a veth pair: {exc}") from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespace_kill_all(name: str) -> None:
    """SIGKILL every process still inside namespace `name` (only ours live there)."""
    result = ip("netns", "pids", name, check=False)
    for pid in result.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _owner_gone(name: str, *, mine_too: bool = True) -> bool:
    """`blmh-<pid>-…` made by a pytest process that no longer runs (or by this one)."""
    try:
        owner = int(name[len(NAME_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return False
    return (mine_too and owner == os.getpid()) or not _pid_alive(owner)


def leftovers_remove() -> list[str]:
    """Delete namespaces (and their processes) and temporary folders left by a run whose
    pytest process is gone (killed before its finalizers ran)."""
    import glob
    import shutil
    import tempfile

    removed = []
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), f"{NAME_PREFIX}*")):
        if _owner_gone(os.path.basename(folder), mine_too=False):  # ours: this run's own folder
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NAME_PREFIX) or not _owner_gone(name):
            continue  # not ours, or another run in progress
        namespace_kill_all(name)
        ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


def address(host: str, segment: str) -> str:
    return f"10.213.{SEGMENTS[segment]}.{HOST_NUMBERS[host]}"


@dataclass
class Network:
    """The switch and the hosts of one test run; `close()` deletes every namespace it made."""

    prefix: str = field(default_factory=lambda: f"{NAME_PREFIX}{os.getpid()}-")
    hosts: dict[str, list[str]] = field(default_factory=dict)  # host -> its segments
    made: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    def ns(self, host: str) -> str:
        return f"{self.prefix}{host}"

    def port(self, host: str, segment: str) -> str:
        return f"{HOST_CODES[host]}-{segment}"

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def build(self, hosts: dict[str, list[str]]) -> None:
        self._add_namespace(self.switch)
        for segment in SEGMENTS:
            ip("-n", self.switch, "link", "add", f"br-{segment}", "type", "bridge")
            ip("-n", self.switch, "link", "set", f"br-{segment}", "up")
        for host, segments in hosts.items():
            self._add_namespace(self.ns(host))
            self.hosts[host] = list(segments)
            for segment in segments:
                port, inside = self.port(host, segment), f"net-{segment}"
                peer = ["peer", "name", inside, "netns", self.ns(host)]
                ip("-n", self.switch, "link", "add", port, "type", "veth", *peer)
                ip("-n", self.switch, "link", "set", port, "master", f"br-{segment}")
                ip("-n", self.switch, "link", "set", port, "up")
                ip("-n", self.ns(host), "addr", "add", f"{address(host, segment)}/24", "dev", inside)
                ip("-n", self.ns(host), "link", "set", inside, "up")

    def cut(self, host: str, *segments: str) -> None:
        """Cut `host` from these servers' segments (all of its segments when none are named)."""
        for segment in segments or self.hosts[host]:
            ip("-n", self.switch, "link", "set", self.port(host, segment), "down")

    def heal(self, host: str, *segments: str) -> None:
        for segment in segments or self.hosts[host]:
            ip("-n", self.switch, "link", "set", self.port(host, segment), "up")

    def heal_all(self) -> None:
        for host, segments in self.hosts.items():
            self.heal(host, *segments)

    def exec_prefix(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]

    def close(self) -> None:
        for name in reversed(self.made):
            namespace_kill_all(name)
            ip("netns", "del", name, check=False)
        self.made.clear()
