"""A real ClickHouse cluster on one machine: ZooKeeper 3.8 (Debian) and 4 ClickHouse 18.16 servers,
2 shards x 2 replicas, on free loopback ports under <dir>/cluster.

`svcpulse services start|stop|status --cluster` and the cluster tests drive it. Ports are chosen once,
at the first start, and kept in <dir>/cluster/layout.json, because every server's config names every
other server: a restart reuses them (and the replicas' data and ZooKeeper's state). Each server gets
its own `{shard}`/`{replica}` macros, the `remote_servers` entry of the cluster, the ZooKeeper
address and the `distributed_ddl` queue; `render_node_config` writes exactly what docs/scaling.md
shows as the template for a real deployment. Processes are managed by svcpulse.services' helpers:
stop ends only a process this module started.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cluster import REPLICAS_SUFFIX
from svcpulse.services import ClickHouseServer, ServiceError, _Process, free_port

CLUSTER = "svcpulse"
SHARDS, REPLICAS = 2, 2
DDL_QUEUE = "/clickhouse/task_queue/ddl"
_ZOOKEEPER_JARS = ("/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar")


@dataclass(frozen=True)
class NodePorts:
    """Where one server listens: native protocol, HTTP, and replication (interserver HTTP)."""

    shard: int
    replica: int
    tcp: int
    http: int
    interserver: int
    host: str = "127.0.0.1"  # the address the other servers reach it at

    @property
    def name(self) -> str:
        """The `{replica}` macro: unique across the cluster (small tables replicate to every node)."""
        return f"s{self.shard}r{self.replica}"


@dataclass(frozen=True)
class Layout:
    zookeeper: int
    nodes: tuple[NodePorts, ...]
    zookeeper_host: str = "127.0.0.1"

    @classmethod
    def allocate(cls) -> Layout:
        nodes = tuple(NodePorts(s, r, free_port(), free_port(), free_port())
                      for s in range(1, SHARDS + 1) for r in range(1, REPLICAS + 1))
        return cls(free_port(), nodes)

    @classmethod
    def load(cls, path: Path) -> Layout:
        data = json.loads(path.read_text())
        return cls(data["zookeeper"], tuple(NodePorts(**node) for node in data["nodes"]))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"zookeeper": self.zookeeper,
                                    "nodes": [node.__dict__ for node in self.nodes]}, indent=2) + "\n")


def render_zoo_cfg(data_dir: str, port: int, listen: str = "127.0.0.1") -> str:
    """A standalone ZooKeeper (production runs 3 or 5, each with server.N lines; ClickHouse lists them
    all in <zookeeper>). tickTime 2 s allows sessions up to 40 s: ClickHouse asks for 30 s."""
    return (f"tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={data_dir}\nclientPort={port}\n"
            f"clientPortAddress={listen}\nmaxClientCnxns=0\nadmin.enableServer=false\n"
            "4lw.commands.whitelist=srvr,ruok,stat,mntr\nautopurge.snapRetainCount=3\nautopurge.purgeInterval=1\n")


def _remote_servers(layout: Layout) -> str:
    shards = []
    for shard in range(1, SHARDS + 1):
        replicas = "".join(f"\n        <replica><host>{node.host}</host><port>{node.tcp}</port></replica>"
                           for node in layout.nodes if node.shard == shard)
        shards.append(f"\n      <shard>\n        <internal_replication>true</internal_replication>{replicas}"
                      "\n      </shard>")
    return "".join(shards)


def _every_replica(layout: Layout) -> str:
    return "".join(f"\n      <shard><replica><host>{node.host}</host><port>{node.tcp}</port></replica></shard>"
                   for node in layout.nodes)


def render_node_config(layout: Layout, node: NodePorts) -> str:
    """config.d/cluster.xml of one server: what makes a lone server a member of the cluster."""
    return f"""<?xml version="1.0"?>
<!-- Server {node.name}: shard {node.shard}, replica {node.replica} of cluster {CLUSTER} \
({SHARDS} shards x {REPLICAS} replicas). -->
<yandex>
  <!-- Replicas fetch parts from each other here (it must be reachable from the other servers). -->
  <interserver_http_host>{node.host}</interserver_http_host>
  <interserver_http_port>{node.interserver}</interserver_http_port>
  <!-- Substituted into the Replicated tables' ZooKeeper paths and replica names. -->
  <macros>
    <cluster>{CLUSTER}</cluster>
    <shard>{node.shard}</shard>
    <replica>{node.name}</replica>
  </macros>
  <zookeeper>
    <node><host>{layout.zookeeper_host}</host><port>{layout.zookeeper}</port></node>
    <session_timeout_ms>30000</session_timeout_ms>
  </zookeeper>
  <!-- ON CLUSTER statements (cluster migrations, retention) queue here; every server runs its own. -->
  <distributed_ddl><path>{DDL_QUEUE}</path></distributed_ddl>
  <!-- internal_replication: an insert goes to one replica of a shard, ReplicatedMergeTree copies it. -->
  <remote_servers>
    <{CLUSTER}>{_remote_servers(layout)}
    </{CLUSTER}>
    <!-- Every replica as a shard of its own: the loader's redelivery guard reads them all. -->
    <{CLUSTER}{REPLICAS_SUFFIX}>{_every_replica(layout)}
    </{CLUSTER}{REPLICAS_SUFFIX}>
  </remote_servers>
