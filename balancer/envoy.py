"""Write the weight feed as an EDS file for Envoy's filesystem config source (docs/envoy.md).

    svcpulse balancer envoy-eds --api http://svcpulse:8000 --service shop.cart \\
        --file /etc/envoy/eds/shop.cart.json

The file holds one DiscoveryResponse with the service's ClusterLoadAssignment (balancer/eds.py).
Envoy watches the file (`path_config_source`) and reloads it when it is moved into place, so each
change is written to a temporary file in the same directory and renamed over the old one.
The alternative without a file is the API's REST xDS endpoint, POST /v3/discovery:endpoints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from balancer import loop
from balancer.adapter import Adapter, BalancerError, routable_weights
from balancer.client import FeedView
from balancer.eds import cluster_load_assignment, discovery_response, version_of
from balancer.loop import add_loop_flags

log = logging.getLogger("svcpulse.envoy")


class EnvoyEdsFileAdapter(Adapter):
    kind = "envoy-eds"

    def __init__(self, path: str, cluster: str) -> None:
        self.path, self.cluster = Path(path), cluster

    def target(self) -> str:
        return f"EDS file {self.path} (cluster {self.cluster})"

    def render(self, view: FeedView) -> str:
        routable_weights(view)  # refuses a feed that routes nothing, as every adapter does
        rows = [{"instance": name, "weight": weight, "state": view.states.get(name, "")}
                for name, weight in view.weights.items()]
        assignment = cluster_load_assignment(self.cluster, rows)
        if assignment.skipped:
            log.warning("not IP:port, left out of the EDS file: %s", ", ".join(assignment.skipped))
        resources = [assignment.resource]
        return json.dumps(discovery_response(resources, version_of(resources)), indent=1, sort_keys=True) + "\n"

    def apply(self, rendered: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w") as out:
                out.write(rendered)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)  # a move: what Envoy's file watcher reacts to
        except OSError as err:
            raise BalancerError(f"cannot write {self.path}: {err}") from err

    def verify(self, rendered: str) -> str:
        try:
            held = self.path.read_text()
        except OSError as err:
            return f"cannot read {self.path}: {err}"
        return "" if held == rendered else f"{self.path} differs from the feed's rendering"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", required=True, help="EDS file Envoy watches (path_config_source), e.g. "
                        "/etc/envoy/eds/shop.cart.json")
    parser.add_argument("--cluster", help="cluster_name in the file (default: the service name; Envoy matches "
                        "it with eds_cluster_config.service_name or the cluster's name)")
    add_loop_flags(parser)


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    return loop.run(args, EnvoyEdsFileAdapter(args.file, args.cluster or args.service), stop)
