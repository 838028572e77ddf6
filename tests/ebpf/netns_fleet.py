"""A fleet of plain HTTP servers that run no svcpulse code, each in its own network namespace.

Instance n lives in namespace `ebpf-<tag>-<n>`, reached from the root namespace over a veth pair at
10.213.<k>.2 (the root side is .1); every instance listens on the same port. The server is Debian's
`/usr/bin/python3 -m http.server` (standard library only), or, for the reset fault, a few lines of
standard-library Python that accept and close with SO_LINGER 0. Faults are real: a stopped process
(refused), nftables rules inside the namespace (random loss, unanswered SYNs). Root only.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, not the venv's: nothing of svcpulse is importable there
RESETTER = """
import socket, struct, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((sys.argv[1], int(sys.argv[2])))
listener.listen(128)
while True:
    conn, _ = listener.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Instance:
    namespace: str
    address: str  # the instance's IP inside its namespace
    port: int
    docroot: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def run(self, mode: str = "http") -> None:
        """Start the server: "http" (python3 -m http.server) or "reset" (accept, then RST)."""
        self.stop()
        serve = ([SYSTEM_PYTHON, "-m", "http.server", str(self.port), "--bind", self.address, "--directory",
                  str(self.docroot)] if mode == "http" else [SYSTEM_PYTHON, "-c", RESETTER, self.address,
                                                             str(self.port)])
        self.process = subprocess.Popen(["ip", "netns", "exec", self.namespace, *serve],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._listening():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{mode} server in {self.namespace} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def _listening(self) -> bool:
        out = sh("ip", "netns", "exec", self.namespace, "ss", "-ltnH", f"sport = :{self.port}", check=False).stdout
        return bool(out.strip())

    def nft(self, *rules: str) -> None:
        """Replace the namespace's table `ebpf_fault` with these rules ("in ..." or "out ..."; none: remove it)."""
        sh("ip", "netns", "exec", self.namespace, "nft", "delete", "table", "inet", "ebpf_fault", check=False)
        if not rules:
            return
        script = ("table inet ebpf_fault {\n"
                  " chain in { type filter hook input priority 0; }\n"
                  " chain out { type filter hook output priority 0; }\n}\n")
        script += "".join(f"add rule inet ebpf_fault {rule}\n" for rule in rules)
        subprocess.run(["ip", "netns", "exec", self.namespace, "nft", "-f", "-"], input=script, text=True,
                       check=True, capture_output=True, timeout=30)


@dataclass
class NetnsFleet:
    size: int
    port: int
    instances: list[Instance] = field(default_factory=list)
    docroot: Path = Path()
    tag: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")

    def __enter__(self) -> NetnsFleet:
        self.docroot = docroot = Path(tempfile.mkdtemp(prefix="ebpf-fleet-"))
        (docroot / "ok").write_text("ok\n")
        base = _free_subnet_base(self.size)
        try:
            for n in range(self.size):
                namespace, veth = f"ebpf-{self.tag}-{n}", f"ebpf{self.tag}v{n}"
                sh("ip", "netns", "add", namespace)
                sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
                sh("ip", "addr", "add", f"10.213.{base + n}.1/24", "dev", veth)
                sh("ip", "link", "set", veth, "up")
                inside = ("ip", "netns", "exec", namespace)
                sh(*inside, "ip", "addr", "add", f"10.213.{base + n}.2/24", "dev", "eth0")
                sh(*inside, "ip", "link", "set", "eth0", "up")
                sh(*inside, "ip", "link", "set", "lo", "up")
                instance = Instance(namespace, f"10.213.{base + n}.2", self.port, docroot)
                self.instances.append(instance)
                instance.run()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for instance in self.instances:
            instance.stop()
        for n in range(self.size):
            sh("ip", "netns", "del", f"ebpf-{self.tag}-{n}", check=False)
            sh("ip", "link", "del", f"ebpf{self.tag}v{n}", check=False)
        shutil.rmtree(self.docroot, ignore_errors=True)

    @property
    def endpoints(self) -> list[str]:
        return [i.endpoint for i in self.instances]


def _free_subnet_base(size: int) -> int:
    """k such that 10.213.k.0/24 .. 10.213.(k+size-1).0/24 are not routed anywhere on this host."""
    routes = sh("ip", "-4", "route", "show").stdout
    for _ in range(100):
        base = random.randrange(1, 250 - size)
        if not any(f"10.213.{base + n}." in routes for n in range(size)):
            return base
    raise RuntimeError("no free 10.213.x.0/24 subnets")


@dataclass(frozen=True)
class Attempt:
    t: float  # monotonic time the connection was attempted
    instance: str
    ok: bool


class Load:
    """`rate` requests/s, one new connection each, to instances a balancer picks, from 4 threads."""

    def __init__(self, balancer: Any, rate: float, timeout_s: float = 1.0) -> None:
        self.balancer, self.rate, self.timeout_s = balancer, rate, timeout_s
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(4)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _run(self, n: int) -> None:
        import http.client

        period = len(self._threads) / self.rate
        next_at = time.monotonic() + n * period / len(self._threads)
        while not self._stop.is_set():
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            next_at += period
            instance = self.balancer.pick()
            host, port = instance.rsplit(":", 1)
            started = time.monotonic()
            conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout_s)
            try:
                conn.request("GET", "/ok")
                ok = conn.getresponse().status == 200
            except (OSError, http.client.HTTPException):
                ok = False
            finally:
                conn.close()
            self.balancer.report(instance, ok, (time.monotonic() - started) * 1000)
            self.attempts.append(Attempt(started, instance, ok))

    def failed(self, instance: str, since: float) -> int:
        """Attempts to `instance` since a monotonic time that the client saw fail."""
        return sum(not a.ok and a.instance == instance and a.t >= since for a in list(self.attempts))

    def share(self, instance: str, since: float, until: float) -> tuple[float, int]:
        """(share of attempts that went to `instance`, attempts) between two monotonic times."""
        picked = [a for a in list(self.attempts) if since <= a.t < until]
        return sum(a.instance == instance for a in picked) / max(1, len(picked)), len(picked)