</yandex>
"""


# Every session on a cluster server: an IN/JOIN over a Distributed table inside a query on another one
# (the capacity dashboard's "instances of this service") is sent once, as GLOBAL, instead of refused.
USERS_CONFIG = """<?xml version="1.0"?>
<yandex>
  <profiles><default>
    <distributed_product_mode>global</distributed_product_mode>
    <insert_distributed_sync>1</insert_distributed_sync>
  </default></profiles>
</yandex>
"""


@dataclass
class ZooKeeper(_Process):
    """Debian's ZooKeeper 3.8 (Java 17), standalone, with its data under the work directory."""

    name: str = "zookeeper"
    port: int = 2181
    workdir: Path = Path(".svcpulse/services/cluster/zookeeper")

    def prepare(self) -> None:
        data = (self.workdir / "data").resolve()
        data.mkdir(parents=True, exist_ok=True)
        (self.workdir / "zoo.cfg").write_text(render_zoo_cfg(str(data), self.port))

    def command(self) -> list[str]:
        java = shutil.which("java")
        if not java or not Path(_ZOOKEEPER_JARS[0]).exists():
            raise ServiceError("ZooKeeper needs Debian's zookeeper package and Java: run scripts/bootstrap.sh")
        return [java, "-Xms64m", "-Xmx256m", "-cp", ":".join(_ZOOKEEPER_JARS),
                "org.apache.zookeeper.server.ZooKeeperServerMain", str((self.workdir / "zoo.cfg").resolve())]

    def serving(self) -> bool:
        """`srvr` names the server's mode once it serves sessions (the port opens, and `ruok` answers,
        while it is still loading its data; a ClickHouse server started then fails to start)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"srvr")
                return b"Mode: " in sock.recv(4096)
        except OSError:
            return False


@dataclass
class ClusterNode(ClickHouseServer):
    """One ClickHouse server of the cluster: the single-server config plus config.d and users.d files."""

    layout: Layout | None = None
    ports: NodePorts | None = None

    def prepare(self) -> None:
        super().prepare()
        assert self.layout is not None and self.ports is not None
        (self.home / "config.d").mkdir(exist_ok=True)
        (self.home / "config.d" / "cluster.xml").write_text(render_node_config(self.layout, self.ports))
        (self.home / "users.d").mkdir(exist_ok=True)
        (self.home / "users.d" / "cluster.xml").write_text(USERS_CONFIG)


def _all_at_once(actions: list[Callable[[], None]]) -> None:
    """Run the actions in threads; the first error is raised once all have finished."""
    with ThreadPoolExecutor(max_workers=len(actions)) as pool:
        for future in [pool.submit(action) for action in actions]:
            future.result()


@dataclass
class LocalCluster:
    """ZooKeeper and the 4 servers; `start` is idempotent and `stop` stops only what it started."""

    workdir: Path = Path(".svcpulse/services/cluster")
    layout: Layout = field(init=False)

    def __post_init__(self) -> None:
        self.layout = Layout.load(self.layout_file) if self.recorded() else Layout.allocate()
        self.zookeeper = ZooKeeper(port=self.layout.zookeeper, workdir=self.workdir / "zookeeper")
        self.nodes = [ClusterNode(name="clickhouse", port=node.tcp, http_port=node.http,
                                  workdir=self.workdir / node.name, layout=self.layout, ports=node)
                      for node in self.layout.nodes]

    @property
    def layout_file(self) -> Path:
        return self.workdir / "layout.json"

    def recorded(self) -> bool:
        """True once a cluster was started in this directory (its ports are kept for restarts)."""
        return self.layout_file.exists()

    def node(self, shard: int, replica: int) -> ClusterNode:
        return self.nodes[(shard - 1) * REPLICAS + replica - 1]

    def shard(self, shard: int) -> list[ClusterNode]:
        return [node for node in self.nodes if node.ports and node.ports.shard == shard]

    def start(self, progress: bool = False) -> None:
        """ZooKeeper first (the servers connect to it at start), then the 4 servers at once."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.layout.save(self.layout_file)
        for service in (self.zookeeper, *self.nodes):
            if progress:
                print(f"[services] starting {self.label(service)} on 127.0.0.1:{service.port} ...", flush=True)
        self.zookeeper.start()
        self.wait_zookeeper()
        _all_at_once([node.start for node in self.nodes])

    def wait_zookeeper(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.zookeeper.serving():
            if time.monotonic() > deadline:
                raise ServiceError(f"ZooKeeper does not serve on {self.zookeeper.port}; "
                                   f"log {self.zookeeper.log_file}")
            time.sleep(0.1)

    def stop(self) -> None:
        """The servers at once (each takes seconds to shut down cleanly), then ZooKeeper."""
        _all_at_once([node.stop for node in self.nodes])
        self.zookeeper.stop()

    def label(self, service: _Process) -> str:
        return service.workdir.name if isinstance(service, ClusterNode) else service.name

    def status(self) -> list[str]:
        return [f"{self.label(service):<11}{service.status()[11:]}" for service in (self.zookeeper, *self.nodes)]

    def store_url(self, database: str = "svcpulse") -> str:
        """The first server, with the others as failover hosts (clickhouse-driver alt_hosts)."""
        first, *others = self.nodes
        alt = ",".join(f"127.0.0.1:{node.port}" for node in others)
        return f"clickhouse://127.0.0.1:{first.port}/{database}?alt_hosts={alt}"
