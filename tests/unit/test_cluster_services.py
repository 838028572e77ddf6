"""The local cluster's configuration (svcpulse/cluster_services.py), checked as data: every server is a
member of the same 2 x 2 cluster with its own macros, and docs/scaling.md shows exactly what the code
writes (rendered for a 4-host deployment). tests/cluster starts it for real."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from pipeline.cluster import REPLICAS_SUFFIX
from svcpulse.cluster_services import (
    CLUSTER,
    DDL_QUEUE,
    USERS_CONFIG,
    Layout,
    NodePorts,
    render_node_config,
    render_zoo_cfg,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scaling.md"
# The deployment docs/scaling.md shows: one host per server, the default ports, one ZooKeeper (add more <node>s).
TEMPLATE = Layout(2181, tuple(NodePorts(s, r, 9000, 8123, 9009, f"ch-s{s}r{r}.example.internal")
                              for s in (1, 2) for r in (1, 2)), zookeeper_host="zk1.example.internal")


def test_every_server_joins_one_cluster_with_its_own_macros(tmp_path: Path) -> None:
    layout = Layout.allocate()
    layout.save(tmp_path / "layout.json")
    assert Layout.load(tmp_path / "layout.json") == layout  # a restart finds the same ports
    seen = set()
    for node in layout.nodes:
        config = ET.fromstring(render_node_config(layout, node))
        macros = {m.tag: m.text for m in config.find("macros")}  # type: ignore[union-attr]
        assert macros == {"cluster": CLUSTER, "shard": str(node.shard), "replica": node.name}
        seen.add(node.name)
        assert config.findtext("interserver_http_port") == str(node.interserver)
        assert config.findtext("zookeeper/node/port") == str(layout.zookeeper)
        assert config.findtext("distributed_ddl/path") == DDL_QUEUE
        shards = config.findall(f"remote_servers/{CLUSTER}/shard")
        assert [s.findtext("internal_replication") for s in shards] == ["true", "true"]
        assert [[int(r.findtext("port") or 0) for r in s.findall("replica")] for s in shards] == [
            [n.tcp for n in layout.nodes if n.shard == shard] for shard in (1, 2)]
        every = config.findall(f"remote_servers/{CLUSTER}{REPLICAS_SUFFIX}/shard/replica/port")
        assert [int(port.text or 0) for port in every] == [n.tcp for n in layout.nodes]  # the guard reads all
    assert len(seen) == 4  # replica names are unique cluster-wide (small tables replicate to all four)
    profile = ET.fromstring(USERS_CONFIG).find("profiles/default")
    assert profile is not None and profile.findtext("insert_distributed_sync") == "1"


def test_the_scaling_docs_show_exactly_what_the_code_writes() -> None:
    text = DOCS.read_text()
    for node in TEMPLATE.nodes[:1]:
        assert render_node_config(TEMPLATE, node) in text
    assert USERS_CONFIG in text
    assert render_zoo_cfg("/var/lib/zookeeper", 2181, "0.0.0.0") in text
